#!/usr/bin/env bash
# Fetch axe-core (the accessibility engine, from the npm registry) for the browser tests, which inject it into
# every page and fail on WCAG 2 A/AA violations; print the environment variable they read. Cached; safe to
# run twice. The version is pinned so a new rule cannot fail CI on its own.
set -euo pipefail
exec 3>&1 1>&2
version=4.14.1
dir=${BROKEFORGE_AXE_DIR:-/var/cache/brokeforge/axe-core-$version}
if [ ! -s "$dir/axe.min.js" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  if command -v npm >/dev/null 2>&1; then
    (cd "$tmp" && npm pack --silent "axe-core@$version" >/dev/null)
  else
    curl -fsSL -o "$tmp/axe-core-$version.tgz" "https://registry.npmjs.org/axe-core/-/axe-core-$version.tgz"
  fi
  tar -xzf "$tmp/axe-core-$version.tgz" -C "$tmp" package/axe.min.js
  mkdir -p "$dir"
  mv "$tmp/package/axe.min.js" "$dir/axe.min.js"
fi
echo "export BROKEFORGE_AXE_JS=$dir/axe.min.js" >&3
