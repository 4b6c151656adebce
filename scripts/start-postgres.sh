#!/usr/bin/env bash
# Install (Debian) and start a local PostgreSQL server for the storage tests,
# create a throw-away database, and print its URL. Run as root.
#   export BITSMITH_TEST_POSTGRES_URL=$(bash scripts/start-postgres.sh)
set -euo pipefail
if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
version=$(ls /usr/lib/postgresql | sort -n | tail -n 1)
pg_lsclusters -h | grep -q "^$version main" || pg_createcluster "$version" main >/dev/null
pg_ctlcluster "$version" main start >/dev/null 2>&1 || true
for _ in $(seq 1 30); do
  su postgres -c "psql -qtAc 'select 1'" >/dev/null 2>&1 && break
  sleep 0.5
done
su postgres -c "psql -qtAc \"DROP DATABASE IF EXISTS bitsmith_test\"" >/dev/null 2>&1
su postgres -c "psql -qtAc \"DO \\\$\\\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'bitsmith') THEN CREATE ROLE bitsmith LOGIN PASSWORD 'bitsmith'; END IF; END \\\$\\\$\"" >/dev/null
su postgres -c "psql -qtAc \"CREATE DATABASE bitsmith_test OWNER bitsmith\"" >/dev/null
port=$(pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" {print $3}')
echo "postgresql://bitsmith:bitsmith@127.0.0.1:${port}/bitsmith_test"
