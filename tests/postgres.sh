#!/usr/bin/env bash
# Runs a command with a throwaway PostgreSQL server on loopback, its URL in
# GATEWAY_TEST_POSTGRES (the suite then runs every store test against it):
#     tests/postgres.sh python -m pytest
# Installs Debian's postgresql package when it is missing (as root), runs the server as the
# `postgres` user (PostgreSQL refuses root), and stops it and removes its files on exit.
set -euo pipefail

bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$bin" ]; then
    "$(dirname "$0")/debian-install.sh" postgresql PostgreSQL
    bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
fi

owner=$(id -un)
run() { "$@"; }
if [ "$(id -u)" = 0 ]; then
    owner=postgres
    run() { runuser -u postgres -- "$@"; }
fi
data=$(mktemp -d /tmp/gateway-test-pg.XXXXXX)
chown "$owner" "$data"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
stop() {
    run "$bin/pg_ctl" -D "$data/db" -m fast stop > /dev/null 2>&1 || true
    rm -rf "$data"
}
trap stop EXIT

run "$bin/initdb" -D "$data/db" -A trust -U postgres > "$data/initdb.log"
# fsync off: a test server's data is thrown away (the durability tests kill gateways, not
# the machine).
run "$bin/pg_ctl" -D "$data/db" -l "$data/server.log" -w start -o \
    "-p $port -k $data -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=400" > /dev/null

export GATEWAY_TEST_POSTGRES="postgresql+psycopg://postgres@127.0.0.1:$port"
echo "+ PostgreSQL on 127.0.0.1:$port: $*"
"$@"
