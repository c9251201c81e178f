#!/bin/sh
# The servers the tests talk to: PostgreSQL and Redis on this machine, started here when
# DATABASE_URL and REDIS_URL point at 127.0.0.1 and nothing answers there yet. Servers
# elsewhere are the caller's to run.
set -eu

case "${DATABASE_URL:-}" in
*@127.0.0.1:5432/*)
    if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
        echo "Starting PostgreSQL"
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
        for _ in $(seq 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
    fi
    ;;
esac

case "${REDIS_URL:-}" in
redis://127.0.0.1:6379*)
    if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
        echo "Starting Redis"
        mkdir -p /var/lib/redis /var/log/redis
        redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
            --appendonly no --dir /var/lib/redis --logfile /var/log/redis/tests.log
        for _ in $(seq 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 1; done
    fi
    ;;
esac
