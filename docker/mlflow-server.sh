#!/usr/bin/env bash
# The MLflow tracking server, in the foreground: the mlflow container runs it, and so does
# tests/test_stack.py against a PostgreSQL it starts.
#   MLFLOW_BACKEND_STORE_URI      run store, e.g. postgresql+psycopg2://USER:PASSWORD@HOST:5432/DB
#                                 (the image has psycopg2; SQLAlchemy >= 2.1 reads a bare
#                                 postgresql:// as psycopg 3); when unset, built from
#                                 POSTGRES_HOST, POSTGRES_PORT (5432), POSTGRES_USER,
#                                 POSTGRES_PASSWORD and POSTGRES_DB (docker/postgres.env)
#   MLFLOW_ARTIFACTS_DESTINATION  where proxied artifacts are stored (default /mlartifacts)
#   MLFLOW_HOST                   interface to bind (default 0.0.0.0)
#   MLFLOW_PORT                   port (default 5000)
#   MLFLOW_WORKERS                server worker processes (default 2)
#   MLFLOW_SERVER_ALLOWED_HOSTS   Host headers accepted (MLflow's default: localhost and
#                                 private IPs; compose adds the service name `mlflow`)
# Extra arguments go to `mlflow server` unchanged.
set -euo pipefail
if [[ -z "${MLFLOW_BACKEND_STORE_URI:-}" && -n "${POSTGRES_HOST:-}" ]]; then
    MLFLOW_BACKEND_STORE_URI="$(python -c '
import os
from urllib.parse import quote
env = os.environ
user, password, db = (quote(env[f"POSTGRES_{k}"], safe="") for k in ("USER", "PASSWORD", "DB"))
host, port = env["POSTGRES_HOST"], env.get("POSTGRES_PORT") or "5432"
print(f"postgresql+psycopg2://{user}:{password}@{host}:{port}/{db}")')"
fi
if [[ -z "${MLFLOW_BACKEND_STORE_URI:-}" ]]; then
    echo "$(basename "$0"): set MLFLOW_BACKEND_STORE_URI, or POSTGRES_HOST with POSTGRES_USER," \
         "POSTGRES_PASSWORD and POSTGRES_DB" >&2
    exit 2
fi
# Passed through the environment (mlflow reads MLFLOW_BACKEND_STORE_URI itself), not as an
# argument: the URI holds the database password, and arguments are visible to `ps`.
export MLFLOW_BACKEND_STORE_URI
exec mlflow server \
    --artifacts-destination "${MLFLOW_ARTIFACTS_DESTINATION:-/mlartifacts}" \
    --host "${MLFLOW_HOST:-0.0.0.0}" --port "${MLFLOW_PORT:-5000}" \
    --workers "${MLFLOW_WORKERS:-2}" "$@"
