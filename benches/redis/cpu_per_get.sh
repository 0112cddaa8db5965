#!/usr/bin/env bash
# Server CPU time (user+sys, from /proc) per pipelined GET: a measure that
# a loaded machine disturbs less than requests per second. Alternate two
# binaries to compare them:
#
#   for i in 1 2 3; do
#       benches/redis/cpu_per_get.sh /tmp/pydb-before never
#       benches/redis/cpu_per_get.sh target/release/pydb never
#   done
#
# Prints "cpu_us_per_get X rps Y" (redis-benchmark's figure for the run).
set -u
bin=$1
sync=${2:-never}
port=${PORT:-7391}
n=${N:-400000}
dir=$(mktemp -d)
RUST_LOG=warn "$bin" server --dir "$dir" --sync "$sync" --bind "127.0.0.1:$port" >/dev/null 2>&1 &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
redis-benchmark -p "$port" -t set -n 20000 -c 50 -q >/dev/null 2>&1
cpu() { awk '{ print $14 + $15 }' "/proc/$pid/stat"; }
before=$(cpu)
rps=$(redis-benchmark -p "$port" -t get -n "$n" -c 50 -P 16 -q 2>/dev/null |
    tr '\r' '\n' | awk -F: '/requests per second/ { split($2, a, " "); print a[1] }' | tail -1)
after=$(cpu)
awk -v a="$before" -v b="$after" -v n="$n" -v t="$(getconf CLK_TCK)" -v rps="$rps" \
    'BEGIN { printf "cpu_us_per_get %.3f rps %s\n", (b - a) / t * 1e6 / n, rps }'
