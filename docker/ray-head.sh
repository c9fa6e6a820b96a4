#!/usr/bin/env bash
# The Ray head (GCS, dashboard, Jobs API for `sweeper submit`), in the foreground: the
# ray-head container runs it, and so does tests/test_stack.py on 127.0.0.1.
#   RAY_GCS_PORT        GCS port the workers join (default 6379)
#   RAY_DASHBOARD_HOST  interface the dashboard and Jobs API bind (default 0.0.0.0: every
#                       interface of the container; compose publishes it on 127.0.0.1 only)
#   RAY_DASHBOARD_PORT  dashboard and Jobs API port (default 8265)
#   RAY_CLIENT_SERVER_PORT  Ray Client port (default 10001)
# and the variables listed in ray-common.sh. Extra arguments go to `ray start` unchanged.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/ray-common.sh"
# exec: `ray start --block` becomes the container's main process, so `docker stop`'s SIGTERM
# reaches it and it stops the node's raylet, GCS and workers before exiting.
exec ray start --head --port="${RAY_GCS_PORT:-6379}" \
    --dashboard-host="${RAY_DASHBOARD_HOST:-0.0.0.0}" \
    --dashboard-port="${RAY_DASHBOARD_PORT:-8265}" \
    --ray-client-server-port="${RAY_CLIENT_SERVER_PORT:-10001}" "${RAY_NODE_ARGS[@]}" "$@"
