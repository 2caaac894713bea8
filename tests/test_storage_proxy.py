"""`hpsearch storage-proxy`: many workers share one PostgreSQL through one process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState

STUDY = """\
base: {dataset: digits, epochs: 6, batch_size: 64, width: 32}
objective: {metric: val_acc}
sampler: {name: random, seed: 0}
pruner: {name: median, n_warmup_steps: 1}
trials: 6
space:
  lr: {type: float, low: 1e-4, high: 1e-2, log: true}
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _hpsearch(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hpsearch", *args], capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture
def proxy(postgres_url):
    """(grpc URL, proxy process) serving a fresh PostgreSQL database."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "hpsearch", "storage-proxy", "--storage", postgres_url,
         "--port", str(port), "--connections", "3"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()  # printed once the storage is open
        assert "serving postgresql+psycopg://hpsearch_test:***@" in line, process.stderr.read()
        yield f"grpc://127.0.0.1:{port}", process
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.postgres
def test_workers_through_the_proxy_share_the_budget_and_hold_no_connection(
        proxy, postgres_url, write_study):
    url, server = proxy
    path = write_study("proxied", STUDY)
    result = _hpsearch("run", "--study", str(path), "--storage", url, "--jobs", "3",
                       "--devices", "cpu")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    engine = sqlalchemy.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        holders = {name for (name,) in connection.exec_driver_sql(
            "SELECT DISTINCT application_name FROM pg_stat_activity WHERE datname = "
            "current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'")}
    engine.dispose()
    assert holders == {f"hpsearch pid {server.pid}"}  # only the proxy talks to the server
    trials = optuna.load_study(study_name="proxied", storage=postgres_url).get_trials()
    trained = [t for t in trials if not t.user_attrs.get("over_budget")]
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trained) == 6
    assert len({t.user_attrs["worker"] for t in trained}) >= 2  # several workers trained
    assert all(len(t.user_attrs["history"]) == max(t.intermediate_values) for t in trained)


def test_an_unreachable_proxy_is_one_line_within_seconds(write_study):
    path = write_study("proxied", STUDY)
    start = time.monotonic()
    result = _hpsearch("run", "--study", str(path), "--storage", f"grpc://127.0.0.1:{_free_port()}",
                       timeout=120)
    assert time.monotonic() - start < 30
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: cannot reach the storage proxy at 127.0.0.1:")
    assert "hpsearch storage-proxy --storage URL" in result.stderr


def test_a_proxy_address_without_a_port_is_refused(write_study):
    result = _hpsearch("run", "--study", str(write_study("proxied", STUDY)), "--storage",
                       "grpc://127.0.0.1", timeout=120)
    assert result.returncode == 2, result.stderr
    assert "is no proxy address; fix: grpc://HOST:PORT" in result.stderr


def _readme_storage_commands() -> list[str]:
    from tests.test_readme_commands import section_commands

    return section_commands("Storage: from one machine to many")


@pytest.mark.postgres
def test_the_readme_storage_commands_run_with_the_placeholders_filled(postgres_url, tmp_path):
    """The section's three commands, verbatim but for USER:PASSWORD@HOST:5432/DB and HOST,
    run from a fresh folder with the plain console script: a study on PostgreSQL with 2
    workers, the proxy in front of it, a worker through the proxy."""
    server = sqlalchemy.engine.make_url(postgres_url)
    database = server.render_as_string(hide_password=False).replace("+psycopg", "")
    run_pg, serve, run_proxied = [
        c.replace("postgresql://USER:PASSWORD@HOST:5432/DB", database).replace("HOST", "127.0.0.1")
        for c in _readme_storage_commands()]
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    env.pop("PYTHONPATH", None)

    def shell(command: str) -> subprocess.CompletedProcess:
        return subprocess.run(command, shell=True, cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=600)

    done = shell(run_pg)
    assert done.returncode == 0, done.stderr[-3000:]
    study = optuna.load_study(study_name="lr_adam", storage=postgres_url)
    finished = len(study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED)))
    assert finished > 0 and not study.get_trials(states=(TrialState.RUNNING,))
    proxy = subprocess.Popen(serve, shell=True, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert "serving postgresql" in proxy.stdout.readline(), proxy.stderr.read()
        done = shell(run_proxied)  # the budget is spent: it finds the study done
        assert done.returncode == 0, done.stderr[-3000:]
        assert "lr_adam" in done.stdout
    finally:
        os.killpg(proxy.pid, signal.SIGTERM)
        proxy.wait(timeout=30)
    assert len(optuna.load_study(study_name="lr_adam", storage=postgres_url).get_trials(
        states=(TrialState.COMPLETE, TrialState.PRUNED))) == finished


SLOW_WHEN_ASKED = '''\
import os, time

def fit(config, data, device, report):
    for epoch in range(1, config.epochs + 1):
        time.sleep(2.0 if os.environ.get("SLOW") else 0.0)
        report(epoch, train_loss=1.0 / epoch, val_loss=1.0 / epoch, val_acc=config.lr)

fit.honours = ["lr"]
'''

PROXIED = """\
base: {dataset: digits, epochs: 5, fit: "slow_when_asked:fit"}
objective: {metric: val_acc}
sampler: {name: random, seed: 0}
pruner: {name: none}
trials: 1
space:
  lr: {type: float, low: 1e-4, high: 1e-2, log: true}
"""


@pytest.fixture
def sqlite_proxy(tmp_path):
    """(grpc URL, the SQLite URL it serves): a proxy needs no PostgreSQL behind it."""
    port, served = _free_port(), f"sqlite:///{tmp_path / 'served.db'}"
    process = subprocess.Popen(
        [sys.executable, "-m", "hpsearch", "storage-proxy", "--storage", served, "--port",
         str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "serving sqlite:///" in process.stdout.readline(), process.stderr.read()
        yield f"grpc://127.0.0.1:{port}", served
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_a_worker_killed_behind_the_proxy_has_its_trial_failed_and_run_again(
        sqlite_proxy, tmp_path):
    """Optuna's gRPC protocol carries no heartbeats: hpsearch's workers record theirs as a
    trial attribute through it, so a worker killed on another machine leaves no trial
    RUNNING for good: the next worker fails it once it is stale and runs it again."""
    url, served = sqlite_proxy
    (tmp_path / "slow_when_asked.py").write_text(SLOW_WHEN_ASKED)
    (tmp_path / "proxied.yaml").write_text(PROXIED)
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "HPSEARCH_HEARTBEAT_S": "1",
           "HPSEARCH_GRACE_S": "2"}
    command = [sys.executable, "-m", "hpsearch", "run", "--study", "proxied.yaml",
               "--storage", url]
    worker = subprocess.Popen(command, cwd=tmp_path, env={**env, "SLOW": "1"},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while True:  # until its trial has reported an epoch
        assert time.monotonic() < deadline and worker.poll() is None, worker.communicate()
        trials = optuna.get_all_study_names(served) and optuna.load_study(
            study_name="proxied", storage=served).get_trials()
        if trials and trials[0].intermediate_values:
            break
        time.sleep(0.2)
    worker.kill()
    worker.wait(timeout=30)
    (lost,) = optuna.load_study(study_name="proxied", storage=served).get_trials()
    assert lost.state == TrialState.RUNNING  # what a kill leaves
    assert "hpsearch:heartbeat" in lost.system_attrs  # recorded through the proxy
    time.sleep(3)  # past the grace period: its heartbeat is stale

    rerun = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    failed, retry = optuna.load_study(study_name="proxied", storage=served).get_trials()
    assert (failed.state, retry.state) == (TrialState.FAIL, TrialState.COMPLETE)
    assert retry.params == failed.params  # the lost parameters, run again
    assert retry.system_attrs["failed_trial"] == failed.number
