#!/usr/bin/env bash
# Install test of the scaledownd .deb on this machine (Debian/Ubuntu, root):
# build, install, check the files and the binary, keep an edited conffile
# across a reinstall and an upgrade, lint, purge and check that nothing is
# left. Idempotent: a package left over from an aborted run is purged first,
# and the package is purged on every exit. Runs with or without systemd as
# PID 1. Needs: dpkg, lintian (apt-get install lintian), systemd-analyze
# (systemd); inspects the .rpm too when `rpm` is installed (apt-get install rpm).
set -euo pipefail
cd "$(dirname "$0")/.."

PKG=scaledownd
fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "== $*"; }
need() { command -v "$1" >/dev/null 2>&1 || fail "$1 not found: apt-get install -y $2"; }

[ "$(id -u)" = 0 ] || fail "run as root: dpkg -i and dpkg --purge need it"
need dpkg dpkg
need lintian lintian
need systemd-analyze systemd

tmp=$(mktemp -d)
purge() { dpkg --purge "$PKG" >/dev/null 2>&1 || true; }
cleanup() { purge; rm -rf "$tmp"; }
trap cleanup EXIT

if dpkg-query -W -f='${Status}' "$PKG" 2>/dev/null | grep -q installed; then
  echo "note: $PKG is installed (left over from an earlier run?); purging it first"
  purge
fi

step "build the .deb (and the .rpm when rpm is available)"
v1=0.1.0-pkgtest.1
v2=0.1.0-pkgtest.2
packagers=(deb)
command -v rpm >/dev/null 2>&1 && packagers+=(rpm)
VERSION=$v1 OUT_DIR=$tmp/v1 bash scripts/package.sh "${packagers[@]}" >"$tmp/build-v1.log" 2>&1 \
  || { cat "$tmp/build-v1.log"; fail "package.sh failed"; }
VERSION=$v2 OUT_DIR=$tmp/v2 bash scripts/package.sh deb >"$tmp/build-v2.log" 2>&1 \
  || { cat "$tmp/build-v2.log"; fail "package.sh failed"; }
deb1=$(ls "$tmp"/v1/${PKG}_*.deb)
deb2=$(ls "$tmp"/v2/${PKG}_*.deb)
echo "$(basename "$deb1"): $(stat -c %s "$deb1") bytes"

step "lintian"
rc=0
lintian --pedantic --display-level '>=info' --fail-on error "$deb1" >"$tmp/lintian.txt" 2>&1 || rc=$?
cat "$tmp/lintian.txt"
if grep -q '^E:' "$tmp/lintian.txt"; then fail "lintian reports errors"; fi
[ "$rc" = 0 ] || fail "lintian exited with $rc"

step "package metadata"
dpkg-deb --field "$deb1" Package Version Architecture | sed 's/^/  /'
[ "$(dpkg-deb --field "$deb1" Version)" = "0.1.0~pkgtest.1-1" ] || fail "unexpected package version"
conffiles=$(dpkg-deb --ctrl-tarfile "$deb1" | tar -xO ./conffiles)
for f in /etc/scaledownd/config.yaml /etc/default/scaledownd; do
  grep -qx "$f" <<<"$conffiles" || fail "$f is not a conffile"
done

step "install $v1"
dpkg -i "$deb1"
[ "$(dpkg-query -W -f='${Status}' "$PKG")" = "install ok installed" ] || fail "not installed"
files=(
  /usr/bin/scaledownd
  /lib/systemd/system/scaledownd.service
  /etc/scaledownd/config.yaml
  /etc/default/scaledownd
  /usr/share/doc/scaledownd/README.md
  /usr/share/doc/scaledownd/copyright
  /usr/share/doc/scaledownd/changelog.Debian.gz
  /usr/share/man/man1/scaledownd.1.gz
)
for f in "${files[@]}"; do [ -f "$f" ] || fail "$f missing after install"; done
[ -x /usr/bin/scaledownd ] || fail "/usr/bin/scaledownd is not executable"
out=$(/usr/bin/scaledownd version)
echo "  $out"
grep -q "^scaledownd $v1 " <<<"$out" || fail "scaledownd version does not report $v1"
/usr/bin/scaledownd config print --config.file=/etc/scaledownd/config.yaml >"$tmp/config.txt" \
  || fail "the installed default config does not load"
grep -q 'queue-url: ""' "$tmp/config.txt" || fail "default config has a queue-url"
# The unit's ExecStart now exists, so verify the installed unit as is.
verify=$(systemd-analyze verify /lib/systemd/system/scaledownd.service 2>&1) || fail "systemd-analyze verify failed: $verify"
[ -z "$verify" ] || fail "systemd-analyze verify complained: $verify"
if command -v systemctl >/dev/null 2>&1; then
  [ -L /etc/systemd/system/multi-user.target.wants/scaledownd.service ] || fail "unit not enabled on install"
fi

step "edit the conffile, reinstall $v1, upgrade to $v2"
sed -i 's/^  level: info$/  level: debug/' /etc/scaledownd/config.yaml
echo "# local edit by package-test" >>/etc/scaledownd/config.yaml
echo "SCALEDOWND_LOG_FORMAT=console" >>/etc/default/scaledownd
check_edits() {
  grep -q '^# local edit by package-test$' /etc/scaledownd/config.yaml || fail "config.yaml edit lost ($1)"
  grep -q '^SCALEDOWND_LOG_FORMAT=console$' /etc/default/scaledownd || fail "/etc/default/scaledownd edit lost ($1)"
  /usr/bin/scaledownd config print --config.file=/etc/scaledownd/config.yaml | grep -q 'level: debug' \
    || fail "edited config not effective ($1)"
}
dpkg -i "$deb1"
check_edits reinstall
dpkg -i --force-confdef --force-confold "$deb2"
check_edits upgrade
grep -q "^scaledownd $v2 " <<<"$(/usr/bin/scaledownd version)" || fail "upgrade did not replace the binary"

step "remove (conffiles stay), then purge (nothing stays)"
dpkg --remove "$PKG"
[ ! -e /usr/bin/scaledownd ] || fail "binary left after remove"
[ -f /etc/scaledownd/config.yaml ] || fail "conffile removed by remove (only purge may)"
[ ! -e /etc/systemd/system/multi-user.target.wants/scaledownd.service ] || fail "unit still enabled after remove"
dpkg --purge "$PKG"
for f in "${files[@]}" /etc/scaledownd /usr/share/doc/scaledownd /var/lib/scaledownd /var/lib/private/scaledownd \
         /etc/systemd/system/multi-user.target.wants/scaledownd.service; do
  if [ -e "$f" ] || [ -L "$f" ]; then fail "$f left after purge"; fi
done
if dpkg-query -W -f='${Status}' "$PKG" 2>/dev/null | grep -q 'installed\|config-files'; then
  fail "dpkg still knows $PKG after purge"
fi

if command -v rpm >/dev/null 2>&1; then
  step "inspect the .rpm"
  rpmf=$(ls "$tmp"/v1/${PKG}-*.rpm)
  echo "$(basename "$rpmf"): $(stat -c %s "$rpmf") bytes"
  list=$(rpm -qpl "$rpmf" 2>/dev/null)
  for f in /usr/bin/scaledownd /usr/lib/systemd/system/scaledownd.service /etc/scaledownd/config.yaml /etc/default/scaledownd; do
    grep -qx "$f" <<<"$list" || fail "$f missing from the rpm"
  done
  cfg=$(rpm -qp --configfiles "$rpmf" 2>/dev/null)
  grep -qx /etc/scaledownd/config.yaml <<<"$cfg" || fail "config.yaml is not an rpm config file"
  rpm -qp --scripts "$rpmf" 2>/dev/null | grep -q 'postinstall scriptlet' || fail "rpm has no %post"
  rpm -qp --qf '%{VERSION}-%{RELEASE}\n' "$rpmf" 2>/dev/null | sed 's/^/  version /'
else
  echo "note: rpm not installed (apt-get install rpm); skipping the .rpm inspection"
fi

echo "PASS: package-test"
