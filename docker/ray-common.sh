# shellcheck shell=bash
# Sourced by ray-head.sh and ray-worker.sh: the token check and the `ray start` options both
# node kinds share. Every variable is optional except the token:
#   RAY_AUTH_MODE          token (the default; any other value is refused)
#   RAY_AUTH_TOKEN         the cluster's shared secret (or RAY_AUTH_TOKEN_PATH, a file holding it)
#   RAY_NODE_IP_ADDRESS    address this node advertises (default: Ray's guess)
#   RAY_NUM_CPUS, RAY_NUM_GPUS, RAY_OBJECT_STORE_MEMORY   resources (default: detected)
#   RAY_TEMP_DIR           session/log/socket directory (default /tmp/ray)
#   RAY_DASHBOARD_AGENT_LISTEN_PORT   the node's agent HTTP port (default 52365); two nodes on
#                          one host need different ones (tests/test_stack.py)

# Ray reads RAY_AUTH_MODE and RAY_AUTH_TOKEN itself; checking them here turns a missing token
# into one clear line instead of a node that starts without authentication.
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-token}"
if [[ "$RAY_AUTH_MODE" != "token" ]]; then
    echo "$(basename "$0"): RAY_AUTH_MODE must be 'token', got '$RAY_AUTH_MODE'" >&2
    exit 2
fi
if [[ -z "${RAY_AUTH_TOKEN:-}" && ! -s "${RAY_AUTH_TOKEN_PATH:-/nonexistent}" ]]; then
    echo "$(basename "$0"): no Ray token: set RAY_AUTH_TOKEN (docker/ray-auth.env) or" \
         "RAY_AUTH_TOKEN_PATH" >&2
    exit 2
fi
export RAY_USAGE_STATS_ENABLED="${RAY_USAGE_STATS_ENABLED:-0}"

RAY_NODE_ARGS=(--block --disable-usage-stats
               "--dashboard-agent-listen-port=${RAY_DASHBOARD_AGENT_LISTEN_PORT:-52365}")
[[ -n "${RAY_NODE_IP_ADDRESS:-}" ]] && RAY_NODE_ARGS+=("--node-ip-address=$RAY_NODE_IP_ADDRESS")
[[ -n "${RAY_NUM_CPUS:-}" ]] && RAY_NODE_ARGS+=("--num-cpus=$RAY_NUM_CPUS")
[[ -n "${RAY_NUM_GPUS:-}" ]] && RAY_NODE_ARGS+=("--num-gpus=$RAY_NUM_GPUS")
[[ -n "${RAY_OBJECT_STORE_MEMORY:-}" ]] && \
    RAY_NODE_ARGS+=("--object-store-memory=$RAY_OBJECT_STORE_MEMORY")
[[ -n "${RAY_TEMP_DIR:-}" ]] && RAY_NODE_ARGS+=("--temp-dir=$RAY_TEMP_DIR")
true
