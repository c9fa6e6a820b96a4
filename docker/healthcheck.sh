#!/usr/bin/env bash
# Container healthchecks for docker/compose.yaml; tests/test_stack.py waits on the same checks.
# Usage: healthcheck.sh ray-head | ray-worker | mlflow   (exit 0 when healthy)
# Ray's health endpoints answer without the token, and "success" is in their body when the
# component is up (KubeRay's probes use the same endpoints).
set -euo pipefail
probe() {
    python -c '
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=5) as answer:
    sys.exit(0 if answer.status == 200 and sys.argv[2].encode() in answer.read() else 1)
' "$1" "$2"
}
case "${1:-}" in
    ray-head)
        probe "http://127.0.0.1:${RAY_DASHBOARD_PORT:-8265}/api/gcs_healthz" success
        probe "http://127.0.0.1:${RAY_DASHBOARD_AGENT_LISTEN_PORT:-52365}/api/local_raylet_healthz" success ;;
    ray-worker)
        probe "http://127.0.0.1:${RAY_DASHBOARD_AGENT_LISTEN_PORT:-52365}/api/local_raylet_healthz" success ;;
    mlflow)
        probe "http://127.0.0.1:${MLFLOW_PORT:-5000}/health" OK ;;
    *)
        echo "usage: $(basename "$0") ray-head|ray-worker|mlflow" >&2
        exit 2 ;;
esac
