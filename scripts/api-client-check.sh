#!/usr/bin/env bash
# The API contract, checked by tools no one here wrote: start a real `serve` (SQLite, a scratch data
# directory), validate its OpenAPI document with openapi-spec-validator, generate a Python client from it with
# openapi-python-client, and run a short flow with that client (scripts/api/flow.py). Both tools come from
# PyPI, pinned, into a cached virtualenv.
#   scripts/api-client-check.sh BROKEFORGE_BINARY
set -euo pipefail
bin=$(realpath "${1:?usage: $0 BROKEFORGE_BINARY}")
here=$(cd "$(dirname "$0")" && pwd)
validator=0.9.0
generator=0.29.1
venv=${BROKEFORGE_API_TOOLS:-/var/cache/brokeforge/api-tools-$validator-$generator}
if [ ! -f "$venv/.complete" ]; then
  if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    apt-get install -y -qq python3-venv >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null; }
  fi
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check \
    "openapi-spec-validator==$validator" "openapi-python-client==$generator" >"$venv.log" 2>&1 \
    || { tail -20 "$venv.log" >&2; exit 1; }
  touch "$venv/.complete"
fi

work=$(mktemp -d)
serve_pid=
cleanup() {
  [ -n "$serve_pid" ] && kill "$serve_pid" 2>/dev/null && wait "$serve_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
export BROKEFORGE_DATA_DIR=$work/data
unset BROKEFORGE_DATABASE_URL BROKEFORGE_CONFIG
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url=http://127.0.0.1:$port
email=api-flow@example.com
password=api-flow-password-$RANDOM$RANDOM
printf '%s' "$password" | "$bin" admin create-user --email "$email" --password-stdin --admin >"$work/admin.log" 2>&1
token=$("$bin" admin create-token --email "$email" --name api-flow 2>>"$work/admin.log" | tail -n 1)
BROKEFORGE_PUBLIC_URL=$url "$bin" serve --bind "127.0.0.1:$port" >"$work/serve.log" 2>&1 &
serve_pid=$!
for _ in $(seq 1 100); do
  curl -sf "$url/health" >/dev/null && break
  sleep 0.1
done
curl -sf "$url/api/v1/openapi.json" -o "$work/openapi.json" || { cat "$work/serve.log" >&2; exit 1; }
"$venv/bin/openapi-spec-validator" "$work/openapi.json"
PATH=$venv/bin:$PATH "$venv/bin/openapi-python-client" generate --path "$work/openapi.json" \
  --output-path "$work/client/brokeforge_client" --meta none >"$work/generate.log" 2>&1 \
  || { cat "$work/generate.log" >&2; exit 1; }
# A schema the generator cannot turn into a model is skipped with a warning: that is a broken contract too.
if grep -qi 'warning' "$work/generate.log"; then
  cat "$work/generate.log" >&2
  echo "== openapi-python-client could not generate every operation or model" >&2
  exit 1
fi
ssh-keygen -q -t ed25519 -N '' -f "$work/root_key" >/dev/null
"$venv/bin/python" "$here/api/flow.py" "$work/client" "$url" "$token" "$email" "$password" "$work/root_key" \
  || { echo "== serve's log:" >&2; tail -30 "$work/serve.log" >&2; exit 1; }
