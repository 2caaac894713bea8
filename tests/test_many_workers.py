"""Workers that meet each other: a live trial failed by another's heartbeat check, four
SQLite workers over a long study, and many workers creating an empty schema."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import threading
import time

import optuna
import pytest
from optuna.trial import TrialState

# A fit hook that, at its trial's second epoch, fails its own trial from outside: what
# another worker's stale-heartbeat check does to a live trial whose heartbeat came late.
# It then trains on for PAUSE_S seconds (past the reports' flush interval: the next report
# is refused) or at once (the trial ends before any flush: its finish is refused).
FAILED_FROM_OUTSIDE = '''\
import os, pathlib, time
import optuna
from optuna.trial import TrialState

def fit(config, data, device, report):
    marker = pathlib.Path(os.environ["MARKER"])
    for epoch in range(1, config.epochs + 1):
        if epoch == 2 and not marker.exists():
            marker.write_text("failed once")
            storage = optuna.storages.RDBStorage(os.environ["URL"])
            study = optuna.load_study(study_name="hb", storage=storage)
            for trial in study.get_trials(states=(TrialState.RUNNING,)):
                storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            time.sleep(float(os.environ["PAUSE_S"]))
        report(epoch, train_loss=1.0 / epoch, val_loss=1.0 / epoch, val_acc=0.5 + epoch / 100)

fit.honours = ["lr"]
'''

QUICK_FIT = '''\
def fit(config, data, device, report):
    for epoch in range(1, config.epochs + 1):
        report(epoch, train_loss=1.0 / epoch, val_loss=1.0 / epoch, val_acc=config.lr)

fit.honours = ["lr"]
'''

STUDY = """\
base: {{dataset: digits, epochs: {epochs}, fit: "{module}:fit"}}
objective: {{metric: val_acc}}
sampler: {{name: random, seed: 0}}
pruner: {{name: median}}
trials: {trials}
space:
  lr: {{type: float, low: 1e-4, high: 1e-2, log: true}}
"""


def _hpsearch(args, tmp_path, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hpsearch", *args], capture_output=True,
                          text=True, timeout=900, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(tmp_path), **(env or {})})


@pytest.mark.parametrize("pause_s", [0.0, 2.5], ids=["refused-at-the-finish",
                                                    "refused-at-a-flush"])
def test_a_live_trial_failed_by_another_worker_does_not_crash_its_worker(tmp_path, pause_s):
    (tmp_path / "outside.py").write_text(FAILED_FROM_OUTSIDE)
    (tmp_path / "hb.yaml").write_text(STUDY.format(epochs=5, module="outside", trials=3))
    url = f"sqlite:///{tmp_path / 'x.db'}"
    result = _hpsearch(["run", "--study", "hb.yaml", "--storage", url], tmp_path,
                       {"MARKER": str(tmp_path / "marker"), "URL": url,
                        "PAUSE_S": str(pause_s)})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert "warning: trial 0 was failed by another worker while it trained here" in result.stdout
    trials = optuna.load_study(study_name="hb", storage=url).get_trials()
    assert trials[0].state == TrialState.FAIL  # stays as the other worker left it
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 3  # its slot was refilled


def test_four_sqlite_workers_over_200_trials_never_meet_a_locked_database(tmp_path):
    (tmp_path / "quick.py").write_text(QUICK_FIT)
    (tmp_path / "long.yaml").write_text(STUDY.format(epochs=10, module="quick", trials=200))
    url = f"sqlite:///{tmp_path / 'x.db'}"
    result = _hpsearch(["run", "--study", "long.yaml", "--storage", url, "--jobs", "4",
                        "--devices", "cpu"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "locked" not in result.stderr + result.stdout
    trials = optuna.load_study(study_name="long", storage=url).get_trials()
    counted = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(counted) == 200
    assert not any(t.state == TrialState.FAIL and not t.user_attrs.get("over_budget")
                   and not t.user_attrs.get("twin_of") for t in trials)
    assert len({t.user_attrs["worker"] for t in counted}) == 4


def _open(url, start, results):
    from hpsearch.storage import open_storage

    start.wait()  # imports done: every worker opens the storage at the same moment
    try:
        open_storage(url).get_all_studies()
        results.put("ok")
    except Exception as err:  # noqa: BLE001 - what a racing worker met, reported back
        results.put(f"{type(err).__name__}: {err}")


def _open_at_once(url: str, workers: int = 4) -> list[str]:
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(workers), context.Queue()
    processes = [context.Process(target=_open, args=(url, start, results))
                 for _ in range(workers)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    return sorted(results.get(timeout=10) for _ in processes)


@pytest.mark.postgres
def test_workers_opening_an_empty_postgresql_at_once_do_not_race_on_the_schema(postgres_url):
    """optuna#1092: each worker creates Optuna's tables when it finds none."""
    assert _open_at_once(postgres_url) == ["ok"] * 4


def test_workers_opening_a_new_sqlite_file_at_once_do_not_race_on_the_schema(tmp_path):
    """Workers started together on a fresh SQLite file met "table studies already exists" or
    "UNIQUE constraint failed: alembic_version.version_num" (found by
    benchmarks/storage_overhead.py; without the retry most rounds of 4 such workers had one fail)."""
    assert _open_at_once(f"sqlite:///{tmp_path / 'new.db'}") == ["ok"] * 4


# The first trial to start (the first worker's) trains slowly; every later one is quick.
FIRST_SLOW_FIT = '''\
import pathlib, time

def fit(config, data, device, report):
    marker = pathlib.Path("first.started")
    slow = not marker.exists()
    marker.touch()
    for epoch in range(1, config.epochs + 1):
        time.sleep(1.0 if slow else 0.0)
        report(epoch, train_loss=1.0 / epoch, val_loss=1.0 / epoch, val_acc=config.lr)

fit.honours = ["lr"]
'''


def _start_until(args, folder, environ, marker: str) -> subprocess.Popen:
    """A first worker, started and left running once its fit hook has written `marker`."""
    first = subprocess.Popen(args, cwd=folder, env=environ, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (folder / marker).exists():
        assert time.monotonic() < deadline and first.poll() is None, first.communicate()
        time.sleep(0.1)
    return first


def test_a_worker_done_with_its_slots_waits_for_the_others_before_choosing(tmp_path):
    """Two terminals (or two machines running `hpsearch protocol`): the one whose search ends
    first waits for the other's trial, so both choose from the same finished trials."""
    (tmp_path / "slow_fit.py").write_text(FIRST_SLOW_FIT)
    (tmp_path / "two.yaml").write_text(
        STUDY.format(epochs=15, module="slow_fit", trials=2).replace("seed: 0", "seed: 1"))
    url = f"sqlite:///{tmp_path / 'two.db'}"
    args = [sys.executable, "-m", "hpsearch", "run", "--study", "two.yaml", "--storage", url]
    environ = {**os.environ, "PYTHONPATH": str(tmp_path)}
    first = _start_until(args, tmp_path, environ, "first.started")  # the slow trial trains
    try:
        second = subprocess.run([*args[:-1], url, "--trials", "2"], cwd=tmp_path, env=environ,
                                capture_output=True, text=True, timeout=300)
        trials = optuna.load_study(study_name="two", storage=url).get_trials()
        assert second.returncode == 0, second.stderr
        # When the second worker exits, the first one's slow trial is over, and the second
        # worker's choice is the one the first will store: both trials were seen.
        assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
        choice = optuna.load_study(study_name="two", storage=url).user_attrs["selection"]
        best = max(trials, key=lambda t: t.value).number
        assert choice["trial"] == best
    finally:
        first.communicate(timeout=300)
    assert first.returncode == 0


# Higher LR, higher score: the refine grid's choice sits on its top edge, so the grid is
# extended step by step [studies/lr_adam_refine.yaml]; each step beyond the grid is slow.
EDGE_FIT = '''\
import pathlib, time

def fit(config, data, device, report):
    beyond = config.lr > 2.5e-3  # the grid is 0.5, 1, 2 x 1e-3: a step past its top edge
    if beyond:
        pathlib.Path("edge.started").touch()
    for epoch in range(1, config.epochs + 1):
        time.sleep(1.0 if beyond else 0.0)
        report(epoch, train_loss=1.0 / epoch, val_loss=1.0 / epoch, val_acc=config.lr)

fit.honours = ["lr"]
'''

PARENT = """\
base: {dataset: digits, epochs: 3, fit: "edge_fit:fit"}
objective: {metric: val_acc}
sampler: {name: grid}
space:
  lr: {values: [1.0e-3]}
"""

REFINED = """\
inherits: [parent]
objective: {metric: val_acc}
sampler: {name: grid}
space:
  lr: {refine: parent, factors: [0.5, 1, 2]}
"""


def test_a_worker_arriving_during_a_grid_extension_waits_for_its_steps_before_choosing(
        tmp_path):
    """Two `hpsearch protocol` processes on one storage (the compose recipe): one extends a
    refine grid at its edge while the other finds the grid spent. The second waits for the
    step the first is training instead of storing the choice without it: every worker of a
    phase stores the same choice, and the next phase inherits it (found by two processes
    that stored different LRs for lr_adam_refine, and trained architecture with both)."""
    (tmp_path / "edge_fit.py").write_text(EDGE_FIT)
    (tmp_path / "parent.yaml").write_text(PARENT)
    (tmp_path / "refined.yaml").write_text(REFINED)
    url = f"sqlite:///{tmp_path / 'edge.db'}"
    assert _hpsearch(["run", "--study", "parent.yaml", "--storage", url], tmp_path).returncode == 0
    args = [sys.executable, "-m", "hpsearch", "run", "--study", "refined.yaml", "--storage", url]
    environ = {**os.environ, "PYTHONPATH": str(tmp_path)}
    first = _start_until(args, tmp_path, environ, "edge.started")  # a step beyond the grid
    try:
        second = subprocess.run(args, cwd=tmp_path, env=environ, capture_output=True,
                                text=True, timeout=300)
        assert second.returncode == 0, second.stderr
        study = optuna.load_study(study_name="refined", storage=url)
        trials = study.get_trials()
        # When the second worker exits, no step is left running, and what it stored is
        # the best trial of every one the grid and its extension ran.
        assert TrialState.RUNNING not in [t.state for t in trials]
        best = max((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: t.value)
        assert best.params["lr"] > 2.5e-3  # beyond the grid's top edge
        assert study.user_attrs["selection"]["trial"] == best.number
    finally:
        first.communicate(timeout=300)
    assert first.returncode == 0
    assert optuna.load_study(study_name="refined", storage=url).user_attrs["selection"][
        "trial"] == best.number


def test_two_protocol_processes_on_one_storage_store_and_report_the_same_choices(tmp_path):
    """The compose recipe's workers, in two terminals: `hpsearch protocol` twice at once on
    one storage. Every phase's trials are shared, both processes report the same choices,
    and each phase started from the choice its parent stored."""
    from hpsearch import records

    url = f"sqlite:///{tmp_path / 'shared.db'}"
    args = [sys.executable, "-m", "hpsearch", "protocol", "--trials-scale", "0.2", "--set",
            "epochs=4", "--to", "architecture", "--storage", url]
    environ = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(args, cwd=tmp_path, env=environ, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    second = subprocess.Popen(args, cwd=tmp_path, env=environ, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    outputs = [p.communicate(timeout=600) for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], outputs

    def choices(out: str) -> list[str]:
        return [line.split("chose", 1)[1].split(":")[0] for line in out.splitlines()
                if " chose trial " in line]

    assert choices(outputs[0][0]) == choices(outputs[1][0]) != [], outputs
    for name in ("lr_adam_refine", "architecture"):  # the refine grid and the phase after it
        study = optuna.load_study(study_name=name, storage=url)
        for parent in records.StudyFacts.of(study).inherited.get("from", []):
            stored = records.read_choice(optuna.load_study(study_name=parent["study"],
                                                           storage=url))
            assert parent["trial"] == stored.trial, (name, parent)


def _study_with_a_silent_trial(tmp_path, user_attrs=None):
    """A study opened as a worker opens it, and a trial of another process's just started:
    RUNNING, its first heartbeat not written yet. Returns the worker's study, the other
    process's study and its trial."""
    from hpsearch.storage import open_storage

    url = f"sqlite:///{tmp_path / 'silent.db'}"
    study = optuna.create_study(study_name="s", storage=open_storage(url), direction="maximize")
    other = optuna.load_study(study_name="s", storage=optuna.storages.RDBStorage(url))
    if user_attrs:
        other.enqueue_trial({}, user_attrs=user_attrs)
    return study, other, other.ask()


def _first_heartbeat_then_finish(study, other, trial) -> threading.Thread:
    """The other worker's heartbeat thread writes its first beat 0.3 s late, and its trial
    ends 1 s later."""
    def beat_then_finish():
        time.sleep(0.3)
        study._storage.record_heartbeat(trial._trial_id)
        time.sleep(1.0)
        other.tell(trial, 1.0)

    thread = threading.Thread(target=beat_then_finish)
    thread.start()
    return thread


def test_a_worker_done_with_its_slots_waits_for_a_trial_whose_first_heartbeat_is_on_its_way(
        tmp_path, monkeypatch):
    """A worker that chose while another's last trial had just begun (no heartbeat yet)
    stored a choice without it: two `hpsearch protocol` processes stored different LRs."""
    from hpsearch import runner

    monkeypatch.setattr(runner, "SETTLE_POLL_S", 0.1)
    study, other, trial = _study_with_a_silent_trial(tmp_path)
    thread = _first_heartbeat_then_finish(study, other, trial)
    try:
        assert runner._others_left(study) is False
        assert study.get_trials()[0].state == TrialState.COMPLETE  # waited for it to end
    finally:
        thread.join()


@pytest.mark.parametrize("looks, pauses", [
    (3, [0.05, 0.1, 0.2]),  # the end of a phase: the others' last trials end within ms
    (8, [0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0]),  # a long trial: a look a second
])
def test_a_worker_done_with_its_slots_looks_again_soon_then_every_second(
        tmp_path, monkeypatch, looks, pauses):
    """A fixed 1 s poll idled every worker up to a second at each phase's end (half the
    cost of a trial in storage_overhead.py's 2-worker rows). The other worker's trial ends
    during the waiting worker's `looks`-th pause."""
    from hpsearch import runner

    study, other, trial = _study_with_a_silent_trial(tmp_path)
    study._storage.record_heartbeat(trial._trial_id)
    slept = []
    sleep = time.sleep

    def pause(seconds):
        if threading.current_thread() is not threading.main_thread():
            return sleep(seconds)  # `time.sleep` is patched for every thread: a storage
            # watchdog left by an earlier PostgreSQL test sleeps in its own thread
        slept.append(seconds)
        if len(slept) == looks:
            other.tell(trial, 1.0)

    monkeypatch.setattr(runner.time, "sleep", pause)
    assert runner._others_left(study) is False
    assert slept == pauses


def test_a_worker_waits_for_a_grid_step_whose_first_heartbeat_is_on_its_way(
        tmp_path, monkeypatch):
    """The same for a step beyond a refine grid's edge another worker has just popped."""
    from hpsearch import records, runner

    monkeypatch.setattr(runner, "SETTLE_POLL_S", 0.1)
    step = {records.EDGE_STEP: 1}
    study, other, trial = _study_with_a_silent_trial(tmp_path, user_attrs=step)
    assert trial.user_attrs == step  # the queued step, now RUNNING
    thread = _first_heartbeat_then_finish(study, other, trial)
    try:
        assert runner._wait_for_other_worker(study, step) is False
        assert study.get_trials()[0].state == TrialState.COMPLETE
    finally:
        thread.join()


def test_a_trial_that_never_records_a_heartbeat_is_not_waited_for_past_the_first_one(
        tmp_path, monkeypatch):
    """A plain Optuna script's trial on the same study: its death could not be told from
    slowness, so it is given FIRST_HEARTBEAT_S and then left running."""
    from hpsearch import runner

    monkeypatch.setattr(runner, "SETTLE_POLL_S", 0.1)
    monkeypatch.setattr(runner, "FIRST_HEARTBEAT_S", 0.5)
    study, _, _ = _study_with_a_silent_trial(tmp_path)
    started = time.monotonic()
    assert runner._others_left(study) is False
    assert 0.5 <= time.monotonic() - started < 5.0
    assert study.get_trials()[0].state == TrialState.RUNNING


def test_a_worker_whose_queued_step_another_worker_runs_a_copy_of_waits_for_that_copy(
        tmp_path, monkeypatch):
    """Two workers that reach a grid's edge at once may both queue its next step. The one
    that starts its copy while the other's trains ends it at once as a twin and waits for the
    other's (it ended with "error: trial 4 repeats running trial 5")."""
    from hpsearch import records, runner
    from hpsearch.preparation import prepare_study

    monkeypatch.setattr(runner, "SETTLE_POLL_S", 0.1)
    (tmp_path / "quick.py").write_text(QUICK_FIT)
    (tmp_path / "step.yaml").write_text(STUDY.format(epochs=2, module="quick", trials=4))
    monkeypatch.syspath_prepend(str(tmp_path))
    prepared = prepare_study(runner.resolve_spec(tmp_path / "step.yaml", None),
                             f"sqlite:///{tmp_path / 'step.db'}", {})
    study, step = prepared.study, {records.EDGE_STEP: 1}
    study.enqueue_trial({"lr": 1e-3}, user_attrs=step)
    other = study.ask()  # the other worker's copy, training
    other.suggest_float("lr", 1e-4, 1e-2, log=True)
    other.set_user_attr(records.WORKER, "otherhost:1 cpu")
    study.enqueue_trial({"lr": 1e-3}, user_attrs=step)  # this worker's copy, queued at once
    thread = _first_heartbeat_then_finish(study, study, other)
    summary = runner.RunSummary(study.study_name, "sqlite", 4, 0)
    try:
        run = runner._fixed_trials(study, prepared.objective, 4, summary, None, True, 0)
        run({"lr": 1e-3}, step)
    finally:
        thread.join()
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL]
    assert trials[1].user_attrs[records.TWIN] == other.number


def test_a_slot_another_worker_gives_up_after_this_one_stopped_is_filled_here(
        tmp_path, monkeypatch):
    """This worker stops once the budget is claimed, its last slot held by another worker's
    trial; that trial then ends FAIL without a retry (a twin, a crash). The worker fills the
    slot before it chooses: every worker of a phase chooses from the whole budget (a
    `hpsearch protocol` process chose from a grid one point short)."""
    from hpsearch import records, runner
    from hpsearch.storage import open_storage

    monkeypatch.setattr(runner, "SETTLE_POLL_S", 0.1)
    (tmp_path / "quick.py").write_text(QUICK_FIT)
    (tmp_path / "slot.yaml").write_text(STUDY.format(epochs=2, module="quick", trials=2))
    monkeypatch.syspath_prepend(str(tmp_path))
    url = f"sqlite:///{tmp_path / 'slot.db'}"
    runner.run_study(tmp_path / "slot.yaml", trials=0, storage=url)  # creates the study
    study = optuna.load_study(study_name="slot", storage=open_storage(url))
    other = study.ask()  # another worker's trial, training, with heartbeats
    other.suggest_float("lr", 1e-4, 1e-2, log=True)
    other.set_user_attr(records.WORKER, "otherhost:1 cpu")
    study._storage.record_heartbeat(other._trial_id)

    def give_up_once_this_worker_waits():
        while not any(t.state == TrialState.COMPLETE for t in study.get_trials()):
            time.sleep(0.05)
        time.sleep(0.5)  # this worker waits for the other's trial now
        study.tell(other, state=TrialState.FAIL)

    thread = threading.Thread(target=give_up_once_this_worker_waits)
    thread.start()
    try:
        summary = runner.run_study(tmp_path / "slot.yaml", storage=url)
    finally:
        thread.join()
    states = [t.state for t in study.get_trials()]
    assert states.count(TrialState.COMPLETE) == 2 and len(summary.new_trials) == 2
    assert summary.choice is not None
