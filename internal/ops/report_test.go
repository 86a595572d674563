package ops_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/scaledownd/scaledownd/internal/drainreport"
	"github.com/scaledownd/scaledownd/internal/ops"
	"github.com/scaledownd/scaledownd/internal/statefile"
	"github.com/scaledownd/scaledownd/internal/testpeers"
	"github.com/scaledownd/scaledownd/pkg/trinoadmin"
)

// statusSequence serves /status documents in turn, the last one for ever.
func statusSequence(t *testing.T, docs ...string) string {
	t.Helper()
	var mu sync.Mutex
	i := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		doc := docs[min(i, len(docs)-1)]
		i++
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, doc)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func TestStatusWatchPrintsPlainLines(t *testing.T) {
	addr := statusSequence(t,
		`{"phase":"idle","completed":0}`,
		`{"phase":"received","completed":0}`,
		`{"phase":"draining","deadline_in_s":3599.5,"trino_state":"DRAINING","tasks_left":3,"blocking_queries":2,`+
			`"queries":[{"query_id":"q_long","user":"alice","elapsed_s":42},{"query_id":"q_short","elapsed_s":2}],"completed":0}`,
		// Only the countdown and the elapsed time changed: no new line.
		`{"phase":"draining","deadline_in_s":3598.5,"trino_state":"DRAINING","tasks_left":3,"blocking_queries":2,`+
			`"queries":[{"query_id":"q_long","user":"alice","elapsed_s":43},{"query_id":"q_short","elapsed_s":3}],"completed":0}`,
		`{"phase":"draining","deadline_in_s":3590,"trino_state":"DRAINED","tasks_left":0,"blocking_queries":0,"completed":0}`,
		`{"phase":"completing","deadline_in_s":3589,"trino_state":"DRAINED","tasks_left":0,"blocking_queries":0,"completed":0}`,
		`{"phase":"idle","completed":1}`,
	)
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ops.Watch(ctx, &out, ops.StatusOptions{Listen: addr}, 5*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if ctx.Err() != nil {
		t.Fatal("watch did not return once the action finished")
	}
	want := []string{
		"idle · waiting for a lifecycle action",
		"received",
		"draining · trino DRAINING · tasks 3 · queries 2 (longest q_long (alice) 42s) · deadline in 1h0m0s",
		"draining · trino DRAINED · tasks 0 · queries 0 · deadline in 59m50s",
		"completing · trino DRAINED · tasks 0 · queries 0 · deadline in 59m49s",
		"idle · the action has finished (1 completed); `scaledownd history` shows its report",
	}
	got := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("watch printed:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if strings.Contains(out.String(), "\r") || strings.Contains(out.String(), "\x1b") {
		t.Fatal("control characters in plain output")
	}
}

type fixedQueries []trinoadmin.Query

func (f fixedQueries) BlockingQueries(context.Context) ([]trinoadmin.Query, error) { return f, nil }

func TestMaintenanceDrainEndsWithAReport(t *testing.T) {
	w := testpeers.NewTrino(testpeers.TrinoOptions{GracePeriod: 50 * time.Millisecond})
	defer w.Close()
	w.AddTask(300 * time.Millisecond)
	c, err := trinoadmin.New(trinoadmin.Options{URL: w.URL(), User: "scaledownd"})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	core, logs := observer.New(zap.InfoLevel)
	var out bytes.Buffer
	err = ops.Drain(context.Background(), &out, c, ops.DrainOptions{Strategy: trinoadmin.StrategyDrain, Wait: true,
		PollInterval: 20 * time.Millisecond, StateDir: dir, InstanceID: "i-0abc", QueryInterval: 50 * time.Millisecond,
		Queries: fixedQueries{{ID: "q_maint", User: "dave", State: "RUNNING", Elapsed: 7 * time.Second}}}, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	events := logs.FilterMessage("drain report").All()
	if len(events) != 1 {
		t.Fatalf("%d drain reports logged, want 1", len(events))
	}
	r := events[0].ContextMap()["report"].(drainreport.Report)
	tl := r.Timeline
	if r.Kind != "maintenance" || r.Source != "maintenance" || r.Result != "none" || r.Reason != "drained" || r.InstanceID != "i-0abc" ||
		tl.DrainingRequested.IsZero() || tl.TasksZero.IsZero() || tl.Drained.IsZero() || tl.Completed.Before(tl.Drained) ||
		r.QueriesTotal != 1 || r.Queries[0].User != "dave" || r.InstanceSeconds <= 0 {
		t.Fatalf("report %+v", r)
	}
	hist, err := statefile.ReadHistory(dir)
	if err != nil || len(hist) != 1 || hist[0].Report.Kind != "maintenance" {
		t.Fatalf("history %+v, %v", hist, err)
	}
	// Plain lines as the drain goes (no terminal here), then the outcome
	// and the report's line.
	for _, want := range []string{"draining · trino DRAINING · tasks 1", "queries 1 (longest q_maint (dave) 7s)",
		"drained · trino DRAINED · tasks 0", "worker " + w.URL() + ": drained", "maintenance i-0abc none drained held"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestHistoryPrintsNewestFirst(t *testing.T) {
	dir := t.TempDir()
	h, err := statefile.OpenHistory(dir)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	for i, kind := range []string{"terminate", "launch", "spot"} {
		r := drainreport.Report{Kind: kind, Source: "sqs", Result: "CONTINUE", Reason: "drained",
			Timeline: drainreport.Timeline{Received: t0.Add(time.Duration(i) * time.Minute), Completed: t0.Add(time.Duration(i)*time.Minute + 5*time.Second)}}
		r.Finish()
		if err := h.Append(fmt.Sprint("k", i), r); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	if err := ops.History(&out, dir, false); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "2026-12-02T10:02:05Z spot") || !strings.HasPrefix(lines[2], "2026-12-02T10:00:05Z terminate") {
		t.Fatalf("history lines:\n%s", out.String())
	}
	out.Reset()
	if err := ops.History(&out, dir, true); err != nil {
		t.Fatal(err)
	}
	var reports []drainreport.Report
	if err := json.Unmarshal(out.Bytes(), &reports); err != nil {
		t.Fatal(err)
	}
	if len(reports) != 3 || reports[0].Kind != "spot" || reports[2].Kind != "terminate" || reports[0].InstanceSeconds != 5 {
		t.Fatalf("history --json: %+v", reports)
	}
	out.Reset()
	if err := ops.History(&out, t.TempDir(), false); err != nil || !strings.Contains(out.String(), "no drain reports") {
		t.Fatalf("empty history: %q, %v", out.String(), err)
	}
}
