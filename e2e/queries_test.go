//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/scaledownd/scaledownd/internal/config"
	"github.com/scaledownd/scaledownd/pkg/trinoadmin"
)

// Which queries hold the drain, on the real cluster.
//
// daemonReportsQueries switches on the checks of the daemon's own account:
// its "blocking queries" log lines and its "drain report" (the supervisor
// lists the queries while it drains and puts them into the report). Off,
// the scenario runs the same trinoadmin.Watcher itself, beside the daemon,
// against the real coordinator and checks that instead.
const daemonReportsQueries = true

// daemonPollInterval is trino.poll-interval as the scenarios run the
// daemon (its default).
var daemonPollInterval = config.Default().Trino.PollInterval

// queryWatch is a trinoadmin.Watcher for worker 1, run by the test.
type queryWatch struct {
	w    *trinoadmin.Watcher
	logs *observer.ObservedLogs
	stop func()
}

// watchBlockingQueries runs the daemon's watcher for node w1 against the
// real coordinator, as the daemon's user, asking every 10 s, until stop.
func watchBlockingQueries(t *testing.T, c clusterEnv, w1 trinoNode, deadline time.Time) *queryWatch {
	t.Helper()
	wc, err := trinoadmin.New(trinoadmin.Options{URL: w1.URL, User: "scaledownd", Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.InfoLevel)
	w := trinoadmin.NewWatcher(trinoadmin.WatcherOptions{Lister: wc.Coordinator(c.CoordURL).WorkerQueries(wc),
		Interval: trinoadmin.MinQueryInterval, Logger: zap.New(core)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx, deadline) }()
	qw := &queryWatch{w: w, logs: logs}
	qw.stop = func() { cancel(); <-done }
	t.Cleanup(qw.stop)
	return qw
}

// coordinatorTimes reads the query's created and end times from the
// coordinator's system.runtime.queries.
func coordinatorTimes(t *testing.T, c clusterEnv, id string) (created, end time.Time) {
	t.Helper()
	rows, err := rowsOf(c.CoordURL, fmt.Sprintf(`SELECT CAST(to_unixtime(created) AS varchar), CAST(to_unixtime("end") AS varchar) FROM system.runtime.queries WHERE query_id = '%s'`, id), 30*time.Second)
	if err != nil || len(rows) != 1 || len(rows[0]) != 2 {
		t.Fatalf("system.runtime.queries for %s: %v %v", id, rows, err)
	}
	parse := func(s string) time.Time {
		var f float64
		if _, err := fmt.Sscan(s, &f); err != nil {
			t.Fatalf("system.runtime.queries time %q: %v", s, err)
		}
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(math.Round(frac*1e3))*int64(time.Millisecond))
	}
	return parse(rows[0][0]), parse(rows[0][1])
}

// checkQueryNamed checks an account of the drain's queries (logged
// "blocking queries" entries and the queries waited for): the query is
// named with its id and user, and its elapsed time is the time it held
// worker 1 — from its creation to the end of its last task there — to
// within one query interval (the last look precedes that end by less than
// one interval and the time of one question).
func checkQueryNamed(t *testing.T, who string, logged [][]map[string]any, waited []map[string]any, id, user string, held time.Duration) float64 {
	t.Helper()
	seen := false
	for _, qs := range logged {
		for _, q := range qs {
			if q["query_id"] == id {
				seen = true
				if q["user"] != user {
					t.Errorf("%s logged query %s with user %v, want %s", who, id, q["user"], user)
				}
			}
		}
	}
	if !seen {
		t.Errorf("%s never logged query %s among the blocking queries: %v", who, id, logged)
	}
	i := slices.IndexFunc(waited, func(q map[string]any) bool { return q["query_id"] == id })
	if i < 0 {
		t.Fatalf("%s: query %s not among the queries waited for %v", who, id, waited)
	}
	if waited[i]["user"] != user {
		t.Errorf("%s: query %s waited for with user %v, want %s", who, id, waited[i]["user"], user)
	}
	el, _ := waited[i]["elapsed_s"].(float64)
	slack := (trinoadmin.MinQueryInterval + 2*time.Second).Seconds()
	if d := held.Seconds() - el; d < -0.5 || d > slack {
		t.Errorf("%s: query %s elapsed %.1fs, want within %.0fs below the %.1fs it held worker-1", who, id, el, slack, held.Seconds())
	}
	return el
}

// asMaps turns queries into the report's JSON shape.
func asMaps(qs []trinoadmin.Query) []map[string]any {
	out := []map[string]any{}
	for _, q := range qs {
		b, _ := json.Marshal(map[string]any{"query_id": q.ID, "user": q.User, "source": q.Source, "state": q.State,
			"elapsed_s": q.Elapsed.Seconds()})
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		out = append(out, m)
	}
	return out
}

// loggedQueries returns the "queries" arrays of the watcher's "blocking
// queries" lines.
func (qw *queryWatch) loggedQueries() [][]map[string]any {
	var out [][]map[string]any
	for _, e := range qw.logs.FilterMessage("blocking queries").All() {
		var qs []map[string]any
		for _, q := range e.ContextMap()["queries"].([]any) {
			qs = append(qs, q.(map[string]any))
		}
		out = append(out, qs)
	}
	return out
}

// daemonLoggedQueries returns the "queries" arrays of the daemon's
// "blocking queries" lines.
func daemonLoggedQueries(d *daemonRun) [][]map[string]any {
	var out [][]map[string]any
	for _, r := range d.logs("blocking queries", nil) {
		var qs []map[string]any
		raw, _ := r.Fields["queries"].([]any)
		for _, q := range raw {
			if m, ok := q.(map[string]any); ok {
				qs = append(qs, m)
			}
		}
		out = append(out, qs)
	}
	return out
}

// checkDrainReport checks the daemon's drain report (issue 13): it names
// the query with its id and user and the time it held worker 1, and its
// DRAINED and completion times match the DRAINED line in worker 1's log
// and the completion Auto Scaling recorded, within one trino.poll-interval
// (plus 100 ms for the requests).
func checkDrainReport(t *testing.T, s *scenario, id, user string, held time.Duration, drainedAt, completedAt time.Time) {
	t.Helper()
	reports := s.d.logs("drain report", nil)
	if len(reports) != 1 {
		t.Fatalf("%d drain reports, want 1", len(reports))
	}
	rep, _ := reports[0].Fields["report"].(map[string]any)
	var waited []map[string]any
	raw, _ := rep["queries"].([]any)
	for _, q := range raw {
		if m, ok := q.(map[string]any); ok {
			waited = append(waited, m)
		}
	}
	checkQueryNamed(t, "the daemon's report", daemonLoggedQueries(s.d), waited, id, user, held)
	if n, _ := rep["queries_total"].(float64); int(n) < 1 {
		t.Errorf("report queries_total %v", rep["queries_total"])
	}
	tl, _ := rep["timeline"].(map[string]any)
	tol := daemonPollInterval + 100*time.Millisecond
	for name, want := range map[string]time.Time{"drained": drainedAt, "completed": completedAt} {
		str, _ := tl[name].(string)
		got, err := time.Parse(time.RFC3339Nano, str)
		if err != nil {
			t.Errorf("report timeline.%s %q: %v", name, str, err)
			continue
		}
		if d := got.Sub(want); d < -tol || d > tol {
			t.Errorf("report timeline.%s %s, %v from the worker's/Auto Scaling's %s (tolerance %v)", name,
				got.Format("15:04:05.000"), d, want.Format("15:04:05.000"), tol)
		}
	}
}
