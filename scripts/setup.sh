#!/usr/bin/env bash
# Install what the tests need and this machine lacks; install nothing when
# everything is there. `make test` runs it first (`make setup`), `make chaos`
# and `make e2e` run its `tools` part.
#
#   scripts/setup.sh          # Debian packages and the pinned test peers
#   scripts/setup.sh debs     # only the Debian packages
#   scripts/setup.sh tools    # only the pinned test peers in build/tools
#
# Debian packages, for their commands (the tests fail naming the package
# when one is missing, never skip): prometheus (promtool, prometheus),
# lintian, rpm, systemd (systemd-analyze), dpkg; python3-venv when Python
# cannot make a virtual environment. They are installed with apt-get
# (DEBIAN_FRONTEND=noninteractive, --no-install-recommends) when running as
# root, through `sudo -n` when sudo needs no password; otherwise the script
# stops at once with one line naming what to install. apt-get waits up to
# 5 minutes for a dpkg lock another run holds.
#
# Pinned test peers, in the git-ignored build/tools (checked by version, so
# changing a pin below reinstalls):
#   build/tools/ec2-metadata-mock          amazon-ec2-metadata-mock (Go module proxy)
#   build/tools/moto/venv/bin/moto_server  moto[server] (PyPI, in a venv)
# The Makefile exports their paths as TESTPEERS_AEMM and TESTPEERS_MOTO.
#
# Environment: GO (go command, default go), PYTHON (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."

AEMM_VERSION=v1.13.0
MOTO_VERSION=5.2.5
TOOLS=$PWD/build/tools
AEMM=$TOOLS/ec2-metadata-mock
MOTO_VENV=$TOOLS/moto/venv
GO=${GO:-go}
PYTHON=${PYTHON:-python3}

say() { echo "setup: $*"; }
die() { echo "setup: $*" >&2; exit 1; }
# elapsed START: seconds since START (date +%s.%N), one decimal.
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f s", b-a }'; }
installed=()

python_can_venv() {
  command -v "$PYTHON" >/dev/null 2>&1 && "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1
}

# ------------------------------------------------------------ Debian packages
debs() {
  local need=() pair
  for pair in promtool:prometheus prometheus:prometheus lintian:lintian rpm:rpm \
              systemd-analyze:systemd dpkg-deb:dpkg; do
    if ! command -v "${pair%%:*}" >/dev/null 2>&1 && [[ " ${need[*]} " != *" ${pair#*:} "* ]]; then
      need+=("${pair#*:}")
    fi
  done
  # The moto venv needs Python's venv module (Debian: python3-venv).
  if ! python_can_venv && [ ! -x "$MOTO_VENV/bin/moto_server" ]; then
    need+=(python3-venv)
  fi
  ((${#need[@]})) || return 0

  local sudo=()
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      sudo=(sudo -n)
    else
      die "missing Debian packages; install them, then run make again: sudo apt-get install -y --no-install-recommends ${need[*]}"
    fi
  fi
  command -v apt-get >/dev/null 2>&1 \
    || die "missing packages and no apt-get here; install the Debian/Ubuntu packages ${need[*]} (or their commands promtool, prometheus, lintian, rpm, systemd-analyze, dpkg-deb) by hand"

  local start apt=(-o DPkg::Lock::Timeout=300 -o Acquire::Retries=3 -qq)
  start=$(date +%s.%N)
  say "installing Debian packages: ${need[*]}"
  # `update` takes the lists lock, which Lock::Timeout does not cover:
  # retry while another apt run holds it.
  local try
  for try in $(seq 1 60); do
    if "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "${apt[@]}" update; then break; fi
    [ "$try" -lt 60 ] || die "apt-get update failed"
    sleep 5
  done
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "${apt[@]}" install -y --no-install-recommends "${need[@]}" >/dev/null \
    || die "apt-get install ${need[*]} failed"
  installed+=("Debian packages ${need[*]} ($(elapsed "$start"))")
}

# ------------------------------------------------------------ pinned test peers
aemm() {
  if [ -x "$AEMM" ] && "$GO" version -m "$AEMM" 2>/dev/null | grep -q "^[[:space:]]*mod[[:space:]].*amazon-ec2-metadata-mock[[:space:]]*$AEMM_VERSION[[:space:]]"; then
    return 0
  fi
  local start
  start=$(date +%s.%N)
  say "building amazon-ec2-metadata-mock $AEMM_VERSION into ${AEMM#"$PWD"/}"
  mkdir -p "$TOOLS"
  GOBIN=$TOOLS "$GO" install "github.com/aws/amazon-ec2-metadata-mock/cmd/ec2-metadata-mock@$AEMM_VERSION"
  installed+=("amazon-ec2-metadata-mock $AEMM_VERSION ($(elapsed "$start"))")
}

# The stamp is written once pip has finished: an interrupted install is
# redone, not trusted.
moto() {
  local stamp=$MOTO_VENV/.scaledownd-moto-$MOTO_VERSION
  if [ -x "$MOTO_VENV/bin/moto_server" ] && [ -f "$stamp" ]; then
    return 0
  fi
  python_can_venv || die "moto needs Python 3 with its venv module; install it, then run make again: sudo apt-get install -y --no-install-recommends python3-venv"
  local start
  start=$(date +%s.%N)
  say "installing moto[server]==$MOTO_VERSION into ${MOTO_VENV#"$PWD"/}"
  rm -rf "$MOTO_VENV"
  mkdir -p "$(dirname "$MOTO_VENV")"
  "$PYTHON" -m venv "$MOTO_VENV"
  "$MOTO_VENV/bin/python" -m pip install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION" \
    || die "pip install moto[server]==$MOTO_VERSION failed"
  [ -x "$MOTO_VENV/bin/moto_server" ] || die "moto $MOTO_VERSION installed no $MOTO_VENV/bin/moto_server"
  touch "$stamp"
  installed+=("moto[server] $MOTO_VERSION ($(elapsed "$start"))")
}

parts=("$@")
((${#parts[@]})) || parts=(debs tools)
for p in "${parts[@]}"; do
  case "$p" in
    debs) debs ;;
    tools) aemm; moto ;;
    *) die "unknown part '$p' (debs or tools)" ;;
  esac
done

if ((${#installed[@]})); then
  for i in "${installed[@]}"; do say "installed $i"; done
else
  say "nothing to install: ${parts[*]} already present"
fi
