#!/usr/bin/env bash
# Start a benchmark fleet of OpenSSH servers on loopback: HOSTS hosts, each its own loopback address
# (127.0.0.2, 127.0.0.3, ...) on port 2400, served by sshd instances of at most 16 addresses each
# (OpenSSH's listen-socket limit). The fleet user is a plain user (root's shell start-up is slow here).
# Writes DIR/hosts and DIR/id_ed25519 and prints the bench arguments. Needs root.
#   scripts/bench-fleet.sh 20          # start 20 hosts
#   scripts/bench-fleet.sh stop        # stop the fleet
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
dir=${BROKEFORGE_FLEET_DIR:-/tmp/brokeforge-fleet}
port=2400
user=bffleet
stop_fleet() {
  for pid in "$dir"/sshd-*.pid; do
    [ -f "$pid" ] && kill "$(cat "$pid")" 2>/dev/null || true
    rm -f "$pid"
  done
}
if [ "${1:-}" = stop ]; then stop_fleet; exit 0; fi
hosts=${1:-5}
if [ "$hosts" -lt 1 ] || [ "$hosts" -gt 250 ]; then echo "HOSTS must be 1..250" >&2; exit 2; fi
[ -x /usr/sbin/sshd ] || apt-get install -y -qq openssh-server >/dev/null
mkdir -p "$dir" /run/sshd
chmod 755 "$dir"
id "$user" >/dev/null 2>&1 || useradd --create-home --shell /bin/sh --password '*' "$user"
[ -f "$dir/host_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$dir/host_key"
[ -f "$dir/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C brokeforge-bench -f "$dir/id_ed25519"
cp "$dir/id_ed25519.pub" "$dir/authorized_keys"
chmod 644 "$dir/authorized_keys"
stop_fleet
: > "$dir/hosts"
instance=0
i=0
while [ "$i" -lt "$hosts" ]; do
  conf="$dir/sshd-$instance.conf"
  {
    echo "Port $port"
    n=0
    while [ "$n" -lt 16 ] && [ "$i" -lt "$hosts" ]; do
      echo "ListenAddress 127.0.0.$((i + 2))"
      echo "127.0.0.$((i + 2)) $port" >> "$dir/hosts"
      n=$((n + 1)); i=$((i + 1))
    done
    cat <<CONF
HostKey $dir/host_key
PidFile $dir/sshd-$instance.pid
AuthorizedKeysFile $dir/authorized_keys
UsePAM no
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
AllowUsers $user
MaxStartups 200:30:400
MaxSessions 10
UseDNS no
LogLevel ERROR
CONF
  } > "$conf"
  /usr/sbin/sshd -f "$conf" -E "$dir/sshd-$instance.log"
  instance=$((instance + 1))
done
for _ in $(seq 1 50); do
  (exec 3<>/dev/tcp/127.0.0.$((hosts + 1))/"$port") 2>/dev/null && break
  sleep 0.1
done
(exec 3<>/dev/tcp/127.0.0.$((hosts + 1))/"$port") 2>/dev/null || { echo "the benchmark sshd did not listen within 5 s" >&2; exit 1; }
echo "--hosts $dir/hosts --user $user --key $dir/id_ed25519"
