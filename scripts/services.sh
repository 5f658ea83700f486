#!/usr/bin/env bash
# Make sure the servers the test suites talk to answer on 127.0.0.1, starting any that is
# down (and installing it from Debian's packages if its binary is missing).
# PostgreSQL 5432 (trust auth, database `test`), Redis 6379, RabbitMQ 5672, NATS 4222.
set -uo pipefail

need_root() { [ "$(id -u)" = 0 ] || { echo "services.sh: starting $1 needs root" >&2; return 1; }; }
apt_updated=0
install() {
    need_root "$1" || return 1
    if [ "$apt_updated" = 0 ]; then apt-get update -qq && apt_updated=1; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
wait_for() {  # name, check command...
    local name=$1; shift
    for _ in $(seq 1 60); do "$@" >/dev/null 2>&1 && { echo "services.sh: $name is up"; return 0; }; sleep 1; done
    echo "services.sh: $name did not come up" >&2; return 1
}

postgres() {
    pg_isready -h 127.0.0.1 -q 2>/dev/null && { echo "services.sh: postgresql is up"; return 0; }
    command -v pg_ctlcluster >/dev/null || install postgresql || return 1
    need_root postgresql || return 1
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start
    wait_for postgresql pg_isready -h 127.0.0.1 -q
}

redis() {
    redis-cli -h 127.0.0.1 ping 2>/dev/null | grep -q PONG && { echo "services.sh: redis is up"; return 0; }
    command -v redis-server >/dev/null || install redis-server || return 1
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
        --dir /var/lib/redis --logfile /var/log/redis/ci.log
    wait_for redis sh -c 'redis-cli -h 127.0.0.1 ping | grep -q PONG'
}

rabbitmq() {
    command -v rabbitmq-diagnostics >/dev/null || install rabbitmq-server || return 1
    rabbitmq-diagnostics -q ping >/dev/null 2>&1 && { echo "services.sh: rabbitmq is up"; return 0; }
    rabbitmq-server -detached
    wait_for rabbitmq rabbitmq-diagnostics -q ping
}

port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

nats() {
    port_open 4222 && { echo "services.sh: nats is up"; return 0; }
    command -v nats-server >/dev/null || install nats-server || return 1
    mkdir -p /var/lib/nats-server
    start-stop-daemon --start --oknodo --background --exec "$(command -v nats-server)" -- \
        -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
    wait_for nats port_open 4222
}

status=0
for service in postgres redis rabbitmq nats; do
    "$service" || status=1
done
exit $status
