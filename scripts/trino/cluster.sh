#!/usr/bin/env bash
# Run a real local Trino cluster (1 coordinator + N workers) on loopback, for
# end-to-end tests of scaledownd and for checking the fake in internal/testpeers.
#
# Usage:
#   scripts/trino/cluster.sh start  <dir>            start and wait until all workers are ACTIVE
#   scripts/trino/cluster.sh stop   <dir>            SIGTERM every process started here, SIGKILL after STOP_TIMEOUT
#   scripts/trino/cluster.sh status <dir>            PIDs, node states, coordinator's system.runtime.nodes
#   scripts/trino/cluster.sh restart-worker <dir> N [N...]  (re)start workers (same port/config) after they exited;
#                                                    WORKER_PORT=P (one worker): on port P instead, a new address
#                                                    the coordinator has never seen, like a new instance
#   scripts/trino/cluster.sh query  <dir> SQL        run SQL on the coordinator (user $QUERY_USER), print rows
#
# Env: WORKERS (2), GRACE (shutdown.grace-period, 5s), HEAP (1G), START_TIMEOUT (seconds, 300),
#      STOP_TIMEOUT (seconds, 40), QUERY_USER (e2e), plus fetch.sh's TRINO_JAVA_HOME.
#
# <dir>/cluster.env (sourceable) records: TRINO_HOME, TRINO_JAVA_HOME, GRACE, WORKERS,
# COORD_URL, COORD_PORT, COORD_PID, COORD_ID, WORKERn_URL, WORKERn_PORT, WORKERn_PID, WORKERn_ID.
# Per node: <dir>/etc/<node>/ (configs), <dir>/<node>/ (data dir), logs in <dir>/<node>/var/log/
# (server.log = console output), exit status of the last run in <dir>/<node>/var/exit-code.
#
# Security: every node uses file-based system access control (<dir>/etc/rules.json):
# everyone may read system information and query all catalogs, only user `scaledownd`
# may write system information (PUT /v1/info/state). Query rules: `scaledownd` may run
# and view every query (not kill), `carol` may run queries but view only her own,
# `viewer` may view but not run, everybody else may run, view and kill.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

log() { printf 'cluster.sh: %s\n' "$*" >&2; }
die() {
	printf 'cluster.sh: ERROR: %s\n' "$*" >&2
	exit 1
}
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b-a }'; }

usage() {
	sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

# ---------------------------------------------------------------------------
# helpers in python3 (HTTP polling and the statement protocol)

py_free_ports() { # N -> N distinct free loopback ports
	python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
PY
}

py_query() { # URL USER SQL -> rows as tab-separated lines
	python3 - "$@" <<'PY'
import json, sys, time, urllib.request
url, user, sql = sys.argv[1:4]
req = urllib.request.Request(url + "/v1/statement", data=sql.encode(), method="POST",
                             headers={"X-Trino-User": user, "Content-Type": "text/plain"})
doc = json.load(urllib.request.urlopen(req, timeout=30))
rows = []
while True:
    rows.extend(doc.get("data") or [])
    if "error" in doc:
        err = doc["error"]
        sys.exit("query failed: %s: %s" % (err.get("errorName"), err.get("message")))
    nxt = doc.get("nextUri")
    if not nxt:
        break
    r = urllib.request.Request(nxt, headers={"X-Trino-User": user})
    doc = json.load(urllib.request.urlopen(r, timeout=30))
for row in rows:
    print("\t".join("" if v is None else str(v) for v in row))
PY
}

# Wait until every worker answers ACTIVE and the coordinator lists them all as
# active. Args: TIMEOUT COORD_URL then pairs of "id url pid" for coordinator and workers.
py_wait_ready() {
	python3 - "$@" <<'PY'
import json, os, sys, time, urllib.request, urllib.error
timeout, coord_url = float(sys.argv[1]), sys.argv[2]
rest = sys.argv[3:]
nodes = [tuple(rest[i:i + 3]) for i in range(0, len(rest), 3)]  # (id, url, pid)
workers = {nid for nid, url, pid in nodes if url != coord_url}
deadline = time.time() + timeout

def get(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.load(r)

def known_to_coordinator():
    # The coordinator's failure detector (/v1/node) lists the workers it has
    # discovered. A query issued before that waits for workers (up to
    # query-manager.required-workers-max-wait, 5 min), so ask this first.
    req = urllib.request.Request(coord_url + "/v1/node", headers={"X-Trino-User": "e2e"})
    with urllib.request.urlopen(req, timeout=5) as r:
        seen = {n.get("uri", "").rsplit("/v1/", 1)[0] for n in json.load(r)}
    return [nid for nid, url, pid in nodes if nid in workers and url not in seen]

def nodes_view():
    req = urllib.request.Request(coord_url + "/v1/statement", method="POST",
                                 data=b"SELECT node_id, state FROM system.runtime.nodes WHERE coordinator = false",
                                 headers={"X-Trino-User": "e2e"})
    doc = json.load(urllib.request.urlopen(req, timeout=10))
    rows = []
    give_up = min(deadline, time.time() + 20)
    while True:
        rows.extend(doc.get("data") or [])
        if "error" in doc:
            raise RuntimeError(doc["error"].get("message"))
        if not doc.get("nextUri"):
            return {r[0]: r[1] for r in rows}
        if time.time() > give_up:
            try:
                urllib.request.urlopen(urllib.request.Request(doc["nextUri"], method="DELETE",
                                                              headers={"X-Trino-User": "e2e"}), timeout=5).close()
            except (OSError, urllib.error.URLError):
                pass
            raise RuntimeError("system.runtime.nodes query not done after 20s (state %s)" %
                               (doc.get("stats") or {}).get("state"))
        time.sleep(0.05)
        doc = json.load(urllib.request.urlopen(
            urllib.request.Request(doc["nextUri"], headers={"X-Trino-User": "e2e"}), timeout=10))

last = "nothing checked yet"
next_report = time.time() + 15
while time.time() < deadline:
    if time.time() >= next_report:
        sys.stderr.write("cluster.sh: still waiting (%.0fs left): %s\n" % (deadline - time.time(), last))
        next_report = time.time() + 15
    for nid, url, pid in nodes:
        if not os.path.exists("/proc/%s" % pid):
            sys.exit("node %s (pid %s) exited during startup" % (nid, pid))
    try:
        pending = []
        for nid, url, pid in nodes:
            info = get(url + "/v1/info")
            if info.get("starting", True):
                pending.append(nid + " starting")
            elif url != coord_url:
                state = get(url + "/v1/info/state")
                if state != "ACTIVE":
                    pending.append("%s %s" % (nid, state))
        if not pending:
            unknown = known_to_coordinator()
            if unknown:
                pending.append("coordinator has not discovered %s yet" % ", ".join(unknown))
        if not pending:
            view = nodes_view()
            missing = [w for w in sorted(workers) if view.get(w) != "active"]
            if not missing:
                print("coordinator sees all workers active: %s" % json.dumps(view, sort_keys=True))
                sys.exit(0)
            pending.append("coordinator view %s" % json.dumps(view, sort_keys=True))
        last = "; ".join(pending)
    except (OSError, urllib.error.URLError, RuntimeError, ValueError) as e:
        last = "%s: %s" % (type(e).__name__, e)
    time.sleep(1)
sys.exit("timed out after %.0fs; last: %s" % (timeout, last))
PY
}

# ---------------------------------------------------------------------------

load_env() { # DIR
	[[ -f "$1/cluster.env" ]] || die "$1/cluster.env not found (was the cluster started with '$0 start $1'?)"
	# shellcheck source=/dev/null
	source "$1/cluster.env"
}

ensure_nofile() {
	local soft hard
	soft=$(ulimit -Sn)
	hard=$(ulimit -Hn)
	if [[ "$soft" != unlimited ]] && ((soft < 4096)); then
		if [[ "$hard" == unlimited ]] || ((hard >= 65536)); then
			ulimit -Sn 65536
		else
			ulimit -Sn "$hard"
		fi
	fi
	soft=$(ulimit -Sn)
	if [[ "$soft" != unlimited ]] && ((soft < 4096)); then
		die "open-file limit is $soft (hard $hard); Trino refuses to start below 4096 (raise it with 'ulimit -n 4096' as root)"
	fi
}

write_common_etc() { # DIR
	local dir=$1
	mkdir -p "$dir/etc"
	cat >"$dir/etc/rules.json" <<'JSON'
{
  "catalogs": [
    { "allow": "all" }
  ],
  "queries": [
    { "user": "scaledownd", "allow": ["execute", "view"] },
    { "user": "carol", "allow": ["execute"] },
    { "user": "viewer", "allow": ["view"] },
    { "allow": ["execute", "view", "kill"] }
  ],
  "system_information": [
    { "user": "scaledownd", "allow": ["read", "write"] },
    { "allow": ["read"] }
  ]
}
JSON
}

write_node_etc() { # DIR NODE NODE_ID PORT COORD_PORT IS_COORD
	local dir=$1 node=$2 id=$3 port=$4 cport=$5 is_coord=$6
	local etc=$dir/etc/$node data=$dir/$node
	mkdir -p "$etc/catalog" "$data/var/log"
	printf 'connector.name=tpch\n' >"$etc/catalog/tpch.properties"
	cat >"$etc/node.properties" <<EOF
node.environment=e2e
node.id=$id
node.data-dir=$data
node.bind-ip=127.0.0.1
node.internal-address=127.0.0.1
EOF
	{
		if [[ "$is_coord" == true ]]; then
			printf 'coordinator=true\nnode-scheduler.include-coordinator=false\n'
		else
			printf 'coordinator=false\n'
		fi
		printf 'http-server.http.port=%s\n' "$port"
		printf 'discovery.uri=http://127.0.0.1:%s\n' "$cport"
		# airlift's default is 5 min: a discovery lookup that hits the coordinator
		# while its HTTP server is still starting can hang that long, and the
		# coordinator then knows no workers (observed: cluster start 354 s)
		printf 'discovery.http-client.request-timeout=10s\n'
		printf 'shutdown.grace-period=%s\n' "$GRACE"
		printf 'access-control.config-files=%s/access-control.properties\n' "$etc"
		# small cluster on 2 cores: keep memory and threads modest
		printf 'query.max-memory=1GB\nquery.max-memory-per-node=300MB\n'
		printf 'task.concurrency=2\ntask.max-worker-threads=4\n'
	} >"$etc/config.properties"
	cat >"$etc/access-control.properties" <<EOF
access-control.name=file
security.config-file=$dir/etc/rules.json
EOF
	cat >"$etc/jvm.config" <<EOF
-server
-Xmx$HEAP
-XX:+UseG1GC
-XX:+ExplicitGCInvokesConcurrent
-XX:+ExitOnOutOfMemoryError
-XX:-OmitStackTraceInFastThrow
-XX:ReservedCodeCacheSize=150M
-XX:+EnableDynamicAgentLoading
-Djdk.attach.allowAttachSelf=true
-Djdk.nio.maxCachedBufferSize=2000000
-Dfile.encoding=UTF-8
EOF
	printf 'io.trino.server.NodeStateManager=DEBUG\n' >"$etc/log.properties"
}

# launch_node DIR NODE -> prints the PID of the Trino JVM
launch_node() {
	local dir=$1 node=$2
	local etc=$dir/etc/$node data=$dir/$node
	rm -f "$data/var/exit-code" "$data/var/java.pid"
	mkdir -p "$data/var/log"
	# A wrapper shell in its own session runs the launcher (which execs the JVM),
	# records the JVM's PID and, when it ends, its exit status.
	# shellcheck disable=SC2016
	setsid bash -c '
		data=$1; shift
		"$@" &
		echo $! >"$data/var/java.pid"
		wait $!
		echo $? >"$data/var/exit-code"
	' _ "$data" env JAVA_HOME="$TRINO_JAVA_HOME" PATH="$TRINO_JAVA_HOME/bin:$PATH" \
		"$TRINO_HOME/bin/launcher" -etc-dir "$etc" -data-dir "$data" \
		-jvm-dir "$TRINO_JAVA_HOME" run \
		>>"$data/var/log/server.log" 2>&1 </dev/null 9>&- &
	local i
	for ((i = 0; i < 100; i++)); do
		[[ -s "$data/var/java.pid" ]] && break
		sleep 0.05
	done
	[[ -s "$data/var/java.pid" ]] || die "could not start $node (see $data/var/log/server.log)"
	cat "$data/var/java.pid"
}

write_env() { # DIR
	local dir=$1 i
	{
		printf '# written by scripts/trino/cluster.sh at %s\n' "$(date -u +%FT%TZ)"
		printf 'TRINO_HOME=%q\nTRINO_JAVA_HOME=%q\nGRACE=%q\nWORKERS=%q\n' "$TRINO_HOME" "$TRINO_JAVA_HOME" "$GRACE" "$WORKERS"
		printf 'COORD_ID=%q\nCOORD_PORT=%q\nCOORD_URL=%q\nCOORD_PID=%q\n' coordinator "$COORD_PORT" "http://127.0.0.1:$COORD_PORT" "$COORD_PID"
		for ((i = 1; i <= WORKERS; i++)); do
			local port_var=WORKER${i}_PORT pid_var=WORKER${i}_PID
			printf 'WORKER%d_ID=%q\nWORKER%d_PORT=%q\nWORKER%d_URL=%q\nWORKER%d_PID=%q\n' \
				"$i" "worker-$i" "$i" "${!port_var}" "$i" "http://127.0.0.1:${!port_var}" "$i" "${!pid_var}"
		done
	} >"$dir/cluster.env.tmp"
	mv "$dir/cluster.env.tmp" "$dir/cluster.env"
}

print_logs() { # DIR
	local f
	for f in "$1"/*/var/log/server.log; do
		[[ -f "$f" ]] || continue
		printf '\n===== %s (last 40 lines) =====\n' "$f" >&2
		tail -n 40 "$f" >&2
	done
}

node_list() { # -> "id url pid" triples for coordinator and workers (needs env loaded)
	local i
	printf '%s %s %s ' coordinator "$COORD_URL" "$COORD_PID"
	for ((i = 1; i <= WORKERS; i++)); do
		local u=WORKER${i}_URL p=WORKER${i}_PID
		printf '%s %s %s ' "worker-$i" "${!u}" "${!p}"
	done
}

# is_ours PID DIR: the PID is alive and is a Trino JVM started for DIR
is_ours() {
	[[ -n "$1" && -r "/proc/$1/cmdline" ]] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -qF -- "$2/"
}

# lingering PID DIR: the PID is still in the process table as a zombie or as
# an exiting Trino JVM of DIR
lingering() {
	[[ -n "$1" && -e "/proc/$1" ]] || return 1
	is_ours "$1" "$2" && return 0
	[[ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" == Z ]]
}

stop_pids() { # DIR PID...
	local dir=$1 pid waited=0
	shift
	local -a live=()
	for pid in "$@"; do
		if is_ours "$pid" "$dir"; then
			kill -TERM "$pid" 2>/dev/null && live+=("$pid")
		fi
	done
	while ((${#live[@]} > 0)); do
		local -a still=()
		for pid in "${live[@]}"; do
			kill -0 "$pid" 2>/dev/null && still+=("$pid")
		done
		live=("${still[@]+"${still[@]}"}")
		((${#live[@]} == 0)) && break
		if ((waited >= STOP_TIMEOUT * 10)); then
			log "still running after ${STOP_TIMEOUT}s, sending SIGKILL to ${live[*]}"
			for pid in "${live[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
			sleep 0.5
			break
		fi
		sleep 0.1
		waited=$((waited + 1))
	done
}

# ---------------------------------------------------------------------------

cmd_start() {
	local dir=$1 i t0 ports
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	if [[ -f "$dir/cluster.env" ]]; then
		load_env "$dir"
		if is_ours "${COORD_PID:-}" "$dir"; then
			die "a cluster is already running from $dir (coordinator pid $COORD_PID); run '$0 stop $dir' first"
		fi
	fi
	WORKERS=${WORKERS_REQ}
	GRACE=${GRACE_REQ}
	[[ "$WORKERS" =~ ^[1-9][0-9]*$ ]] || die "WORKERS must be a positive integer, got '$WORKERS'"

	local fetch_out k v
	fetch_out=$("$script_dir/fetch.sh") || die "fetch.sh failed"
	while IFS='=' read -r k v; do
		case "$k" in
		TRINO_HOME) TRINO_HOME=$v ;;
		TRINO_JAVA_HOME) TRINO_JAVA_HOME=$v ;;
		esac
	done <<<"$fetch_out"
	[[ -n "${TRINO_HOME:-}" && -n "${TRINO_JAVA_HOME:-}" ]] || die "fetch.sh printed no TRINO_HOME/TRINO_JAVA_HOME"
	command -v python3 >/dev/null 2>&1 || die "python3 is required"
	ensure_nofile

	# fresh node dirs each start (old logs are dropped)
	rm -rf "${dir:?}/etc" "${dir:?}/coordinator" "${dir:?}"/worker-*
	write_common_etc "$dir"
	read -r -a ports <<<"$(py_free_ports $((WORKERS + 1)))"
	COORD_PORT=${ports[0]}
	COORD_URL=http://127.0.0.1:$COORD_PORT
	write_node_etc "$dir" coordinator coordinator "$COORD_PORT" "$COORD_PORT" true
	for ((i = 1; i <= WORKERS; i++)); do
		printf -v "WORKER${i}_PORT" '%s' "${ports[$i]}"
		printf -v "WORKER${i}_URL" '%s' "http://127.0.0.1:${ports[$i]}"
		write_node_etc "$dir" "worker-$i" "worker-$i" "${ports[$i]}" "$COORD_PORT" false
	done

	t0=$(now)
	log "starting Trino (coordinator :$COORD_PORT, $WORKERS workers, grace $GRACE, heap $HEAP, ulimit -n $(ulimit -n))"
	COORD_PID=$(launch_node "$dir" coordinator)
	for ((i = 1; i <= WORKERS; i++)); do
		printf -v "WORKER${i}_PID" '%s' "$(launch_node "$dir" "worker-$i")"
	done
	write_env "$dir"

	local -a nl
	read -r -a nl <<<"$(node_list)"
	if ! py_wait_ready "$START_TIMEOUT" "$COORD_URL" "${nl[@]}" >&2; then
		print_logs "$dir"
		log "start failed; stopping what was started"
		cmd_stop "$dir"
		exit 1
	fi
	log "cluster started in $(elapsed "$t0") s: coordinator $COORD_URL, workers $(for ((i = 1; i <= WORKERS; i++)); do u=WORKER${i}_URL; printf '%s ' "${!u}"; done)"
	log "env: $dir/cluster.env"
}

cmd_restart_worker() { # DIR N... : launch the workers together, then wait for all
	local dir n t0
	dir=$(cd "$1" && pwd)
	shift
	# one restart at a time per cluster: cluster.env is rewritten with every PID
	exec 9>"$dir/.restart.lock"
	flock -w "$START_TIMEOUT" 9 || die "another restart-worker holds $dir/.restart.lock"
	load_env "$dir"
	local -a wait_args=(coordinator "$COORD_URL" "$COORD_PID")
	for n in "$@"; do
		[[ "$n" =~ ^[1-9][0-9]*$ ]] || die "worker number must be a positive integer, got '$n'"
		local pid_var=WORKER${n}_PID url_var=WORKER${n}_URL
		[[ -n "${!url_var:-}" ]] || die "no worker $n in $dir/cluster.env"
		if is_ours "${!pid_var}" "$dir"; then
			die "worker $n (pid ${!pid_var}) is still running"
		fi
		# An exiting JVM can linger (its threads tearing down, or a zombie not yet
		# reaped by its wrapper); Trino's launcher refuses to start while the old
		# PID exists ("already running"), so wait for it to leave the process table.
		local i
		for ((i = 0; i < 300; i++)); do
			lingering "${!pid_var}" "$dir" || break
			sleep 0.1
		done
		! lingering "${!pid_var}" "$dir" || die "old pid ${!pid_var} of worker $n did not go away within 30 s"
	done
	if [[ -n "${WORKER_PORT:-}" ]]; then
		# a new address: the coordinator's discovery has never seen it, as with a
		# freshly launched instance (a worker back on a known address is listed as
		# soon as it answers, even while it is still starting)
		[[ $# -eq 1 && "$WORKER_PORT" =~ ^[1-9][0-9]*$ ]] || die "WORKER_PORT needs one worker number and a port, got '$*' and '$WORKER_PORT'"
		sed -i "s/^http-server.http.port=.*/http-server.http.port=$WORKER_PORT/" "$dir/etc/worker-$1/config.properties"
		printf -v "WORKER${1}_PORT" '%s' "$WORKER_PORT"
		printf -v "WORKER${1}_URL" '%s' "http://127.0.0.1:$WORKER_PORT"
	fi
	ensure_nofile
	t0=$(now)
	for n in "$@"; do
		local pid_var=WORKER${n}_PID url_var=WORKER${n}_URL
		printf -v "$pid_var" '%s' "$(launch_node "$dir" "worker-$n")"
		write_env "$dir"
		wait_args+=("worker-$n" "${!url_var}" "${!pid_var}")
	done
	py_wait_ready "$START_TIMEOUT" "$COORD_URL" "${wait_args[@]}" >&2 || {
		print_logs "$dir"
		die "worker(s) $* did not become active"
	}
	local pids=""
	for n in "$@"; do
		local pid_var=WORKER${n}_PID
		pids+=" ${!pid_var}"
	done
	log "worker(s) $* restarted in $(elapsed "$t0") s (pid${pids})"
}

cmd_stop() {
	local dir i
	dir=$(cd "$1" && pwd)
	load_env "$dir"
	local -a pids=()
	for ((i = 1; i <= WORKERS; i++)); do
		local p=WORKER${i}_PID
		pids+=("${!p}")
	done
	pids+=("$COORD_PID")
	local t0
	t0=$(now)
	stop_pids "$dir" "${pids[@]}"
	for p in "${pids[@]}"; do
		if kill -0 "$p" 2>/dev/null && is_ours "$p" "$dir"; then
			die "pid $p is still running"
		fi
	done
	log "stopped (${#pids[@]} processes checked) in $(elapsed "$t0") s"
}

cmd_status() {
	local dir i rc=0
	dir=$(cd "$1" && pwd)
	load_env "$dir"
	show() { # name url pid
		local alive=dead state
		is_ours "$3" "$dir" && alive=running
		state=$(curl -s -m 3 "$2/v1/info/state" 2>/dev/null) || state='(no answer)'
		local ec=""
		[[ -f "$dir/$1/var/exit-code" ]] && ec=" last-exit=$(cat "$dir/$1/var/exit-code")"
		printf '%-12s pid %-8s %-8s %-26s state %s%s\n' "$1" "$3" "$alive" "$2" "$state" "$ec"
		[[ "$alive" == running ]]
	}
	show coordinator "$COORD_URL" "$COORD_PID" || rc=1
	for ((i = 1; i <= WORKERS; i++)); do
		local u=WORKER${i}_URL p=WORKER${i}_PID
		show "worker-$i" "${!u}" "${!p}" || rc=1
	done
	if is_ours "$COORD_PID" "$dir"; then
		printf '\nsystem.runtime.nodes:\n'
		py_query "$COORD_URL" "$QUERY_USER" 'SELECT node_id, http_uri, node_version, coordinator, state FROM system.runtime.nodes ORDER BY node_id' || rc=1
	fi
	return "$rc"
}

cmd_query() {
	local dir
	dir=$(cd "$1" && pwd)
	load_env "$dir"
	py_query "$COORD_URL" "$QUERY_USER" "$2"
}

# ---------------------------------------------------------------------------

WORKERS_REQ=${WORKERS:-2}
GRACE_REQ=${GRACE:-5s}
HEAP=${HEAP:-1G}
START_TIMEOUT=${START_TIMEOUT:-300}
STOP_TIMEOUT=${STOP_TIMEOUT:-40}
QUERY_USER=${QUERY_USER:-e2e}

[[ $# -ge 2 ]] || usage
cmd=$1
target=$2
case "$cmd" in
start) cmd_start "$target" ;;
stop) cmd_stop "$target" ;;
status) cmd_status "$target" ;;
restart-worker)
	[[ $# -ge 3 ]] || usage
	shift 2
	cmd_restart_worker "$target" "$@"
	;;
query)
	[[ $# -eq 3 ]] || usage
	cmd_query "$target" "$3"
	;;
*) usage ;;
esac
