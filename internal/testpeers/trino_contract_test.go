package testpeers

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The Trino contract: one table of wire-level cases, run in order against
// the fake always and against a real Trino 476 node when
//
//	TRINO_CONTRACT_WORKER_URL       a fresh ACTIVE worker (group "worker"; it ends shut down)
//	TRINO_CONTRACT_WORKER2_URL      a second fresh worker (group "worker2"; it ends shut down)
//	TRINO_CONTRACT_COORDINATOR_URL  the coordinator (group "coordinator"; left running)
//	TRINO_CONTRACT_GRACE            the workers' shutdown.grace-period (default 5s)
//
// are set (scripts/trino/cluster.sh start build/e2e/cluster; the URLs are in
// its cluster.env). The real nodes need user "scaledownd" allowed to write
// system information and "alice" not; the coordinator's node id must be
// "coordinator". Each group starts from a fresh node; its one-way
// transitions (SHUTTING_DOWN) come last. The coordinator's group runs first,
// while the workers are up: without an active worker a real coordinator
// holds every query (query-manager.required-workers).
type trinoContractCase struct {
	name  string
	group string // "worker", "worker2" or "coordinator"

	// request (method "" = no request: a wait step)
	method, path string
	user         string // X-Trino-User
	basic        string // "user:password" sent as HTTP Basic
	contentType  string
	body         string

	wantStatus  int
	wantCT      string   // exact Content-Type ("-" = header absent)
	wantBody    []string // substrings of the body
	notBody     []string // must not occur in the body
	wantBodyEq  *string  // exact body
	wantHeaders map[string]string

	// state after the step (GET /v1/info/state; TrinoExited = connection refused)
	wantState string

	// mark makes this request the reference time of the next wait step.
	mark bool
	// wait step: poll until this state; the time since the last marked
	// request must lie in [minGrace, maxGrace] grace periods (+ slack).
	waitState          string
	minGrace, maxGrace float64

	// statement step (sql set): run sql through the client statement
	// protocol as user trinoMgr (POST /v1/statement, then nextUri until an
	// answer has none; cancel: DELETE the first nextUri before following),
	// checking the shape of every answer, then the outcome; wantBody
	// holds substrings of error.message.
	sql       string
	cancel    bool
	wantRows  string // the rows as JSON, e.g. [["active"]] or []
	wantFinal string // the last answer's stats.state
	wantErr   string // error.errorName
	wantErrAt [2]int // error.errorLocation line and column

	// query resource steps (GET /v1/query…): startQuery starts the long
	// query as trinoOwner from source trinoSource and waits until it runs a
	// task on a worker; "{started}" in path is its id; checkJSON checks a
	// 200 answer; blocking runs trinoadmin's BlockingQueries for the node
	// the query runs on (wantListed: it lists the query); stopQuery
	// cancels it as its owner and waits until it is FAILED.
	startQuery, stopQuery bool
	checkJSON             func(t *testing.T, body []byte, q *trinoStarted)
	blocking              bool
	wantListed            bool
}

// trinoStarted is the query a group's startQuery step started.
type trinoStarted struct {
	id   string
	node string // a worker it runs a task on
}

func trinoStr(s string) *string { return &s }

const (
	trinoJSONCT = "application/json"
	trinoMgr    = "scaledownd"
)

func trinoPut(name, group, user, body string, status int, wantBody []string, state string) trinoContractCase {
	return trinoContractCase{name: name, group: group, method: http.MethodPut, path: "/v1/info/state",
		user: user, contentType: trinoJSONCT, body: body, wantStatus: status, wantBody: wantBody, wantState: state}
}

func trinoMark(c trinoContractCase) trinoContractCase { c.mark = true; return c }

// trinoNodeQuery is the statement scaledownd sends before it continues a
// launch, for a node id already written as a SQL literal.
func trinoNodeQuery(literal string) string {
	return "SELECT state FROM system.runtime.nodes WHERE node_id = " + literal
}

var trinoContractCases = func() []trinoContractCase {
	enumErr := []string{"io.airlift.jaxrs.JsonParsingException: com.fasterxml.jackson.databind.exc.InvalidFormatException: Cannot deserialize value of type `io.trino.metadata.NodeState` from String \"FOO\": not one of the values accepted for Enum class: [DRAINING, INACTIVE, ACTIVE, SHUTTING_DOWN, DRAINED]"}
	invalid := func(s string) []string { return []string{"Error 400 Bad Request: Invalid state transition to " + s} }
	const W, W2, C = "worker", "worker2", "coordinator"
	return []trinoContractCase{
		// --- worker: no statement endpoint
		{name: "no-statement-endpoint", group: W, method: "POST", path: "/v1/statement", user: trinoMgr, body: trinoNodeQuery(`'worker-1'`),
			wantStatus: 404, wantCT: "text/plain", wantBodyEq: trinoStr(TrinoMsgNotFound)},
		// --- worker: public GETs
		{name: "info", group: W, method: "GET", path: "/v1/info", wantStatus: 200, wantCT: trinoJSONCT,
			wantBody: []string{`{"nodeVersion":{"version":"476"},"environment":`, `"coordinator":false,"starting":false,"uptime":"`},
			notBody:  []string{`"state"`, `"nodeId"`}, wantHeaders: map[string]string{"X-Content-Type-Options": "nosniff"}},
		{name: "state", group: W, method: "GET", path: "/v1/info/state", wantStatus: 200, wantCT: trinoJSONCT, wantBodyEq: trinoStr(`"ACTIVE"`)},
		{name: "coordinator-404", group: W, method: "GET", path: "/v1/info/coordinator", wantStatus: 404, wantCT: "text/plain", wantBodyEq: trinoStr(TrinoMsgNotFound)},
		{name: "status", group: W, method: "GET", path: "/v1/status", wantStatus: 200, wantCT: trinoJSONCT,
			wantBody: []string{`"nodeVersion":{"version":"476"}`, `"coordinator":false`, `"memoryInfo":{"availableProcessors":`, `"taskMemoryReservations":{}`, `"queryMemoryReservations":{}`}},
		{name: "unknown-path", group: W, method: "GET", path: "/v1/nope", wantStatus: 404, wantCT: "text/plain", wantBodyEq: trinoStr(TrinoMsgNotFound)},
		// --- worker: /metrics is MANAGEMENT_READ
		{name: "metrics-anonymous", group: W, method: "GET", path: "/metrics", wantStatus: 401, wantCT: "text/plain;charset=utf-8",
			wantBodyEq: trinoStr(TrinoMsgNoIdentity), wantHeaders: map[string]string{"WWW-Authenticate": `Basic realm="Trino"`}},
		{name: "metrics-reader", group: W, method: "GET", path: "/metrics?name[]=" + TrinoMetricTasks, user: "alice", wantStatus: 200,
			wantCT: TrinoContentTypeOpenMetrics, wantBodyEq: trinoStr("# TYPE " + TrinoMetricTasks + " gauge\n" + TrinoMetricTasks + " 0.0\n# EOF\n")},
		{name: "metrics-failed-counter", group: W, method: "GET", path: "/metrics", user: trinoMgr, wantStatus: 200, wantCT: TrinoContentTypeOpenMetrics,
			wantBody: []string{"# TYPE " + TrinoMetricFailedTasks + " counter\n# HELP " + TrinoMetricFailedTasks + " Failed tasks counter\n" + TrinoMetricFailedTasks + " 0\n", "\n# EOF\n"}},
		// --- worker: PUT errors (state stays ACTIVE)
		{name: "put-wrong-content-type", group: W, method: "PUT", path: "/v1/info/state", user: trinoMgr, contentType: "text/plain", body: `"DRAINING"`,
			wantStatus: 415, wantCT: "-", wantBodyEq: trinoStr(""), wantState: TrinoActive},
		{name: "put-no-content-type-no-user", group: W, method: "PUT", path: "/v1/info/state", body: `"DRAINING"`,
			wantStatus: 401, wantBodyEq: trinoStr(TrinoMsgNoIdentity), wantState: TrinoActive},
		{name: "put-no-content-type-not-allowed", group: W, method: "PUT", path: "/v1/info/state", user: "alice", body: `"DRAINING"`,
			wantStatus: 403, wantBodyEq: trinoStr(TrinoMsgForbidden), wantState: TrinoActive},
		{name: "put-no-content-type", group: W, method: "PUT", path: "/v1/info/state", user: trinoMgr, body: `"DRAINING"`,
			wantStatus: 415, wantCT: "-", wantBodyEq: trinoStr(""), wantState: TrinoActive},
		{name: "put-wrong-content-type-no-user", group: W, method: "PUT", path: "/v1/info/state", contentType: "application/x-www-form-urlencoded", body: `"DRAINING"`,
			wantStatus: 415, wantState: TrinoActive},
		{name: "put-unparsable-content-type", group: W, method: "PUT", path: "/v1/info/state", user: trinoMgr, contentType: "garbage", body: `"DRAINING"`,
			wantStatus: 400, wantBodyEq: trinoStr(""), wantState: TrinoActive},
		{name: "put-wildcard-content-type", group: W, method: "PUT", path: "/v1/info/state", user: trinoMgr, contentType: "*/*", body: `"DRAINING"`,
			wantStatus: 500, wantBody: []string{`java.lang.IllegalArgumentException: No enum constant io.trino.metadata.NodeState."DRAINING"`}, wantState: TrinoActive},
		{name: "put-no-identity", group: W, method: "PUT", path: "/v1/info/state", contentType: trinoJSONCT, body: `"DRAINING"`,
			wantStatus: 401, wantCT: "text/plain;charset=utf-8", wantBodyEq: trinoStr(TrinoMsgNoIdentity), wantState: TrinoActive},
		{name: "put-basic-password", group: W, method: "PUT", path: "/v1/info/state", basic: "scaledownd:secret", contentType: trinoJSONCT, body: `"DRAINING"`,
			wantStatus: 401, wantCT: "text/plain;charset=utf-8", wantBodyEq: trinoStr(TrinoMsgPassword), wantState: TrinoActive},
		{name: "put-not-allowed-user", group: W, method: "PUT", path: "/v1/info/state", user: "alice", contentType: trinoJSONCT, body: `"DRAINING"`,
			wantStatus: 403, wantCT: "text/plain", wantBodyEq: trinoStr(TrinoMsgForbidden), wantState: TrinoActive},
		{name: "put-not-allowed-before-body", group: W, method: "PUT", path: "/v1/info/state", user: "alice", contentType: trinoJSONCT, body: `"FOO"`,
			wantStatus: 403, wantBodyEq: trinoStr(TrinoMsgForbidden)},
		{name: "put-impersonation", group: W, method: "PUT", path: "/v1/info/state", basic: "scaledownd:", user: "alice", contentType: trinoJSONCT, body: `"ACTIVE"`,
			wantStatus: 403, wantBodyEq: trinoStr(TrinoMsgForbidden)},
		trinoPut("put-unknown-state", W, trinoMgr, `"FOO"`, 400, enumErr, TrinoActive),
		trinoPut("put-lowercase", W, trinoMgr, `"draining"`, 400, []string{`from String "draining": not one of the values accepted`}, TrinoActive),
		trinoPut("put-bare-token", W, trinoMgr, `DRAINING`, 400, []string{"com.fasterxml.jackson.core.JsonParseException: Unrecognized token 'DRAINING': was expecting (JSON String, Number, Array, Object or token 'null', 'true' or 'false')", "line: 1, column: 9]"}, TrinoActive),
		trinoPut("put-trailing-garbage", W, trinoMgr, `"ACTIVE" x`, 400, []string{"JsonParsingException"}, TrinoActive),
		trinoPut("put-array", W, trinoMgr, `["ACTIVE"]`, 400, []string{"MismatchedInputException: Cannot deserialize value of type `io.trino.metadata.NodeState` from Array value"}, TrinoActive),
		trinoPut("put-empty-body", W, trinoMgr, ``, 500, []string{"java.lang.NullPointerException: state is null"}, TrinoActive),
		trinoPut("put-null", W, trinoMgr, `null`, 500, []string{"java.lang.NullPointerException: state is null"}, TrinoActive),
		trinoPut("put-inactive", W, trinoMgr, `"INACTIVE"`, 400, invalid("INACTIVE"), TrinoActive),
		trinoPut("put-ordinal-1-is-inactive", W, trinoMgr, `1`, 400, invalid("INACTIVE"), TrinoActive),
		trinoPut("put-drained-from-active", W, trinoMgr, `"DRAINED"`, 400, invalid("DRAINED"), TrinoActive),
		{name: "put-method-post", group: W, method: "POST", path: "/v1/info/state", user: trinoMgr, contentType: trinoJSONCT, body: `"ACTIVE"`,
			wantStatus: 405, wantHeaders: map[string]string{"Allow": "GET,OPTIONS,PUT"}},
		// --- worker: no-op and reversible transitions
		{name: "put-active-noop", group: W, method: "PUT", path: "/v1/info/state", user: trinoMgr, contentType: trinoJSONCT, body: `"ACTIVE"`,
			wantStatus: 200, wantCT: "-", wantBodyEq: trinoStr(""), wantState: TrinoActive},
		{name: "put-basic-empty-password", group: W, method: "PUT", path: "/v1/info/state", basic: "scaledownd:", contentType: "Application/JSON; charset=utf-8", body: ` "ACTIVE" `,
			wantStatus: 200, wantState: TrinoActive},
		trinoMark(trinoPut("drain", W, trinoMgr, `"DRAINING"`, 200, nil, TrinoDraining)),
		trinoPut("drain-again-noop", W, trinoMgr, `"DRAINING"`, 200, nil, TrinoDraining),
		trinoPut("drained-is-internal", W, trinoMgr, `"DRAINED"`, 400, invalid("DRAINED"), TrinoDraining),
		{name: "info-while-draining-has-no-state", group: W, method: "GET", path: "/v1/info", wantStatus: 200, notBody: []string{"DRAINING"}},
		{name: "drained-after-two-graces", group: W, waitState: TrinoDrained, minGrace: 1.9, maxGrace: 2.5},
		trinoPut("drained-noop", W, trinoMgr, `"DRAINED"`, 200, nil, TrinoDrained),
		trinoPut("drain-from-drained", W, trinoMgr, `"DRAINING"`, 400, invalid("DRAINING"), TrinoDrained),
		trinoPut("inactive-from-drained", W, trinoMgr, `"INACTIVE"`, 400, invalid("INACTIVE"), TrinoDrained),
		trinoPut("reactivate-from-drained", W, trinoMgr, `"ACTIVE"`, 200, nil, TrinoActive),
		trinoPut("drain-2", W, trinoMgr, `"DRAINING"`, 200, nil, TrinoDraining),
		trinoPut("reactivate-while-draining", W, trinoMgr, `"ACTIVE"`, 200, nil, TrinoActive),
		trinoMark(trinoPut("drain-3", W, trinoMgr, `"DRAINING"`, 200, nil, TrinoDraining)),
		{name: "drained-again", group: W, waitState: TrinoDrained, minGrace: 1.9, maxGrace: 2.5},
		// --- worker: one-way end: DRAINED -> SHUTTING_DOWN exits at once
		trinoMark(trinoPut("terminate-from-drained", W, trinoMgr, `"SHUTTING_DOWN"`, 200, nil, "")),
		{name: "exit-immediately", group: W, waitState: TrinoExited, minGrace: 0, maxGrace: 0.2},

		// --- worker2: SHUTTING_DOWN from ACTIVE is one-way, exits after two graces
		trinoMark(trinoPut("shutdown", W2, trinoMgr, `"SHUTTING_DOWN"`, 200, nil, TrinoShuttingDown)),
		{name: "state-shutting-down", group: W2, method: "GET", path: "/v1/info/state", wantStatus: 200, wantBodyEq: trinoStr(`"SHUTTING_DOWN"`)},
		trinoPut("shutdown-again-noop", W2, trinoMgr, `"SHUTTING_DOWN"`, 200, nil, TrinoShuttingDown),
		trinoPut("drain-after-shutdown", W2, trinoMgr, `"DRAINING"`, 400, invalid("DRAINING"), TrinoShuttingDown),
		trinoPut("active-after-shutdown", W2, trinoMgr, `"ACTIVE"`, 400, invalid("ACTIVE"), TrinoShuttingDown),
		trinoPut("drained-after-shutdown", W2, trinoMgr, `"DRAINED"`, 400, invalid("DRAINED"), TrinoShuttingDown),
		{name: "forbidden-after-shutdown", group: W2, method: "PUT", path: "/v1/info/state", user: "alice", contentType: trinoJSONCT, body: `"ACTIVE"`,
			wantStatus: 403, wantBodyEq: trinoStr(TrinoMsgForbidden), wantState: TrinoShuttingDown},
		{name: "exit-after-two-graces", group: W2, waitState: TrinoExited, minGrace: 1.9, maxGrace: 2.5},

		// --- coordinator: the statement protocol, for the one query shape
		// scaledownd sends (while the workers are up; this group runs first)
		{name: "statement-own-node", group: C, sql: trinoNodeQuery(`'coordinator'`), wantRows: `[["active"]]`, wantFinal: "FINISHED"},
		{name: "statement-unknown-node", group: C, sql: trinoNodeQuery(`'no''such-node'`), wantRows: `[]`, wantFinal: "FINISHED"},
		{name: "statement-unescaped-quote", group: C, sql: trinoNodeQuery(`'o'brien'`), wantFinal: "FAILED", wantErr: "SYNTAX_ERROR",
			wantBody:  []string{"line 1:59: mismatched input 'brien'. Expecting: '%', '*', '+', '-', '.', '/', 'AND', 'AT', 'EXCEPT', 'FETCH', 'GROUP', 'HAVING', 'INTERSECT', 'LIMIT', 'OFFSET', 'OR', 'ORDER', 'UNION', 'WINDOW', '[', '||', <EOF>"},
			wantErrAt: [2]int{1, 59}},
		{name: "statement-unterminated-literal", group: C, sql: trinoNodeQuery(`'abc`), wantFinal: "FAILED", wantErr: "SYNTAX_ERROR",
			wantBody: []string{"line 1:56: mismatched input '''. Expecting: 'ALL', 'ANY', 'SOME', <expression>"}, wantErrAt: [2]int{1, 56}},
		{name: "statement-second-line", group: C, sql: "SELECT state\nFROM system.runtime.nodes WHERE node_id = 'a'b'", wantFinal: "FAILED", wantErr: "SYNTAX_ERROR",
			wantBody: []string{"line 2:46: mismatched input 'b'."}, wantErrAt: [2]int{2, 46}},
		{name: "statement-cancelled", group: C, sql: trinoNodeQuery(`'coordinator'`), cancel: true, wantFinal: "FAILED", wantErr: "USER_CANCELED",
			wantBody: []string{"Query was canceled"}},
		{name: "statement-no-identity", group: C, method: "POST", path: "/v1/statement", body: trinoNodeQuery(`'coordinator'`),
			wantStatus: 401, wantCT: "text/plain;charset=utf-8", wantBodyEq: trinoStr(TrinoMsgNoIdentity)},
		{name: "statement-password-over-http", group: C, method: "POST", path: "/v1/statement", basic: "scaledownd:secret", body: trinoNodeQuery(`'coordinator'`),
			wantStatus: 401, wantBodyEq: trinoStr(TrinoMsgPassword)},
		{name: "statement-empty", group: C, method: "POST", path: "/v1/statement", user: trinoMgr,
			wantStatus: 400, wantCT: "text/plain", wantBodyEq: trinoStr(TrinoMsgEmptyStatement)},
		{name: "statement-get", group: C, method: "GET", path: "/v1/statement", user: trinoMgr,
			wantStatus: 405, wantBodyEq: trinoStr(""), wantHeaders: map[string]string{"Allow": "HEAD,POST,OPTIONS"}},
		{name: "statement-execute-denied", group: C, user: "viewer", sql: trinoNodeQuery(`'coordinator'`), wantFinal: "FAILED",
			wantErr: "PERMISSION_DENIED", wantBody: []string{"Access Denied: Cannot execute query"}},
		// --- coordinator: the query resource, while another user's query
		// runs on the workers (which queries hold a drain)
		{name: "query-start", group: C, startQuery: true},
		{name: "query-list-viewer", group: C, method: "GET", path: "/v1/query", user: trinoMgr, wantStatus: 200, wantCT: trinoJSONCT,
			checkJSON: trinoCheckListed(true)},
		{name: "query-list-no-view", group: C, method: "GET", path: "/v1/query", user: "carol", wantStatus: 200, wantCT: trinoJSONCT,
			checkJSON: trinoCheckListed(false)},
		{name: "query-list-anonymous", group: C, method: "GET", path: "/v1/query", wantStatus: 401, wantBodyEq: trinoStr(TrinoMsgNoIdentity)},
		{name: "query-list-post", group: C, method: "POST", path: "/v1/query", user: trinoMgr, wantStatus: 405,
			wantHeaders: map[string]string{"Allow": "GET,OPTIONS"}},
		{name: "query-detail-viewer", group: C, method: "GET", path: "/v1/query/{started}", user: trinoMgr, wantStatus: 200, wantCT: trinoJSONCT,
			checkJSON: trinoCheckDetail},
		{name: "query-detail-no-view", group: C, method: "GET", path: "/v1/query/{started}", user: "carol", wantStatus: 403,
			wantCT: "text/plain", wantBodyEq: trinoStr(TrinoMsgQueryForbidden)},
		{name: "query-detail-anonymous", group: C, method: "GET", path: "/v1/query/{started}", wantStatus: 401, wantBodyEq: trinoStr(TrinoMsgNoIdentity)},
		{name: "query-detail-unknown", group: C, method: "GET", path: "/v1/query/20200101_000000_00000_abcde", user: trinoMgr, wantStatus: 410,
			wantCT: "text/plain", wantBodyEq: trinoStr(TrinoMsgQueryGone)},
		{name: "query-blocking-viewer", group: C, blocking: true, user: trinoMgr, wantListed: true},
		{name: "query-blocking-no-view", group: C, blocking: true, user: "carol", wantListed: false},
		{name: "query-stop", group: C, stopQuery: true},
		{name: "query-blocking-after-stop", group: C, blocking: true, user: trinoMgr, wantListed: false},
		{name: "statement-unknown-query", group: C, method: "GET", path: "/v1/statement/executing/20200101_000000_00000_abcde/y0123/1", user: trinoMgr,
			wantStatus: 404, wantCT: "text/plain", wantBodyEq: trinoStr(TrinoMsgQueryNotFound)},
		// --- coordinator: node state
		{name: "info", group: C, method: "GET", path: "/v1/info", wantStatus: 200, wantBody: []string{`"coordinator":true,"starting":false`}, notBody: []string{`"state"`}},
		{name: "coordinator-200", group: C, method: "GET", path: "/v1/info/coordinator", wantStatus: 200, wantCT: "-", wantBodyEq: trinoStr("")},
		{name: "state", group: C, method: "GET", path: "/v1/info/state", wantStatus: 200, wantBodyEq: trinoStr(`"ACTIVE"`)},
		trinoPut("drain-500", C, trinoMgr, `"DRAINING"`, 500, []string{"java.lang.UnsupportedOperationException: Cannot drain coordinator\n\tat io.trino.server.NodeStateManager.transitionState("}, TrinoActive),
		trinoPut("shutdown-500", C, trinoMgr, `"SHUTTING_DOWN"`, 500, []string{"java.lang.UnsupportedOperationException: Cannot shutdown coordinator"}, TrinoActive),
		trinoPut("active-noop", C, trinoMgr, `"ACTIVE"`, 200, nil, TrinoActive),
		trinoPut("inactive", C, trinoMgr, `"INACTIVE"`, 400, invalid("INACTIVE"), TrinoActive),
		trinoPut("drained", C, trinoMgr, `"DRAINED"`, 400, invalid("DRAINED"), TrinoActive),
		trinoPut("forbidden", C, "alice", `"DRAINING"`, 403, []string{TrinoMsgForbidden}, TrinoActive),
		{name: "no-identity", group: C, method: "PUT", path: "/v1/info/state", contentType: trinoJSONCT, body: `"DRAINING"`, wantStatus: 401, wantBodyEq: trinoStr(TrinoMsgNoIdentity)},
		{name: "metrics", group: C, method: "GET", path: "/metrics?name[]=" + TrinoMetricTasks, user: "alice", wantStatus: 200, wantBody: []string{TrinoMetricTasks + " 0.0\n"}},
	}
}()

type trinoContractTarget struct {
	url   string
	grace time.Duration
	slack time.Duration
	poll  time.Duration
	// startQuery/stopQuery start and cancel the query of a startQuery
	// step on a fake (a real coordinator runs trinoLongQuery).
	startQuery func() (id, node string)
	stopQuery  func(id string)
}

func TestTrinoContract(t *testing.T) {
	groups := []string{"coordinator", "worker", "worker2"}
	realEnv := map[string]string{"worker": "TRINO_CONTRACT_WORKER_URL", "worker2": "TRINO_CONTRACT_WORKER2_URL", "coordinator": "TRINO_CONTRACT_COORDINATOR_URL"}
	realGrace := 5 * time.Second
	if g := os.Getenv("TRINO_CONTRACT_GRACE"); g != "" {
		d, err := time.ParseDuration(g)
		if err != nil {
			t.Fatalf("TRINO_CONTRACT_GRACE: %v", err)
		}
		realGrace = d
	}
	for _, kind := range []string{"fake", "real"} {
		t.Run(kind, func(t *testing.T) {
			for _, group := range groups {
				t.Run(group, func(t *testing.T) {
					var tgt trinoContractTarget
					if kind == "fake" {
						t.Parallel()
						f := NewTrino(TrinoOptions{Coordinator: group == "coordinator", GracePeriod: 200 * time.Millisecond, Environment: "e2e",
							QueryViewDenied: []string{"carol"}, QueryExecuteDenied: []string{"viewer"}})
						t.Cleanup(f.Close)
						tgt = trinoContractTarget{url: f.URL(), grace: 200 * time.Millisecond, slack: 300 * time.Millisecond, poll: 10 * time.Millisecond}
						if group == "coordinator" {
							wk := NewTrino(TrinoOptions{NodeID: "worker-1", Environment: "e2e"})
							t.Cleanup(wk.Close)
							tgt.startQuery = func() (string, string) {
								id, _ := f.StartQuery(trinoOwner, trinoSource, wk) // cancelled by DELETE
								return id, "worker-1"
							}
							tgt.stopQuery = func(id string) {
								req, _ := http.NewRequest(http.MethodDelete, f.URL()+"/v1/query/"+id, nil)
								req.Header.Set("X-Trino-User", trinoOwner)
								if resp, err := http.DefaultClient.Do(req); err == nil {
									resp.Body.Close()
								}
							}
						}
					} else {
						u := os.Getenv(realEnv[group])
						if u == "" {
							t.Skipf("%s not set: no real Trino %s to check the contract against", realEnv[group], group)
						}
						tgt = trinoContractTarget{url: strings.TrimRight(u, "/"), grace: realGrace, slack: 2 * time.Second, poll: 50 * time.Millisecond}
						tgt.stopQuery = func(id string) {
							req, _ := http.NewRequest(http.MethodDelete, tgt.url+"/v1/query/"+id, nil)
							req.Header.Set("X-Trino-User", trinoOwner)
							if resp, err := http.DefaultClient.Do(req); err == nil {
								resp.Body.Close()
							}
						}
						if group != "coordinator" {
							trinoAwaitIdle(t, tgt)
						}
					}
					trinoRunContract(t, tgt, group)
				})
			}
		})
	}
}

func trinoRunContract(t *testing.T, tgt trinoContractTarget, group string) {
	client := &http.Client{Timeout: 10 * time.Second}
	last := time.Now()
	n := 0
	var started *trinoStarted
	defer func() {
		if started != nil && tgt.stopQuery != nil {
			tgt.stopQuery(started.id)
		}
	}()
	for _, c := range trinoContractCases {
		if c.group != group {
			continue
		}
		n++
		c := c
		ok := t.Run(fmt.Sprintf("%02d-%s", n, c.name), func(t *testing.T) {
			if c.sql != "" {
				trinoRunStatement(t, client, tgt, c)
				return
			}
			switch {
			case c.startQuery:
				started = trinoStartQuery(t, client, tgt)
				return
			case c.stopQuery:
				trinoStopQuery(t, client, tgt, started)
				return
			case c.blocking:
				trinoCheckBlocking(t, tgt, c, started)
				return
			}
			if strings.Contains(c.path, "{started}") {
				if started == nil {
					t.Fatal("no query started in this group")
				}
				c.path = strings.ReplaceAll(c.path, "{started}", started.id)
			}
			if c.method == "" {
				timeout := time.Duration(c.maxGrace*float64(tgt.grace)) + tgt.slack
				state, err := trinoPollState(client, tgt, c.waitState, last, timeout)
				elapsed := time.Since(last)
				if err != nil {
					t.Fatalf("waiting for %s: %v (last state %q after %v)", c.waitState, err, state, elapsed)
				}
				lo := time.Duration(c.minGrace * float64(tgt.grace))
				hi := time.Duration(c.maxGrace*float64(tgt.grace)) + tgt.slack
				t.Logf("%s after %v (grace %v, window %v..%v)", c.waitState, elapsed.Round(time.Millisecond), tgt.grace, lo, hi)
				if elapsed < lo || elapsed > hi {
					t.Errorf("%s after %v, want within %v..%v", c.waitState, elapsed, lo, hi)
				}
				return
			}
			req, err := http.NewRequest(c.method, tgt.url+c.path, strings.NewReader(c.body))
			if err != nil {
				t.Fatal(err)
			}
			if c.user != "" {
				req.Header.Set("X-Trino-User", c.user)
			}
			if c.basic != "" {
				u, p, _ := strings.Cut(c.basic, ":")
				req.SetBasicAuth(u, p)
			}
			if c.contentType != "" {
				req.Header.Set("Content-Type", c.contentType)
			}
			if c.mark {
				last = time.Now()
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatalf("%s %s: %v", c.method, c.path, err)
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body := string(raw)
			if resp.StatusCode != c.wantStatus {
				t.Errorf("status %d, want %d; body %q", resp.StatusCode, c.wantStatus, trinoClip(body))
			}
			if c.wantCT != "" {
				got, present := resp.Header["Content-Type"]
				switch {
				case c.wantCT == "-" && present:
					t.Errorf("Content-Type %q, want none", got)
				case c.wantCT != "-" && resp.Header.Get("Content-Type") != c.wantCT:
					t.Errorf("Content-Type %q, want %q", resp.Header.Get("Content-Type"), c.wantCT)
				}
			}
			for k, v := range c.wantHeaders {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
			if c.wantBodyEq != nil && body != *c.wantBodyEq {
				t.Errorf("body %q, want %q", trinoClip(body), *c.wantBodyEq)
			}
			for _, s := range c.wantBody {
				if !strings.Contains(body, s) {
					t.Errorf("body %q lacks %q", trinoClip(body), s)
				}
			}
			for _, s := range c.notBody {
				if strings.Contains(body, s) {
					t.Errorf("body %q contains %q", trinoClip(body), s)
				}
			}
			if c.checkJSON != nil && resp.StatusCode == http.StatusOK {
				c.checkJSON(t, raw, started)
			}
			if c.wantState != "" {
				if got := trinoGetState(client, tgt.url); got != c.wantState {
					t.Errorf("state afterwards %q, want %q", got, c.wantState)
				}
			}
		})
		if !ok && c.method == "" {
			t.Logf("wait step failed; later steps of %s may fail too", group)
		}
	}
}

// trinoGetState returns the node's state, TrinoExited when the connection is
// refused, or a description of another failure.
func trinoGetState(client *http.Client, base string) string {
	resp, err := client.Get(base + "/v1/info/state")
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return TrinoExited
		}
		return "error: " + err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return strings.Trim(string(b), `"`)
}

func trinoPollState(client *http.Client, tgt trinoContractTarget, want string, since time.Time, timeout time.Duration) (string, error) {
	deadline := since.Add(timeout)
	state := ""
	for time.Now().Before(deadline) {
		state = trinoGetState(client, tgt.url)
		if state == want {
			return state, nil
		}
		time.Sleep(tgt.poll)
	}
	return state, fmt.Errorf("timed out after %v", timeout)
}

// trinoAwaitIdle waits until a real worker holds no memory of a query. The
// coordinator group, which runs first, cancels a query with tasks on the
// workers, and a worker frees a cancelled query's tasks and memory some time
// after the coordinator reports it FAILED: its /v1/status then still lists
// the reservations the worker group expects empty.
func trinoAwaitIdle(t *testing.T, tgt trinoContractTarget) {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	start := time.Now()
	body := ""
	for time.Since(start) < time.Minute {
		resp, err := client.Get(tgt.url + "/v1/status")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body = string(b)
			if resp.StatusCode == http.StatusOK && strings.Contains(body, `"taskMemoryReservations":{}`) && strings.Contains(body, `"queryMemoryReservations":{}`) {
				t.Logf("%s idle after %v", tgt.url, time.Since(start).Round(time.Millisecond))
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s still holds query memory a minute after the coordinator group: %s", tgt.url, trinoClip(body))
}

func trinoClip(s string) string {
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}

// trinoStatementDoc is one answer of the statement protocol, as far as the
// contract checks it.
type trinoStatementDoc struct {
	ID               string            `json:"id"`
	InfoURI          string            `json:"infoUri"`
	PartialCancelURI string            `json:"partialCancelUri"`
	NextURI          string            `json:"nextUri"`
	Data             []json.RawMessage `json:"data"`
	Columns          []struct {
		Name          string `json:"name"`
		Type          string `json:"type"`
		TypeSignature struct {
			RawType string `json:"rawType"`
		} `json:"typeSignature"`
	} `json:"columns"`
	Stats struct {
		State string `json:"state"`
	} `json:"stats"`
	Error *struct {
		Message       string `json:"message"`
		ErrorCode     *int   `json:"errorCode"`
		ErrorName     string `json:"errorName"`
		ErrorType     string `json:"errorType"`
		ErrorLocation *struct {
			LineNumber   int `json:"lineNumber"`
			ColumnNumber int `json:"columnNumber"`
		} `json:"errorLocation"`
		FailureInfo *struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		} `json:"failureInfo"`
	} `json:"error"`
}

var (
	trinoQueryIDRE     = regexp.MustCompile(`^\d{8}_\d{6}_\d{5}_[0-9a-z]{5}$`)
	trinoQueryStates   = []string{"QUEUED", "WAITING_FOR_RESOURCES", "DISPATCHING", "PLANNING", "STARTING", "RUNNING", "FINISHING", "FINISHED", "FAILED"}
	trinoStatementKeys = []string{"id", "infoUri", "partialCancelUri", "nextUri", "columns", "data", "stats", "error", "warnings", "updateType", "updateCount"}
	trinoStatsKeys     = []string{"state", "queued", "scheduled", "nodes", "totalSplits", "queuedSplits", "runningSplits", "completedSplits",
		"planningTimeMillis", "analysisTimeMillis", "cpuTimeMillis", "wallTimeMillis", "queuedTimeMillis", "elapsedTimeMillis",
		"finishingTimeMillis", "physicalInputTimeMillis", "processedRows", "processedBytes", "physicalInputBytes",
		"physicalWrittenBytes", "internalNetworkInputBytes", "peakMemoryBytes", "spilledBytes"}
)

// trinoStatementCall sends one request of the protocol and decodes the
// answer, checking the parts every answer shares.
func trinoStatementCall(t *testing.T, client *http.Client, tgt trinoContractTarget, method, url, body, user string) trinoStatementDoc {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Trino-User", user)
	if body != "" {
		req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != trinoJSONCT {
		t.Fatalf("%s %s: %d %s %q", method, url, resp.StatusCode, resp.Header.Get("Content-Type"), trinoClip(string(raw)))
	}
	var keys map[string]json.RawMessage
	var doc trinoStatementDoc
	if err := json.Unmarshal(raw, &keys); err != nil {
		t.Fatalf("%s %s: %v: %q", method, url, err, trinoClip(string(raw)))
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("%s %s: %v: %q", method, url, err, trinoClip(string(raw)))
	}
	for k := range keys {
		if !slices.Contains(trinoStatementKeys, k) {
			t.Errorf("answer has key %q, not one of QueryResults'", k)
		}
	}
	for _, k := range []string{"id", "infoUri", "stats", "warnings"} {
		if _, ok := keys[k]; !ok {
			t.Errorf("answer lacks %q: %s", k, trinoClip(string(raw)))
		}
	}
	var stats map[string]json.RawMessage
	_ = json.Unmarshal(keys["stats"], &stats)
	for _, k := range trinoStatsKeys {
		if _, ok := stats[k]; !ok {
			t.Errorf("stats lack %q: %s", k, trinoClip(string(keys["stats"])))
		}
	}
	if !trinoQueryIDRE.MatchString(doc.ID) {
		t.Errorf("query id %q is not like 20261126_035918_00002_5nqn7", doc.ID)
	}
	if want := tgt.url + "/ui/query.html?" + doc.ID; doc.InfoURI != want {
		t.Errorf("infoUri %q, want %q", doc.InfoURI, want)
	}
	if !slices.Contains(trinoQueryStates, doc.Stats.State) {
		t.Errorf("stats.state %q", doc.Stats.State)
	}
	if n := doc.NextURI; n != "" && !strings.HasPrefix(n, tgt.url+"/v1/statement/queued/"+doc.ID+"/") &&
		!strings.HasPrefix(n, tgt.url+"/v1/statement/executing/"+doc.ID+"/") {
		t.Errorf("nextUri %q is not a queued or executing page of %s", n, doc.ID)
	}
	if p := doc.PartialCancelURI; p != "" && !strings.HasPrefix(p, tgt.url+"/v1/statement/executing/partialCancel/"+doc.ID+"/") {
		t.Errorf("partialCancelUri %q", p)
	}
	if len(doc.Data) > 0 && len(doc.Columns) == 0 {
		t.Errorf("data without columns: %s", trinoClip(string(raw)))
	}
	for _, c := range doc.Columns {
		if c.Name == "" || c.Type == "" || c.TypeSignature.RawType == "" {
			t.Errorf("column %+v lacks name, type or typeSignature.rawType", c)
		}
	}
	if e := doc.Error; e != nil {
		if doc.NextURI != "" || doc.Stats.State != "FAILED" {
			t.Errorf("error with state %s and nextUri %q, want FAILED and no nextUri", doc.Stats.State, doc.NextURI)
		}
		if e.Message == "" || e.ErrorCode == nil || e.ErrorName == "" || e.ErrorType == "" || e.FailureInfo == nil || e.FailureInfo.Type == "" {
			t.Errorf("error object lacks message, errorCode, errorName, errorType or failureInfo.type: %s", trinoClip(string(keys["error"])))
		}
	}
	return doc
}

// trinoRunStatement runs a statement step of the contract.
func trinoRunStatement(t *testing.T, client *http.Client, tgt trinoContractTarget, c trinoContractCase) {
	user := c.user
	if user == "" {
		user = trinoMgr
	}
	doc := trinoStatementCall(t, client, tgt, http.MethodPost, tgt.url+"/v1/statement", c.sql, user)
	id, states := doc.ID, []string{doc.Stats.State}
	if c.cancel {
		if doc.NextURI == "" {
			t.Fatalf("POST answered without nextUri: nothing to cancel")
		}
		req, _ := http.NewRequest(http.MethodDelete, doc.NextURI, nil)
		req.Header.Set("X-Trino-User", trinoMgr)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("DELETE nextUri: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Errorf("DELETE nextUri: %d, want 204", resp.StatusCode)
		}
	}
	var rows []json.RawMessage
	deadline := time.Now().Add(30 * time.Second)
	for pages := 1; ; pages++ {
		rows = append(rows, doc.Data...)
		if doc.ID != id {
			t.Fatalf("page %d has query id %s, the query is %s", pages, doc.ID, id)
		}
		if doc.NextURI == "" {
			break
		}
		if time.Now().After(deadline) || pages > 500 {
			t.Fatalf("query %s not done after %d pages (states %v)", id, pages, states)
		}
		doc = trinoStatementCall(t, client, tgt, http.MethodGet, doc.NextURI, "", user)
		if s := doc.Stats.State; s != states[len(states)-1] {
			states = append(states, s)
		}
	}
	t.Logf("query %s: %v", id, states)
	if doc.Stats.State != c.wantFinal {
		t.Errorf("final state %s (%v), want %s", doc.Stats.State, states, c.wantFinal)
	}
	if c.wantRows != "" {
		got, _ := json.Marshal(append([]json.RawMessage{}, rows...))
		var want, have any
		_ = json.Unmarshal([]byte(c.wantRows), &want)
		_ = json.Unmarshal(got, &have)
		if !reflect.DeepEqual(want, have) {
			t.Errorf("rows %s, want %s", got, c.wantRows)
		}
	}
	switch e := doc.Error; {
	case c.wantErr == "" && e != nil:
		t.Errorf("query failed: %s: %s", e.ErrorName, e.Message)
	case c.wantErr != "" && e == nil:
		t.Errorf("query did not fail, want %s", c.wantErr)
	case c.wantErr != "":
		if e.ErrorName != c.wantErr {
			t.Errorf("error %s (%s), want %s", e.ErrorName, e.Message, c.wantErr)
		}
		for _, s := range c.wantBody {
			if !strings.Contains(e.Message, s) {
				t.Errorf("error message %q lacks %q", e.Message, s)
			}
		}
		if c.wantErrAt != [2]int{} && (e.ErrorLocation == nil || e.ErrorLocation.LineNumber != c.wantErrAt[0] || e.ErrorLocation.ColumnNumber != c.wantErrAt[1]) {
			t.Errorf("errorLocation %+v, want line %d column %d", e.ErrorLocation, c.wantErrAt[0], c.wantErrAt[1])
		}
	}
}
