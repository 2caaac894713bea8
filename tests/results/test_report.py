"""The protocol report: one self-contained HTML page with every phase, the test result, how
to reproduce it and where the model is; readable in a browser with no network."""

from __future__ import annotations

import base64
import html
import os
import re
import subprocess
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from hpsearch import records
from hpsearch.config import TrainConfig
from hpsearch.errors import UsageError
from hpsearch.records import PhaseChoice
from hpsearch.results.frames import PHASE_ORDER, open_study
from hpsearch.results.report import write_report
from hpsearch.storage import describe, find_study, study_name
from tests.results.test_plots import PNG_MAGIC, make_study

TAG = "t"
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def report(tmp_path_factory, tiny_protocol):
    """One tiny protocol run and its report: (storage URL, report path, report text)."""
    folder = tmp_path_factory.mktemp("r")
    url = tiny_protocol
    out = write_report(url, tag=TAG, out=folder / "report.html")
    return url, out, out.read_text(encoding="utf-8")


def section(page: str, phase: str) -> str:
    """The HTML of one phase's section."""
    start = page.index(f'<section id="phase-{phase}">')
    return page[start:page.index("</section>", start)]


def test_report_has_a_numbered_section_for_every_phase(report):
    _, _, page = report
    for number, phase in enumerate(PHASE_ORDER, 1):
        assert f"<h2>{number}. {phase} " in section(page, phase)


def test_header_names_tag_storage_and_every_phase_in_the_summary(report):
    url, _, page = report
    header = page[:page.index("<section")]
    assert f"<dd>{TAG}</dd>" in header and html.escape(describe(url)) in header
    for phase in PHASE_ORDER:
        assert f'<a href="#phase-{phase}">{phase}</a>' in header


def test_report_shows_the_test_result_and_how_to_reproduce_it(report):
    url, _, page = report
    test = records.read_test(open_study("final", url, TAG))
    part = section(page, "test")
    assert html.escape(test.text()) in part
    assert f"hpsearch test --study final --tag {TAG} --force" in part


def test_report_says_where_the_tested_model_is(report):
    url, _, page = report
    checkpoint = records.read_test(open_study("final", url, TAG)).checkpoint
    part = section(page, "test")
    assert html.escape(checkpoint["store"]) in part and checkpoint["artifact_id"] in part
    assert f"hpsearch export --study final --tag {TAG} --out model.pt" in part


def test_tested_configuration_lists_what_differs_from_the_defaults(report):
    url, _, page = report
    config = records.read_test(open_study("final", url, TAG)).config
    defaults = TrainConfig().to_dict()
    changed = [k for k, v in config.items() if defaults.get(k) != v]
    part = section(page, "test")
    table = part[:part.index("<details>")]
    assert changed and all(f"<td>{k}</td>" in table for k in changed)
    assert "<td>dataset</td>" not in table  # unchanged: only in the whole configuration
    assert "<td>dataset</td>" in part[part.index("<details>"):]


def test_runners_up_show_their_parameters_and_eliminated_their_reasons(report):
    url, _, page = report
    seen_runners = 0
    for phase in PHASE_ORDER[:-1]:
        stored = find_study(url, study_name(phase, TAG))
        choice = records.read_choice(stored) if stored else None
        if choice is None:
            continue  # not run, or every trial eliminated: test_phase_without_choice_...
        part = section(page, phase)
        for runner in choice.runners_up:
            seen_runners += 1
            for name in runner.get("params") or {}:
                assert f"<th>{html.escape(name)}</th>" in part
        for gone in choice.eliminated:
            assert f"<td>{html.escape(gone['reason'])}</td>" in part
    assert seen_runners  # the tiny run has runners-up (and usually eliminated trials)


def test_phase_without_choice_lists_why_its_trials_were_eliminated(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    make_study(url, "setup@x", [{"params": {"lr": 0.001}, "value": 0.8, "curve": [0.5]}],
               chosen=0)
    study = optuna.create_study(study_name="lr_sgd@x", storage=url)
    study.add_trial(optuna.trial.create_trial(
        params={"lr": 0.3}, distributions={"lr": FloatDistribution(1e-5, 1.0, log=True)},
        state=TrialState.PRUNED, user_attrs={records.REASON: "diverged"}))
    part = section(write_report(url, tag="x", out=tmp_path / "r.html").read_text(), "lr_sgd")
    assert "no choice" in part
    assert "<td>0</td><td>pruned</td><td>diverged</td><td>lr=0.3</td>" in part


def test_report_embeds_both_curves_of_a_phase_as_png(report):
    _, _, page = report
    part = section(page, "architecture")
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', part)
    assert len(images) == 2  # train loss and validation accuracy, side by side
    assert all(base64.b64decode(data)[:8] == PNG_MAGIC for data in images)


def test_report_needs_no_network_and_no_script(report):
    _, _, page = report
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page and "<link" not in page


def test_report_defaults_to_storage_report_html(report):
    url, _, _ = report
    assert write_report(url, tag=TAG) == Path("storage") / "report.html"
    assert Path("storage/report.html").stat().st_size > 10_000


def test_unknown_tag_names_the_command_that_makes_it(report):
    url, _, _ = report
    with pytest.raises(UsageError) as err:
        write_report(url, tag="nope")
    assert str(err.value) == (f"no protocol study with tag `nope` in {describe(url)}; fix: run "
                              "`hpsearch protocol --tag nope` first, or pass the --storage (and "
                              "--tag) that holds it")


def test_skipped_and_unrun_phases_say_so_without_images(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    setup = make_study(url, "setup@x", [{"params": {"lr": 0.001}, "value": 0.8,
                                         "curve": [0.5, 0.8]}], chosen=0)
    setup.set_user_attr(records.DESCRIPTION, "Sanity <checks> & reference")
    skipped = optuna.create_study(study_name="lr_sgd@x", storage=url)
    records.write_choice(skipped, PhaseChoice(trial=None, skipped=True,
                                              reason="skipped: <not> needed"))
    page = write_report(url, tag="x", out=tmp_path / "r.html").read_text()
    assert "Sanity &lt;checks&gt; &amp; reference" in section(page, "setup")
    assert "skipped: &lt;not&gt; needed" in section(page, "lr_sgd")
    assert "data:image/png" not in section(page, "lr_sgd")
    assert "data:image/png" in section(page, "setup")
    for phase in set(PHASE_ORDER) - {"setup", "lr_sgd"}:
        assert ">not run<" in section(page, phase)


def test_every_phase_heading_renders_in_a_browser(report, tmp_path):
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is absent: CI must render the report")
        pytest.skip(f"{CHROMIUM} is absent (apt-get install chromium)")
    _, out, _ = report
    run = subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
         out.resolve().as_uri()], capture_output=True, text=True, timeout=120,
        check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    headings = [re.sub(r"<[^>]+>", "", h).split() for h in
                re.findall(r"<h2>(.*?)</h2>", run.stdout, re.DOTALL)]
    for number, phase in enumerate(PHASE_ORDER, 1):
        assert [f"{number}.", phase] in [h[:2] for h in headings]
