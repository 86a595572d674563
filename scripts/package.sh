#!/usr/bin/env bash
# Build the scaledownd packages into dist/: a static, stripped binary with
# the version stamped in, then nfpm (pinned, run through `go run`).
#
#   scripts/package.sh            # .deb and .rpm
#   scripts/package.sh deb        # only the .deb
#
# Environment:
#   VERSION  package and binary version, semver without a leading v
#            (default: the exact tag vX.Y.Z of HEAD, else 0.1.0-dev.g<sha>)
#   ARCH     target GOARCH (default: the host's)
#   GO       go command (default: go)
#   OUT_DIR  where the packages go (default: dist)
# Output: $OUT_DIR/scaledownd_<version>-1_<arch>.deb and
# $OUT_DIR/scaledownd-<version>-1.<rpm arch>.rpm (older builds for the same
# architecture are removed); nfpm prints the path of every package built.
set -euo pipefail
cd "$(dirname "$0")/.."

NFPM_VERSION=v2.45.2
GO=${GO:-go}
ARCH=${ARCH:-$(env -u GOARCH "$GO" env GOARCH)}
OUT_DIR=${OUT_DIR:-dist}

if [ -z "${VERSION:-}" ]; then
  if tag=$(git describe --tags --exact-match --match 'v[0-9]*' 2>/dev/null); then
    VERSION=${tag#v}
  else
    VERSION=0.1.0-dev.g$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
  fi
fi
VERSION=${VERSION#v}
case "$VERSION" in
  [0-9]*.[0-9]*.[0-9]*) ;;
  *) echo "package.sh: VERSION must be semver (X.Y.Z[-pre]), got '$VERSION'" >&2; exit 2 ;;
esac

packagers=("$@")
[ ${#packagers[@]} -gt 0 ] || packagers=(deb rpm)
for p in "${packagers[@]}"; do
  case "$p" in deb|rpm) ;; *) echo "package.sh: unknown packager '$p' (deb or rpm)" >&2; exit 2 ;; esac
done

BUILD_DIR=dist/build  # fixed: packaging/nfpm.yaml names these paths
rm -rf "$BUILD_DIR"
mkdir -p "$BUILD_DIR"

echo "== binary ($VERSION, linux/$ARCH)"
CGO_ENABLED=0 GOOS=linux GOARCH=$ARCH "$GO" build -trimpath -buildvcs=false -buildmode=pie \
  -ldflags "-s -w -X main.version=$VERSION" -o "$BUILD_DIR/scaledownd" ./cmd/scaledownd

gzip -9n <packaging/scaledownd.1 >"$BUILD_DIR/scaledownd.1.gz"
cp README.md "$BUILD_DIR/README.md"  # a snapshot: nfpm fails if a file changes while it packs

# The package changelog: an entry for this build on top of the release
# history in packaging/changelog.yaml (chglog format), unless that already
# has one for this version.
if grep -q "^- semver: $VERSION\$" packaging/changelog.yaml; then
  cp packaging/changelog.yaml "$BUILD_DIR/changelog.yaml"
else
  {
    echo "- semver: $VERSION"
    echo "  date: $(date -u -d "@${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}" +%Y-%m-%dT%H:%M:%SZ)"
    echo "  packager: $(sed -n 's/^maintainer: //p' packaging/nfpm.yaml)"
    echo "  deb: {urgency: medium, distributions: [stable]}"
    echo "  changes:"
    echo "    - note: Build $VERSION from commit $(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)."
    grep -v '^#' packaging/changelog.yaml || true  # the history may be empty
  } >"$BUILD_DIR/changelog.yaml"
fi

mkdir -p "$OUT_DIR"
rm -f "$OUT_DIR"/scaledownd_*_"$ARCH".deb "$OUT_DIR"/scaledownd-*."$(case $ARCH in amd64) echo x86_64;; arm64) echo aarch64;; *) echo "$ARCH";; esac)".rpm
for p in "${packagers[@]}"; do
  echo "== $p"
  # GOOS/GOARCH would cross-compile nfpm itself: run it for the host.
  env -u GOOS -u GOARCH VERSION="$VERSION" PKG_ARCH="$ARCH" \
    "$GO" run "github.com/goreleaser/nfpm/v2/cmd/nfpm@$NFPM_VERSION" pkg \
    --packager "$p" --config packaging/nfpm.yaml --target "$OUT_DIR/"
done
