"""Ctrl-C and a killed worker never leave a trial RUNNING (real processes and signals)."""

from __future__ import annotations

import os
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
        "error: interrupted; the running trial was marked FAIL and no trial is left RUNNING; "
        "fix: rerun the same command to finish the budget"
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


def test_ctrl_c_stops_every_parallel_worker_cleanly(write_study, tmp_path):
    path = write_study("long", LONG)
    url = f"sqlite:///{tmp_path / 'x.db'}"
    command = [sys.executable, "-m", "hpsearch", "run", "--study", str(path), "--storage", url,
               "--jobs", "2", "--devices", "cpu"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # both workers training
        try:
            trials = optuna.load_study(study_name="long", storage=url).get_trials()
        except KeyError:
            trials = []
        if sum(t.state == TrialState.RUNNING and bool(t.user_attrs.get("history")) for t in trials) == 2:
            break
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert stderr.strip().splitlines()[-1].startswith("error: interrupted; the running trial was marked FAIL")
    states = [t.state for t in optuna.load_study(study_name="long", storage=url).get_trials()]
    assert states == [TrialState.FAIL, TrialState.FAIL]
