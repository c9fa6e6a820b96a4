#!/usr/bin/env bash
# A Ray worker node joining the head, in the foreground: the ray-worker containers run it, and
# so does tests/test_stack.py on 127.0.0.1.
#   RAY_HEAD_ADDRESS  the head's GCS address, HOST:PORT (required; compose: ray-head:6379)
# and the variables listed in ray-common.sh. Extra arguments go to `ray start` unchanged.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/ray-common.sh"
: "${RAY_HEAD_ADDRESS:?set RAY_HEAD_ADDRESS to the GCS address of the head, e.g. ray-head:6379}"
exec ray start --address="$RAY_HEAD_ADDRESS" "${RAY_NODE_ARGS[@]}" "$@"
