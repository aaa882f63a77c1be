#!/usr/bin/env bash
# Start a real SMTP server on a loopback port for the test suite (aiosmtpd from Debian, writing every message
# it accepts into a Maildir), and print the environment variables the tests read. It stands in for the mail
# relay an operator configures. Needs root. Safe to run twice.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
# Only the exports go to stdout (callers eval it); everything else goes to stderr.
exec 3>&1 1>&2
dir=${BROKEFORGE_SMTP_DIR:-/tmp/brokeforge-test-smtp}
port=${BROKEFORGE_SMTP_PORT:-2525}
if ! /usr/bin/python3 -c "import aiosmtpd" >/dev/null 2>&1; then
  apt-get install -y -qq python3-aiosmtpd >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq python3-aiosmtpd >/dev/null; }
fi
mkdir -p "$dir/maildir/tmp" "$dir/maildir/new" "$dir/maildir/cur"
if [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
  kill "$(cat "$dir/pid")" && sleep 0.5
fi
setsid /usr/bin/python3 -m aiosmtpd -n -l "127.0.0.1:$port" -c aiosmtpd.handlers.Mailbox "$dir/maildir" \
  >"$dir/log" 2>&1 < /dev/null 3>&- &
echo $! > "$dir/pid"
for _ in $(seq 1 100); do
  if (exec 9<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "export BROKEFORGE_TEST_SMTP=127.0.0.1:$port" >&3
    echo "export BROKEFORGE_TEST_SMTP_MAILDIR=$dir/maildir" >&3
    exit 0
  fi
  sleep 0.1
done
echo "the SMTP sink did not start:" && cat "$dir/log"
exit 1
