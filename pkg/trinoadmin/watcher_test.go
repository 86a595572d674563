package trinoadmin_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/scaledownd/scaledownd/internal/testpeers"
	"github.com/scaledownd/scaledownd/pkg/trinoadmin"
)

// queryRecorder keeps the watcher's metric calls.
type queryRecorder struct {
	mu     sync.Mutex
	count  int
	oldest time.Duration
	calls  int
}

func (r *queryRecorder) BlockingQueries(n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.count, r.calls = n, r.calls+1
}

func (r *queryRecorder) OldestBlockingQuery(age time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.oldest = age
}

func (r *queryRecorder) get() (int, time.Duration, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.count, r.oldest, r.calls
}

// countingLister counts the questions a watcher asks.
type countingLister struct {
	inner trinoadmin.QueryLister
	n     atomic.Int32
}

func (c *countingLister) BlockingQueries(ctx context.Context) ([]trinoadmin.Query, error) {
	c.n.Add(1)
	return c.inner.BlockingQueries(ctx)
}

// eventually polls cond every 10 ms for up to 5 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// loggedIDs returns the query ids of a log entry's "queries" array.
func loggedIDs(e observer.LoggedEntry) []string {
	var ids []string
	qs, _ := e.ContextMap()["queries"].([]any)
	for _, q := range qs {
		m, _ := q.(map[string]any)
		id, _ := m["query_id"].(string)
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// waitLogged waits for a log entry with message msg whose queries are ids.
func waitLogged(t *testing.T, logs *observer.ObservedLogs, msg string, ids ...string) observer.LoggedEntry {
	t.Helper()
	slices.Sort(ids)
	var found observer.LoggedEntry
	eventually(t, msg+" "+strings.Join(ids, ","), func() bool {
		for _, e := range logs.FilterMessage(msg).All() {
			if slices.Equal(loggedIDs(e), ids) {
				found = e
				return true
			}
		}
		return false
	})
	return found
}

type watched struct {
	coord, w1, w2 *testpeers.TrinoWorker
	lister        *countingLister
	rec           *queryRecorder
	logs          *observer.ObservedLogs
	watcher       *trinoadmin.Watcher
}

// watch starts a coordinator, this worker (worker-1) and another
// (worker-2), and a watcher for worker-1 asking every 20 ms.
func watch(t *testing.T, opts trinoadmin.WatcherOptions, coordOpts testpeers.TrinoOptions) *watched {
	t.Helper()
	coordOpts.Coordinator = true
	s := &watched{coord: worker(t, coordOpts), w1: worker(t, testpeers.TrinoOptions{NodeID: "worker-1"}),
		w2: worker(t, testpeers.TrinoOptions{NodeID: "worker-2"}), rec: &queryRecorder{}}
	wc := client(t, s.w1.URL())
	s.lister = &countingLister{inner: wc.Coordinator(s.coord.URL()).WorkerQueries(wc)}
	core, logs := observer.New(zapcore.DebugLevel)
	s.logs = logs
	if opts.Lister == nil {
		opts.Lister = s.lister
	}
	if opts.Interval == 0 {
		opts.Interval = 20 * time.Millisecond
	}
	opts.Logger, opts.Recorder = zap.New(core), s.rec
	s.watcher = trinoadmin.NewWatcher(opts)
	return s
}

// run runs the watcher until the returned stop is called.
func (s *watched) run(t *testing.T, deadline time.Time) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.watcher.Run(ctx, deadline)
	}()
	stop = func() {
		cancel()
		<-done
	}
	t.Cleanup(stop)
	return stop
}

func TestWatcherListsAndUpdatesBlockingQueries(t *testing.T) {
	s := watch(t, trinoadmin.WatcherOptions{}, testpeers.TrinoOptions{})
	a, finishA := s.coord.StartQuery("alice", "superset", s.w1, s.w2)
	other, _ := s.coord.StartQuery("bob", "cli", s.w2) // on the other worker only
	stop := s.run(t, time.Time{})

	first := waitLogged(t, s.logs, "blocking queries", a)
	q := first.ContextMap()["queries"].([]any)[0].(map[string]any)
	if q["user"] != "alice" || q["source"] != "superset" || q["state"] != "RUNNING" {
		t.Errorf("logged %v, want alice's RUNNING query from superset", q)
	}
	if _, ok := q["elapsed_s"].(float64); !ok {
		t.Errorf("logged %v without elapsed_s", q)
	}

	c, finishC := s.coord.StartQuery("carol", "", s.w1)
	waitLogged(t, s.logs, "blocking queries", a, c)
	eventually(t, "the recorder to count 2", func() bool { n, _, _ := s.rec.get(); return n == 2 })

	finishA()
	waitLogged(t, s.logs, "blocking queries", c)
	finishC()
	eventually(t, "the all-clear", func() bool { return s.logs.FilterMessage("blocking queries: none left on this worker").Len() == 1 })

	// Each set is logged once, however often the coordinator is asked.
	if n := s.lister.n.Load(); n < 4 {
		t.Fatalf("only %d questions", n)
	}
	if got := s.logs.FilterMessage("blocking queries").Len(); got != 3 {
		t.Errorf("%d \"blocking queries\" lines, want 3 (one per change): %v", got, s.logs.FilterMessage("blocking queries").All())
	}
	snap := s.watcher.Snapshot()
	ids := []string{}
	for _, q := range snap.Waited {
		ids = append(ids, q.ID)
	}
	slices.Sort(ids)
	if !snap.Known || snap.WaitedTotal != 2 || !slices.Equal(ids, []string{a, c}) || len(snap.Current) != 0 {
		t.Errorf("snapshot %+v, want known, %s and %s waited for, none current", snap, a, c)
	}
	if slices.Contains(ids, other) {
		t.Errorf("bob's query on worker-2 only is among the waited-for %v", ids)
	}
	stop()
	if n, oldest, _ := s.rec.get(); n != 0 || oldest != 0 {
		t.Errorf("recorder after Run: %d, %v; want 0, 0", n, oldest)
	}
}

func TestWatcherRecordsTheOldestAge(t *testing.T) {
	now := time.Date(2026, 12, 2, 18, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	s := watch(t, trinoadmin.WatcherOptions{}, testpeers.TrinoOptions{Now: clock})
	old, _ := s.coord.StartQuery("alice", "", s.w1)
	advance(45 * time.Second) // under a minute: elapsedTime reads "50.00s", exact
	young, _ := s.coord.StartQuery("bob", "", s.w1)
	advance(5 * time.Second)
	s.run(t, time.Time{})
	waitLogged(t, s.logs, "blocking queries", old, young)
	eventually(t, "the oldest age", func() bool { n, oldest, _ := s.rec.get(); return n == 2 && oldest == 50*time.Second })
	snap := s.watcher.Snapshot()
	if len(snap.Current) != 2 || snap.Current[0].ID != old || snap.Current[0].Elapsed != 50*time.Second || snap.Current[1].Elapsed != 5*time.Second {
		t.Errorf("current %+v, want %s (50s) before %s (5s)", snap.Current, old, young)
	}
	if !snap.Current[0].Created.Equal(clock().Add(-50 * time.Second)) {
		t.Errorf("created %v, want %v", snap.Current[0].Created, clock().Add(-50*time.Second))
	}
}

func TestWatcherCapsTheQueriesItReports(t *testing.T) {
	s := watch(t, trinoadmin.WatcherOptions{}, testpeers.TrinoOptions{})
	for i := 0; i < trinoadmin.MaxReportedQueries+5; i++ {
		s.coord.StartQuery("alice", "", s.w1)
	}
	s.run(t, time.Time{})
	eventually(t, "all 25 queries", func() bool { return s.watcher.Snapshot().WaitedTotal == trinoadmin.MaxReportedQueries+5 })
	snap := s.watcher.Snapshot()
	if len(snap.Waited) != trinoadmin.MaxReportedQueries {
		t.Errorf("%d queries reported, want the cap %d", len(snap.Waited), trinoadmin.MaxReportedQueries)
	}
	if !slices.IsSortedFunc(snap.Waited, func(a, b trinoadmin.Query) int { return int(b.Elapsed - a.Elapsed) }) {
		t.Errorf("not longest first: %+v", snap.Waited)
	}
}

func TestWatcherWarnsNearTheDeadlineNamingTheQueryStillRunning(t *testing.T) {
	s := watch(t, trinoadmin.WatcherOptions{DeadlineWarning: time.Hour}, testpeers.TrinoOptions{})
	done, finish := s.coord.StartQuery("bob", "", s.w1)
	waitFirst := s.run(t, time.Time{})
	waitLogged(t, s.logs, "blocking queries", done)
	finish()
	waitLogged(t, s.logs, "blocking queries: none left on this worker")
	waitFirst()

	running, _ := s.coord.StartQuery("alice", "etl", s.w1)
	// The deadline is 30 min away, the warning lead 1 h: warn at once,
	// with what the coordinator says now.
	s.run(t, time.Now().Add(30*time.Minute))
	warn := waitLogged(t, s.logs, "the drain's deadline is near: these queries will fail when the action completes", running)
	if warn.Level != zapcore.WarnLevel {
		t.Errorf("level %v, want warn", warn.Level)
	}
	q := warn.ContextMap()["queries"].([]any)[0].(map[string]any)
	if q["user"] != "alice" || q["source"] != "etl" {
		t.Errorf("warning names %v, want alice's etl query", q)
	}
	if got := s.logs.FilterMessage("the drain's deadline is near: these queries will fail when the action completes").Len(); got != 1 {
		t.Errorf("%d warnings, want 1", got)
	}
	// A new Run starts from a clean slate: the earlier drain's query is
	// not among this one's.
	for _, q := range s.watcher.Snapshot().Waited {
		if q.ID == done {
			t.Errorf("query %s of the earlier drain reported for this one", done)
		}
	}
}

// Polled as a QueryLister (the supervisor's own loop), the watcher asks
// the coordinator at most once per interval and answers from that.
func TestWatcherAsAListerAsksAtMostOncePerInterval(t *testing.T) {
	s := watch(t, trinoadmin.WatcherOptions{Interval: time.Hour}, testpeers.TrinoOptions{})
	id, _ := s.coord.StartQuery("alice", "", s.w1)
	s.run(t, time.Time{}) // Run asks too, from the same budget
	eventually(t, "Run's first question", func() bool { return s.watcher.Snapshot().At.After(time.Time{}) })
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		qs, err := s.watcher.BlockingQueries(ctx)
		if err != nil || len(qs) != 1 || qs[0].ID != id {
			t.Fatalf("call %d: %+v, %v; want %s", i, qs, err, id)
		}
	}
	if n := s.lister.n.Load(); n != 1 {
		t.Errorf("%d questions to the coordinator within one interval, want 1", n)
	}
	if got := s.logs.FilterMessage("blocking queries").Len(); got != 1 {
		t.Errorf("%d \"blocking queries\" lines, want 1", got)
	}
	without := trinoadmin.NewWatcher(trinoadmin.WatcherOptions{})
	if qs, err := without.BlockingQueries(ctx); qs != nil || err != nil {
		t.Errorf("without a coordinator: %v, %v; want nothing", qs, err)
	}
}

func TestWatcherWarningLead(t *testing.T) {
	start := time.Date(2026, 12, 2, 18, 0, 0, 0, time.UTC)
	auto := trinoadmin.NewWatcher(trinoadmin.WatcherOptions{})
	set := trinoadmin.NewWatcher(trinoadmin.WatcherOptions{DeadlineWarning: 2 * time.Minute})
	for _, c := range []struct {
		w     *trinoadmin.Watcher
		drain time.Duration
		want  time.Duration
	}{
		{auto, 10 * time.Minute, time.Minute},
		{auto, 50 * time.Minute, 5 * time.Minute},
		{auto, 48 * time.Hour, 5 * time.Minute},
		{auto, 30 * time.Second, 3 * time.Second},
		{set, 48 * time.Hour, 2 * time.Minute},
		{set, time.Minute, 2 * time.Minute},
	} {
		if got := c.w.WarningLead(start, start.Add(c.drain)); got != c.want {
			t.Errorf("lead for a %v drain = %v, want %v", c.drain, got, c.want)
		}
	}
}

// A coordinator that is down, or that refuses the daemon, never touches
// the drain: the worker drains to DRAINED as without a coordinator, and
// the watcher logs each distinct error once.
func TestWatcherCoordinatorDownOrForbiddenLeavesTheDrainAlone(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + ln.Addr().String()
	ln.Close()
	forbidding := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		http.Error(rw, "Error 403 Forbidden: HTTP 403 Forbidden", http.StatusForbidden)
	}))
	t.Cleanup(forbidding.Close)

	for name, url := range map[string]string{"down": down, "forbidden": forbidding.URL} {
		t.Run(name, func(t *testing.T) {
			w := worker(t, testpeers.TrinoOptions{NodeID: "worker-1"})
			finish := w.AddBlockedTask()
			wc := client(t, w.URL())
			lister := &countingLister{inner: wc.Coordinator(url).WorkerQueries(wc)}
			core, logs := observer.New(zapcore.DebugLevel)
			watcher := trinoadmin.NewWatcher(trinoadmin.WatcherOptions{Lister: lister, Interval: 20 * time.Millisecond,
				DeadlineWarning: time.Hour, Logger: zap.New(core)})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); watcher.Run(ctx, time.Now().Add(time.Hour)) }()
			defer func() { cancel(); <-done }()

			d := drainer(t, w.URL(), trinoadmin.DrainOptions{Strategy: trinoadmin.StrategyDrain})
			type result struct {
				r   trinoadmin.Result
				err error
			}
			res := make(chan result, 1)
			go func() { r, err := drain(t, d, 10*time.Second); res <- result{r, err} }()
			eventually(t, "three questions", func() bool { return lister.n.Load() >= 3 })
			finish()
			got := <-res
			if got.err != nil || got.r.Outcome != trinoadmin.OutcomeDrained {
				t.Fatalf("drain = %+v, %v; want DRAINED", got.r, got.err)
			}
			eventually(t, "more questions after the drain", func() bool { return lister.n.Load() >= 5 })
			warns := logs.FilterMessage("cannot ask the coordinator which queries hold the drain; the drain goes on without it").All()
			if len(warns) != 1 {
				t.Errorf("%d error lines over %d questions, want 1: %v", len(warns), lister.n.Load(), warns)
			}
			want := map[string]string{"down": "connection refused", "forbidden": "403"}[name]
			if len(warns) > 0 && !strings.Contains(warns[0].ContextMap()["error"].(string), want) {
				t.Errorf("error %q lacks %q", warns[0].ContextMap()["error"], want)
			}
			if e := logs.FilterMessage("the drain's deadline is near and the coordinator has not said which queries hold it").Len(); e != 1 {
				t.Errorf("%d unknown-queries warnings near the deadline, want 1", e)
			}
			if snap := watcher.Snapshot(); snap.Err == "" || !snap.At.IsZero() || len(snap.Waited) != 0 {
				t.Errorf("snapshot %+v, want the error and no answer", snap)
			}
		})
	}
}

// A daemon user without the "view" query permission is not refused: the
// coordinator lists only the user's own queries, so nothing is found.
func TestWatcherWithoutViewPermissionSeesNothing(t *testing.T) {
	s := watch(t, trinoadmin.WatcherOptions{}, testpeers.TrinoOptions{QueryViewDenied: []string{"scaledownd"}})
	s.coord.StartQuery("alice", "", s.w1)
	s.run(t, time.Time{})
	eventually(t, "the all-clear", func() bool { return s.logs.FilterMessage("blocking queries: none left on this worker").Len() == 1 })
	if s.w1.ActiveTasks() != 1 {
		t.Fatalf("worker-1 runs %d tasks, want alice's", s.w1.ActiveTasks())
	}
}

func TestWatcherWithoutCoordinatorSaysSoOnce(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	w := trinoadmin.NewWatcher(trinoadmin.WatcherOptions{Logger: zap.New(core)})
	for i := 0; i < 3; i++ {
		w.Run(context.Background(), time.Now().Add(time.Minute)) // returns at once
		if qs, err := w.BlockingQueries(context.Background()); qs != nil || err != nil {
			t.Errorf("BlockingQueries: %v, %v; want nothing", qs, err)
		}
	}
	if got := logs.FilterMessage("no trino.coordinator-url: the drain knows only the worker's task count, not which queries hold it").Len(); got != 1 {
		t.Errorf("said %d times, want once", got)
	}
	if w.Snapshot().Known {
		t.Error("snapshot claims to know the queries")
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"6.42s": 6420 * time.Millisecond, "1.19ms": 1190 * time.Microsecond, "5.87m": time.Duration(5.87 * float64(time.Minute)),
		"0.00ns": 0, "2.00h": 2 * time.Hour, "1.50d": 36 * time.Hour, "12.00us": 12 * time.Microsecond, "83.00s": 83 * time.Second,
	} {
		if got, err := trinoadmin.ParseDuration(in); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "s", "1.0", "1.0x", "abc", "-1s"} {
		if _, err := trinoadmin.ParseDuration(bad); err == nil {
			t.Errorf("ParseDuration(%q) accepted", bad)
		}
	}
}
