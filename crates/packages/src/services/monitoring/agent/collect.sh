#!/bin/bash
# BrokeForge metrics collector: one report per run (a systemd timer runs it), pushed to BrokeForge as
# "name value" lines. Installed and removed by BrokeForge's monitoring package; edits here are overwritten.
set -u
umask 077
. /etc/brokeforge/monitoring.conf
state=/var/lib/brokeforge-monitoring
mkdir -p "$state"
out=$(mktemp)
trap 'rm -f "$out"' EXIT

# CPU: the busy share of the time since the last run (over one second on the first run).
cpu() { awk '/^cpu /{t=$2+$3+$4+$5+$6+$7+$8+$9; print t, t-$5-$6; exit}' /proc/stat; }
now_cpu=$(cpu)
last_cpu=$(cat "$state/cpu" 2>/dev/null || true)
if [ -z "$last_cpu" ]; then last_cpu=$now_cpu; sleep 1; now_cpu=$(cpu); fi
echo "$now_cpu" > "$state/cpu"
echo "$last_cpu $now_cpu" | awk '{dt=$3-$1; if (dt>0) printf "cpu_percent %.2f\n", ($4-$2)*100/dt}' >> "$out"

awk '{printf "load1 %s\nload5 %s\nload15 %s\n", $1, $2, $3}' /proc/loadavg >> "$out"
awk '/^MemTotal:/{t=$2} /^MemAvailable:/{a=$2} /^SwapTotal:/{st=$2} /^SwapFree:/{sf=$2}
     END {if (t>0) printf "memory_used_percent %.2f\nmemory_total_bytes %.0f\n", (t-a)*100/t, t*1024;
          printf "swap_used_percent %.2f\n", (st>0) ? (st-sf)*100/st : 0}' /proc/meminfo >> "$out"

# Disk use per local file system as df counts it (used over used+available), and the fullest one.
df -P -l -x tmpfs -x devtmpfs -x squashfs -x efivarfs 2>/dev/null |
    awk 'NR>1 && $2>0 {p=($3+$4>0) ? $3*100/($3+$4) : 0; printf "disk_used_percent:%s %.2f\n", $6, p; if (p>m) m=p}
         END {printf "disk_used_percent %.2f\n", m}' >> "$out"

# Network: bytes per second over all interfaces but loopback, since the last run.
now_net="$(date +%s) $(awk 'NR>2 {split($0, a, ":"); gsub(/ /, "", a[1]); if (a[1] != "lo") {split(a[2], f, " "); rx+=f[1]; tx+=f[9]}}
    END {printf "%.0f %.0f", rx, tx}' /proc/net/dev)"
last_net=$(cat "$state/net" 2>/dev/null || true)
echo "$now_net" > "$state/net"
if [ -n "$last_net" ]; then
    echo "$last_net $now_net" | awk '{dt=$4-$1; if (dt>0 && $5>=$2 && $6>=$3)
        printf "net_rx_bytes_per_second %.2f\nnet_tx_bytes_per_second %.2f\n", ($5-$2)/dt, ($6-$3)/dt}' >> "$out"
fi

# The services BrokeForge installs: 1 while active, 0 otherwise.
systemctl list-units --type=service --all --no-legend --plain 'nginx.service' 'php*-fpm.service' 'mariadb.service' \
    'mysql.service' 'postgresql@*.service' 'redis-server.service' 'memcached.service' 'brokeforge-*.service' 2>/dev/null |
    awk '$1 ~ /\.service$/ && $2 != "not-found" && $1 != "brokeforge-monitoring.service" {
        n=$1; sub(/\.service$/, "", n); printf "service_up:%s %d\n", n, ($3 == "active")}' >> "$out"

if ! curl -fsS -m 20 --retry 2 -H @/etc/brokeforge/monitoring.header --data-binary @"$out" "$BF_INGEST_URL" >/dev/null; then
    echo "could not report to BrokeForge at $BF_INGEST_URL" >&2
    exit 1
fi
