"""PostgreSQL under many workers: the connections each holds, and a full server in one line."""

from __future__ import annotations

import subprocess
import sys
import threading

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState

pytestmark = pytest.mark.postgres

STUDY = """\
base: {dataset: digits, epochs: 12, batch_size: 64, width: 32}
objective: {metric: val_acc}
sampler: {name: random, seed: 0}
pruner: {name: median, n_warmup_steps: 1}
trials: 8
space:
  lr: {type: float, low: 1e-4, high: 1e-2, log: true}
"""


def _run(path, url, jobs: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "hpsearch", "run", "--study", str(path), "--storage", url,
               "--jobs", str(jobs), "--devices", "cpu"]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _sample_connections(admin_url: str, database: str, stop: threading.Event, peak: list):
    engine = sqlalchemy.create_engine(admin_url, isolation_level="AUTOCOMMIT")  # a new snapshot each
    query = sqlalchemy.text("SELECT application_name, count(*) FROM pg_stat_activity "
                            "WHERE datname = :name AND backend_type = 'client backend' "
                            "GROUP BY application_name")  # not autovacuum
    with engine.connect() as connection:
        while not stop.is_set():
            held = dict(connection.execute(query, {"name": database}).all())
            peak[0] = max(peak[0], sum(held.values()))
            for process, count in held.items():
                peak[1][process] = max(peak[1].get(process, 0), count)
            stop.wait(0.05)
    engine.dispose()


def test_each_worker_holds_at_most_two_connections(postgres_url, write_study):
    """Measured in pg_stat_activity during a 4-worker run: 32 workers then fit a default
    server (max_connections 100) with the dashboard attached."""
    from tests.conftest import postgres_admin_url

    path = write_study("scale", STUDY)
    database = sqlalchemy.engine.make_url(postgres_url).database
    stop, peak = threading.Event(), [0, {}]
    sampler = threading.Thread(target=_sample_connections,
                               args=(postgres_admin_url(), database, stop, peak))
    sampler.start()
    try:
        process = _run(path, postgres_url, jobs=4)
        stdout, stderr = process.communicate(timeout=600)
    finally:
        stop.set()
        sampler.join()
    assert process.returncode == 0, stderr[-3000:]
    print(f"peak connections to the study's database with --jobs 4: {peak[0]}, by process: "
          f"{peak[1]}")
    by_process = peak[1]
    assert len(by_process) == 5 and all(n.startswith("hpsearch pid ") for n in by_process)
    assert max(by_process.values()) <= 2  # the pool's size: main thread and heartbeat
    assert peak[0] <= 5 * 2


def test_a_full_server_is_one_line_naming_the_connection_budget(postgres_url, write_study):
    engine = sqlalchemy.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    database = sqlalchemy.engine.make_url(postgres_url).database
    with engine.connect() as connection:  # the owner may limit its database's connections
        connection.exec_driver_sql(f'ALTER DATABASE "{database}" CONNECTION LIMIT 3')
    engine.dispose()
    path = write_study("scale", STUDY.replace("trials: 8", "trials: 4"))
    stdout, stderr = _run(path, postgres_url, jobs=4).communicate(timeout=600)
    assert "Traceback" not in stderr, stderr[-3000:]
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr[-3000:]
    assert "too many connections" in errors[0]
    assert "each worker holds 2 connections" in errors[0] and "max_connections" in errors[0]
    assert "hpsearch_test:hpsearch_test" not in stderr + stdout  # the password masked
    study = optuna.load_study(study_name="scale", storage=postgres_url)
    assert not any(t.state == TrialState.RUNNING for t in study.get_trials())
