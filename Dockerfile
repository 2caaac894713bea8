# Two images. `dashboard`: optuna-dashboard and the PostgreSQL driver only (no torch: a few
# hundred MB instead of gigabytes). The last stage, the worker: hpsearch with its
# dependencies and its phase files (installed with the package); a project's own study
# files and the storage come from the host (see docker-compose.yml). Validated as a file by
# tests/test_deploy_files.py.
FROM python:3.11-slim AS dashboard
RUN pip install --no-cache-dir optuna-dashboard "psycopg[binary]"
ENTRYPOINT ["optuna-dashboard"]

FROM python:3.11-slim AS worker
WORKDIR /app
# torch and torchvision first, pinned: the largest layer, reused when only hpsearch changes.
RUN pip install --no-cache-dir torch==2.14.1 torchvision==0.29.1
COPY pyproject.toml README.md ./
COPY hpsearch ./hpsearch
# The protocol's phase files install as the package `hpsearch.studies` (pyproject.toml).
COPY studies ./studies
RUN pip install --no-cache-dir .

ENV HPSEARCH_DATA_DIR=/data
ENTRYPOINT ["hpsearch"]
CMD ["studies"]
