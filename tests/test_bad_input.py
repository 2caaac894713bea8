"""Bad input found by trying it: one `error:` line naming the value and the fix, exit 2 (1 for
a storage that fails), no traceback, nothing written to storage."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from hpsearch.cli import cli

TINY = """\
base: {dataset: digits, epochs: 1, batch_size: 64, width: 16}
objective: {metric: val_acc}
sampler: {name: random, seed: 0}
pruner: {name: none}
trials: 1
space:
  lr: {type: float, low: 1e-4, high: 1e-2, log: true}
"""


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def refused(result, *parts: str, code: int = 2) -> None:
    """Exactly one `error:` line holding every part; the exit code; no traceback."""
    lines = result.output.strip().splitlines()
    assert result.exit_code == code, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for part in parts:
        assert part in lines[0], lines[0]


@pytest.mark.parametrize("setting, message", [
    ("lr=-0.001", "`lr` must be 0 < lr, got -0.001"),
    ("epochs=0", "`epochs` must be 1 <= epochs <= 100_000, got 0"),
    ("epochs=-3", "got -3"),
    ("epochs=1e23", "`epochs` must be 1 <= epochs <= 100_000"),
    ("batch_size=0", "`batch_size` must be 1 <= batch_size"),
    ("batch_size=-1", "got -1"),
    ("width=0", "`width` must be 1 <= width <= 65_536, got 0"),
    ("depth=-1", "`depth` must be 1 <= depth"),
    ("dropout=1.5", "`dropout` must be 0 <= dropout < 1, got 1.5"),
    ("momentum=1", "`momentum` must be 0 <= momentum < 1"),
])
def test_an_impossible_setting_is_refused_before_storage(write_study, studies_dir, tmp_path,
                                                         setting, message):
    write_study("tiny", TINY)
    url = f"sqlite:///{tmp_path / 'x.db'}"
    result = invoke("run", "--study", "tiny", "--studies-dir", str(studies_dir), "--storage", url,
                    "--set", setting)
    refused(result, f"--set {setting}", message, "hpsearch settings")
    assert not (tmp_path / "x.db").exists()


def test_settings_lists_each_range():
    result = invoke("settings")
    assert "range: 0 <= dropout < 1" in result.output
    assert "range: 1 <= epochs <= 100_000" in result.output
    assert "range: 0 < lr" in result.output


@pytest.mark.parametrize("line, message", [
    ("  width: {low: 1, high: 1000000000}", "space.width.high: `width` must be 1 <= width <= 65_536"),
    ("  dropout: {low: 0.0, high: 1.5}", "space.dropout.high: `dropout` must be 0 <= dropout < 1"),
    ("  epochs: {values: [10, 0]}", "`epochs` must be 1 <= epochs"),
])
def test_a_space_beyond_a_settings_range_is_refused(write_study, studies_dir, tmp_path, line, message):
    write_study("wide", TINY.replace("  lr: {type: float, low: 1e-4, high: 1e-2, log: true}", line))
    url = f"sqlite:///{tmp_path / 'x.db'}"
    result = invoke("run", "--study", "wide", "--studies-dir", str(studies_dir), "--storage", url)
    refused(result, "wide.yaml", message)
    assert not (tmp_path / "x.db").exists()


@pytest.mark.parametrize("change, message", [
    (("trials: 1", "trials: 1e38"), "trials"),
    (("epochs: 1", "epochs: 1e23"), "base.epochs: `epochs` must be 1 <= epochs <= 100_000"),
])
def test_budgets_that_would_never_end_are_refused(write_study, studies_dir, tmp_path, change, message):
    write_study("endless", TINY.replace(*change))
    result = invoke("run", "--study", "endless", "--studies-dir", str(studies_dir),
                    "--storage", f"sqlite:///{tmp_path / 'x.db'}")
    refused(result, "endless.yaml", message)


@pytest.mark.parametrize("content, message", [
    (TINY.replace("base:", "# caf\xe9\nbase:").encode("latin-1"), "is not UTF-8 text (line 1 holds byte 0xe9)"),
    (TINY.encode("utf-16"), "iconv -f utf-16 -t utf-8"),
    (bytes(range(256)) * 8, "is not UTF-8 text"),
    (("objective: " + "[" * 20000 + "]" * 20000).encode(), "is nested too deeply to read"),
])
def test_a_study_file_that_is_not_readable_text_is_named(studies_dir, tmp_path, content, message):
    path = studies_dir / "odd.yaml"
    path.write_bytes(content)
    result = invoke("run", "--study", str(path), "--storage", f"sqlite:///{tmp_path / 'x.db'}")
    refused(result, "odd.yaml", message)
    assert not (tmp_path / "x.db").exists()


def test_a_utf8_file_with_a_byte_order_mark_reads(write_study, studies_dir, tmp_path):
    path = studies_dir / "bom.yaml"
    path.write_bytes(TINY.encode("utf-8-sig"))
    result = invoke("run", "--study", str(path), "--storage", f"sqlite:///{tmp_path / 'x.db'}")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("setting, message", [
    ("model=os:system", "model factory `os:system` is not a factory"),
    ("dataset=os:getcwd", "dataset factory `os:getcwd` is not a factory"),
])
def test_an_import_path_that_is_no_factory_is_refused_before_it_is_called(
        write_study, studies_dir, tmp_path, setting, message):
    write_study("tiny", TINY)
    result = invoke("run", "--study", "tiny", "--studies-dir", str(studies_dir),
                    "--storage", f"sqlite:///{tmp_path / 'x.db'}", "--set", setting)
    refused(result, message, "fix: point to a function called as fn(config")


@pytest.mark.parametrize("url, message", [
    ("postgresql://u:SeCrEt@127.0.0.1:54x0/db", "(the port must be a number)"),
    ("postgresql//postgres:SeCrEt@localhost/db", "'postgresql//postgres:***@localhost/db' (not a URL)"),
])
def test_a_storage_url_that_does_not_parse_is_named_without_its_password(write_study, studies_dir,
                                                                          url, message):
    write_study("tiny", TINY)
    result = invoke("run", "--study", "tiny", "--studies-dir", str(studies_dir), "--storage", url)
    refused(result, "--storage: cannot parse storage URL", message)
    assert "SeCrEt" not in result.output


def test_a_sqlite_path_under_a_file_is_named(write_study, studies_dir, tmp_path):
    write_study("tiny", TINY)
    (tmp_path / "afile").write_text("mine")
    url = f"sqlite:///{tmp_path / 'afile' / 'sub' / 'x.db'}"
    result = invoke("run", "--study", "tiny", "--studies-dir", str(studies_dir), "--storage", url)
    refused(result, f"{tmp_path / 'afile'} is a file", code=1)
    assert (tmp_path / "afile").read_text() == "mine"


def test_a_sqlite_file_damaged_in_the_middle_is_one_line_and_left_as_it_is(
        write_study, studies_dir, tmp_path):
    write_study("tiny", TINY)
    path = tmp_path / "x.db"
    url = f"sqlite:///{path}"
    assert invoke("run", "--study", "tiny", "--studies-dir", str(studies_dir), "--storage", url).exit_code == 0
    with sqlite3.connect(path) as connection:  # everything into the file itself
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(path.read_bytes())
    third = len(data) // 3
    data[third:2 * third] = os.urandom(third)  # the header intact, the pages in the middle not
    path.write_bytes(bytes(data))
    damaged = path.read_bytes()
    result = invoke("run", "--study", "tiny", "--studies-dir", str(studies_dir), "--storage", url,
                    "--trials", "2")
    refused(result, "damaged", code=1)
    assert path.read_bytes() == damaged  # nothing more written into it


def test_a_missing_database_on_a_reachable_server_is_named_with_the_command(
        write_study, studies_dir, postgres_url):
    write_study("tiny", TINY)
    missing = postgres_url.rsplit("/", 1)[0] + "/hpsearch_no_such_db"
    result = invoke("run", "--study", "tiny", "--studies-dir", str(studies_dir), "--storage", missing)
    refused(result, 'database "hpsearch_no_such_db" does not exist', "createdb", code=1)
    assert "hpsearch_test@" not in result.output or ":***@" in result.output


def test_a_server_that_accepts_and_never_answers_is_an_error_within_seconds(
        write_study, studies_dir):
    """A local listener that accepts the connection and never speaks (a frozen server)."""
    write_study("tiny", TINY)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted = []
    threading.Thread(target=lambda: accepted.append(listener.accept()), daemon=True).start()
    port = listener.getsockname()[1]
    url = f"postgresql://u:SeCrEt@127.0.0.1:{port}/db"
    command = [sys.executable, "-m", "hpsearch", "run", "--study", "tiny", "--studies-dir",
               str(studies_dir), "--storage", url]
    start = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - start
    listener.close()
    assert done.returncode == 1, done.stderr
    assert elapsed < 20  # the 10 s connect timeout plus start-up
    assert done.stderr.strip().startswith("error: cannot open storage postgresql+psycopg://u:***@127.0.0.1")
    assert "SeCrEt" not in done.stderr and "Traceback" not in done.stderr


def test_a_closed_local_port_is_an_error_at_once(write_study, studies_dir):
    write_study("tiny", TINY)
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    result = invoke("run", "--study", "tiny", "--studies-dir", str(studies_dir),
                    "--storage", f"postgresql://u:SeCrEt@127.0.0.1:{port}/db")
    refused(result, f"127.0.0.1:{port}", "Connection refused", code=1)
    assert "SeCrEt" not in result.output


def test_nothing_is_written_into_the_users_folder_by_a_refused_run(write_study, studies_dir, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "data.txt").write_text("x")
    write_study("tiny", TINY)
    invoke("run", "--study", "tiny", "--studies-dir", str(studies_dir), "--set", "epochs=0",
           "--set", f"data_dir={mine}", "--storage", f"sqlite:///{tmp_path / 'x.db'}")
    assert sorted(p.name for p in mine.iterdir()) == ["data.txt"]
    assert not Path(tmp_path / "x.db").exists()


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder on a file system of its own, remounted read-only by `make_read_only()`:
    read-only for root too (file modes are not, and CI runs as root)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(folder)],
                             capture_output=True)
    if mounted.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the read-only storage test: {mounted.stderr!r}")
        pytest.skip("needs root to mount a file system")

    def make_read_only():
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)

    try:
        yield folder, make_read_only
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def test_a_read_only_sqlite_file_is_one_line_and_left_as_it_is(write_study, studies_dir,
                                                                read_only_folder):
    folder, make_read_only = read_only_folder
    write_study("tiny", TINY)
    url = f"sqlite:///{folder / 'x.db'}"
    made = subprocess.run([sys.executable, "-m", "hpsearch", "run", "--study", "tiny",
                           "--studies-dir", str(studies_dir), "--storage", url],
                          capture_output=True, text=True, timeout=300)  # its files closed after
    assert made.returncode == 0, made.stderr
    before = files_in(folder)  # the database, and the kept model beside it (artifacts/)
    make_read_only()
    result = invoke("run", "--study", "tiny", "--studies-dir", str(studies_dir), "--storage", url,
                    "--trials", "2")
    refused(result, "read-only", "fix: ", code=1)
    assert files_in(folder) == before


def files_in(folder):
    """Every file under `folder` with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
