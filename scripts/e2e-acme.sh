#!/usr/bin/env bash
# A test ACME certificate authority (Debian's pebble) for the end-to-end tests: it listens on the host side of
# e2e host N's network (10.231.N.1:14000) and validates HTTP-01 challenges for real, resolving every name to the
# e2e host (10.231.N.2) through pebble-challtestsrv's DNS. Needs root.
#
#   scripts/e2e-acme.sh start N     prints `DIRECTORY_URL CA_FILE` (CA_FILE: the CA of pebble's own HTTPS)
#   scripts/e2e-acme.sh add-a N NAME IP   NAME resolves to IP for pebble (instead of the e2e host)
#   scripts/e2e-acme.sh root N      prints the root that signs the certificates pebble issues
#   scripts/e2e-acme.sh stop N
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
runs=${BROKEFORGE_E2E_DIR:-/tmp/brokeforge-e2e}

stop() {
  local dir=$runs/acme-$1
  for p in "$dir"/*.pid; do
    [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null || true
    rm -f "$p"
  done
}

start() {
  local n=$1
  local ip=10.231.$n.1 host_ip=10.231.$n.2 dir=$runs/acme-$n
  command -v pebble >/dev/null || apt-get install -y -qq pebble >/dev/null
  stop "$n"
  mkdir -p "$dir"
  # pebble's own HTTPS needs a certificate for the address the e2e host reaches it on.
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=e2e acme ca" \
    -keyout "$dir/ca.key" -out "$dir/ca.pem" >/dev/null 2>&1
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$ip" \
    -keyout "$dir/key.pem" -out "$dir/req.pem" >/dev/null 2>&1
  openssl x509 -req -in "$dir/req.pem" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial -days 2 \
    -extfile <(printf 'subjectAltName=IP:%s\nextendedKeyUsage=serverAuth\n' "$ip") -out "$dir/cert.pem" >/dev/null 2>&1
  cat > "$dir/pebble.json" <<JSON
{"pebble": {"listenAddress": "$ip:14000", "managementListenAddress": "127.0.0.1:$((15000 + n))",
  "certificate": "$dir/cert.pem", "privateKey": "$dir/key.pem",
  "httpPort": 80, "tlsPort": 443, "ocspResponderURL": "", "externalAccountBindingRequired": false}}
JSON
  local dns=127.0.0.1:$((8000 + n))
  # Daemons get no fd 3 and no stdout: a caller capturing this script's output must not wait on them.
  nohup pebble-challtestsrv -defaultIPv4 "$host_ip" -defaultIPv6 "" -dns01 "$dns" -http01 "" -https01 "" \
    -tlsalpn01 "" -management "127.0.0.1:$((16000 + n))" >"$dir/dns.log" 2>&1 3>&- &
  echo $! > "$dir/dns.pid"
  PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 PEBBLE_AUTHZREUSE=0 \
    nohup pebble -config "$dir/pebble.json" -dnsserver "$dns" >"$dir/pebble.log" 2>&1 3>&- &
  echo $! > "$dir/pebble.pid"
  for _ in $(seq 1 100); do
    (exec 3<>/dev/tcp/"$ip"/14000) 2>/dev/null && break
    sleep 0.1
  done
  (exec 3<>/dev/tcp/"$ip"/14000) 2>/dev/null || { echo "pebble did not start:" >&2; tail -20 "$dir/pebble.log" "$dir/dns.log" >&2; exit 1; }
  echo "https://$ip:14000/dir $dir/ca.pem"
}

add_a() {
  curl -fsS -m 10 -d "{\"host\":\"$2\",\"addresses\":[\"$3\"]}" "http://127.0.0.1:$((16000 + $1))/add-a" >/dev/null
}

root() {
  # pebble's management API speaks HTTPS with the certificate made for its ACME address: loopback, not checked.
  curl -fsSk -m 10 "https://127.0.0.1:$((15000 + $1))/roots/0"
}

case "${1:-}" in
  start) start "$2" ;;
  add-a) add_a "$2" "$3" "$4" ;;
  root) root "$2" ;;
  stop) stop "$2" ;;
  *) sed -n '2,9p' "$0"; exit 2 ;;
esac
