#!/usr/bin/env bash
# Install brazecfg and run the whole test suite (the command CI runs through .ci/run).
# The PostgreSQL tests start their own server with PostgreSQL 15's initdb/pg_ctl; if the
# server binaries are missing and apt-get is available, they are installed first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 \
    && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15) \
    >/dev/null 2>&1 || echo "note: could not install postgresql-15; PostgreSQL tests will skip"
fi
exec .venv/bin/python -m pytest "$@"
