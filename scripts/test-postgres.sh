#!/usr/bin/env bash
# Start a local PostgreSQL for the test suite and print the URL to export as BROKEFORGE_TEST_POSTGRES_URL.
# Needs root (uses the Debian cluster tools). Safe to run twice.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
# Only the URL goes to stdout (callers capture it); chatter from the cluster tools
# ("Removed stale pid file.") goes to stderr.
exec 3>&1 1>&2
if ! command -v pg_lsclusters >/dev/null 2>&1; then
  apt-get install -y -qq postgresql >/dev/null
fi
ver=$(pg_lsclusters -h | awk 'NR==1{print $1}')
if [ -z "$ver" ]; then
  ver=$(ls /usr/lib/postgresql | sort -n | tail -1)
  pg_createcluster "$ver" main >/dev/null
fi
cluster=$(pg_lsclusters -h | awk 'NR==1{print $2}')
port=$(pg_lsclusters -h | awk 'NR==1{print $3}')
if ! pg_lsclusters -h | awk 'NR==1{print $4}' | grep -q online; then
  # The server must not inherit fd 3 (the caller's captured stdout), or `$(...)` never returns.
  pg_ctlcluster "$ver" "$cluster" start 3>&-
fi
for _ in $(seq 1 30); do
  pg_isready -q -h 127.0.0.1 -p "$port" && break
  sleep 1
done
pg_isready -q -h 127.0.0.1 -p "$port" || { echo "PostgreSQL $ver/$cluster did not accept connections on port $port within 30 s" >&2; exit 1; }
su postgres -c "psql -q -p $port -v ON_ERROR_STOP=1" >/dev/null <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'brokeforge') THEN
    CREATE ROLE brokeforge LOGIN PASSWORD 'brokeforge';
  END IF;
END \$\$;
-- The self-backup tests restore into databases of their own.
ALTER ROLE brokeforge CREATEDB;
SQL
if ! su postgres -c "psql -p $port -tAc \"SELECT 1 FROM pg_database WHERE datname='brokeforge_test'\"" | grep -q 1; then
  su postgres -c "createdb -p $port -O brokeforge brokeforge_test"
fi
echo "postgres://brokeforge:brokeforge@127.0.0.1:$port/brokeforge_test" >&3
