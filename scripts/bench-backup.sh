#!/usr/bin/env bash
# Backup throughput on a real Debian 12 host (an e2e host): a MariaDB schema of SIZE_MB (default 1024) of
# random data, backed up and restored by the helper BrokeForge's backup jobs run
# (crates/packages/src/services/backup/backup.sh: mysqldump streamed into restic, restic dump streamed into
# mysql), against the usual `mysqldump | gzip > file` and `gunzip | mysql` measured in the same run on the same
# host. Prints MB/s for each and the ratios. Needs root (scripts/e2e-hosts.sh setup).
#
#   scripts/bench-backup.sh [SIZE_MB]
set -euo pipefail
cd "$(dirname "$0")/.."
size_mb=${1:-1024}
name=bfbench31
work=$(mktemp -d)
# At its peak the host holds the schema twice (the original and one restored copy, ~1.5x the data each with
# InnoDB's overhead), the gzip file and the restic repository: about 5x SIZE_MB, plus ~1 GB for the host
# and MariaDB. A CI machine's disk varies (a run failed mid-restore with the disk full), so the size shrinks
# to what fits and says so rather than failing on space the benchmark does not control.
runs=${BROKEFORGE_E2E_DIR:-/tmp/brokeforge-e2e}
mkdir -p "$runs"
free_mb=$(df -Pm "$runs" | awk 'NR == 2 {print $4}')
fits=$(( (free_mb - 1536) / 5 ))
if [ "$fits" -lt "$size_mb" ]; then
  if [ "$fits" -lt 64 ]; then
    echo "bench-backup: only $free_mb MB free under $runs; even a 64 MB schema needs $((64 * 5 + 1536)) MB" >&2
    exit 1
  fi
  echo "bench-backup: $free_mb MB free under $runs, so the schema is $fits MB instead of $size_mb MB" >&2
  size_mb=$fits
fi
cleanup() { scripts/e2e-hosts.sh stop "$name" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
ssh-keygen -q -t ed25519 -N '' -f "$work/key"
read -r ip _ < <(scripts/e2e-hosts.sh start "$name" 31 "$work/key")
on() { ssh -q -i "$work/key" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes "root@$ip" "$@"; }

on "DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mariadb-server mariadb-client restic gzip >/dev/null"
on 'install -d -m 700 /usr/local/lib/brokeforge && cat > /usr/local/lib/brokeforge/backup.sh' < crates/packages/src/services/backup/backup.sh
# Rows of ~1 KiB of random hex (half of it compressible, like real text columns), in batches of 100,000.
rows=$((size_mb * 1024))
on "mysql -e 'CREATE DATABASE bench; CREATE TABLE bench.t (id INT PRIMARY KEY, a VARCHAR(600), b VARCHAR(600))'"
done_rows=0
while [ "$done_rows" -lt "$rows" ]; do
  n=$(( rows - done_rows < 100000 ? rows - done_rows : 100000 ))
  on "mysql bench -e 'INSERT INTO t SELECT seq, HEX(RANDOM_BYTES(256)), HEX(RANDOM_BYTES(256)) FROM seq_$((done_rows + 1))_to_$((done_rows + n))'"
  done_rows=$((done_rows + n))
done
dump_bytes=$(on 'mysqldump --single-transaction bench | wc -c')
mb=$(awk -v b="$dump_bytes" 'BEGIN {printf "%.1f", b / 1048576}')

# A failing step's stderr is kept and shown cut to short lines: the mysql client echoes the whole failed
# statement (megabytes of one INSERT) before its error.
timed() {
  local t0 t1
  t0=$(date +%s.%N)
  if ! on "$1" >/dev/null 2>"$work/err"; then
    echo "bench-backup: this step failed: $1" >&2
    cut -c1-200 "$work/err" | grep -v '^(' | tail -20 >&2
    on 'df -h / | tail -1' >&2 || true
    return 1
  fi
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", b - a}'
}
helper='BF_REPO=/var/backups/bench BF_KIND=local bash /usr/local/lib/brokeforge/backup.sh'
secrets="printf 'bench-password\\n\\n\\n'"
t_gzip=$(timed 'mysqldump --single-transaction --routines --events --triggers bench | gzip > /root/bench.sql.gz')
t_bf=$(timed "$secrets | $helper backup mariadb bench")
snap=$(on "$secrets | $helper snapshots" | grep -o '"id":"[0-9a-f]*"' | head -1 | cut -d'"' -f4)
on "mysql -e 'CREATE DATABASE plain'"
t_gunzip=$(timed 'gunzip < /root/bench.sql.gz | mysql plain')
count_plain=$(on "mysql -N -e 'SELECT COUNT(*) FROM plain.t'")
# One restored copy at a time keeps the peak at two copies of the schema.
on "mysql -e 'DROP DATABASE plain' && rm /root/bench.sql.gz"
t_bf_restore=$(timed "$secrets | $helper restore mariadb bench $snap viarestic new")
count_restic=$(on "mysql -N -e 'SELECT COUNT(*) FROM viarestic.t'")
[ "$count_plain" = "$rows" ] && [ "$count_restic" = "$rows" ] || { echo "restored rows differ: $count_plain / $count_restic of $rows" >&2; exit 1; }

rate() { awk -v m="$mb" -v t="$1" 'BEGIN {printf "%.1f", m / t}'; }
echo "backup benchmark: MariaDB schema, $rows rows, dump $mb MB, on an e2e host"
echo "  backup   mysqldump | gzip > file        ${t_gzip} s  $(rate "$t_gzip") MB/s"
echo "  backup   mysqldump | restic (BrokeForge) ${t_bf} s  $(rate "$t_bf") MB/s  ratio $(awk -v a="$t_bf" -v b="$t_gzip" 'BEGIN {printf "%.2f", a / b}') of the baseline's time"
echo "  restore  gunzip | mysql                 ${t_gunzip} s  $(rate "$t_gunzip") MB/s"
echo "  restore  restic dump | mysql (BrokeForge) ${t_bf_restore} s  $(rate "$t_bf_restore") MB/s  ratio $(awk -v a="$t_bf_restore" -v b="$t_gunzip" 'BEGIN {printf "%.2f", a / b}') of the baseline's time"
