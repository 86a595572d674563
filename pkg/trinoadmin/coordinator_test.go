package trinoadmin_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/scaledownd/scaledownd/internal/testpeers"
	"github.com/scaledownd/scaledownd/pkg/trinoadmin"
)

func client(t *testing.T, url string) *trinoadmin.Client {
	t.Helper()
	c, err := trinoadmin.New(trinoadmin.Options{URL: url, User: "scaledownd", Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func coordinator(t *testing.T) *testpeers.TrinoWorker {
	t.Helper()
	return worker(t, testpeers.TrinoOptions{Coordinator: true})
}

// statements returns the SQL of every POST /v1/statement the fake received.
func statements(w *testpeers.TrinoWorker) []string {
	var out []string
	for _, r := range w.Requests() {
		if r.Method == http.MethodPost && r.Path == "/v1/statement" {
			out = append(out, r.Body)
		}
	}
	return out
}

func TestCoordinatorNodeState(t *testing.T) {
	coord := coordinator(t)
	coord.SetNode("worker-1", "active")
	coord.SetNode("worker-2", "draining")
	coord.SetNode("o'brien-1", "active")
	co := client(t, "http://127.0.0.1:1").Coordinator(coord.URL())
	ctx := context.Background()
	for id, want := range map[string]string{
		"worker-1": "active", "worker-2": "draining", "worker-3": "", "coordinator": "active",
		"o'brien-1": "active", "o''brien-1": "", "'": "",
	} {
		got, err := co.NodeState(ctx, id)
		if err != nil || got != want {
			t.Errorf("NodeState(%q) = %q, %v; want %q", id, got, err, want)
		}
	}
	sent := statements(coord)
	if !contains(sent, `SELECT state FROM system.runtime.nodes WHERE node_id = 'o''brien-1'`) ||
		!contains(sent, `SELECT state FROM system.runtime.nodes WHERE node_id = ''''`) {
		t.Errorf("quotes in node ids not doubled; statements sent: %q", sent)
	}
	for _, r := range coord.Requests() {
		if r.User != "scaledownd" && r.Method == http.MethodPost {
			t.Errorf("statement sent as user %q, want scaledownd", r.User)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestQuoteString(t *testing.T) {
	for in, want := range map[string]string{
		"worker-1": `'worker-1'`, "o'brien": `'o''brien'`, "''": `''''''`, `back\slash`: `'back\slash'`, "": `''`,
	} {
		if got := trinoadmin.QuoteString(in); got != want {
			t.Errorf("QuoteString(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestCoordinatorQueryErrors(t *testing.T) {
	coord := coordinator(t)
	co := client(t, "http://127.0.0.1:1").Coordinator(coord.URL())
	ctx := context.Background()

	// What an unescaped quote would do: Trino's syntax error, as a QueryError.
	_, err := co.Query(ctx, "SELECT state FROM system.runtime.nodes WHERE node_id = 'o'brien'")
	var qe *trinoadmin.QueryError
	if !errors.As(err, &qe) || qe.Name != "SYNTAX_ERROR" || qe.Type != "USER_ERROR" || !strings.Contains(qe.Message, "mismatched input 'brien'") {
		t.Errorf("unescaped quote: %v, want SYNTAX_ERROR", err)
	}
	// Refused by authentication: a StatusError.
	bad, err := trinoadmin.New(trinoadmin.Options{URL: "http://127.0.0.1:1", User: ""})
	if err != nil {
		t.Fatal(err)
	}
	_, err = bad.Coordinator(coord.URL()).NodeState(ctx, "worker-1")
	var se *trinoadmin.StatusError
	if !errors.As(err, &se) || se.Code != http.StatusUnauthorized || se.Op != "POST /v1/statement" {
		t.Errorf("no user: %v, want HTTP 401 from POST /v1/statement", err)
	}
	// Not a coordinator: a worker has no statement endpoint.
	w := worker(t, testpeers.TrinoOptions{})
	_, err = client(t, w.URL()).Coordinator(w.URL()).NodeState(ctx, "worker-1")
	if !errors.As(err, &se) || se.Code != http.StatusNotFound {
		t.Errorf("statement to a worker: %v, want HTTP 404", err)
	}
	// An unusable URL fails every query.
	if _, err := client(t, w.URL()).Coordinator("coordinator:8080").NodeState(ctx, "worker-1"); err == nil || !strings.Contains(err.Error(), "coordinator url") {
		t.Errorf("bad url: %v", err)
	}
}

// scripted is a coordinator answering from a script: each request takes
// the next answer for its method; it records what it got.
type scripted struct {
	mu      sync.Mutex
	srv     *httptest.Server
	answers map[string][]func(w http.ResponseWriter, base string)
	got     []string // "METHOD path"
}

func newScripted(t *testing.T) *scripted {
	s := &scripted{answers: map[string][]func(http.ResponseWriter, string){}}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.got = append(s.got, r.Method+" "+r.URL.Path)
		var next func(http.ResponseWriter, string)
		if q := s.answers[r.Method]; len(q) > 0 {
			next, s.answers[r.Method] = q[0], q[1:]
		}
		s.mu.Unlock()
		if next == nil {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		next(w, s.srv.URL)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *scripted) on(method string, answers ...func(http.ResponseWriter, string)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.answers[method] = append(s.answers[method], answers...)
}

func (s *scripted) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.got...)
}

func page(state, next, data string) func(http.ResponseWriter, string) {
	return func(w http.ResponseWriter, base string) {
		n := ""
		if next != "" {
			n = fmt.Sprintf(`,"nextUri":"%s/v1/statement/executing/q1/yslug/%s"`, base, next)
		}
		d := ""
		if data != "" {
			d = `,"columns":[{"name":"state","type":"varchar"}],"data":` + data
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":"q1","infoUri":"%s/ui/query.html?q1"%s%s,"stats":{"state":"%s"},"warnings":[]}`, base, n, d, state)
	}
}

func status(code int, retryAfter string) func(http.ResponseWriter, string) {
	return func(w http.ResponseWriter, _ string) {
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
		w.WriteHeader(code)
		fmt.Fprint(w, "busy")
	}
}

func TestCoordinatorRepeatsBusyPagesNotThePost(t *testing.T) {
	s := newScripted(t)
	s.on(http.MethodPost, page("QUEUED", "0", ""))
	s.on(http.MethodGet,
		status(http.StatusServiceUnavailable, ""),
		status(http.StatusTooManyRequests, "1"),
		status(http.StatusBadGateway, ""),
		page("RUNNING", "1", `[["active"]]`),
		page("FINISHED", "", ""))
	co := client(t, "http://127.0.0.1:1").Coordinator(s.srv.URL)
	start := time.Now()
	got, err := co.NodeState(context.Background(), "worker-1")
	if err != nil || got != "active" {
		t.Fatalf("NodeState = %q, %v; want active after the busy answers", got, err)
	}
	if took := time.Since(start); took < time.Second {
		t.Errorf("answered after %s: Retry-After: 1 was not honoured", took)
	}
	if n := len(s.requests()); n != 6 {
		t.Errorf("%d requests, want POST + 3 busy + 2 pages: %v", n, s.requests())
	}

	// A busy POST is not repeated by the query: the caller's poll does it.
	s2 := newScripted(t)
	s2.on(http.MethodPost, status(http.StatusServiceUnavailable, ""))
	_, err = client(t, "http://127.0.0.1:1").Coordinator(s2.srv.URL).NodeState(context.Background(), "worker-1")
	var se *trinoadmin.StatusError
	if !errors.As(err, &se) || se.Code != http.StatusServiceUnavailable || len(s2.requests()) != 1 {
		t.Errorf("busy POST: %v after %d requests, want one HTTP 503", err, len(s2.requests()))
	}
}

func TestCoordinatorCancelsAQueryItGivesUpOn(t *testing.T) {
	s := newScripted(t)
	s.on(http.MethodPost, page("QUEUED", "0", ""))
	for i := 0; i < 1000; i++ {
		s.on(http.MethodGet, page("QUEUED", fmt.Sprint(i+1), ""))
	}
	co := client(t, "http://127.0.0.1:1").Coordinator(s.srv.URL)
	// One second, not less: on a loaded machine with -race, the POST alone
	// can take a few hundred milliseconds, and a deadline met before the
	// first nextUri leaves no query to cancel.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err := co.NodeState(ctx, "worker-1")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("NodeState = %v, want the deadline", err)
	}
	reqs := s.requests()
	if last := reqs[len(reqs)-1]; !strings.HasPrefix(last, "DELETE /v1/statement/executing/q1/yslug/") {
		t.Errorf("last request %q, want the query cancelled (DELETE nextUri); all: %d", last, len(reqs))
	}
	// A server answering at once with nothing new is not spun on.
	if len(reqs) > 200 { // at most 100 with the 10 ms pause; thousands without it
		t.Errorf("%d requests in 1 s: polling without a pause", len(reqs))
	}

	// Busy until the deadline: the deadline is the error, and the query is
	// cancelled too.
	busy := newScripted(t)
	busy.on(http.MethodPost, page("QUEUED", "0", ""))
	for i := 0; i < 100; i++ {
		busy.on(http.MethodGet, status(http.StatusServiceUnavailable, ""))
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), time.Second)
	defer cancel2()
	_, err = client(t, "http://127.0.0.1:1").Coordinator(busy.srv.URL).NodeState(ctx2, "worker-1")
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "HTTP 503") {
		t.Errorf("busy until the deadline: %v, want the deadline, naming the last answer", err)
	}
	if reqs := busy.requests(); !strings.HasPrefix(reqs[len(reqs)-1], "DELETE ") {
		t.Errorf("last request %q, want the query cancelled", reqs[len(reqs)-1])
	}
}

func TestCoordinatorErrorsReadTheSameOnEveryPoll(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nobody listens: connection refused
	co := client(t, "http://127.0.0.1:1").Coordinator("http://" + addr)
	_, err1 := co.NodeState(context.Background(), "worker-1")
	_, err2 := co.NodeState(context.Background(), "worker-1")
	if err1 == nil || err2 == nil || err1.Error() != err2.Error() {
		t.Fatalf("errors %v / %v: want the same text each time", err1, err2)
	}

	// A failing nextUri: the error names the request, not the query id.
	s := newScripted(t)
	s.on(http.MethodPost, page("QUEUED", "0", ""))
	s.on(http.MethodGet, status(http.StatusInternalServerError, ""))
	_, err = client(t, "http://127.0.0.1:1").Coordinator(s.srv.URL).NodeState(context.Background(), "worker-1")
	var se *trinoadmin.StatusError
	if !errors.As(err, &se) || se.Op != "GET nextUri" || strings.Contains(err.Error(), "q1") {
		t.Errorf("failed page: %v", err)
	}
}

// activator is a Drainer for worker w with coordinator co, logging into an
// observer.
func activator(t *testing.T, w *testpeers.TrinoWorker, co trinoadmin.NodeLister) (*trinoadmin.Drainer, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zap.DebugLevel)
	c := client(t, w.URL())
	d := trinoadmin.NewDrainer(c, trinoadmin.DrainOptions{PollInterval: 20 * time.Millisecond, Logger: zap.New(core), Coordinator: co})
	return d, logs
}

func TestActivateWaitsUntilTheCoordinatorListsTheWorker(t *testing.T) {
	w := worker(t, testpeers.TrinoOptions{NodeID: "worker-7"})
	coord := coordinator(t)
	coord.WatchWorker(w, 400*time.Millisecond) // the worker started just now
	d, logs := activator(t, w, client(t, w.URL()).Coordinator(coord.URL()))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.Activate(ctx, nil); err != nil {
		t.Fatal(err)
	}
	done := time.Now()
	listed := coord.NodeListedAt("worker-7", "active")
	if listed.IsZero() || done.Before(listed) {
		t.Fatalf("Activate returned at %s, coordinator listed the worker at %v", done.Format("15:04:05.000"), listed)
	}
	// The worker was ACTIVE from the start: only the coordinator held it.
	if n := logs.FilterMessage("trino worker is ACTIVE; waiting until the coordinator lists it as active").Len(); n != 1 {
		t.Errorf("%d logs that the worker is ACTIVE and the coordinator is awaited, want 1", n)
	}
	views := logs.FilterMessage("coordinator's view of this worker").All()
	if len(views) != 2 || views[0].ContextMap()["coordinator_state"] != "not listed" || views[1].ContextMap()["coordinator_state"] != "active" {
		t.Errorf("coordinator views logged: %v, want not listed then active", views)
	}
	// Every statement asked about the worker's own node id.
	for _, sql := range statements(coord) {
		if sql != trinoadmin.NodeStateQuery("worker-7") {
			t.Errorf("statement %q", sql)
		}
	}
}

func TestActivateLogsEachCoordinatorErrorOnce(t *testing.T) {
	w := worker(t, testpeers.TrinoOptions{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + ln.Addr().String()
	ln.Close()
	d, logs := activator(t, w, client(t, w.URL()).Coordinator(refused))
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := d.Activate(ctx, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Activate = %v, want the deadline: an unreachable coordinator never confirms the worker", err)
	}
	warns := logs.FilterLevelExact(zapcore.WarnLevel).All()
	if len(warns) != 1 || !strings.Contains(warns[0].ContextMap()["error"].(string), "connection refused") {
		t.Errorf("warnings: %v, want the refused connection logged once over ~25 polls", warns)
	}
}
