#!/usr/bin/env bash
# Build the Debian package with dpkg-deb (Debian's own tool: no extra install, and the maintainer scripts and
# units are plain files in packaging/debian/ anyone can read).
#
#   scripts/build-deb.sh [--binary PATH] [--version VERSION] [--out DIR] [--fast]
#
# Without --binary it builds the release binary. VERSION defaults to the workspace version with revision 1.
# --fast compresses lightly (tests build packages from the debug binary). Prints the path of the .deb.
set -euo pipefail
cd "$(dirname "$0")/.."
binary= version= out=target/debian compress=(-Zxz)
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary=$2; shift 2 ;;
    --version) version=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --fast) compress=(-Zgzip -z1); shift ;;
    *) sed -n '2,9p' "$0" >&2; exit 2 ;;
  esac
done
if [ -z "$binary" ]; then
  cargo build -q --release -p brokeforge
  binary=target/release/brokeforge
fi
[ -x "$binary" ] || { echo "no executable at $binary" >&2; exit 1; }
if [ -z "$version" ]; then
  version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)-1
fi
case "$version" in
  [0-9]*) ;;
  *) echo "version $version: a Debian version starts with a digit" >&2; exit 1 ;;
esac
arch=$(dpkg --print-architecture)
mkdir -p "$out"
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
# mktemp makes 0700; the archive's ./ must not carry that.
chmod 0755 "$root"
install -d "$root/DEBIAN" "$root/usr/bin" "$root/lib/systemd/system" "$root/usr/share/brokeforge" \
  "$root/usr/share/doc/brokeforge"
install -m 0755 "$binary" "$root/usr/bin/brokeforge"
strip --strip-unneeded "$root/usr/bin/brokeforge"
install -m 0644 packaging/debian/brokeforge.service packaging/debian/brokeforge-worker.service "$root/lib/systemd/system/"
# The configuration's first copy; postinst puts it in /etc/brokeforge once and never again.
install -m 0644 packaging/debian/brokeforge.conf "$root/usr/share/brokeforge/brokeforge.conf"
install -m 0644 README.md "$root/usr/share/doc/brokeforge/README.md"
install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm "$root/DEBIAN/"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat > "$root/DEBIAN/control" <<CONTROL
Package: brokeforge
Version: $version
Architecture: $arch
Maintainer: BrokeForge developers <dev@brokeforge.invalid>
Installed-Size: $size
Depends: libc6 (>= 2.34), libgcc-s1, passwd
Recommends: systemd, restic, openssh-client
Suggests: postgresql-client
Section: admin
Priority: optional
Description: server panel: provisions Linux servers over SSH and deploys PHP sites
 BrokeForge turns fresh servers into hosts for PHP sites over SSH: base provisioning, nginx and PHP-FPM,
 databases, Redis, sites with zero-downtime deployments, HTTPS, backups, a web app, an API and a CLI.
 One binary with an embedded SQLite database, or several nodes on PostgreSQL.
CONTROL
deb="$out/brokeforge_${version}_${arch}.deb"
dpkg-deb --root-owner-group "${compress[@]}" --build "$root" "$deb" >/dev/null
echo "$deb"
