#!/usr/bin/env bash
# Load benchmark of the sync server on the embedded SQLite store:
# builds release, starts the server on a fresh temp SQLite file with rounds
# off, mints an admin token, runs `sona-sync bench-load`, prints updates/s,
# p50, p99 and the CPU time the server and the load generator spent per
# acknowledged update, then stops the server.
#
#   bash server-sync/bench.sh [SECONDS] [CONCURRENCY]      (defaults 10, 32)
#
# Env: SONA_SQLITE_SYNCHRONOUS (FULL default), BENCH_PORT (18787),
# BENCH_NO_BUILD=1 to skip the build, BENCH_BIN to use another binary.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
CONC=${2:-32}
PORT=${BENCH_PORT:-18787}
if [[ -z "${BENCH_NO_BUILD:-}" && -z "${BENCH_BIN:-}" ]]; then
  cargo build --release --locked -p sona-sync >&2
fi
BIN=${BENCH_BIN:-$PWD/target/release/sona-sync}
DIR=$(mktemp -d /tmp/sona-bench.XXXXXX)
DB="sqlite://$DIR/bench.db"
SERVER_PID=
cleanup() {
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$DIR"
}
trap cleanup EXIT

# user+sys CPU seconds of a process from /proc (clock ticks → s).
cpu_secs() {
  awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"
}

ADMIN=$("$BIN" issue-token --user bench-ops --admin --store-url "$DB")
SONA_BANK_MAINTAIN_INTERVAL_SECS=0 SONA_BANK_AGGREGATE_INTERVAL_SECS=0 \
  "$BIN" --store-url "$DB" --listen "127.0.0.1:$PORT" --round-interval-secs 0 \
  >"$DIR/server.out" 2>"$DIR/server.log" &
SERVER_PID=$!
for _ in $(seq 1 100); do
  grep -q "listening on" "$DIR/server.out" 2>/dev/null && break
  sleep 0.1
done
grep -q "listening on" "$DIR/server.out" || { cat "$DIR/server.log" >&2; exit 1; }

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
S0=$(cpu_secs "$SERVER_PID")
/usr/bin/time -f "%U %S" -o "$DIR/client.time" \
  "$BIN" bench-load --url "http://127.0.0.1:$PORT" --seconds "$SECS" \
  --concurrency "$CONC" --admin-token "$ADMIN" | tee "$DIR/bench.out"
S1=$(cpu_secs "$SERVER_PID")
echo "load average after:  $(cut -d' ' -f1-3 /proc/loadavg)"
N=$(sed -n 's/^bench-load: \([0-9]*\) acknowledged.*/\1/p' "$DIR/bench.out")
read -r CU CS <"$DIR/client.time"
awk -v s0="$S0" -v s1="$S1" -v cu="$CU" -v cs="$CS" -v n="$N" 'BEGIN {
  if (n == 0) { print "no acknowledged updates"; exit 1 }
  printf "CPU per acknowledged update: server %.0f us, load generator %.0f us (user+sys; the generator figure includes its setup)\n",
    (s1 - s0) * 1e6 / n, (cu + cs) * 1e6 / n
}'
