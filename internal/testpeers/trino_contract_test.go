package testpeers

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
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
// system information and "alice" not. Each group starts from a fresh node;
// its one-way transitions (SHUTTING_DOWN) come last.
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

var trinoContractCases = func() []trinoContractCase {
	enumErr := []string{"io.airlift.jaxrs.JsonParsingException: com.fasterxml.jackson.databind.exc.InvalidFormatException: Cannot deserialize value of type `io.trino.metadata.NodeState` from String \"FOO\": not one of the values accepted for Enum class: [DRAINING, INACTIVE, ACTIVE, SHUTTING_DOWN, DRAINED]"}
	invalid := func(s string) []string { return []string{"Error 400 Bad Request: Invalid state transition to " + s} }
	const W, W2, C = "worker", "worker2", "coordinator"
	return []trinoContractCase{
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

		// --- coordinator
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
}

func TestTrinoContract(t *testing.T) {
	groups := []string{"worker", "worker2", "coordinator"}
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
						f := NewTrino(TrinoOptions{Coordinator: group == "coordinator", GracePeriod: 200 * time.Millisecond, Environment: "e2e"})
						t.Cleanup(f.Close)
						tgt = trinoContractTarget{url: f.URL(), grace: 200 * time.Millisecond, slack: 300 * time.Millisecond, poll: 10 * time.Millisecond}
					} else {
						u := os.Getenv(realEnv[group])
						if u == "" {
							t.Skipf("%s not set: no real Trino %s to check the contract against", realEnv[group], group)
						}
						tgt = trinoContractTarget{url: strings.TrimRight(u, "/"), grace: realGrace, slack: 2 * time.Second, poll: 50 * time.Millisecond}
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
	for _, c := range trinoContractCases {
		if c.group != group {
			continue
		}
		n++
		c := c
		ok := t.Run(fmt.Sprintf("%02d-%s", n, c.name), func(t *testing.T) {
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

func trinoClip(s string) string {
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}
