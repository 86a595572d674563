package testpeers

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const trinoTestGrace = 50 * time.Millisecond

func trinoTestNode(t *testing.T, opts TrinoOptions) *TrinoWorker {
	t.Helper()
	if opts.GracePeriod == 0 {
		opts.GracePeriod = trinoTestGrace
	}
	w := NewTrino(opts)
	t.Cleanup(w.Close)
	return w
}

type trinoResp struct {
	status int
	ct     string
	body   string
	err    error
}

func trinoCall(t *testing.T, method, url, user, body string, hdr ...string) trinoResp {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.Header.Set("X-Trino-User", user)
	}
	if method == http.MethodPut {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	// no connection reuse: a crashed or restarted fake closes pooled connections
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		return trinoResp{err: err}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return trinoResp{status: resp.StatusCode, ct: resp.Header.Get("Content-Type"), body: string(b)}
}

func trinoPutState(t *testing.T, w *TrinoWorker, state string) trinoResp {
	t.Helper()
	return trinoCall(t, http.MethodPut, w.URL()+"/v1/info/state", "scaledownd", `"`+state+`"`)
}

func trinoMustPut(t *testing.T, w *TrinoWorker, state string) time.Time {
	t.Helper()
	at := time.Now()
	if r := trinoPutState(t, w, state); r.err != nil || r.status != 200 {
		t.Fatalf("PUT %s: %d %q %v", state, r.status, r.body, r.err)
	}
	return at
}

func trinoWait(t *testing.T, w *TrinoWorker, state string) time.Time {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.WaitState(ctx, state); err != nil {
		t.Fatal(err)
	}
	return trinoLastAt(t, w, state)
}

func trinoWaitExit(t *testing.T, w *TrinoWorker) time.Time {
	t.Helper()
	select {
	case <-w.Exited():
	case <-time.After(10 * time.Second):
		t.Fatalf("no exit; state %s", w.State())
	}
	return trinoLastAt(t, w, TrinoExited)
}

// trinoLastAt is when the node last entered state, from its history.
func trinoLastAt(t *testing.T, w *TrinoWorker, state string) time.Time {
	t.Helper()
	h := w.StateHistory()
	for i := len(h) - 1; i >= 0; i-- {
		if h[i].State == state {
			return h[i].At
		}
	}
	t.Fatalf("%s not in history %v", state, h)
	return time.Time{}
}

func trinoHistory(w *TrinoWorker) string {
	var s []string
	for _, h := range w.StateHistory() {
		s = append(s, h.State)
	}
	return strings.Join(s, ",")
}

func trinoRefused(t *testing.T, w *TrinoWorker) {
	t.Helper()
	r := trinoCall(t, http.MethodGet, w.URL()+"/v1/info/state", "", "")
	if !errors.Is(r.err, syscall.ECONNREFUSED) {
		t.Fatalf("want connection refused, got %d %q %v", r.status, r.body, r.err)
	}
}

func TestTrinoDrainWithoutTasksTakesTwoGraces(t *testing.T) {
	w := trinoTestNode(t, TrinoOptions{})
	put := trinoMustPut(t, w, TrinoDraining)
	if got := w.State(); got != TrinoDraining {
		t.Fatalf("state %s right after PUT", got)
	}
	drained := trinoWait(t, w, TrinoDrained)
	if d := drained.Sub(put); d < 2*trinoTestGrace {
		t.Errorf("DRAINED after %v, want >= 2 graces (%v)", d, 2*trinoTestGrace)
	}
	if h := trinoHistory(w); h != "ACTIVE,DRAINING,DRAINED" {
		t.Errorf("history %s", h)
	}
	// The process keeps running; ACTIVE reactivates it.
	trinoMustPut(t, w, TrinoActive)
	if got := w.State(); got != TrinoActive {
		t.Fatalf("state %s after reactivation", got)
	}
	select {
	case <-w.Exited():
		t.Fatal("drained node exited")
	default:
	}
}

func TestTrinoDrainWaitsForRunningTask(t *testing.T) {
	w := trinoTestNode(t, TrinoOptions{})
	task := 5 * trinoTestGrace // outlasts both grace periods
	w.AddTask(task)
	put := trinoMustPut(t, w, TrinoDraining)
	if n := w.ActiveTasks(); n != 1 {
		t.Fatalf("ActiveTasks %d", n)
	}
	drained := trinoWait(t, w, TrinoDrained)
	if d := drained.Sub(put); d < task+trinoTestGrace {
		t.Errorf("DRAINED %v after PUT, want >= task (%v) + one grace", d, task)
	}
	if w.FailedTasks() != 0 || w.ActiveTasks() != 0 {
		t.Errorf("failed %d active %d", w.FailedTasks(), w.ActiveTasks())
	}
}

func TestTrinoDrainWaitsForTaskAddedDuringGrace(t *testing.T) {
	w := trinoTestNode(t, TrinoOptions{GracePeriod: 100 * time.Millisecond})
	put := trinoMustPut(t, w, TrinoDraining)
	// The coordinator may still place tasks on a node it has not yet seen draining.
	w.AddBlockedTask()() // a task that is already done does not count
	w.AddTask(400 * time.Millisecond)
	if d := trinoWait(t, w, TrinoDrained).Sub(put); d < 500*time.Millisecond {
		t.Errorf("DRAINED %v after PUT, want >= task (400ms) + grace (100ms)", d)
	}
}

func TestTrinoReactivateDuringDrainRestartsTheClock(t *testing.T) {
	w := trinoTestNode(t, TrinoOptions{GracePeriod: 100 * time.Millisecond})
	trinoMustPut(t, w, TrinoDraining)
	trinoMustPut(t, w, TrinoActive)
	time.Sleep(60 * time.Millisecond)
	second := trinoMustPut(t, w, TrinoDraining)
	drained := trinoWait(t, w, TrinoDrained)
	// 476 versions its state: the first drain job must not complete the second drain.
	if d := drained.Sub(second); d < 200*time.Millisecond {
		t.Errorf("DRAINED %v after the second DRAINING, want >= 2 graces", d)
	}
	if h := trinoHistory(w); h != "ACTIVE,DRAINING,ACTIVE,DRAINING,DRAINED" {
		t.Errorf("history %s", h)
	}
}

func TestTrinoUnversionedStaleDrainCompletesEarly(t *testing.T) {
	// 468…473 compare the state name only: the first drain's job finishes the second drain early.
	w := trinoTestNode(t, TrinoOptions{Version: "470", GracePeriod: 100 * time.Millisecond})
	trinoMustPut(t, w, TrinoDraining)
	trinoMustPut(t, w, TrinoActive)
	time.Sleep(60 * time.Millisecond)
	second := trinoMustPut(t, w, TrinoDraining)
	drained := trinoWait(t, w, TrinoDrained)
	if d := drained.Sub(second); d >= 200*time.Millisecond {
		t.Errorf("470: DRAINED %v after the second DRAINING, want the stale job to finish it early", d)
	}
}

func TestTrinoShutdownWaitsForTasksThenExits(t *testing.T) {
	w := trinoTestNode(t, TrinoOptions{})
	task := 5 * trinoTestGrace
	w.AddTask(task)
	put := trinoMustPut(t, w, TrinoShuttingDown)
	if r := trinoPutState(t, w, TrinoActive); r.status != 400 || r.body != "Error 400 Bad Request: Invalid state transition to ACTIVE" {
		t.Fatalf("ACTIVE after SHUTTING_DOWN: %d %q", r.status, r.body)
	}
	if r := trinoPutState(t, w, TrinoShuttingDown); r.status != 200 {
		t.Fatalf("repeated SHUTTING_DOWN: %d", r.status)
	}
	exit := trinoWaitExit(t, w)
	if d := exit.Sub(put); d < task+trinoTestGrace {
		t.Errorf("exit %v after PUT, want >= task (%v) + one grace", d, task)
	}
	if w.FailedTasks() != 0 || w.ActiveTasks() != 0 {
		t.Errorf("failed %d active %d", w.FailedTasks(), w.ActiveTasks())
	}
	trinoRefused(t, w)
	if got := w.State(); got != TrinoExited {
		t.Errorf("State() %s", got)
	}
}

func TestTrinoDrainedToShuttingDownExitsAtOnce(t *testing.T) {
	w2 := trinoTestNode(t, TrinoOptions{})
	trinoMustPut(t, w2, TrinoDraining)
	trinoWait(t, w2, TrinoDrained)
	put := trinoMustPut(t, w2, TrinoShuttingDown) // the 200 arrives before the port closes
	if d := trinoWaitExit(t, w2).Sub(put); d > trinoTestGrace {
		t.Errorf("exit %v after PUT, want immediate", d)
	}
	trinoRefused(t, w2)
}

func TestTrinoRegression475ShutdownDoesNotWaitForTasks(t *testing.T) {
	for _, v := range []string{"474", "475"} {
		t.Run(v, func(t *testing.T) {
			w := trinoTestNode(t, TrinoOptions{Version: v})
			finish := w.AddBlockedTask()
			defer finish()
			put := trinoMustPut(t, w, TrinoShuttingDown)
			exit := trinoWaitExit(t, w)
			if d := exit.Sub(put); d < trinoTestGrace || d > 10*trinoTestGrace {
				t.Errorf("exit %v after PUT, want about one grace", d)
			}
			if w.FailedTasks() != 1 || w.ActiveTasks() != 0 {
				t.Errorf("failed %d active %d, want the running task failed", w.FailedTasks(), w.ActiveTasks())
			}
		})
	}
}

func TestTrinoRegression475DrainStillWaits(t *testing.T) {
	w := trinoTestNode(t, TrinoOptions{Version: "475"})
	task := 5 * trinoTestGrace
	w.AddTask(task)
	put := trinoMustPut(t, w, TrinoDraining)
	if d := trinoWait(t, w, TrinoDrained).Sub(put); d < task+trinoTestGrace {
		t.Errorf("475 DRAINED %v after PUT, want >= task + grace", d)
	}
}

func TestTrinoLegacyVersionsHaveNoDraining(t *testing.T) {
	for _, v := range []string{"466", "443-e.3"} {
		t.Run(v, func(t *testing.T) {
			w := trinoTestNode(t, TrinoOptions{Version: v})
			r := trinoPutState(t, w, TrinoDraining)
			if r.status != 400 || !strings.Contains(r.body, `from String "DRAINING": not one of the values accepted for Enum class: [INACTIVE, ACTIVE, SHUTTING_DOWN]`) {
				t.Fatalf("DRAINING: %d %q", r.status, r.body)
			}
			if r := trinoPutState(t, w, TrinoActive); r.status != 400 || !strings.Contains(r.body, "Invalid state transition to ACTIVE") {
				t.Fatalf("legacy ACTIVE on ACTIVE: %d %q", r.status, r.body)
			}
			info := trinoCall(t, http.MethodGet, w.URL()+"/v1/info", "", "")
			if !strings.Contains(info.body, `"version":"`+v+`"`) || strings.Contains(info.body, `"state"`) {
				t.Errorf("info %s", info.body)
			}
			m := trinoCall(t, http.MethodGet, w.URL()+"/metrics", "alice", "")
			if strings.Contains(m.body, TrinoMetricTasks) {
				t.Errorf("%s exports %s (ThreadPerDriverTaskExecutor has no Tasks before 467)", v, TrinoMetricTasks)
			}
			task := 5 * trinoTestGrace
			w.AddTask(task)
			put := trinoMustPut(t, w, TrinoShuttingDown)
			trinoMustPut(t, w, TrinoShuttingDown)
			if s := trinoCall(t, http.MethodGet, w.URL()+"/v1/info/state", "", ""); s.body != `"SHUTTING_DOWN"` {
				t.Errorf("state %s", s.body)
			}
			if d := trinoWaitExit(t, w).Sub(put); d < task+trinoTestGrace {
				t.Errorf("legacy exit %v after PUT, want >= task + grace", d)
			}
			if w.FailedTasks() != 0 {
				t.Errorf("FailedTasks %d", w.FailedTasks())
			}
		})
	}
}

func TestTrinoCoordinator(t *testing.T) {
	w := trinoTestNode(t, TrinoOptions{Coordinator: true})
	if r := trinoPutState(t, w, TrinoDraining); r.status != 500 || !strings.HasPrefix(r.body, "java.lang.UnsupportedOperationException: Cannot drain coordinator") {
		t.Fatalf("DRAINING: %d %q", r.status, r.body)
	}
	if w.State() != TrinoActive {
		t.Fatalf("476 coordinator state %s", w.State())
	}
	if r := trinoPutState(t, w, TrinoShuttingDown); r.status != 500 || !strings.Contains(r.body, "Cannot shutdown coordinator") {
		t.Fatalf("SHUTTING_DOWN: %d %q", r.status, r.body)
	}
	if r := trinoCall(t, http.MethodGet, w.URL()+"/v1/info/coordinator", "", ""); r.status != 200 || r.body != "" {
		t.Fatalf("coordinator: %d %q", r.status, r.body)
	}
	// Before 476 the drain request changes a coordinator's state before failing.
	old := trinoTestNode(t, TrinoOptions{Coordinator: true, Version: "470"})
	if r := trinoPutState(t, old, TrinoDraining); r.status != 500 {
		t.Fatalf("470 DRAINING: %d", r.status)
	}
	if old.State() != TrinoDraining {
		t.Fatalf("470 coordinator state %s, want DRAINING", old.State())
	}
	if r := trinoPutState(t, old, TrinoDraining); r.status != 200 {
		t.Fatalf("470 repeated DRAINING: %d", r.status)
	}
	trinoMustPut(t, old, TrinoActive)
}

func TestTrinoSecurity(t *testing.T) {
	w := trinoTestNode(t, TrinoOptions{WriteUsers: []string{"ops"}})
	url := w.URL() + "/v1/info/state"
	cases := []struct {
		name   string
		user   string
		hdr    []string
		status int
		body   string
	}{
		{"anonymous", "", nil, 401, TrinoMsgNoIdentity},
		{"default user not configured", "scaledownd", nil, 403, TrinoMsgForbidden},
		{"writer", "ops", nil, 200, ""},
		{"basic no password", "", []string{"Authorization", "Basic b3BzOg=="}, 200, ""},                            // ops:
		{"basic with password", "ops", []string{"Authorization", "Basic b3BzOnNlY3JldA=="}, 401, TrinoMsgPassword}, // ops:secret
		{"impersonation", "alice", []string{"Authorization", "Basic b3BzOg=="}, 403, TrinoMsgForbidden},
		{"original user", "", []string{"X-Trino-Original-User", "ops"}, 200, ""},
	}
	for _, c := range cases {
		r := trinoCall(t, http.MethodPut, url, c.user, `"ACTIVE"`, c.hdr...)
		if r.status != c.status || r.body != c.body {
			t.Errorf("%s: %d %q, want %d %q", c.name, r.status, r.body, c.status, c.body)
		}
	}
	got := w.Requests()
	if len(got) != len(cases) || got[0].Status != 401 || got[2].User != "ops" || got[3].User != "ops" || got[2].Body != `"ACTIVE"` {
		t.Errorf("requests %+v", got)
	}
}

func TestTrinoMetricsCountRunningTasks(t *testing.T) {
	w := trinoTestNode(t, TrinoOptions{})
	url := w.URL() + "/metrics?name[]=" + TrinoMetricTasks
	if r := trinoCall(t, http.MethodGet, url, "", ""); r.status != 401 {
		t.Fatalf("anonymous metrics: %d", r.status)
	}
	a, b := w.AddBlockedTask(), w.AddBlockedTask()
	w.AddTask(time.Hour)
	r := trinoCall(t, http.MethodGet, url, "anyone", "")
	if r.status != 200 || r.ct != TrinoContentTypeOpenMetrics || !strings.Contains(r.body, TrinoMetricTasks+" 3.0\n") {
		t.Fatalf("metrics: %d %q %q", r.status, r.ct, r.body)
	}
	a()
	a() // idempotent
	b()
	if n := w.ActiveTasks(); n != 1 {
		t.Fatalf("ActiveTasks %d", n)
	}
	var st struct {
		MemoryInfo struct {
			Pool struct {
				TaskMemoryReservations map[string]int64 `json:"taskMemoryReservations"`
			} `json:"pool"`
		} `json:"memoryInfo"`
	}
	s := trinoCall(t, http.MethodGet, w.URL()+"/v1/status", "", "")
	if err := json.Unmarshal([]byte(s.body), &st); err != nil || len(st.MemoryInfo.Pool.TaskMemoryReservations) != 1 {
		t.Fatalf("status %s: %v", s.body, err)
	}
	w.Crash()
	if w.FailedTasks() != 1 {
		t.Errorf("FailedTasks %d after crash", w.FailedTasks())
	}
}

func TestTrinoShortTaskFinishesByItself(t *testing.T) {
	w := trinoTestNode(t, TrinoOptions{})
	w.AddTask(2 * trinoTestGrace)
	put := trinoMustPut(t, w, TrinoShuttingDown)
	exit := trinoWaitExit(t, w)
	if d := exit.Sub(put); d < 3*trinoTestGrace {
		t.Errorf("exit %v after PUT, want >= task (2 graces) + one grace", d)
	}
	if w.FailedTasks() != 0 {
		t.Errorf("FailedTasks %d", w.FailedTasks())
	}
}

func TestTrinoCrashAndRestart(t *testing.T) {
	w := trinoTestNode(t, TrinoOptions{StartupDelay: 150 * time.Millisecond})
	url := w.URL()
	// starting: public GETs answer, management answers 503
	if r := trinoCall(t, http.MethodGet, url+"/v1/info", "", ""); !strings.Contains(r.body, `"starting":true`) {
		t.Fatalf("info while starting: %q", r.body)
	}
	if r := trinoPutState(t, w, TrinoDraining); r.status != 503 || r.body != TrinoMsgStarting {
		t.Fatalf("PUT while starting: %d %q", r.status, r.body)
	}
	if r := trinoCall(t, http.MethodPut, url+"/v1/info/state", "", `"DRAINING"`); r.status != 401 {
		t.Fatalf("anonymous PUT while starting: %d (401 comes before 503)", r.status)
	}
	deadline := time.Now().Add(5 * time.Second)
	for trinoPutState(t, w, TrinoActive).status != 200 {
		if time.Now().After(deadline) {
			t.Fatal("never finished starting")
		}
		time.Sleep(10 * time.Millisecond)
	}
	finish := w.AddBlockedTask()
	first := w.Exited()
	w.Crash()
	<-first
	trinoRefused(t, w)
	finish() // no effect on a failed task
	if w.FailedTasks() != 1 || w.ActiveTasks() != 0 {
		t.Fatalf("failed %d active %d", w.FailedTasks(), w.ActiveTasks())
	}
	w.Restart()
	if w.URL() != url {
		t.Fatalf("restart moved to %s", w.URL())
	}
	if s := trinoCall(t, http.MethodGet, url+"/v1/info/state", "", ""); s.body != `"ACTIVE"` {
		t.Fatalf("state after restart %q %v", s.body, s.err)
	}
	select {
	case <-w.Exited():
		t.Fatal("new process reports exited")
	default:
	}
	if h := trinoHistory(w); h != "ACTIVE,EXITED,ACTIVE" {
		t.Errorf("history %s", h)
	}
}

func TestTrinoHang(t *testing.T) {
	w := trinoTestNode(t, TrinoOptions{})
	w.Hang(true)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, w.URL()+"/v1/info/state", nil)
	if _, err := http.DefaultClient.Do(req); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("hung request: %v", err)
	}
	// requests pending when the hang ends are answered normally
	done := make(chan trinoResp, 1)
	go func() { done <- trinoCall(t, http.MethodGet, w.URL()+"/v1/info/state", "", "") }()
	w.Hang(false)
	if r := <-done; r.status != 200 || r.body != `"ACTIVE"` {
		t.Fatalf("after hang: %d %q %v", r.status, r.body, r.err)
	}
	// both requests are recorded (the abandoned one with status 0, or 200 if
	// the hang ended before the server noticed the client had gone)
	deadline := time.Now().Add(5 * time.Second)
	for len(w.Requests()) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("requests %+v", w.Requests())
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, r := range w.Requests() {
		if r.Status != 0 && r.Status != 200 {
			t.Errorf("request %+v", r)
		}
	}
}

func TestTrinoConcurrentUse(t *testing.T) {
	w := trinoTestNode(t, TrinoOptions{GracePeriod: 10 * time.Millisecond})
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for j := 0; j < 20; j++ {
				switch (i + j) % 5 {
				case 0:
					trinoPutState(t, w, TrinoDraining)
				case 1:
					trinoPutState(t, w, TrinoActive)
				case 2:
					w.AddTask(time.Duration(j) * time.Millisecond)
				case 3:
					trinoCall(t, http.MethodGet, w.URL()+"/metrics", "x", "")
				case 4:
					_ = w.State()
					_ = w.StateHistory()
					_ = w.Requests()
				}
			}
		}(i)
	}
	wg.Wait()
	trinoMustPut(t, w, TrinoShuttingDown)
	trinoWaitExit(t, w)
	w.Restart()
	trinoMustPut(t, w, TrinoDraining)
	trinoWait(t, w, TrinoDrained)
}

func TestTrinoDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		41170 * time.Millisecond: "41.17s",
		352 * time.Second:        "5.87m",
		1500 * time.Microsecond:  "1.50ms",
		0:                        "0.00ns",
		36 * time.Hour:           "1.50d",
	} {
		if got := TrinoDuration(d); got != want {
			t.Errorf("TrinoDuration(%v) = %s, want %s", d, got, want)
		}
	}
}

// trinoNodeStateOf runs the node-state query on the fake coordinator and
// returns its rows as JSON, following nextUri to the end.
func trinoNodeStateOf(t *testing.T, coord *TrinoWorker, literal string) string {
	t.Helper()
	r := trinoCall(t, http.MethodPost, coord.URL()+"/v1/statement", "scaledownd", trinoNodeQuery(literal))
	var rows []json.RawMessage
	for {
		if r.err != nil || r.status != 200 {
			t.Fatalf("statement: %d %q %v", r.status, r.body, r.err)
		}
		var doc struct {
			NextURI string            `json:"nextUri"`
			Data    []json.RawMessage `json:"data"`
			Error   *struct{ Message string }
		}
		if err := json.Unmarshal([]byte(r.body), &doc); err != nil {
			t.Fatal(err)
		}
		if doc.Error != nil {
			t.Fatalf("query failed: %s", doc.Error.Message)
		}
		rows = append(rows, doc.Data...)
		if doc.NextURI == "" {
			break
		}
		r = trinoCall(t, http.MethodGet, doc.NextURI, "", "")
	}
	b, _ := json.Marshal(append([]json.RawMessage{}, rows...))
	return string(b)
}

func TestTrinoCoordinatorListsWatchedWorkersAfterADelay(t *testing.T) {
	coord := trinoTestNode(t, TrinoOptions{Coordinator: true})
	w := trinoTestNode(t, TrinoOptions{NodeID: "worker-9"})
	started := time.Now()
	coord.WatchWorker(w, 300*time.Millisecond)
	if got := trinoNodeStateOf(t, coord, `'worker-9'`); got != `[]` {
		t.Fatalf("listed at once: %s", got)
	}
	Eventually(t, 5*time.Second, "worker listed active", func() bool { return !coord.NodeListedAt("worker-9", "active").IsZero() })
	if at := coord.NodeListedAt("worker-9", "active"); at.Sub(started) < 300*time.Millisecond {
		t.Fatalf("listed %s after the start, before the 300 ms delay", at.Sub(started))
	}
	if got := trinoNodeStateOf(t, coord, `'worker-9'`); got != `[["active"]]` {
		t.Fatalf("rows %s", got)
	}
	// State changes are mirrored; the end of the process drops the row.
	trinoMustPut(t, w, TrinoDraining)
	Eventually(t, 5*time.Second, "worker listed draining", func() bool { return !coord.NodeListedAt("worker-9", "draining").IsZero() })
	w.Crash()
	Eventually(t, 5*time.Second, "worker dropped", func() bool {
		h := coord.NodeHistory()
		return len(h) > 0 && h[len(h)-1].State == ""
	})
	// A restarted worker is listed again only after the delay.
	restarted := time.Now()
	w.Restart()
	Eventually(t, 5*time.Second, "restarted worker listed", func() bool {
		h := coord.NodeHistory()
		return h[len(h)-1].State == "active"
	})
	h := coord.NodeHistory()
	if since := h[len(h)-1].At.Sub(restarted); since < 300*time.Millisecond {
		t.Fatalf("restarted worker listed after %s, before the delay", since)
	}
	var seen []string
	for _, c := range h {
		seen = append(seen, c.NodeID+"="+c.State)
	}
	if got := strings.Join(seen, " "); got != "worker-9=active worker-9=draining worker-9= worker-9=active" {
		t.Fatalf("history %s", got)
	}
}

func TestTrinoCoordinatorQueryPages(t *testing.T) {
	coord := trinoTestNode(t, TrinoOptions{Coordinator: true})
	coord.SetNode("it's", "drained")
	if got := trinoNodeStateOf(t, coord, `'it''s'`); got != `[["drained"]]` {
		t.Fatalf("quoted id: %s", got)
	}
	if got := trinoNodeStateOf(t, coord, `'coordinator'`); got != `[["active"]]` {
		t.Fatalf("own row: %s", got)
	}
	// A page fetched twice (a client's retry) answers the same (but for
	// the elapsed time).
	type page struct {
		NextURI string
		Data    []json.RawMessage
		Stats   struct{ State string }
	}
	r := trinoCall(t, http.MethodPost, coord.URL()+"/v1/statement", "scaledownd", trinoNodeQuery(`'it''s'`))
	var doc page
	_ = json.Unmarshal([]byte(r.body), &doc)
	for doc.NextURI != "" {
		var first, again page
		r1 := trinoCall(t, http.MethodGet, doc.NextURI, "", "")
		r2 := trinoCall(t, http.MethodGet, doc.NextURI, "", "")
		_ = json.Unmarshal([]byte(r1.body), &first)
		_ = json.Unmarshal([]byte(r2.body), &again)
		if r1.status != 200 || r2.status != 200 || !reflect.DeepEqual(first, again) {
			t.Fatalf("refetched page differs:\n%s\n%s", r1.body, r2.body)
		}
		doc = first
	}
	// Only the coordinator runs statements.
	w := trinoTestNode(t, TrinoOptions{})
	if r := trinoCall(t, http.MethodPost, w.URL()+"/v1/statement", "scaledownd", trinoNodeQuery(`'worker-1'`)); r.status != 404 {
		t.Fatalf("worker answered a statement: %d", r.status)
	}
	coord.SetNode("it's", "")
	if got := trinoNodeStateOf(t, coord, `'it''s'`); got != `[]` {
		t.Fatalf("removed node still listed: %s", got)
	}
}
