#!/usr/bin/env bash
# Start a real OpenSSH server on a loopback port for the test suite, with its own config, host key and
# client key, and print the environment variables the tests read. Needs root. Safe to run twice.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
# Only the exports go to stdout (callers eval it); everything else goes to stderr.
exec 3>&1 1>&2
dir=${BROKEFORGE_SSHD_DIR:-/tmp/brokeforge-test-sshd}
port=${BROKEFORGE_SSHD_PORT:-2222}
user=brokeforge
if [ ! -x /usr/sbin/sshd ]; then
  apt-get install -y -qq openssh-server >/dev/null
fi
mkdir -p "$dir" /run/sshd
chmod 755 "$dir"
if ! id "$user" >/dev/null 2>&1; then
  # Password `*` (not `!`): with UsePAM no, a locked account is refused even for key logins.
  useradd --create-home --shell /bin/bash --password '*' "$user"
fi
[ -f "$dir/ssh_host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$dir/ssh_host_ed25519_key"
[ -f "$dir/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C brokeforge-test -f "$dir/id_ed25519"
cp "$dir/id_ed25519.pub" "$dir/authorized_keys"
chmod 644 "$dir/authorized_keys"
cat > "$dir/sshd_config" <<CONF
Port $port
ListenAddress 127.0.0.1
HostKey $dir/ssh_host_ed25519_key
PidFile $dir/sshd.pid
AuthorizedKeysFile $dir/authorized_keys
UsePAM no
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
AllowUsers $user
MaxSessions 10
LogLevel ERROR
CONF
if [ -f "$dir/sshd.pid" ] && kill -0 "$(cat "$dir/sshd.pid")" 2>/dev/null; then
  kill "$(cat "$dir/sshd.pid")" && sleep 0.5
fi
# The daemon must not inherit fd 3 (the caller's captured stdout), or `$(...)` never returns.
/usr/sbin/sshd -f "$dir/sshd_config" -E "$dir/sshd.log" 3>&-
for _ in $(seq 1 50); do
  (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break
  sleep 0.1
done
(exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null || { echo "the test sshd did not listen on 127.0.0.1:$port within 5 s" >&2; exit 1; }
fp=$(ssh-keygen -lf "$dir/ssh_host_ed25519_key.pub" | awk '{print $2}')
echo "export BROKEFORGE_TEST_SSHD=127.0.0.1:$port" >&3
echo "export BROKEFORGE_TEST_SSHD_USER=$user" >&3
echo "export BROKEFORGE_TEST_SSHD_KEY=$dir/id_ed25519" >&3
echo "export BROKEFORGE_TEST_SSHD_FINGERPRINT=$fp" >&3
