#!/usr/bin/env bash
# Make this release's upgrade fixture (a SQLite file, a PostgreSQL dump and their master key) in
# crates/brokeforge/tests/fixtures/upgrade/VERSION/, for later releases' upgrade tests. Needs PostgreSQL
# (scripts/test-postgres.sh starts one). Commit the directory it prints.
#
#   scripts/make-upgrade-fixture.sh [VERSION]     (default: the workspace version)
set -euo pipefail
cd "$(dirname "$0")/.."
version=${1:-$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)}
out=$PWD/crates/brokeforge/tests/fixtures/upgrade/$version
[ ! -e "$out" ] || { echo "$out exists: a release's fixture is never remade" >&2; exit 1; }
BROKEFORGE_TEST_POSTGRES_URL=${BROKEFORGE_TEST_POSTGRES_URL:-$(scripts/test-postgres.sh)} \
BROKEFORGE_WRITE_UPGRADE_FIXTURE=$out \
  cargo test -q -p brokeforge --test cli -- --exact upgrade::this_release_can_make_its_upgrade_fixture >&2
echo "$out"
