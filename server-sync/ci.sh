#!/usr/bin/env bash
# CI steps for sona-sync, called from .ci/run before `cargo test --workspace`:
# make sure PostgreSQL and Redis are up on 127.0.0.1 (sona-sync's tests run
# against the real services). `bash server-sync/ci.sh test` also runs the
# sona-sync and federated tests on their own. No protoc is needed.
set -euo pipefail
cd "$(dirname "$0")/.."

pg_up() { pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; }
redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }

if ! pg_up; then
  echo "==> starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
  for _ in $(seq 1 30); do pg_up && break; sleep 1; done
fi
if ! redis_up; then
  echo "==> starting Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  for _ in $(seq 1 30); do redis_up && break; sleep 1; done
fi
pg_up || { echo "PostgreSQL is not reachable on 127.0.0.1:5432" >&2; exit 1; }
redis_up || { echo "Redis is not reachable on 127.0.0.1:6379" >&2; exit 1; }
psql -h 127.0.0.1 -U postgres -d test -qtAc 'select 1' >/dev/null

[ "${1:-}" = test ] || exit 0
echo "==> cargo test -p sona-sync (SQLite, PostgreSQL, Redis, SIGKILL durability, end to end, gRPC)"
cargo test -p sona-sync --locked
echo "==> cargo test -p sona-core federated"
cargo test -p sona-core --locked --lib federated
