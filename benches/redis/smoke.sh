#!/usr/bin/env bash
# CI smoke test of `pydb server` with Redis's own tools: redis-cli must read
# back what it wrote, INFO and DBSIZE must answer, redis-benchmark must run
# without errors, redis-py 8 with its default settings (RESP3 through
# HELLO 3) must work (redis_py_smoke.py; redis-py is installed when
# missing), and SIGTERM must stop the server with exit status 0.
set -euo pipefail
cd "$(dirname "$0")/../.."

PORT=${PORT:-7390}
# The binary lives in pydb-cli. PYDB=path/to/pydb skips the build.
if [[ -z "${PYDB:-}" ]]; then
    cargo build --release -q -p pydb-cli
    PYDB=${CARGO_TARGET_DIR:-target}/release/pydb
fi

WORK=$(mktemp -d)
SERVER_PID=""
cleanup() {
    if [[ -n "$SERVER_PID" ]]; then kill -KILL "$SERVER_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

fail() { echo "smoke: FAIL: $*" >&2; exit 1; }

"$PYDB" server --dir "$WORK/db" --sync never --bind "127.0.0.1:$PORT" 2>"$WORK/server.log" &
SERVER_PID=$!
for _ in $(seq 100); do
    redis-cli -p "$PORT" ping >/dev/null 2>&1 && break
    sleep 0.1
done
[[ "$(redis-cli -p "$PORT" ping)" == "PONG" ]] || fail "server did not start: $(cat "$WORK/server.log")"

cli() { redis-cli -p "$PORT" "$@"; }
expect() {
    local want=$1; shift
    local got
    got=$(cli "$@")
    [[ "$got" == "$want" ]] || fail "redis-cli $*: expected '$want', got '$got'"
}

expect OK SET greeting "hello world"
expect "hello world" GET greeting
expect OK SET counter 41
expect 42 INCR counter
expect 2 DBSIZE
expect "" GET missing
cli INFO | grep -q '^# Keyspace' || fail "INFO has no Keyspace section"
cli INFO keyspace | grep -q '^db0:keys=2,' || fail "INFO keyspace does not count 2 keys"
cli INFO server | grep -q "^tcp_port:$PORT" || fail "INFO server does not show the port"

out=$(redis-benchmark -q -n 10000 -t set,get -p "$PORT" 2>&1) || fail "redis-benchmark failed: $out"
echo "$out" | tr '\r' '\n' | grep 'requests per second' || fail "redis-benchmark printed no result: $out"
if echo "$out" | grep -qi 'error\|warning'; then fail "redis-benchmark reported: $out"; fi

if ! python3 -c 'import redis' 2>/dev/null; then
    python3 -m pip install -q redis 2>/dev/null ||
        python3 -m pip install -q --break-system-packages redis 2>/dev/null ||
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pip &&
            python3 -m pip install -q --break-system-packages redis; } ||
        fail "cannot install redis-py"
fi
python3 benches/redis/redis_py_smoke.py "$PORT" || fail "redis-py smoke test"

kill -TERM "$SERVER_PID"
status=0
wait "$SERVER_PID" || status=$?
SERVER_PID=""
[[ $status -eq 0 ]] || fail "server exited with $status after SIGTERM: $(cat "$WORK/server.log")"
echo "smoke: OK"
