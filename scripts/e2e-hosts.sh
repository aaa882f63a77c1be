#!/usr/bin/env bash
# Real Debian 12 hosts for end-to-end tests: debootstrap + systemd-nspawn (systemd as PID 1, sshd, its own veth
# network with NAT so apt inside reaches Debian's packages). Needs root.
#
#   scripts/e2e-hosts.sh setup                 install tools, build (or reuse) the cached root filesystem
#   scripts/e2e-hosts.sh start NAME N KEYFILE  boot host NAME (N = 1..200 picks its subnet 10.231.N.0/30) with
#                                              KEYFILE.pub authorised for root; prints `IP FINGERPRINT`
#   scripts/e2e-hosts.sh stop NAME             power it off and delete its files
#   scripts/e2e-hosts.sh stop-all
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
cache=${BROKEFORGE_E2E_CACHE:-/var/cache/brokeforge-e2e}
runs=${BROKEFORGE_E2E_DIR:-/tmp/brokeforge-e2e}
rootfs=$cache/bookworm
mirror=${BROKEFORGE_E2E_MIRROR:-http://deb.debian.org/debian}

setup() {
  local need=()
  command -v systemd-nspawn >/dev/null || need+=(systemd-container)
  command -v debootstrap >/dev/null || need+=(debootstrap)
  command -v iptables >/dev/null || need+=(iptables)
  command -v ssh-keygen >/dev/null || need+=(openssh-client)
  # The test ACME certificate authority (scripts/e2e-acme.sh).
  command -v pebble >/dev/null || need+=(pebble)
  command -v openssl >/dev/null || need+=(openssl)
  if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq
    apt-get install -y -qq "${need[@]}" >/dev/null
  fi
  if [ ! -f "$rootfs/.complete" ]; then
    rm -rf "$rootfs.tmp"
    mkdir -p "$cache"
    debootstrap --variant=minbase \
      --include=systemd,systemd-sysv,dbus,openssh-server,iproute2,ca-certificates,sudo,curl,procps \
      bookworm "$rootfs.tmp" "$mirror" >"$cache/debootstrap.log" 2>&1 \
      || { tail -20 "$cache/debootstrap.log" >&2; exit 1; }
    # A container has no consoles to wait for, and the copies must not share host keys or machine ids.
    rm -f "$rootfs.tmp"/etc/ssh/ssh_host_*
    : > "$rootfs.tmp/etc/machine-id"
    echo 'deb http://deb.debian.org/debian bookworm main' > "$rootfs.tmp/etc/apt/sources.list"
    echo 'deb http://deb.debian.org/debian-security bookworm-security main' >> "$rootfs.tmp/etc/apt/sources.list"
    ln -sf /dev/null "$rootfs.tmp/etc/systemd/system/systemd-networkd-wait-online.service"
    touch "$rootfs.tmp/.complete"
    rm -rf "$rootfs"
    mv "$rootfs.tmp" "$rootfs"
  fi
  sysctl -qw net.ipv4.ip_forward=1
}

start() {
  local name=$1 n=$2 key=$3
  [ -f "$rootfs/.complete" ] || setup
  local dir=$runs/$name
  local host_ip=10.231.$n.1 ip=10.231.$n.2
  stop "$name" 2>/dev/null || true
  mkdir -p "$runs"
  cp -a "$rootfs" "$dir"
  echo "$name" > "$dir/etc/hostname"
  install -d -m 700 "$dir/root/.ssh"
  install -m 600 "$key.pub" "$dir/root/.ssh/authorized_keys"
  chroot "$dir" ssh-keygen -A >/dev/null
  cp /etc/resolv.conf "$dir/etc/resolv.conf" 2>/dev/null || echo 'nameserver 1.1.1.1' > "$dir/etc/resolv.conf"
  # Static address inside, set by a unit so it survives the boot's own network setup.
  cat > "$dir/etc/systemd/system/e2e-net.service" <<UNIT
[Unit]
Description=e2e network
Before=ssh.service
[Service]
Type=oneshot
ExecStart=/bin/sh -c 'ip link set host0 up && ip addr add $ip/30 dev host0 && ip route add default via $host_ip'
RemainAfterExit=yes
[Install]
WantedBy=multi-user.target
UNIT
  ln -sf /etc/systemd/system/e2e-net.service "$dir/etc/systemd/system/multi-user.target.wants/e2e-net.service"
  local veth="ve-${name:0:12}"
  nohup systemd-nspawn -b -D "$dir" --register=no --keep-unit --network-veth -M "$name" \
    >"$runs/$name.console" 2>&1 &
  echo $! > "$runs/$name.pid"
  for _ in $(seq 1 100); do ip link show "$veth" >/dev/null 2>&1 && break; sleep 0.1; done
  ip link show "$veth" >/dev/null 2>&1 || { echo "host $name: its network link $veth did not appear" >&2; exit 1; }
  ip addr add "$host_ip/30" dev "$veth" 2>/dev/null || true
  ip link set "$veth" up
  iptables -t nat -C POSTROUTING -s "10.231.$n.0/30" ! -d "10.231.$n.0/30" -j MASQUERADE 2>/dev/null \
    || iptables -t nat -A POSTROUTING -s "10.231.$n.0/30" ! -d "10.231.$n.0/30" -j MASQUERADE
  for _ in $(seq 1 300); do
    (exec 3<>/dev/tcp/"$ip"/22) 2>/dev/null && break
    sleep 0.1
  done
  (exec 3<>/dev/tcp/"$ip"/22) 2>/dev/null || { echo "host $name did not start sshd; console:" >&2; tail -30 "$runs/$name.console" >&2; exit 1; }
  local fp
  fp=$(ssh-keygen -lf "$dir/etc/ssh/ssh_host_ed25519_key.pub" | awk '{print $2}')
  echo "$ip $fp"
}

stop() {
  local name=$1
  local pidf=$runs/$name.pid
  if [ -f "$pidf" ]; then
    local pid
    pid=$(cat "$pidf")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pidf"
  fi
  rm -rf "${runs:?}/$name" "$runs/$name.console"
}

case "${1:-}" in
  setup) setup ;;
  start) start "$2" "$3" "$4" ;;
  stop) stop "$2" ;;
  stop-all)
    for p in "$runs"/*.pid; do
      if [ -f "$p" ]; then stop "$(basename "$p" .pid)"; fi
    done
    ;;
  *) sed -n '2,10p' "$0"; exit 2 ;;
esac
