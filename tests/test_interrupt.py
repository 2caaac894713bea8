"""Ctrl-C and a killed worker never leave a trial RUNNING (real processes and signals)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import optuna
import pytest
from optuna.trial import TrialState

LONG = """\
base: {dataset: digits, epochs: 100000, batch_size: 64, width: 32}
objective: {metric: val_acc}
sampler: {name: random, seed: 0}
pruner: {name: none}
trials: 2
space:
  lr: {type: float, low: 1e-4, high: 1e-2, log: true}
"""


def wait_for_running_trial(url: str, process: subprocess.Popen, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            trials = optuna.load_study(study_name="long", storage=url).get_trials()
            if any(t.state == TrialState.RUNNING and t.user_attrs.get("history") for t in trials):
                return
        except KeyError:
            pass  # the study is not created yet
        time.sleep(0.2)
    pytest.fail("no trial started training in time")


SHORT = LONG.replace("epochs: 100000", "epochs: 40").replace("trials: 2", "trials: 3")


def worker_pids(url: str) -> set[int]:
    """The worker processes of the trials stored so far (their `worker` attribute)."""
    trials = optuna.load_study(study_name="long", storage=url).get_trials()
    return {int(t.user_attrs["worker"].split(":")[1].split()[0]) for t in trials
            if "worker" in t.user_attrs}


def wait_for_training(url: str, count: int, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            trials = optuna.load_study(study_name="long", storage=url).get_trials()
        except KeyError:
            trials = []
        if sum(t.state == TrialState.RUNNING and bool(t.user_attrs.get("history")) for t in trials) >= count:
            return
        time.sleep(0.2)
    pytest.fail(f"{count} trials did not start training in time")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupt_marks_the_running_trial_failed(write_study, tmp_path, sig):
    path = write_study("long", LONG)
    url = f"sqlite:///{tmp_path / 'x.db'}"
    command = [sys.executable, "-m", "hpsearch", "run", "--study", str(path), "--storage", url]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_running_trial(url, process)
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert stderr.strip().splitlines() == [
        "error: interrupted in study `long`; trial 0 marked FAIL; no trial of this run is left "
        "RUNNING; fix: rerun the same command to finish the budget"
    ]
    states = [t.state for t in optuna.load_study(study_name="long", storage=url).get_trials()]
    assert states == [TrialState.FAIL]


def test_a_killed_workers_trial_is_failed_and_retried_by_the_next_worker(write_study, tmp_path):
    """SIGKILL leaves no chance to clean up: the heartbeat marks the trial stale, and the next
    worker fails it and queues its parameters again (storage.py)."""
    path = write_study("long", LONG.replace("trials: 2", "trials: 1"))
    url = f"sqlite:///{tmp_path / 'x.db'}"
    env = {**os.environ, "HPSEARCH_HEARTBEAT_S": "1", "HPSEARCH_GRACE_S": "2"}
    slow = [sys.executable, "-m", "hpsearch", "run", "--study", str(path), "--storage", url]
    process = subprocess.Popen(slow, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for_running_trial(url, process)
    process.kill()
    process.wait(timeout=30)
    time.sleep(3)  # past the grace period: the trial's heartbeat is stale
    study = optuna.load_study(study_name="long", storage=url)
    assert [t.state for t in study.get_trials()] == [TrialState.RUNNING]  # what a kill leaves
    # The next worker fails the stale trial, re-queues its parameters and runs the retry.
    retry = subprocess.Popen(slow, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # until the retry is training (not merely queued)
        trials = optuna.load_study(study_name="long", storage=url).get_trials()
        if len(trials) == 2 and trials[1].state == TrialState.RUNNING and trials[1].user_attrs.get("history"):
            break
        time.sleep(0.2)
    retry.send_signal(signal.SIGINT)
    retry.communicate(timeout=60)
    trials = optuna.load_study(study_name="long", storage=url).get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL]  # stale, then Ctrl-C
    assert trials[1].params == trials[0].params  # the retry re-ran the lost parameters
    assert not any(t.state == TrialState.RUNNING for t in trials)


def test_ctrl_c_in_a_terminal_reaches_every_process_and_each_stops_once(write_study, tmp_path):
    """A terminal's Ctrl-C signals the whole process group: the workers ignore it, the parent
    sends each one SIGTERM, each fails its trial at its next batch; no traceback."""
    path = write_study("long", LONG)
    url = f"sqlite:///{tmp_path / 'x.db'}"
    command = [sys.executable, "-m", "hpsearch", "run", "--study", str(path), "--storage", url,
               "--jobs", "2", "--devices", "cpu"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    wait_for_training(url, 2)
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines() == [
        "error: interrupted in study `long`; trials 0, 1 marked FAIL; no trial of this run is "
        "left RUNNING; fix: rerun the same command to finish the budget"
    ]
    trials = optuna.load_study(study_name="long", storage=url).get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL]
    assert not any(alive(pid) for pid in worker_pids(url))


def test_workers_stop_when_the_command_that_started_them_is_killed(write_study, tmp_path):
    path = write_study("long", LONG)
    url = f"sqlite:///{tmp_path / 'x.db'}"
    command = [sys.executable, "-m", "hpsearch", "run", "--study", str(path), "--storage", url,
               "--jobs", "2", "--devices", "cpu"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_training(url, 2)
    pids = worker_pids(url)
    process.kill()  # the parent alone: its workers are orphaned
    process.wait(timeout=30)
    deadline = time.monotonic() + 60
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(alive(pid) for pid in pids), "orphaned workers kept training"
    trials = optuna.load_study(study_name="long", storage=url).get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL]  # each failed cleanly


def test_a_worker_killed_mid_run_is_named_and_the_budget_still_met(write_study, tmp_path):
    path = write_study("long", SHORT.replace("epochs: 40", "epochs: 200"))  # ~3 s a trial
    url = f"sqlite:///{tmp_path / 'x.db'}"
    command = [sys.executable, "-m", "hpsearch", "run", "--study", str(path), "--storage", url,
               "--jobs", "2", "--devices", "cpu"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_training(url, 2)
    trials = optuna.load_study(study_name="long", storage=url).get_trials()
    victim = next(t for t in trials if t.state == TrialState.RUNNING)
    os.kill(int(victim.user_attrs["worker"].split(":")[1].split()[0]), signal.SIGKILL)
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    assert re.search(r"warning: worker \d \(cpu\) was killed by SIGKILL before it reported; "
                     r"the budget was still met", stdout), stdout
    trials = optuna.load_study(study_name="long", storage=url).get_trials()
    assert trials[victim.number].state == TrialState.FAIL  # failed at once, not left RUNNING
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials) == 3
    assert not any(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in trials)


def test_every_run_fails_stale_trials_first_even_on_a_finished_study(write_study, tmp_path):
    path = write_study("long", SHORT.replace("trials: 3", "trials: 1").replace("epochs: 40", "epochs: 2"))
    url = f"sqlite:///{tmp_path / 'x.db'}"
    command = [sys.executable, "-m", "hpsearch", "run", "--study", str(path), "--storage", url]
    assert subprocess.run(command, capture_output=True, timeout=120).returncode == 0
    storage = optuna.storages.RDBStorage(url, heartbeat_interval=1, grace_period=1)
    study = optuna.load_study(study_name="long", storage=storage)
    left = study.ask()  # a worker killed mid-trial leaves this: RUNNING, its heartbeat old
    storage.record_heartbeat(left._trial_id)
    time.sleep(2.5)
    env = {**os.environ, "HPSEARCH_GRACE_S": "1", "HPSEARCH_HEARTBEAT_S": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert "nothing to run" in done.stdout
    assert optuna.load_study(study_name="long", storage=url).trials[left.number].state == TrialState.FAIL
