#!/usr/bin/env bash
# Fetch the Trino 476 server tarball from Maven Central (with mvn) and unpack it
# under <repo>/.cache/trino/ (git-ignored). Idempotent: a complete earlier
# download/unpack is reused. Also locates a JDK 24+ and python3 (bin/launcher).
#
# Progress goes to stderr; on success stdout carries exactly two lines that
# scripts/trino/cluster.sh reads:
#   TRINO_HOME=<unpacked server dir>
#   TRINO_JAVA_HOME=<jdk dir>
#
# Env: TRINO_VERSION (default 476; newer servers are not on Maven Central),
#      TRINO_JAVA_HOME (JDK to use), TRINO_CACHE_DIR (default <repo>/.cache/trino).
set -euo pipefail

log() { printf 'fetch.sh: %s\n' "$*" >&2; }
die() { printf 'fetch.sh: ERROR: %s\n' "$*" >&2; exit 1; }

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "${script_dir}/../.." && pwd)
version=${TRINO_VERSION:-476}
cache_dir=${TRINO_CACHE_DIR:-${repo_root}/.cache/trino}
tarball=${cache_dir}/trino-server-${version}.tar.gz
home=${cache_dir}/trino-server-${version}
marker=${home}/.scaledownd-unpacked

# --- JDK 24+ -----------------------------------------------------------------
java_major() { # prints the feature version of $1/bin/java, or nothing
	local out
	[[ -x "$1/bin/java" ]] || return 0
	out=$("$1/bin/java" -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/ {print $2; exit}') || true
	printf '%s' "${out%%.*}"
}

find_jdk() {
	local cand major
	local -a cands=()
	[[ -n "${TRINO_JAVA_HOME:-}" ]] && cands+=("${TRINO_JAVA_HOME}")
	cands+=(/usr/lib/jvm/temurin-25-jdk-amd64)
	for cand in /usr/lib/jvm/*; do
		[[ -d "$cand" ]] && cands+=("$cand")
	done
	for cand in "${cands[@]}"; do
		major=$(java_major "$cand")
		if [[ "$major" =~ ^[0-9]+$ ]] && ((major >= 24)); then
			printf '%s' "$cand"
			return 0
		fi
		if [[ -n "${TRINO_JAVA_HOME:-}" && "$cand" == "${TRINO_JAVA_HOME}" ]]; then
			log "TRINO_JAVA_HOME=${TRINO_JAVA_HOME} is not a JDK 24+ (java major: '${major:-none}'), looking further"
		fi
	done
	return 1
}

jdk=$(find_jdk) || die "no JDK 24 or newer found (Trino ${version} needs one). Set TRINO_JAVA_HOME or install e.g. temurin-25-jdk under /usr/lib/jvm."
log "JDK: ${jdk} (java $(java_major "$jdk"))"

command -v python3 >/dev/null 2>&1 || die "python3 not found: Trino's bin/launcher needs it"
command -v mvn >/dev/null 2>&1 || die "mvn not found: needed to fetch io.trino:trino-server:${version}:tar.gz from Maven Central"

# --- download ----------------------------------------------------------------
mkdir -p "$cache_dir"
if [[ -f "$marker" && -x "${home}/bin/launcher" ]]; then
	log "reusing ${home} (unpacked earlier; marker present)"
else
	if [[ ! -s "$tarball" ]] || ! gzip -t "$tarball" 2>/dev/null; then
		rm -f "$tarball"
		log "downloading io.trino:trino-server:${version}:tar.gz from Maven Central ..."
		start=$(date +%s.%N)
		# A private local repo under the cache keeps ~/.m2 clean; the artifact is
		# removed from it afterwards so the tarball is stored only once.
		if ! mvn -B -q -C -Dstyle.color=never \
			-Dmaven.repo.local="${cache_dir}/m2" \
			org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy \
			-Dartifact="io.trino:trino-server:${version}:tar.gz" \
			-DoutputDirectory="$cache_dir" >"${cache_dir}/mvn-${version}.log" 2>&1; then
			grep -m3 ERROR "${cache_dir}/mvn-${version}.log" >&2 || true
			die "mvn could not fetch io.trino:trino-server:${version}:tar.gz (is Maven Central reachable? full log: ${cache_dir}/mvn-${version}.log)"
		fi
		end=$(date +%s.%N)
		rm -rf "${cache_dir}/m2/io/trino/trino-server"
		[[ -s "$tarball" ]] || die "mvn finished but ${tarball} is missing"
		gzip -t "$tarball" || die "${tarball} is corrupt"
		size=$(stat -c %s "$tarball")
		log "$(awk -v s="$size" -v a="$start" -v b="$end" 'BEGIN { printf "downloaded %d bytes (%.1f MiB) in %.1f s", s, s/1048576, b-a }')"
	else
		log "reusing tarball ${tarball} ($(stat -c %s "$tarball") bytes)"
	fi
	log "unpacking ..."
	start=$(date +%s.%N)
	rm -rf "$home" "${home}.tmp"
	mkdir -p "${home}.tmp"
	tar -xzf "$tarball" -C "${home}.tmp" --strip-components=1
	[[ -x "${home}.tmp/bin/launcher" && -d "${home}.tmp/lib" && -d "${home}.tmp/plugin/tpch" ]] ||
		die "unpacked tree is incomplete (bin/launcher, lib/ or plugin/tpch/ missing)"
	mv "${home}.tmp" "$home"
	date -u +%FT%TZ >"$marker"
	end=$(date +%s.%N)
	log "$(awk -v a="$start" -v b="$end" -v d="$(du -sm "$home" | cut -f1)" 'BEGIN { printf "unpacked %d MiB in %.1f s", d, b-a }')"
fi
log "tarball size: $(stat -c %s "$tarball" 2>/dev/null || echo '?') bytes"

printf 'TRINO_HOME=%s\n' "$home"
printf 'TRINO_JAVA_HOME=%s\n' "$jdk"
