"""`hpsearch dashboard`: optuna-dashboard on the workers' storage and artifact store.

Before serving, every study with a choice gets its note, trial marks and curves written
again (notes.py), so studies stored by an earlier hpsearch, or by a run that ended before
the notes existed, read the same way. optuna-dashboard has no authentication: it listens on
127.0.0.1 unless told otherwise (README, Security).
"""

from __future__ import annotations

import os
from pathlib import Path

import optuna

from hpsearch import notes, records
from hpsearch.checkpoints import artifact_dir, artifact_store
from hpsearch.storage import Storage, connect, describe

DEFAULT_PORT = 8080


def refresh_notes(storage: Storage) -> int:
    """Write the notes of every study that has a choice; how many."""
    count = 0
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        if records.read_choice(study) is not None:
            notes.annotate(study)
            count += 1
    return count


def app(storage: str | Storage | None = None, artifacts: str | os.PathLike | None = None):
    """optuna-dashboard's WSGI application on `storage` and its checkpoints' artifact store
    (for a production WSGI server, and for tests)."""
    from optuna_dashboard import wsgi

    backend = connect(storage)
    refresh_notes(backend)
    return wsgi(backend, artifact_store=artifact_store(artifact_dir(storage, artifacts)))


def serve(storage: str | Storage | None = None, host: str = "127.0.0.1",
          port: int = DEFAULT_PORT, artifacts: str | os.PathLike | None = None,
          announce=print) -> None:
    """Refresh the notes, then serve the dashboard until interrupted."""
    from optuna_dashboard import run_server

    backend = connect(storage)
    refreshed = refresh_notes(backend)
    directory: Path = artifact_dir(storage, artifacts)
    announce(f"optuna-dashboard on http://{host}:{port}/ (storage {describe(storage)}, "
             f"artifacts {directory}; {refreshed} studies annotated); Ctrl-C stops it")
    run_server(backend, host=host, port=port, artifact_store=artifact_store(directory))
