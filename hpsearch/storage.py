"""Where studies live: storage URLs, SQLite/PostgreSQL settings, heartbeats.

`--storage URL` > `$HPSEARCH_STORAGE` > `sqlite:///storage/hpsearch.db`. Every worker, the
dashboard and notebooks open the same URL and so see the same state.
"""

from __future__ import annotations

import copy
import os
import re
import time
import warnings
from pathlib import Path

import optuna
import sqlalchemy
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.engine import make_url

from hpsearch import heartbeat
from hpsearch.errors import StorageError, UsageError
from hpsearch.records import NOT_INHERITED_BY_RETRY
from hpsearch.resilient_storage import (
    CONNECTIONS_FIX,
    CallWatchdog,
    ResilientRDBStorage,
    retry_transient,
    too_many_connections,
)

DEFAULT_STORAGE = "sqlite:///storage/hpsearch.db"
STORAGE_ENV = "HPSEARCH_STORAGE"
PROXY_SCHEME = "grpc://"  # `hpsearch storage-proxy` (storage_proxy.py)
PROXY_PORT = 13000  # the proxy's default port
PROXY_READY_S = 10  # a worker waits this long (s) for the proxy to answer

# A worker writes a heartbeat every HEARTBEAT_S seconds while a trial runs; a trial whose
# heartbeat is older than GRACE_S (a killed worker, a lost machine) is marked FAIL by the next
# worker that starts a trial, so no trial stays RUNNING forever.
# Both can be lowered through the environment (tests, preemptible clusters).
HEARTBEAT_S = int(os.environ.get("HPSEARCH_HEARTBEAT_S", 30))
GRACE_S = int(os.environ.get("HPSEARCH_GRACE_S", 120))
# SQLite allows one writer at a time; parallel workers wait up to this long (s) for the lock.
SQLITE_LOCK_TIMEOUT_S = 60
# PostgreSQL: fail fast (s) when the server is unreachable instead of hanging.
PG_CONNECT_TIMEOUT_S = 10
# Connections a process holds at most: its main thread and its heartbeat thread use one each,
# one call at a time, so a third would only sit idle. A worker holds 2 and a --jobs parent 2,
# so 32 workers and the dashboard fit a default server (max_connections 100, 3 reserved).
PG_POOL = {"pool_size": 2, "max_overflow": 0, "pool_timeout": 120}
# TCP keepalives find a connection whose server or network died (idle 30 s, then 3 probes
# 10 s apart); the server ends any statement past 60 s (no query of ours takes a second).
PG_CONNECT_ARGS = {
    "connect_timeout": PG_CONNECT_TIMEOUT_S,
    "keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3,
}
# Server settings for hpsearch's sessions. synchronous_commit=off: a commit returns before
# the server has flushed it to disk (4.3 ms a commit against 0.3 on this machine's disk, and
# a trial commits 6-7 times): the durability SQLite's WAL + synchronous=NORMAL gives the
# default storage. A crash of a worker loses nothing committed; a crash of the server's
# machine may lose the last ~0.6 s of commits (3 x wal_writer_delay), never the database's
# consistency, and a trial whose end was lost is failed as stale and retried. The URL's own
# `options` come after these, so `?options=-c%20synchronous_commit%3Don` restores it.
PG_SESSION_OPTIONS = "-c statement_timeout=60000 -c synchronous_commit=off"


def resolve_storage_url(explicit: str | None = None) -> str:
    """The storage URL to use: the explicit one, else `$HPSEARCH_STORAGE`, else the default."""
    url = explicit or os.environ.get(STORAGE_ENV) or DEFAULT_STORAGE
    return normalize_url(url)


def normalize_url(url: str) -> str:
    """Route plain `postgresql://` URLs to psycopg 3 (SQLAlchemy would pick psycopg2)."""
    return re.sub(r"^postgres(ql)?://", "postgresql+psycopg://", url)


def mask_url(url: str) -> str:
    """The URL with its password hidden, for messages (also a URL that does not parse)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (sqlalchemy.exc.ArgumentError, ValueError):
        return re.sub(r"(//[^:/@]*:)[^@/]*@", r"\1***@", url)


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL, or None for other back ends and in-memory SQLite."""
    parsed = _parse(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def storage_exists(url: str) -> bool:
    """False only for a SQLite file that does not exist yet (reading must not create it)."""
    path = sqlite_path(url)
    return path is None or path.exists()


# URLs this process has opened once: a later failure to reach one is a blip, not a typo.
_REACHED: set[str] = set()


# A storage is opened once per process (and URL), and every later open in that process gets
# the same one: a server's every open had its own connection pool (a --jobs parent opening
# it for each progress read held 8 connections), and a command passes one storage down.
_OPENED: dict[tuple[int, str], ResilientRDBStorage] = {}


def open_storage(url: str, connections: int | None = None) -> optuna.storages.BaseStorage:
    """Open (and create if needed) the RDB storage at `url`, or raise one clear StorageError.

    The first open in a process fails at once (a wrong URL, a server not started); a later
    one (the parent of --jobs workers reading progress, the summary after a run) retries a
    lost connection like every storage call does (resilient_storage.py)."""
    url = normalize_url(url)
    if url.startswith(PROXY_SCHEME):
        return connect_proxy(url)
    path = sqlite_path(url)
    if path is not None:
        _check_sqlite_file(path, url)
    if (os.getpid(), url) in _OPENED and (path is None or path.exists()):
        return _OPENED[os.getpid(), url]
    try:
        if url in _REACHED:
            return retry_transient(lambda: _create(url, path, connections), url)
        storage = _create(url, path, connections)
    except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError,
            ImportError, RuntimeError) as err:
        raise _open_error(url, err) from None
    _REACHED.add(url)
    if connections is None:  # a proxy's larger pool is its own
        _OPENED[os.getpid(), url] = storage
    return storage


def connect_proxy(url: str) -> optuna.storages.BaseStorage:
    """A client of the proxy at grpc://HOST:PORT, or one StorageError within seconds (grpc
    is imported by Optuna only now: a SQL storage never loads it)."""
    address = url.split("://", 1)[1].rstrip("/")
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--storage: {url!r} is no proxy address; fix: grpc://HOST:PORT, "
                         f"e.g. grpc://127.0.0.1:{PROXY_PORT}")
    from hpsearch.proxy_heartbeats import HeartbeatingProxy  # imports grpc: only now

    proxy = HeartbeatingProxy(host=host, port=int(port), interval_s=HEARTBEAT_S,
                              grace_s=GRACE_S)
    try:
        proxy.wait_server_ready(timeout=PROXY_READY_S)
    except Exception:  # grpc.FutureTimeoutError and friends
        raise StorageError(f"cannot reach the storage proxy at {host}:{port} within "
                           f"{PROXY_READY_S} s; fix: start it (`hpsearch storage-proxy "
                           f"--storage URL --port {port}`) on that host, or check the address"
                           ) from None
    return proxy


# Workers starting together on an empty database each create Optuna's tables, and all but one
# fail on the catalog's unique keys (optuna#1092): the losers try again, and find the tables.
SCHEMA_ATTEMPTS = 5
# How the race reads: PostgreSQL's messages, then SQLite's (two workers on a new file).
SCHEMA_RACE = ("duplicate key", "already exists", "UNIQUE constraint failed")


def _create(url: str, path: Path | None, connections: int | None) -> ResilientRDBStorage:
    for attempt in range(1, SCHEMA_ATTEMPTS + 1):
        try:
            return _create_once(url, path, connections)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError,
                sqlalchemy.exc.OperationalError) as err:  # SQLite: "table ... already exists"
            text = _first_line(err)
            if attempt == SCHEMA_ATTEMPTS or not any(sign in text for sign in SCHEMA_RACE):
                raise
            time.sleep(0.2 * attempt)
    raise AssertionError("unreachable")


def _create_once(url: str, path: Path | None, connections: int | None) -> ResilientRDBStorage:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = ResilientRDBStorage(
            url,
            engine_kwargs=_engine_kwargs(url, connections),
            heartbeat_interval=HEARTBEAT_S,
            grace_period=GRACE_S,
            # A trial lost with its worker is queued again once, with the same parameters.
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                max_retry=1
            ),
        )
    if path is not None:
        _use_wal(storage.engine)
    else:
        storage.watchdog = CallWatchdog(storage.engine)  # a frozen server hangs no one for good
    heartbeat.install(_opened_here)  # one heartbeat thread a process, not one a trial
    return storage


def _opened_here(storage: optuna.storages.BaseStorage) -> bool:
    """Whether a study's storage (Optuna wraps it in its cache) is one this module opened."""
    return isinstance(getattr(storage, "_backend", storage), ResilientRDBStorage)


DAMAGED_FIX = ("the SQLite file is damaged or is no database: restore it from a copy (or try "
               "`sqlite3 FILE .recover`), or pass another --storage (nothing was written)")


def _damaged(text: str) -> bool:
    return "not a database" in text or "malformed" in text


def _open_error(url: str, err: BaseException) -> StorageError:
    """One line for a storage that cannot be opened, with the fix for the usual causes."""
    text = _first_line(err)
    cause = err.__cause__ or err.__context__ or err
    if isinstance(err, optuna.exceptions.StorageInternalError) or text.startswith(
            "An exception of type"):  # Optuna's wrapper: what the database said is below
        text = _first_line(cause)
    parsed = make_url(url)
    if "does not exist" in text and parsed.database and "database" in text:
        fix = (f"create it (`createdb -h {parsed.host} -U {parsed.username} {parsed.database}`, "
               f"or CREATE DATABASE {parsed.database}) or name an existing one")
    elif _damaged(text):
        fix = DAMAGED_FIX
    elif too_many_connections(text):
        fix = CONNECTIONS_FIX
    else:
        fix = f"start the database server or pass a reachable --storage URL (or set {STORAGE_ENV})"
    return StorageError(f"cannot open storage {mask_url(url)}: {text}; fix: {fix}")


def _check_sqlite_file(path: Path, url: str) -> None:
    """The SQLite file's folder exists (made if need be) and both can be written: Optuna
    writes the schema, every trial, and in WAL mode a `-wal` file beside the database."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        blocker = next((p for p in path.parents if p.is_file()), path.parent)
        raise StorageError(
            f"cannot open storage {mask_url(url)}: cannot make the folder {path.parent} "
            f"({err.strerror}: {blocker} is a file); fix: pass a path whose folders are folders"
        ) from None
    for target in (path, path.parent):
        if target.exists() and not os.access(target, os.W_OK):
            raise StorageError(
                f"cannot open storage {mask_url(url)}: {target} is read-only; fix: make it "
                "writable (chmod u+w), or copy the database to a writable place and pass "
                "that --storage")


def _use_wal(engine: sqlalchemy.engine.Engine) -> None:
    """SQLite in write-ahead-log mode with `synchronous=NORMAL`.

    Every epoch reports an intermediate value, one commit each; in the default rollback
    journal each commit waits for several fsyncs. WAL commits append to the log instead, and
    readers (the dashboard, other workers) no longer block the writer. A crash of the process
    or of the worker loses nothing committed; a power cut may lose the last commits, never
    the database's consistency.
    """
    sqlalchemy.event.listen(engine, "connect", _sqlite_pragmas)
    engine.dispose()  # connections opened before the listener are replaced


def _sqlite_pragmas(connection, record) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _engine_kwargs(url: str, connections: int | None = None) -> dict:
    backend = _parse(url).get_backend_name()
    if backend == "sqlite":
        return {"connect_args": {"timeout": SQLITE_LOCK_TIMEOUT_S}}
    if backend == "postgresql":
        # Named by process in pg_stat_activity: an operator sees which worker holds what.
        connect_args = {**PG_CONNECT_ARGS, "application_name": f"hpsearch pid {os.getpid()}",
                        "options": _session_options(url)}
        pool = {**PG_POOL, "pool_size": connections} if connections else PG_POOL
        # No ping before each call (SQLAlchemy's pool_pre_ping: a round trip per storage
        # call, a third of a trial's): a connection the server dropped fails its statement
        # with a lost connection, which every call retries on a new one (resilient_storage).
        return {"connect_args": connect_args, **pool}
    return {}


def _session_options(url: str) -> str:
    """hpsearch's server settings, then the URL's own `options` (the last setting wins)."""
    own = _parse(url).query.get("options", "")
    own = " ".join(own) if isinstance(own, tuple) else own
    return f"{PG_SESSION_OPTIONS} {own}".strip()


def _parse(url: str) -> sqlalchemy.engine.URL:
    try:
        return make_url(url)
    except (sqlalchemy.exc.ArgumentError, ValueError) as err:  # ValueError: port `54x0`
        problem = "the port must be a number" if "int()" in str(err) else "not a URL"
        raise UsageError(
            f"--storage: cannot parse storage URL {mask_url(url)!r} ({problem}); fix: use "
            "e.g. sqlite:///storage/hpsearch.db or postgresql://user:password@host:5432/db"
        ) from None


def _first_line(err: BaseException) -> str:
    text = str(getattr(err, "orig", None) or err).strip()
    return text.splitlines()[0] if text else type(err).__name__


# --- finding studies ----------------------------------------------------------------------------
Storage = optuna.storages.BaseStorage


def connect(storage: str | Storage | None = None, create: bool = True) -> Storage | None:
    """An open storage: `storage` itself when already open, else the one at that URL (or the
    default). With `create=False` a SQLite file that does not exist yet is None: reading
    must not create an empty database. A command opens its storage once and passes it down."""
    if isinstance(storage, Storage):
        return storage
    url = resolve_storage_url(storage)
    if not create and not storage_exists(url):
        return None
    return open_storage(url)


def url_of(storage: str | Storage | None) -> str | None:
    """The URL of a storage given as a URL, an open storage, or the default (None for a
    storage opened without one: a proxy client)."""
    if isinstance(storage, Storage):
        return getattr(getattr(storage, "_backend", storage), "url", None)
    return resolve_storage_url(storage)


def describe(storage: str | Storage | None) -> str:
    """The storage for a message: its URL with the password masked."""
    url = url_of(storage)
    return mask_url(url) if url else "the storage proxy"


def study_name(study: str, tag: str | None = None) -> str:
    """The stored name of `study`: a name, `NAME@TAG`, or a study file's path (its stem), with
    `tag` appended (`lr_adam` + `small` is `lr_adam@small`, a protocol run's `--tag`)."""
    name = Path(study).stem if study.endswith((".yaml", ".yml")) else study
    if tag and "@" in name and not name.endswith(f"@{tag}"):
        raise UsageError(f"study `{name}` already names a tag; fix: drop --tag {tag}, or pass "
                         f"`{name.partition('@')[0]}` with --tag {tag}")
    return f"{name}@{tag}" if tag and "@" not in name else name


def find_study(storage: str | Storage | None, name: str) -> optuna.Study | None:
    """The stored study `name`, or None when it (or the storage) does not exist yet."""
    backend = connect(storage, create=False)
    if backend is None or name not in optuna.get_all_study_names(backend):
        return None
    return optuna.load_study(study_name=name, storage=backend)


def load_study(storage: str | Storage | None, name: str) -> optuna.Study:
    """The stored study `name`, or a UsageError saying how to create it."""
    study = find_study(storage, name)
    if study is None:
        base, _, tag = name.partition("@")
        tagged = f" --tag {tag}" if tag else ""
        raise UsageError(
            f"no study `{name}` in {describe(storage)}; fix: run `hpsearch run --study {base}"
            f"{tagged}` (or `hpsearch protocol{tagged}`) first, or pass the --storage that "
            "holds it"
        )
    return study


def _backend(study: optuna.Study):
    """The study's storage behind Optuna's cache."""
    return getattr(study._storage, "_backend", study._storage)


def _ours(study: optuna.Study):
    """The study's storage when it is ours (SQL, or the heartbeating proxy client: both
    answer `count_trials` and `records_heartbeats`), else None."""
    backend = _backend(study)
    return backend if hasattr(backend, "records_heartbeats") else None


def records_heartbeats(study: optuna.Study, trial: FrozenTrial) -> bool:
    """Whether `trial`'s worker records heartbeats, so a dead one is failed in time
    (GRACE_S) and waiting for it ends: false outside our storages (a plain Optuna script's
    trials, another back end)."""
    ours = _ours(study)
    return ours is not None and ours.records_heartbeats(trial._trial_id)


def count_trials(study: optuna.Study, states: tuple[TrialState, ...],
                 number_below: int | None = None, heartbeating: bool = False) -> int:
    """How many of the study's trials are in `states` (and numbered below `number_below`;
    with `heartbeating`, only trials whose worker records heartbeats: none outside our
    storages), read as one number where the storage can (SQL), else from every trial."""
    ours = _ours(study)
    if ours is not None:
        return ours.count_trials(study._study_id, states, number_below, heartbeating)
    if heartbeating:
        return 0
    return sum(1 for t in study.get_trials(deepcopy=False, states=states)
               if number_below is None or t.number < number_below)


def count_trials_and_last_number(study: optuna.Study, states: tuple[TrialState, ...]
                                 ) -> tuple[int, int]:
    """How many of the study's trials are in `states`, and the highest number of any of its
    trials (-1: none yet), as one read where the storage can (SQL)."""
    ours = _ours(study)
    if ours is not None and hasattr(ours, "count_trials_and_last_number"):
        return ours.count_trials_and_last_number(study._study_id, states)
    trials = study.get_trials(deepcopy=False)
    return (sum(1 for t in trials if t.state in states),
            max((t.number for t in trials), default=-1))


def fail_stale_trials(study: optuna.Study) -> None:
    """Fail the trials whose heartbeat is older than GRACE_S (a killed worker's) and queue
    each again once. Optuna does this only when a new trial starts; every run does it first,
    so a finished study is cleaned too. Unlike Optuna's check before each trial, this one
    always reads the database (lean_writes.py spaces those out)."""
    if hasattr(_backend(study), "check_stale_next_time"):
        _backend(study).check_stale_next_time(study._study_id)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def fail_trials_of_dead_workers(study: optuna.Study, numbers: list[int], *,
                                retry: bool = True) -> list[int]:
    """Fail trials `numbers` still RUNNING whose worker is known to be dead (a worker process
    this machine saw die), without waiting for their heartbeat to go stale; with `retry`,
    each is queued again once, as a stale one would be. The numbers actually failed."""
    retry = retry and study._storage.get_heartbeat_stale_trial_callback()  # open_storage's
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if trial.number not in numbers:
            continue
        try:
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        except (ValueError, RuntimeError, optuna.exceptions.UpdateFinishedTrialError):
            continue  # finished meanwhile by someone else (a heartbeat check)
        failed.append(trial.number)
        if retry:
            retry(study, trial)  # reads its params and attributes, not its state
    return failed


def queue_retry(study: optuna.Study, trial: FrozenTrial, retries: int) -> bool:
    """Queue crashed trial `trial` again with the same parameters, unless it is already the
    `retries`-th retry of its original (counted by Optuna's retry callback in the trial's
    system attributes, as a stale trial's retry is). True when a retry was queued."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if len(RetryHeartbeatStaleTrialCallback.retry_history(trial)) >= retries:
            return False
        clean = copy.copy(trial)
        clean.user_attrs = {k: v for k, v in trial.user_attrs.items()
                            if k not in NOT_INHERITED_BY_RETRY}
        RetryHeartbeatStaleTrialCallback(max_retry=retries)(study, clean)
    return True


def storage_failure(err: BaseException) -> StorageError:
    """One line for a storage error met after opening (a file damaged in the middle, a
    server gone): what the database said, and what to do."""
    cause = err.__cause__ or err.__context__ or err
    text = _first_line(cause)
    if _damaged(text):
        fix = DAMAGED_FIX
    elif too_many_connections(text):
        fix = CONNECTIONS_FIX
    elif "readonly" in text or "read-only" in text:
        fix = "make the database file and its folder writable, or pass another --storage"
    else:
        fix = "check that the database server is up and reachable, then rerun the same command"
    return StorageError(f"storage failed: {text}; fix: {fix}")
