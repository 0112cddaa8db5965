#!/usr/bin/env bash
# CI smoke test of `pydb server --pg-bind` with PostgreSQL's own client:
# `psql -c "SELECT 1"` must answer, a script with a transaction, \timing and
# an error must print what PostgreSQL would, a password server must let the
# right password in (SCRAM-SHA-256) and keep the wrong one out, and SIGTERM
# must stop the server with exit status 0, and EXPLAIN [ANALYZE] must print
# a plan with estimates (and actual rows).
set -euo pipefail
cd "$(dirname "$0")/../.."

PORT=${PORT:-7432}
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

fail() { echo "pg smoke: FAIL: $*" >&2; exit 1; }

# Starts the server with extra flags and waits until psql connects.
start() {
    "$PYDB" server --dir "$WORK/db" --sync never --pg-only --pg-bind "127.0.0.1:$PORT" "$@" \
        2>"$WORK/server.log" &
    SERVER_PID=$!
    for _ in $(seq 100); do
        psql -h 127.0.0.1 -p "$PORT" -U smoke -d pydb -c 'SELECT 1' >/dev/null 2>&1 && return
        sleep 0.1
    done
}

stop() {
    kill -TERM "$SERVER_PID"
    local status=0
    wait "$SERVER_PID" || status=$?
    SERVER_PID=""
    [[ $status -eq 0 ]] || fail "server exited with $status after SIGTERM: $(cat "$WORK/server.log")"
}

pg() { psql -h 127.0.0.1 -p "$PORT" -U smoke -d pydb -X -q "$@"; }

start
[[ "$(pg -At -c 'SELECT 1')" == "1" ]] || fail "SELECT 1: $(cat "$WORK/server.log")"

out=$(pg -At -v ON_ERROR_STOP=0 2>&1 <<'SQL'
\timing on
CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT);
BEGIN;
INSERT INTO t VALUES (1, 'one'), (2, 'two');
ROLLBACK;
BEGIN;
INSERT INTO t VALUES (3, 'three');
COMMIT;
SELECT id, name FROM t ORDER BY id;
INSERT INTO t VALUES (3, 'again');
SELECT * FROM missing;
SQL
)
echo "$out"
grep -qx '3|three' <<<"$out" || fail "the committed row is missing"
if grep -q '|one' <<<"$out"; then fail "a rolled-back row is visible"; fi
grep -q '^Time: ' <<<"$out" || fail "\\timing printed no time"
grep -q 'ERROR: .*UNIQUE\|ERROR: .*unique\|ERROR: .*PRIMARY KEY' <<<"$out" || fail "no duplicate-key error"
grep -q 'ERROR: .*missing' <<<"$out" || fail "no undefined-table error"

# EXPLAIN prints the plan in PostgreSQL's format; EXPLAIN ANALYZE runs it.
plan=$(pg -c 'EXPLAIN SELECT name FROM t WHERE id = 3')
echo "$plan"
grep -q 'QUERY PLAN' <<<"$plan" || fail "EXPLAIN has no QUERY PLAN header"
grep -q 'Primary Key Lookup on t  (cost=' <<<"$plan" || fail "EXPLAIN printed no estimate"
plan=$(pg -At -c 'EXPLAIN ANALYZE SELECT name FROM t')
echo "$plan"
grep -q '^Seq Scan on t  (cost=.*(actual time=.* rows=1 loops=1)' <<<"$plan" ||
    fail "EXPLAIN ANALYZE printed no actual rows"
grep -q '^Execution Time: ' <<<"$plan" || fail "EXPLAIN ANALYZE printed no execution time"
stop

export PGPASSWORD=smoke-secret
start --requirepass smoke-secret
[[ "$(pg -At -c 'SELECT COUNT(*) FROM t')" == "1" ]] ||
    fail "the right password was refused: $(cat "$WORK/server.log")"
if PGPASSWORD=wrong pg -At -c 'SELECT 1' 2>/dev/null; then fail "a wrong password was accepted"; fi
stop
echo "pg smoke: OK"
