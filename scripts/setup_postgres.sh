#!/usr/bin/env bash
# Installs Debian's PostgreSQL server binaries (initdb, pg_ctl, postgres) for the edge-network tests,
# only when they are missing; idempotent, safe to run before every `make test`.
# The tests never use a system cluster: tests/net/conftest.py starts a throwaway cluster with initdb +
# pg_ctl in a temporary folder on a loopback port (as the `postgres` user when run as root) and removes it.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

find_initdb() { ls -1 /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1; }

if [ -z "$(find_initdb)" ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup_postgres: initdb not found; installing Debian's postgresql with apt-get"
  $SUDO apt-get update
  $SUDO apt-get install -y postgresql
else
  echo "setup_postgres: found $(find_initdb); nothing to install"
fi
INITDB=$(find_initdb)
[ -n "$INITDB" ] || { echo "setup_postgres: initdb still missing after install" >&2; exit 1; }
if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
  echo "setup_postgres: running as root but there is no 'postgres' user to run the test server as" >&2
  exit 1
fi
echo "postgres test set-up ok: $("$INITDB" --version)"
