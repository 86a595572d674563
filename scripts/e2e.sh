#!/usr/bin/env bash
# shellcheck disable=SC2317 # cleanup and the helpers it calls run from traps
# End-to-end proof on a real Trino 476 cluster (`make e2e`, also run by .ci/run).
#
#   1. fetch Trino 476 and find a JDK 24+ (scripts/trino/fetch.sh; cached in .cache/trino)
#   2. start 1 coordinator (node-scheduler.include-coordinator=false) + 2 workers on free
#      loopback ports, shutdown.grace-period $GRACE, file-based access control where only
#      user scaledownd may write system information (scripts/trino/cluster.sh)
#   3. E: the wire contract table (internal/testpeers, TestTrinoContract) against the fresh
#      real nodes; it shuts both workers down, so they are restarted afterwards
#   4. the Go scenarios in e2e/ (build tag e2e): the real scaledownd binary against the
#      real worker 1, fake SQS/Auto Scaling and amazon-ec2-metadata-mock; the last (L)
#      starts worker 1 under a launch hook and waits for the real coordinator to list it
#
# Every process started is stopped by PID on success, failure or interrupt; node logs
# stay under build/e2e/ (cluster/<node>/var/log/server.log, copied to logs/) and their
# tails are printed on failure. Timings go to build/e2e/timings.txt.
#
# Env: GRACE (shutdown.grace-period, default 5s), E2E_RUN (go test -run filter for the
# Go scenarios, default all), E2E_SKIP_CONTRACT=1 (skip step 3), plus fetch.sh's
# TRINO_JAVA_HOME and the Makefile's TESTPEERS_AEMM.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$script_dir/.." && pwd)
out=$repo/build/e2e
cluster=$out/cluster
timings=$out/timings.txt
pidfile=$out/pids
cluster_sh=$script_dir/trino/cluster.sh
GRACE=${GRACE:-5s}

log() { printf 'e2e.sh: %s\n' "$*" >&2; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b-a }'; }
timing() {
	printf '%-46s %s\n' "$1" "$2" >>"$timings"
	log "timing: $1: $2"
}

STEP_PID=""
TAIL_PID=""
FAILED=0
CLEANED=""
T0=$(now)

fail() { # note a failure and go on
	FAILED=1
	log "FAILED: $*"
}
die() {
	FAILED=1
	log "ERROR: $*"
	exit 1
}

# run_step LOG SECONDS CMD...: run CMD in a session of its own (an interrupt ends it and
# all its children through its process group), at most SECONDS, its output going to LOG
# and, live, to stderr.
run_step() {
	local logf=$1 limit=$2
	shift 2
	: >"$logf"
	setsid timeout --kill-after=20 "$limit" "$@" >>"$logf" 2>&1 </dev/null &
	STEP_PID=$!
	tail -n +1 -s 0.2 -f --pid="$STEP_PID" "$logf" >&2 &
	TAIL_PID=$!
	local rc=0
	wait "$STEP_PID" || rc=$?
	STEP_PID=""
	wait "$TAIL_PID" 2>/dev/null || true
	TAIL_PID=""
	((rc == 124 || rc == 137)) && log "timed out after ${limit} s: $*"
	return "$rc"
}

# stop_group PID: SIGTERM the process group PID leads, SIGKILL after 10 s.
stop_group() {
	local pid=$1 i
	kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < 100; i++)); do
		kill -0 -- "-$pid" 2>/dev/null || kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	log "process group $pid still running 10 s after SIGTERM; SIGKILL"
	kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
}

# stop_pid PID WHAT: SIGTERM, SIGKILL after 10 s.
stop_pid() {
	local pid=$1 i
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < 100; i++)); do
		[[ -e /proc/$pid ]] || return 0
		[[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" == Z ]] && return 0
		sleep 0.1
	done
	log "$2 (pid $pid) still running 10 s after SIGTERM; SIGKILL"
	kill -KILL "$pid" 2>/dev/null || true
}

# stop_listed: the processes the Go tests started (scaledownd, amazon-ec2-metadata-mock),
# listed as "PID PATH" in $pidfile; a PID whose executable is not PATH was reused: skipped.
stop_listed() {
	[[ -f "$pidfile" ]] || return 0
	local pid path exe
	while read -r pid path; do
		exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || continue
		[[ "$exe" == "$(readlink -f "$path")" ]] || continue
		log "stopping $(basename "$path") (pid $pid), left running by the tests"
		stop_pid "$pid" "$(basename "$path")"
	done <"$pidfile"
}

# stop_strays: any Trino JVM of this cluster directory not recorded in cluster.env
# (e.g. an interrupted restart-worker).
stop_strays() {
	local d pid cmd
	for d in /proc/[0-9]*; do
		pid=${d#/proc/}
		cmd=$(tr '\0' ' ' <"$d/cmdline" 2>/dev/null) || continue
		[[ "$cmd" == *"-Dnode.data-dir=$cluster/"* ]] || continue
		log "stray Trino JVM of $cluster (pid $pid); stopping it"
		stop_pid "$pid" "Trino JVM"
	done
}

# check_ports: the cluster's ports are free again.
check_ports() {
	[[ -f "$cluster/cluster.env" ]] || return 0
	local ports p i busy
	ports=$(sed -n 's/^\(COORD\|WORKER[0-9]*\)_PORT=//p' "$cluster/cluster.env")
	for ((i = 0; i < 50; i++)); do
		busy=""
		for p in $ports; do
			[[ -n "$(ss -Hltn "sport = :$p" 2>/dev/null)" ]] && busy+=" $p"
		done
		[[ -z "$busy" ]] && break
		sleep 0.1
	done
	if [[ -n "$busy" ]]; then
		log "ERROR: ports still listening after cleanup:$busy"
		local re
		re=$(tr ' ' '|' <<<"${busy# }")
		ss -Hltnp 2>/dev/null | grep -E ":(${re}) " >&2 || true
		return 1
	fi
	log "ports free: ${ports//$'\n'/ }"
}

print_failure_logs() {
	local f
	for f in "$cluster"/*/var/log/server.log; do
		[[ -f "$f" ]] || continue
		printf '\n===== %s (last 60 lines) =====\n' "${f#"$repo"/}" >&2
		grep -v '^WARNING: ' "$f" | tail -n 60 >&2
	done
	for f in "$out"/*-scaledownd.log; do
		[[ -f "$f" ]] || continue
		printf '\n===== %s (last 15 lines) =====\n' "${f#"$repo"/}" >&2
		tail -n 15 "$f" >&2
	done
}

# print_test_failures LOG...: for every test that failed in a `go test -v` log, the lines
# it printed itself (its t.Error and t.Log lines), so the cause is in the last screen of
# output even when the log above is cut.
print_test_failures() {
	local f
	for f in "$@"; do
		[[ -f "$f" ]] && grep -q -- '--- FAIL: ' "$f" || continue
		printf '\n===== failed in %s =====\n' "${f#"$repo"/}" >&2
		awk '
			FNR == NR {
				if (match($0, /--- FAIL: [^ ]+/)) failed[substr($0, RSTART + 10, RLENGTH - 10)] = 1
				next
			}
			/^=== (RUN|CONT) / { cur = $3; next }
			/^(=== |--- |PASS$|FAIL$|ok |FAIL\t)/ || /^ *--- (PASS|FAIL|SKIP): / { next }
			cur in failed { out[cur] = out[cur] "\n" $0 }
			END { for (n in out) printf "--- FAIL: %s%s\n", n, out[n] }
		' "$f" "$f" >&2
	done
}

cleanup() {
	local rc=$?
	[[ -n "$CLEANED" ]] && return
	CLEANED=1
	trap '' INT TERM
	set +e
	((FAILED)) && ((rc == 0)) && rc=1
	local t0
	t0=$(now)
	log "cleaning up"
	[[ -n "$STEP_PID" ]] && stop_group "$STEP_PID"
	[[ -n "$TAIL_PID" ]] && kill "$TAIL_PID" 2>/dev/null
	stop_listed
	if [[ -f "$cluster/cluster.env" ]]; then
		STOP_TIMEOUT=30 "$cluster_sh" stop "$cluster" || rc=1
	fi
	stop_strays
	check_ports || rc=1
	mkdir -p "$out/logs"
	local node
	for node in "$cluster"/*/var/log/server.log; do
		[[ -f "$node" ]] && cp "$node" "$out/logs/$(basename "$(dirname "$(dirname "$(dirname "$node")")")").server.log"
	done
	((rc != 0)) && print_failure_logs
	timing "cleanup" "$(since "$t0") s"
	timing "TOTAL" "$(since "$T0") s ($( ((rc == 0)) && echo PASS || echo "FAIL, exit $rc"))"
	printf '\n===== %s =====\n' "${timings#"$repo"/}" >&2
	cat "$timings" >&2
	((rc != 0)) && print_test_failures "$out/contract.log" "$out/go-test.log"
	log "node logs: ${out#"$repo"/}/logs/, daemon logs: ${out#"$repo"/}/*-scaledownd.log"
	exit "$rc"
}

on_signal() {
	log "interrupted (SIG$1)"
	FAILED=1
	exit "$2"
}
trap cleanup EXIT
trap 'on_signal INT 130' INT
trap 'on_signal TERM 143' TERM

# ---------------------------------------------------------------------------

cd "$repo"
mkdir -p "$out"
# A cluster left by an aborted run: stop it by its recorded PIDs first.
if [[ -f "$cluster/cluster.env" ]]; then
	"$cluster_sh" stop "$cluster" || die "cannot stop the cluster left in $cluster"
fi
stop_strays
rm -rf "$out/logs" "$out"/*.log "$out/e2e-details.txt" "$pidfile"
printf '# scaledownd e2e timings, %s, %s cores, load %s\n' "$(date -u +%FT%TZ)" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)" >"$timings"

# 1. Trino 476 and a JDK 24+ -------------------------------------------------
t=$(now)
log "fetching Trino 476 (scripts/trino/fetch.sh) ..."
run_step "$out/fetch.log" 1200 "$script_dir/trino/fetch.sh" || die "scripts/trino/fetch.sh failed (see ${out#"$repo"/}/fetch.log)"
TRINO_JAVA_HOME=$(sed -n 's/^TRINO_JAVA_HOME=//p' "$out/fetch.log")
[[ -x "$TRINO_JAVA_HOME/bin/java" ]] || die "fetch.sh found no JDK 24+ (TRINO_JAVA_HOME='$TRINO_JAVA_HOME')"
if dl=$(grep -o 'downloaded [0-9]* bytes.*' "$out/fetch.log"); then
	timing "download trino-server-476.tar.gz" "${dl#downloaded }"
	up=$(grep -o 'unpacked .*' "$out/fetch.log" || true)
	[[ -n "$up" ]] && timing "unpack" "${up#unpacked }"
else
	timing "download trino-server-476.tar.gz" "cached ($(stat -c %s "$repo/.cache/trino/trino-server-476.tar.gz" 2>/dev/null || echo '?') bytes in .cache/trino)"
fi
timing "fetch.sh" "$(since "$t") s"
log "JDK: $TRINO_JAVA_HOME ($("$TRINO_JAVA_HOME/bin/java" -version 2>&1 | head -n 1))"

# 2. the cluster ---------------------------------------------------------------
t=$(now)
WORKERS=2 GRACE=$GRACE START_TIMEOUT=300 run_step "$out/cluster-start.log" 420 "$cluster_sh" start "$cluster" ||
	die "the Trino cluster did not start (see ${out#"$repo"/}/cluster-start.log)"
timing "cluster start (coordinator + 2 workers)" "$(since "$t") s"
# shellcheck source=/dev/null
source "$cluster/cluster.env"

# 3. E: the contract table against the fresh nodes -----------------------------
if [[ "${E2E_SKIP_CONTRACT:-}" != 1 ]]; then
	t=$(now)
	status=PASS
	TRINO_CONTRACT_WORKER_URL=$WORKER1_URL TRINO_CONTRACT_WORKER2_URL=$WORKER2_URL \
		TRINO_CONTRACT_COORDINATOR_URL=$COORD_URL TRINO_CONTRACT_GRACE=$GRACE \
		run_step "$out/contract.log" 900 go test -count=1 -v -run '^TestTrinoContract$' ./internal/testpeers/ || {
		status=FAIL
		fail "E: the contract table does not hold against the real cluster (see ${out#"$repo"/}/contract.log)"
	}
	if grep -q -- '--- SKIP: TestTrinoContract/real' "$out/contract.log"; then
		status=FAIL
		fail "E: the real contract cases were skipped"
	fi
	timing "E contract table vs real 476" "$(since "$t") s $status"

	# It ends with both workers shut down (or anywhere, if it failed): restart them.
	t=$(now)
	# shellcheck source=/dev/null
	source "$cluster/cluster.env"
	for pid in "$WORKER1_PID" "$WORKER2_PID"; do
		if [[ -r /proc/$pid/cmdline ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "-Dnode.data-dir=$cluster/"; then
			log "worker pid $pid still running after the contract test; stopping it"
			stop_pid "$pid" "Trino worker"
		fi
	done
	START_TIMEOUT=300 run_step "$out/restart-workers.log" 420 "$cluster_sh" restart-worker "$cluster" 1 2 ||
		die "workers did not come back after the contract test (see ${out#"$repo"/}/restart-workers.log)"
	timing "restart workers 1 and 2" "$(since "$t") s"
fi

# 4. the Go scenarios -----------------------------------------------------------
t=$(now)
E2E_CLUSTER_ENV=$cluster/cluster.env E2E_OUT_DIR=$out E2E_PID_FILE=$pidfile \
	run_step "$out/go-test.log" 2700 go test -tags e2e -race -count=1 -timeout 40m -v -run "${E2E_RUN:-.}" ./e2e/ ||
	fail "Go e2e scenarios (see ${out#"$repo"/}/go-test.log)"
timing "Go e2e scenarios (build + A B C D F L)" "$(since "$t") s"
while read -r _ result name dur; do
	case "$name" in
	TestF_*) label="F scaledownd check (real worker)" ;;
	TestD_*) label="D forbidden user -> deadline" ;;
	TestA_*) label="A auto: DRAINING with query in flight" ;;
	TestC_*) label="C queries during the drain -> worker 2" ;;
	TestB_*) label="B shutdown: SHUTTING_DOWN with query" ;;
	TestL_*) label="L launch: CONTINUE once coordinator lists it" ;;
	*) label=$name ;;
	esac
	timing "$label" "${dur//[()]/} $result"
done < <(grep -E '^--- (PASS|FAIL|SKIP): Test[A-Z]_' "$out/go-test.log" | sed 's/^--- \([A-Z]*\): /x \1 /')
if [[ -s "$out/e2e-details.txt" ]]; then
	{
		printf '\n# measured by the scenarios\n'
		cat "$out/e2e-details.txt"
		printf '\n'
	} >>"$timings"
fi
exit "$FAILED"
