#!/usr/bin/env bash
# make run: start `nola serve` on an embedded etcd, upload the counter WASM
# module, create two actors, call them, and leave the server running.
set -euo pipefail
cd "$(dirname "$0")/.."

NOLA=./bin/nola
ADDR=${NOLA_LISTEN:-127.0.0.1:9090}
DATA=${NOLA_DATA:-./nola-data}
export NOLA_SERVER="http://$ADDR"

mkdir -p "$DATA"
rm -f "$DATA/ready"
echo "== starting nola serve on $ADDR (embedded etcd in $DATA/etcd)"
"$NOLA" serve --listen "$ADDR" --data-dir "$DATA" --ready-file "$DATA/ready" --log-level warn --example-actors &
pid=$!
cleanup() {
	if kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid"
		wait "$pid" || true
	fi
}
trap cleanup EXIT
# Ctrl-C reaches nola too, which shuts down gracefully; just wait for it.
trap 'echo; echo "== stopping nola"; wait "$pid" || true; trap - EXIT; exit 0' INT TERM

for _ in $(seq 300); do
	[ -s "$DATA/ready" ] && break
	if ! kill -0 "$pid" 2>/dev/null; then
		echo "nola serve exited; is $ADDR in use? (set NOLA_LISTEN=host:port)" >&2
		exit 1
	fi
	sleep 0.1
done
[ -s "$DATA/ready" ] || { echo "nola serve not ready after 30s" >&2; exit 1; }

echo "== uploading the counter WASM module (C guest, wasm/guests/c/counter.c)"
"$NOLA" module put demo counter-wasm wasm/guests/c/counter.wasm

echo "== calling two counter actors (in memory: each starts at 0 when activated)"
for actor in alice bob; do
	for _ in 1 2 3; do
		printf '  %-5s inc -> %s\n' "$actor" "$("$NOLA" invoke --type counter-wasm demo "$actor" inc)"
	done
done

echo "== a durable counter (Go actor kvcounter, state in the actor's KV)"
printf '  carol inc -> %s\n' "$("$NOLA" invoke --type kvcounter demo carol inc)"
printf '  carol KV  -> n = %s\n' "$("$NOLA" kv get demo carol n)"

echo "== the cluster"
"$NOLA" cluster status

echo
echo "nola is running at $NOLA_SERVER (Ctrl-C stops it). Try: ./bin/nola invoke --server $NOLA_SERVER demo alice inc"
wait "$pid"
