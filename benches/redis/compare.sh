#!/usr/bin/env bash
# Compares pydb's server with redis-server on this machine, side by side in
# one run, with redis-benchmark (see README.md in this folder).
#
#   benches/redis/compare.sh            # 200000 requests, 50 clients
#   N=50000 benches/redis/compare.sh    # a quicker run
#   BASELINE=/tmp/pydb-old benches/redis/compare.sh
#                                       # also an older pydb binary, in
#                                       # the same run (a before/after)
#
# Two pairings, each measured without and with a pipeline of 16:
#   redis-server --save '' --appendonly no           vs  pydb --sync never
#   redis-server --appendonly yes --appendfsync always  vs  pydb --sync always
# Prints one table: requests per second of each, and pydb / redis.
set -euo pipefail
cd "$(dirname "$0")/../.."

N=${N:-200000}
CLIENTS=${CLIENTS:-50}
TESTS=${TESTS:-set,get}
REDIS_PORT=${REDIS_PORT:-7379}
PYDB_PORT=${PYDB_PORT:-7380}

for tool in redis-server redis-benchmark redis-cli; do
    command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install redis-server redis-tools)" >&2; exit 1; }
done

cargo build --release -q -p pydb-cli
PYDB=${CARGO_TARGET_DIR:-target}/release/pydb
BASELINE=${BASELINE:-}

WORK=$(mktemp -d)
SERVER_PID=""
stop_server() {
    if [[ -n "$SERVER_PID" ]]; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=""
    fi
}
trap 'stop_server; rm -rf "$WORK"' EXIT

wait_port() {
    for _ in $(seq 100); do
        redis-cli -p "$1" ping >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "server on port $1 did not start" >&2
    return 1
}

# Prints "test rps" lines for one redis-benchmark run.
bench() {
    local port=$1 pipeline=$2
    redis-benchmark -p "$port" -t "$TESTS" -n "$N" -c "$CLIENTS" -P "$pipeline" -q 2>/dev/null |
        tr '\r' '\n' | awk -F: '/requests per second/ { split($2, a, " "); print $1, a[1] }'
}

declare -A RESULT
# run_pair LABEL PYDB_SYNC REDIS_ARGS...
run_pair() {
    local label=$1 pydb_sync=$2
    shift 2
    rm -rf "$WORK/redis" "$WORK/pydb" && mkdir -p "$WORK/redis"
    redis-server --port "$REDIS_PORT" --dir "$WORK/redis" "$@" >/dev/null &
    SERVER_PID=$!
    wait_port "$REDIS_PORT"
    for p in 1 16; do
        while read -r test rps; do RESULT["$label,$p,$test,redis"]=$rps; done < <(bench "$REDIS_PORT" "$p")
    done
    stop_server
    local side binary
    for side in pydb ${BASELINE:+baseline}; do
        binary=$PYDB
        [[ $side == baseline ]] && binary=$BASELINE
        rm -rf "$WORK/pydb"
        RUST_LOG=warn "$binary" server --dir "$WORK/pydb" --sync "$pydb_sync" --bind "127.0.0.1:$PYDB_PORT" &
        SERVER_PID=$!
        wait_port "$PYDB_PORT"
        for p in 1 16; do
            while read -r test rps; do RESULT["$label,$p,$test,$side"]=$rps; done < <(bench "$PYDB_PORT" "$p")
        done
        # Group commit at work: fsyncs per acknowledged write (new binaries).
        RESULT["$label,fsyncs,$side"]=$(redis-cli -p "$PYDB_PORT" info persistence |
            tr -d '\r' | awk -F: '$1 == "fsyncs_per_write" { print $2 }')
        stop_server
    done
}

run_pair "no fsync" never --save '' --appendonly no
run_pair "fsync always" always --save '' --appendonly yes --appendfsync always

ratio() { awk -v r="$1" -v d="$2" 'BEGIN { if (r > 0) printf "%.2f", d / r; else print "-" }'; }
printf '%-14s %-4s %-4s %14s %14s %8s' "durability" "-P" "test" "redis rps" "pydb rps" "ratio"
[[ -n $BASELINE ]] && printf ' %14s %8s' "baseline rps" "ratio"
printf '\n'
for label in "no fsync" "fsync always"; do
    for p in 1 16; do
        for test in SET GET; do
            r=${RESULT["$label,$p,$test,redis"]:-0}
            d=${RESULT["$label,$p,$test,pydb"]:-0}
            printf '%-14s %-4s %-4s %14s %14s %8s' "$label" "$p" "$test" "$r" "$d" "$(ratio "$r" "$d")"
            if [[ -n $BASELINE ]]; then
                b=${RESULT["$label,$p,$test,baseline"]:-0}
                printf ' %14s %8s' "$b" "$(ratio "$r" "$b")"
            fi
            printf '\n'
        done
    done
done
for label in "no fsync" "fsync always"; do
    printf 'fsyncs per acknowledged write, %s: pydb %s' "$label" "${RESULT["$label,fsyncs,pydb"]:--}"
    [[ -n $BASELINE ]] && printf ', baseline %s' "${RESULT["$label,fsyncs,baseline"]:--}"
    printf '\n'
done
