"""One process between many workers and a database server: Optuna's gRPC storage proxy.

Past ~30 workers a PostgreSQL server with the default 100 connections is full (each worker
holds 2, storage.PG_POOL). `hpsearch storage-proxy --storage postgresql://...` serves the
storage over gRPC from one process holding PROXY_CONNECTIONS connections; workers are given
`--storage grpc://HOST:PORT` and hold none. Optuna's gRPC protocol has no heartbeat:
hpsearch's workers record theirs through it as trial attributes (proxy_heartbeats.py), so a
worker killed on another machine has its trial failed and queued again, as on SQL.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import optuna

from hpsearch.errors import UsageError
from hpsearch.storage import PROXY_PORT as DEFAULT_PORT
from hpsearch.storage import mask_url, open_storage

# Threads serving calls, one database connection each: what the server gives the proxy.
PROXY_CONNECTIONS = 8


def serve(url: str, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
          connections: int = PROXY_CONNECTIONS) -> None:
    """Serve the storage at `url` on host:port until interrupted (blocks)."""
    storage = open_storage(url, connections=connections)
    print(f"serving {mask_url(url)} on grpc://{host}:{port} with {connections} database "
          "connections; workers: --storage grpc://HOST:PORT", flush=True)
    try:
        optuna.storages.run_grpc_proxy_server(
            storage, host=host, port=port, thread_pool=ThreadPoolExecutor(connections))
    except RuntimeError as err:  # grpc: the port is taken
        raise UsageError(f"--port: cannot serve on {host}:{port} ({err}); fix: pick a free "
                         "port") from None
