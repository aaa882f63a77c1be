#!/usr/bin/env bash
# A stand-in for S3 in the end-to-end tests: moto's server (from PyPI; it speaks the S3 protocol restic uses),
# listening on the host side of e2e host N's network (10.231.N.1:9000), with one bucket. Needs root.
#
#   scripts/e2e-s3.sh setup        install moto into a cached virtualenv
#   scripts/e2e-s3.sh start N      prints `ENDPOINT BUCKET`
#   scripts/e2e-s3.sh stop N
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
cache=${BROKEFORGE_E2E_CACHE:-/var/cache/brokeforge-e2e}
runs=${BROKEFORGE_E2E_DIR:-/tmp/brokeforge-e2e}
venv=$cache/moto
version=5.2.5

setup() {
  if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    apt-get update -qq
    apt-get install -y -qq python3-venv >/dev/null
  fi
  if [ ! -f "$venv/.complete-$version" ]; then
    rm -rf "$venv"
    mkdir -p "$cache"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "moto[server]==$version" >"$cache/moto-install.log" 2>&1 \
      || { tail -20 "$cache/moto-install.log" >&2; exit 1; }
    touch "$venv/.complete-$version"
  fi
}

stop() {
  local pid=$runs/s3-$1/pid
  if [ -f "$pid" ]; then
    kill "$(cat "$pid")" 2>/dev/null || true
    rm -f "$pid"
  fi
}

start() {
  local n=$1 ip=10.231.$1.1 port=9000 bucket=brokeforge-e2e
  [ -f "$venv/.complete-$version" ] || setup
  stop "$n"
  local dir=$runs/s3-$n
  mkdir -p "$dir"
  # Daemons get no fd 3 and no stdout: a caller capturing this script's output must not wait on them.
  nohup "$venv/bin/moto_server" -H "$ip" -p "$port" >"$dir/log" 2>&1 3>&- &
  echo $! > "$dir/pid"
  local up=
  for _ in $(seq 1 150); do
    if curl -s -o /dev/null "http://$ip:$port/"; then up=1; break; fi
    sleep 0.2
  done
  [ -n "$up" ] || { echo "moto did not start on $ip:$port:" >&2; tail -20 "$dir/log" >&2; exit 1; }
  curl -sf -X PUT "http://$ip:$port/$bucket" -o /dev/null || { echo "cannot create bucket $bucket" >&2; exit 1; }
  echo "http://$ip:$port $bucket"
}

case "${1:-}" in
  setup) setup ;;
  start) start "$2" ;;
  stop) stop "$2" ;;
  *) echo "usage: $0 setup | start N | stop N" >&2; exit 2 ;;
esac
