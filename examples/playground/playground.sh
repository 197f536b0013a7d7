#!/usr/bin/env bash
# The HTTP API by hand: the same steps as `make run`, with curl, against a
# running `nola serve --example-actors` (default http://127.0.0.1:9090), e.g.
# the one `make run` starts. See docs/http-api.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
S=${NOLA_SERVER:-http://127.0.0.1:9090}
AUTH=()
TOKEN=${NOLA_API_TOKEN:-${NOLA_TOKEN:-}}
if [ -n "$TOKEN" ]; then AUTH=(-H "Authorization: Bearer $TOKEN"); fi
run() { echo "\$ $*"; "$@"; echo; }

run curl -sS "${AUTH[@]}" -X PUT --data-binary @wasm/guests/c/counter.wasm "$S/v1/ns/playground/modules/counter-wasm"
for i in 1 2 3; do
	run curl -sS "${AUTH[@]}" -X POST "$S/v1/ns/playground/actors/test_utils_actor_1/invoke/inc?type=counter-wasm"
done
run curl -sS "${AUTH[@]}" -X POST -H 'Nola-Timeout-Ms: 2000' "$S/v1/ns/playground/actors/kv1/invoke/add?type=kvcounter" --data-binary 41
run curl -sS "${AUTH[@]}" "$S/v1/ns/playground/actors/kv1/kv?prefix="
run curl -sS "${AUTH[@]}" "$S/v1/ns/playground/actors"
# An error: JSON with a stable code.
run curl -sS "${AUTH[@]}" -X POST "$S/v1/ns/playground/actors/test_utils_actor_1/invoke/nope"
run curl -sS "${AUTH[@]}" "$S/v1/cluster"
