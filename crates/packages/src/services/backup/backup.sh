#!/bin/bash
# BrokeForge's backup helper, written by BrokeForge before each backup job (edits are overwritten). It runs
# restic as root. Secrets arrive on stdin, one per line, never on the command line: the repository password,
# then the storage's secret (S3 secret key, or the SFTP private key in base64). Everything else comes from
# BF_* variables: BF_REPO (restic repository), BF_KIND (local, s3, sftp), BF_S3_KEY_ID, BF_S3_REGION,
# BF_S3_PATH_STYLE, BF_SFTP_PORT, BF_SFTP_KNOWN_HOSTS, BF_SFTP_FINGERPRINT.
#
#   backup.sh backup ENGINE SCHEMA     dump SCHEMA into a new snapshot, print restic's summary
#   backup.sh forget KEEP-ARGS...      apply retention (restic forget ... --prune)
#   backup.sh snapshots                the repository's snapshots (JSON)
#   backup.sh restore ENGINE SCHEMA SNAPSHOT TARGET new|same
#   backup.sh verify ENGINE SCHEMA SNAPSHOT SCRATCH
#                                      restore into SCRATCH, print `rows TABLE COUNT` of its largest tables,
#                                      drop SCRATCH
set -euo pipefail
umask 077
IFS= read -r RESTIC_PASSWORD || true
IFS= read -r storage_secret || true
export RESTIC_PASSWORD RESTIC_REPOSITORY="$BF_REPO"
[ -n "$RESTIC_PASSWORD" ] || { echo "no repository password on stdin" >&2; exit 2; }
export RESTIC_CACHE_DIR=/root/.cache/brokeforge-restic

work=$(mktemp -d /tmp/brokeforge-backup.XXXXXX)
cleanup() { rm -rf "$work"; }
trap cleanup EXIT
opts=()
case "$BF_KIND" in
  local) ;;
  s3)
    export AWS_ACCESS_KEY_ID="$BF_S3_KEY_ID" AWS_SECRET_ACCESS_KEY="$storage_secret"
    [ -z "${BF_S3_REGION:-}" ] || opts+=(-o "s3.region=$BF_S3_REGION")
    [ "${BF_S3_PATH_STYLE:-0}" != 1 ] || opts+=(-o s3.bucket-lookup=path)
    ;;
  sftp)
    printf '%s' "$storage_secret" | base64 -d > "$work/key"
    host=${BF_REPO#sftp:}; host=${host%%:*}; addr=${host#*@}
    if [ -n "${BF_SFTP_KNOWN_HOSTS:-}" ]; then
      printf '%s\n' "$BF_SFTP_KNOWN_HOSTS" > "$work/known_hosts"
    else
      # First use: learn the SFTP server's key here, check it against the fingerprint the user gave (if
      # any), and report it so BrokeForge pins it for every later run.
      ssh-keyscan -T 15 -t ed25519 -p "$BF_SFTP_PORT" "$addr" 2>/dev/null > "$work/known_hosts" || true
      [ -s "$work/known_hosts" ] || { echo "the SFTP server $addr:$BF_SFTP_PORT did not answer (no host key)" >&2; exit 1; }
      if [ -n "${BF_SFTP_FINGERPRINT:-}" ] && ! ssh-keygen -lf "$work/known_hosts" | grep -qF "$BF_SFTP_FINGERPRINT"; then
        echo "the SFTP server's host key is not the one given ($BF_SFTP_FINGERPRINT): $(ssh-keygen -lf "$work/known_hosts")" >&2
        exit 1
      fi
      echo "known-host $(head -n1 "$work/known_hosts")"
    fi
    opts+=(-o "sftp.command=ssh -i $work/key -p $BF_SFTP_PORT -o UserKnownHostsFile=$work/known_hosts -o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout=20 $host -s sftp")
    ;;
  *) echo "unknown storage kind $BF_KIND" >&2; exit 2 ;;
esac
r() { restic "${opts[@]}" --no-cache "$@"; }

# Open the repository, creating it on first use. A wrong password or an unreachable storage fails here
# with restic's own words.
open_repository() {
  if ! r cat config > /dev/null 2> "$work/open.err"; then
    if ! r init > /dev/null 2> "$work/init.err"; then
      echo "cannot open or create the repository $BF_REPO:" >&2
      cat "$work/open.err" "$work/init.err" >&2
      exit 1
    fi
    echo "created the repository $BF_REPO"
  fi
}

sql_ident() { printf '%s' "$1" | sed 's/`/``/g'; }
file_of() { case "$1" in postgresql) echo "/$2.dump" ;; *) echo "/$2.sql" ;; esac; }

dump() {
  case "$1" in
    mariadb|mysql) mysqldump --protocol=socket -u root --single-transaction --routines --events --triggers "$2" ;;
    postgresql) cd / && runuser -u postgres -- pg_dump -Fc -- "$2" ;;
    *) echo "cannot back up engine $1" >&2; return 2 ;;
  esac
}

create_schema() {
  case "$1" in
    mariadb|mysql) mysql --protocol=socket -u root -e "CREATE DATABASE \`$(sql_ident "$2")\`" ;;
    postgresql) (cd / && runuser -u postgres -- createdb -- "$2") ;;
  esac
}

drop_schema() {
  case "$1" in
    mariadb|mysql) mysql --protocol=socket -u root -e "DROP DATABASE IF EXISTS \`$(sql_ident "$2")\`" ;;
    postgresql) (cd / && runuser -u postgres -- dropdb --if-exists -- "$2") ;;
  esac
}

# Load snapshot $3 of schema $2 into schema $4 (which exists).
load() {
  local engine=$1 schema=$2 snapshot=$3 target=$4
  case "$engine" in
    mariadb|mysql)
      # The dump does not name its schema (no --databases): it loads into whichever it is given.
      r dump "$snapshot" "$(file_of "$engine" "$schema")" | mysql --protocol=socket -u root --database="$target"
      ;;
    postgresql)
      r dump "$snapshot" "$(file_of "$engine" "$schema")" \
        | (cd / && runuser -u postgres -- pg_restore --clean --if-exists --single-transaction --exit-on-error -d "$target")
      ;;
  esac
}

action=${1:-}; shift || true
case "$action" in
  backup)
    engine=$1 schema=$2
    open_repository
    set +e
    summary=$(set -o pipefail; dump "$engine" "$schema" | r backup --stdin --stdin-filename "$(file_of "$engine" "$schema")" --host brokeforge --json -q)
    rc=$?
    set -e
    if [ $rc -ne 0 ]; then
      # restic may have saved what the dump wrote before it failed: that snapshot must not count as good.
      id=$(printf '%s' "$summary" | sed -n 's/.*"snapshot_id":"\([0-9a-f]*\)".*/\1/p' | tail -n1)
      if [ -n "$id" ]; then r forget "$id" > /dev/null 2>&1 || true; fi
      echo "the backup failed (exit $rc): nothing from this run was kept; earlier snapshots are untouched" >&2
      exit 1
    fi
    printf '%s\n' "$summary" | grep '"message_type":"summary"'
    ;;
  forget)
    open_repository
    r forget "$@" --prune -q
    ;;
  snapshots)
    r snapshots --json -q
    ;;
  restore)
    engine=$1 schema=$2 snapshot=$3 target=$4 mode=$5
    if [ "$mode" = new ]; then
      create_schema "$engine" "$target"
    fi
    load "$engine" "$schema" "$snapshot" "$target"
    echo "restored snapshot $snapshot of $schema into $target"
    ;;
  verify)
    engine=$1 schema=$2 snapshot=$3 scratch=$4
    drop_schema "$engine" "$scratch"
    trap 'drop_schema "$engine" "$scratch" || true; cleanup' EXIT
    create_schema "$engine" "$scratch"
    load "$engine" "$schema" "$snapshot" "$scratch"
    case "$engine" in
      mariadb|mysql)
        mysql --protocol=socket -u root -N -B -e "SELECT table_name FROM information_schema.tables WHERE table_schema = '$scratch' AND table_type = 'BASE TABLE' ORDER BY data_length DESC, table_name LIMIT 10" \
          | while IFS= read -r t; do
              n=$(mysql --protocol=socket -u root -N -B -e "SELECT COUNT(*) FROM \`$(sql_ident "$scratch")\`.\`$(sql_ident "$t")\`")
              printf 'rows\t%s\t%s\n' "$t" "$n"
            done
        ;;
      postgresql)
        (cd / && runuser -u postgres -- psql -d "$scratch" -At -c "SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY pg_total_relation_size(quote_ident(schemaname) || '.' || quote_ident(tablename)) DESC, 1 LIMIT 10") \
          | while IFS= read -r t; do
              n=$(cd / && runuser -u postgres -- psql -d "$scratch" -At -c "SELECT count(*) FROM $t")
              printf 'rows\t%s\t%s\n' "${t#public.}" "$n"
            done
        ;;
    esac
    ;;
  *) echo "usage: backup.sh backup|forget|snapshots|restore|verify ..." >&2; exit 2 ;;
esac
