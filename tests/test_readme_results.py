"""The README's search-quality tables come from the results stored in `docs/results/`: every
`--merge` command it shows runs verbatim and prints, for each arm, the mean test accuracy the
README's table under that command gives. Run in a folder of its own (the plot it draws lands
there, not in the repository), with the repository's benchmarks and results linked in."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import REPO

README = (REPO / "README.md").read_text()
MERGE = "    python benchmarks/search_quality.py --merge "


def merge_commands() -> list[tuple[str, str]]:
    """(command with its continuation lines joined, the README's first table after it)."""
    found = []
    for match in re.finditer(re.escape(MERGE), README):
        text = README[match.start():]
        lines = []
        for line in text.splitlines():
            lines.append(line.strip().rstrip("\\").strip())
            if not line.endswith("\\"):
                break
        table = "| arm" + text.split("\n| arm", 1)[1].split("\n\n", 1)[0]
        found.append((" ".join(lines), table))
    return found


COMMANDS = merge_commands()


def cells(row: str) -> list[str]:
    return [cell.strip().strip("*") for cell in row.strip().strip("|").split("|")]


def test_the_readme_shows_merge_commands():
    assert len(COMMANDS) >= 5


@pytest.mark.parametrize("command, table", COMMANDS,
                         ids=[command.split("--merge ")[1].split()[0] for command, _ in COMMANDS])
def test_a_readme_table_is_what_its_merge_command_prints(command, table, tmp_path):
    (tmp_path / "benchmarks").symlink_to(REPO / "benchmarks", target_is_directory=True)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "results").symlink_to(REPO / "docs" / "results",
                                               target_is_directory=True)
    verbatim = command.replace("python ", f"{sys.executable} ", 1)
    result = subprocess.run(verbatim, shell=True, cwd=tmp_path, capture_output=True, text=True,
                            timeout=300, executable="/bin/bash")
    assert result.returncode == 0, result.stderr[-2000:]
    printed = result.stdout.split("Per seed:")[0]
    means = {cells(row)[0]: cells(row)[2] for row in printed.splitlines()
             if row.startswith("| ") and not row.startswith("| arm") and "---" not in row}
    readme = {cells(row)[0].split(" (")[0]: cells(row)[3] for row in table.splitlines()[2:]}
    assert means and set(means) == set(readme), (means, readme)
    assert {arm: readme[arm] for arm in means} == means
    plot = command.split("--plot ")[1].split()[0]
    assert (tmp_path / plot).read_bytes().startswith(b"\x89PNG")
