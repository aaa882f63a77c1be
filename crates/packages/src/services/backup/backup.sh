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
#   backup.sh dump SNAPSHOT FILE       the snapshot's FILE (a dump) or directory (as tar) on stdout
#   backup.sh check                    write, read back and delete a small object in the storage (BF_REPO is
#                                      the storage's own location, not a plan's repository)
#   backup.sh backup-files DIR         DIR (a site's shared/) into a new snapshot, print restic's summary
#   backup.sh restore-files SNAPSHOT DIR TARGET
#                                      put DIR back as the snapshot has it (TARGET /), or below TARGET
#   backup.sh verify-files SNAPSHOT DIR
#                                      restore into a scratch directory, print `rows files N` and `rows bytes N`
set -euo pipefail
umask 077
IFS= read -r RESTIC_PASSWORD || true
IFS= read -r storage_secret || true
# The source's own secret, when it has one (Redis's password).
IFS= read -r source_secret || true
export RESTIC_PASSWORD RESTIC_REPOSITORY="$BF_REPO"
[ -n "$RESTIC_PASSWORD" ] || [ "${1:-}" = check ] || { echo "no repository password on stdin" >&2; exit 2; }
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

# After `restic backup` ($1: the pipeline's exit, $2: restic's JSON): print the summary, or forget the
# snapshot restic may have saved from a failing dump (or, exit 3, with unreadable files) and fail: such a
# snapshot must not count as good.
keep_or_forget() {
  if [ "$1" -ne 0 ]; then
    local id
    id=$(printf '%s' "$2" | sed -n 's/.*"snapshot_id":"\([0-9a-f]*\)".*/\1/p' | tail -n1)
    if [ -n "$id" ]; then r forget "$id" > /dev/null 2>&1 || true; fi
    echo "the backup failed (exit $1): nothing from this run was kept; earlier snapshots are untouched" >&2
    exit 1
  fi
  printf '%s\n' "$2" | grep '"message_type":"summary"'
}

# restic's JSON on stdin: every status line (one per 10 s, RESTIC_PROGRESS_FPS) becomes a line of progress on
# stderr, which the job's page shows live; everything else (the summary) passes through.
progress() {
  local line bytes secs
  while IFS= read -r line; do
    case "$line" in
      *'"message_type":"status"'*)
        bytes=$(printf '%s' "$line" | sed -n 's/.*"bytes_done":\([0-9]*\).*/\1/p')
        secs=$(printf '%s' "$line" | sed -n 's/.*"seconds_elapsed":\([0-9]*\).*/\1/p')
        if [ -n "$bytes" ]; then echo "uploaded $((bytes / 1048576)) MiB after ${secs:-0} s" >&2; fi
        ;;
      *) printf '%s\n' "$line" ;;
    esac
  done
}
export RESTIC_PROGRESS_FPS=0.1

sql_ident() { printf '%s' "$1" | sed 's/`/``/g'; }
file_of() { case "$1" in postgresql) echo "/$2.dump" ;; redis) echo "/redis.rdb" ;; *) echo "/$2.sql" ;; esac; }

dump() {
  case "$1" in
    mariadb|mysql) mysqldump --protocol=socket -u root --single-transaction --routines --events --triggers "$2" ;;
    postgresql) cd / && runuser -u postgres -- pg_dump -Fc -- "$2" ;;
    # A replica's full sync, written to stdout (the password in the environment, not argv).
    redis) REDISCLI_AUTH="$source_secret" redis-cli --rdb - 2> "$work/redis.err" || { cat "$work/redis.err" >&2; return 1; } ;;
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
    redis)
      # Redis loads its data from one file at start: checked first, then put in place while it is stopped
      # (it writes its own dataset on the way down).
      redis_snapshot "$snapshot"
      systemctl stop redis-server
      install -o redis -g redis -m 660 "$work/dump.rdb" /var/lib/redis/dump.rdb
      systemctl start redis-server
      ;;
  esac
}

# Snapshot $1 of Redis's data into $work/dump.rdb, checked; prints how many keys it holds.
redis_snapshot() {
  r dump "$1" /redis.rdb > "$work/dump.rdb"
  redis-check-rdb "$work/dump.rdb" > "$work/check.out" 2>&1 || { tail -5 "$work/check.out" >&2; echo "the snapshot is not a readable RDB file" >&2; exit 1; }
}

action=${1:-}; shift || true
case "$action" in
  check)
    name=".brokeforge-check-$(date +%s)-$$"
    printf 'brokeforge storage check\n' > "$work/probe"
    case "$BF_KIND" in
      local)
        mkdir -p "$BF_REPO"
        cp "$work/probe" "$BF_REPO/$name"
        cp "$BF_REPO/$name" "$work/back"
        rm -f "$BF_REPO/$name"
        ;;
      sftp)
        dir=${BF_REPO#sftp:*:}
        sftp -b - -i "$work/key" -P "$BF_SFTP_PORT" -o UserKnownHostsFile="$work/known_hosts" \
          -o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout=20 "$host" > /dev/null <<SFTP
put $work/probe $dir/$name
get $dir/$name $work/back
rm $dir/$name
SFTP
        ;;
      s3)
        base=${BF_REPO#s3:}
        if [ "${BF_S3_PATH_STYLE:-0}" = 1 ]; then
          object="$base/$name"
        else
          scheme=${base%%://*}; rest=${base#*://}; bucket=${rest#*/}
          object="$scheme://$bucket.${rest%%/*}/$name"
        fi
        # The key pair goes to curl in a file only root can read, never on its command line.
        printf 'user = "%s:%s"\n' "$BF_S3_KEY_ID" "$storage_secret" > "$work/curl.conf"
        s3() {
          curl -sS -f --max-time 60 -K "$work/curl.conf" --aws-sigv4 "aws:amz:${BF_S3_REGION:-us-east-1}:s3" \
            -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" -H "Content-Type: application/octet-stream" "$@"
        }
        s3 -X PUT --data-binary @"$work/probe" "$object" > /dev/null
        s3 -o "$work/back" "$object"
        s3 -X DELETE "$object" > /dev/null
        ;;
    esac
    cmp -s "$work/probe" "$work/back" || { echo "what was read back is not what was written" >&2; exit 1; }
    echo "wrote, read back and deleted $name in $BF_REPO"
    ;;
  backup)
    engine=$1 schema=$2
    open_repository
    set +e
    summary=$(set -o pipefail; dump "$engine" "$schema" | r backup --stdin --stdin-filename "$(file_of "$engine" "$schema")" --host brokeforge --json | progress)
    rc=$?
    set -e
    keep_or_forget "$rc" "$summary"
    ;;
  backup-files)
    dir=$1
    [ -d "$dir" ] || { echo "$dir does not exist" >&2; exit 1; }
    open_repository
    set +e
    summary=$(set -o pipefail; r backup "$dir" --host brokeforge --json | progress)
    rc=$?
    set -e
    keep_or_forget "$rc" "$summary"
    ;;
  restore-files)
    snapshot=$1 dir=$2 target=$3
    if [ "$target" != / ]; then
      [ ! -e "$target" ] || { echo "$target exists already: choose another name" >&2; exit 1; }
      mkdir -p "$target"
    fi
    # restic 0.14 restores full paths: below a new TARGET the files are at TARGET$DIR.
    r restore "$snapshot" --target "$target" --include "$dir" > /dev/null
    echo "restored snapshot $snapshot of $dir into $target"
    ;;
  verify-files)
    snapshot=$1 dir=$2
    r restore "$snapshot" --target "$work/scratch" --include "$dir" > /dev/null
    printf 'rows\tfiles\t%s\n' "$(find "$work/scratch" -type f | wc -l)"
    printf 'rows\tbytes\t%s\n' "$(find "$work/scratch" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}')"
    ;;
  dump)
    r dump "$1" "$2"
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
    if [ "$engine" = redis ]; then
      # A drill never touches the live instance: the file is checked where it was restored.
      redis_snapshot "$snapshot"
      printf 'rows\tkeys\t%s\n' "$(sed -n 's/^\[info\] \([0-9]*\) keys read$/\1/p' "$work/check.out")"
      exit 0
    fi
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
