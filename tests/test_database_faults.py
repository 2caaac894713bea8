"""A real PostgreSQL restarted under running workers: the run rides it out.

The test makes a cluster of its own on a free local port (pg_createcluster), so restarting
it disturbs no other test, and drops it afterwards. It needs the PostgreSQL server binaries
and root (to act as the postgres user), as `.ci/run` has them; in CI it never skips.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid

import optuna
import pytest
from optuna.trial import TrialState

from hpsearch import resilient_storage

# 8 trials: the two workers train side by side for longer than a look of `_training` needs
# (with 4, CI runs saw no moment with both training).
STUDY = """\
base: {dataset: digits, epochs: 30, batch_size: 64, width: 32}
objective: {metric: val_acc}
sampler: {name: random, seed: 0}
pruner: {name: median, n_warmup_steps: 1}
trials: 8
space:
  lr: {type: float, low: 1e-4, high: 1e-2, log: true}
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _ctl(*args: str) -> None:
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", *args], check=True,
                   capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def own_cluster():
    """(url, version, name) of a fresh PostgreSQL cluster; dropped at the end."""
    if shutil.which("pg_createcluster") is None or os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("CI must run the database fault tests: pg_createcluster and root needed")
        pytest.skip("needs pg_createcluster and root (as .ci/run has them)")
    version = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True,
                             check=True).stdout.split()[0]
    name, port = f"hpsearch_{uuid.uuid4().hex[:8]}", _free_port()
    subprocess.run(["pg_createcluster", version, name, "--port", str(port)], check=True,
                   capture_output=True, timeout=120)
    try:
        _ctl(version, name, "start")
        create = (f"psql -q -p {port} -c \"CREATE ROLE fault LOGIN PASSWORD 'fault'\" "
                  "-c \"CREATE DATABASE fault OWNER fault\"")
        subprocess.run(["su", "postgres", "-c", create], check=True, capture_output=True, timeout=60)
        yield f"postgresql+psycopg://fault:fault@127.0.0.1:{port}/fault", version, name
    finally:
        subprocess.run(["pg_dropcluster", "--stop", version, name], capture_output=True, timeout=120)


def _training(url: str, count: int, process: subprocess.Popen, timeout_s: float = 180,
              study: str = "blip") -> None:
    """Until `count` trials are training. One storage for every look: a storage opened per
    look holds its connections until collected, and the test's own cluster filled up."""
    storage = optuna.storages.RDBStorage(url)
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:  # the run ended before the fault: say how
                stdout, stderr = process.communicate()
                pytest.fail(f"the run ended (exit {process.returncode}) before two trials "
                            f"trained together:\n{stdout[-2000:]}\n{stderr[-3000:]}")
            try:
                trials = optuna.load_study(study_name=study, storage=storage).get_trials()
            except KeyError:
                trials = []
            # Its start facts stored: it trains now (its first reports are written up to
            # FLUSH_S later, and these trials are shorter than that).
            if sum(t.state == TrialState.RUNNING and "config" in t.user_attrs
                   for t in trials) >= count:
                return
            time.sleep(0.2)
        pytest.fail("the workers did not start training")
    finally:
        storage.engine.dispose()


@contextlib.contextmanager
def _hpsearch_run(command: list[str], env: dict[str, str] | None = None):
    """The run as a child process, killed at the end if a failed step left it running (a
    leftover run would hold the test cluster's connections for the next test)."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_a_postgresql_restart_under_two_workers_loses_nothing(own_cluster, write_study):
    url, version, name = own_cluster
    path = write_study("blip", STUDY)
    command = [sys.executable, "-m", "hpsearch", "run", "--study", str(path), "--storage", url,
               "--jobs", "2", "--devices", "cpu"]
    with _hpsearch_run(command) as process:
        _training(url, 2, process)
        _ctl(version, name, "restart")  # about 3 s without a server, mid-epoch for both workers
        stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    trials = optuna.load_study(study_name="blip", storage=url).get_trials()
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials) == 8
    assert not any(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in trials)
    for trial in trials:
        if trial.state == TrialState.COMPLETE:  # every epoch's report survived the restart
            assert sorted(trial.intermediate_values) == list(range(1, 31))


def test_a_server_that_stays_down_ends_the_call_with_one_line(own_cluster, monkeypatch):
    """Past the retry window a storage call gives up with the storage named, no password."""
    url, version, name = own_cluster
    monkeypatch.setattr(resilient_storage, "RETRY_WINDOW_S", 3.0)
    storage = resilient_storage.ResilientRDBStorage(url)
    study_id = storage.create_new_study([optuna.study.StudyDirection.MAXIMIZE], "down")
    _ctl(version, name, "stop")
    try:
        start = time.monotonic()
        with pytest.raises(Exception) as raised:
            storage.get_study_user_attrs(study_id)
        assert time.monotonic() - start < 15
    finally:
        _ctl(version, name, "start")
    assert type(raised.value).__name__ == "StorageError"
    message = str(raised.value)
    assert "unreachable for 3 s" in message and ":***@127.0.0.1" in message
    assert "fault:fault" not in message
    assert storage.get_study_user_attrs(study_id) == {}  # back once the server is


def _signal_cluster(version: str, name: str, signum: int) -> None:
    """`signum` to the cluster's postmaster and every backend it started (SIGSTOP: a server
    that hangs without closing its connections; its kernel still answers TCP)."""
    pid_file = f"/var/lib/postgresql/{version}/{name}/postmaster.pid"
    with open(pid_file) as lines:
        postmaster = int(lines.readline())
    # The postmaster first: stopped, it starts no backend that the listing below would miss.
    os.kill(postmaster, signum)
    children = subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True,
                              text=True).stdout.split()
    for pid in map(int, children):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:  # a backend that ended after the listing: nothing to signal
            pass


@contextlib.contextmanager
def _frozen(version: str, name: str):
    """The cluster stopped for the block, and thawed after it whatever happens (a cluster
    left stopped would hang every later test on it)."""
    try:
        _signal_cluster(version, name, signal.SIGSTOP)
        yield
    finally:
        _signal_cluster(version, name, signal.SIGCONT)


def test_a_frozen_server_under_two_workers_loses_nothing(own_cluster, write_study):
    """Frozen 12 s mid-run: the calls blocked on it are cut after 3 s and retried until the
    server answers again; the run finishes with every report."""
    url, version, name = own_cluster
    path = write_study("frozen", STUDY.replace("epochs: 30", "epochs: 20"))
    command = [sys.executable, "-m", "hpsearch", "run", "--study", str(path), "--storage", url,
               "--jobs", "2", "--devices", "cpu"]
    env = {**os.environ, "HPSEARCH_STORAGE_CALL_TIMEOUT_S": "3"}
    with _hpsearch_run(command, env) as process:
        _training(url, 2, process, study="frozen")
        with _frozen(version, name):
            time.sleep(12)
        stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    trials = optuna.load_study(study_name="frozen", storage=url).get_trials()
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials) == 8
    assert not any(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in trials)
    for trial in trials:
        if trial.state == TrialState.COMPLETE:
            assert sorted(trial.intermediate_values) == list(range(1, 21))


def test_a_server_frozen_for_good_ends_a_call_with_one_line(own_cluster, monkeypatch):
    """Without the watchdog the call below blocks until the server is thawed."""
    from hpsearch.storage import _engine_kwargs

    url, version, name = own_cluster
    monkeypatch.setattr(resilient_storage, "RETRY_WINDOW_S", 4.0)
    storage = resilient_storage.ResilientRDBStorage(url, engine_kwargs=_engine_kwargs(url))
    storage.watchdog = resilient_storage.CallWatchdog(storage.engine, timeout_s=2.0)
    study_id = storage.create_new_study([optuna.study.StudyDirection.MAXIMIZE], "frozen_for_good")
    outcome: list = []

    def call():
        try:
            outcome.append(storage.get_study_user_attrs(study_id))
        except Exception as err:  # noqa: BLE001 - what the call ended with, checked below
            outcome.append(err)

    with _frozen(version, name):
        start = time.monotonic()
        caller = threading.Thread(target=call, daemon=True)
        caller.start()
        caller.join(timeout=60)
        elapsed = time.monotonic() - start
    assert not caller.is_alive(), "the call still blocks on the frozen server"
    assert elapsed < 30
    (error,) = outcome
    assert type(error).__name__ == "StorageError", error
    assert "unreachable for 4 s" in str(error) and "fault:fault" not in str(error)
    assert storage.get_study_user_attrs(study_id) == {}  # thawed: the storage works again
