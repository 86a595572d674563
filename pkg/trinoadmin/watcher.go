package trinoadmin

import (
	"cmp"
	"context"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// QueryLister lists the queries that still have tasks on this worker;
// *NodeQueries (Coordinator.WorkerQueries) is one.
type QueryLister interface {
	BlockingQueries(ctx context.Context) ([]Query, error)
}

// QueryRecorder receives what the watcher knows, for metrics: how many
// queries hold the drain and how long the oldest has run (0 when none, and
// when Run ends). *metrics.Metrics is one.
type QueryRecorder interface {
	BlockingQueries(n int)
	OldestBlockingQuery(age time.Duration)
}

// Watcher defaults and bounds.
const (
	// MinQueryInterval is the shortest pause between two coordinator
	// questions of a Watcher: it never asks more often.
	MinQueryInterval = 10 * time.Second
	// MaxReportedQueries caps Snapshot.Waited, longest first.
	MaxReportedQueries = 20
	// maxDeadlineWarning caps the automatic deadline warning lead.
	maxDeadlineWarning = 5 * time.Minute
)

// WatcherOptions configure a Watcher.
type WatcherOptions struct {
	// Lister asks the coordinator; nil when no coordinator is configured:
	// Run then says once that only the task count is known and returns.
	Lister QueryLister
	// Interval between two questions; MinQueryInterval when zero. Values
	// below MinQueryInterval are for tests only.
	Interval time.Duration
	// Timeout bounds one question (default 5 s).
	Timeout time.Duration
	// DeadlineWarning is how long before the deadline the queries that will
	// fail are logged at warn; zero means min(10 % of the drain, 5 min),
	// the drain counted from Run to the deadline.
	DeadlineWarning time.Duration
	Logger          *zap.Logger
	Recorder        QueryRecorder
	Now             func() time.Time // default time.Now
}

// QuerySnapshot is what the watcher knows about the drain in progress or
// the last one.
type QuerySnapshot struct {
	// Known is false without a coordinator: only the task count is known.
	Known bool
	// At is when the coordinator last answered during this drain (zero:
	// not yet).
	At time.Time
	// Current are the queries that held the drain at At, longest first.
	Current []Query
	// Waited are the queries seen holding the drain since it began,
	// longest first (their last seen state and elapsed time), at most
	// MaxReportedQueries; WaitedTotal counts them all.
	Waited      []Query
	WaitedTotal int
	// Err is the last question's error, "" after a success.
	Err string
}

// Watcher follows, during one drain at a time, which queries hold this
// worker: it asks the coordinator at most once per interval, however many
// callers ask it (Run, and BlockingQueries: it is a QueryLister itself),
// logs the set when it changes, feeds the recorder and, in Run, near the
// deadline logs at warn the queries that will fail when the action
// completes. Failures of the coordinator never touch the drain: they are
// logged, once per distinct error. Safe for concurrent use; Run calls do
// not overlap.
type Watcher struct {
	opts WatcherOptions
	log  *zap.Logger
	once sync.Once // the "no coordinator" notice

	run sync.Mutex // one Run at a time
	ask sync.Mutex // one question at a time

	mu       sync.Mutex
	snap     QuerySnapshot // Current is the last answer, Err the last error
	waited   map[string]Query
	lastAsk  time.Time // when the last question was asked (zero: never since Run began)
	lastFail error     // its error, if it failed
	logged   bool      // a set was logged since Run began
	loggedQs []Query   // the set last logged
}

// NewWatcher returns a Watcher.
func NewWatcher(opts WatcherOptions) *Watcher {
	opts.Interval = positive(opts.Interval, MinQueryInterval)
	opts.Timeout = positive(opts.Timeout, 5*time.Second)
	opts.Logger = cmp.Or(opts.Logger, zap.NewNop())
	opts.Recorder = cmp.Or[QueryRecorder](opts.Recorder, nopQueryRecorder{})
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Watcher{opts: opts, log: opts.Logger, snap: QuerySnapshot{Known: opts.Lister != nil}, waited: map[string]Query{}}
}

type nopQueryRecorder struct{}

func (nopQueryRecorder) BlockingQueries(int)               {}
func (nopQueryRecorder) OldestBlockingQuery(time.Duration) {}

// WarningLead is how long before a deadline the watcher warns, for a drain
// that starts at start: the configured lead, else min(10 % of the drain,
// 5 min).
func (w *Watcher) WarningLead(start, deadline time.Time) time.Duration {
	if w.opts.DeadlineWarning > 0 {
		return w.opts.DeadlineWarning
	}
	return min(deadline.Sub(start)/10, maxDeadlineWarning)
}

// Run follows one drain until ctx ends; deadline is when the action will
// be completed regardless (zero: none, no warning). It starts from a clean
// slate: Snapshot then describes this drain.
func (w *Watcher) Run(ctx context.Context, deadline time.Time) {
	if w.opts.Lister == nil {
		w.sayUnknown()
		return
	}
	w.run.Lock()
	defer w.run.Unlock()
	w.mu.Lock()
	w.snap = QuerySnapshot{Known: true}
	w.waited = map[string]Query{}
	w.lastAsk, w.lastFail, w.logged, w.loggedQs = time.Time{}, nil, false, nil
	w.mu.Unlock()
	defer func() {
		w.opts.Recorder.BlockingQueries(0)
		w.opts.Recorder.OldestBlockingQuery(0)
	}()

	var warnAt time.Time // zero: no warning (left)
	if !deadline.IsZero() {
		warnAt = deadline.Add(-w.WarningLead(w.opts.Now(), deadline))
	}
	for {
		_, _ = w.BlockingQueries(ctx) // asks if the last question is an interval old
		if !warnAt.IsZero() && !w.opts.Now().Before(warnAt) {
			warnAt = time.Time{}
			w.warn(deadline)
		}
		w.mu.Lock()
		next := w.lastAsk.Add(w.opts.Interval)
		w.mu.Unlock()
		if !warnAt.IsZero() && warnAt.Before(next) {
			next = warnAt
		}
		if err := sleepCtx(ctx, next.Sub(w.opts.Now())); err != nil {
			return
		}
	}
}

// BlockingQueries lists the queries that hold the drain, longest first:
// the coordinator's answer, asked anew only when the last question is at
// least one interval old (else the last answer, or its error). Without a
// coordinator it answers nothing and no error (and says once that only the
// task count is known). It makes the Watcher a QueryLister for callers
// that poll on their own.
func (w *Watcher) BlockingQueries(ctx context.Context) ([]Query, error) {
	if w.opts.Lister == nil {
		w.sayUnknown()
		return nil, nil
	}
	w.ask.Lock()
	defer w.ask.Unlock()
	w.mu.Lock()
	if !w.lastAsk.IsZero() && w.opts.Now().Sub(w.lastAsk) < w.opts.Interval {
		defer w.mu.Unlock()
		if w.lastFail != nil {
			return nil, w.lastFail
		}
		return slices.Clone(w.snap.Current), nil
	}
	w.lastAsk = w.opts.Now()
	w.mu.Unlock()

	qctx, cancel := context.WithTimeout(ctx, w.opts.Timeout)
	qs, err := w.opts.Lister.BlockingQueries(qctx)
	cancel()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.lastFail = err
	if err != nil {
		if msg := err.Error(); msg != w.snap.Err {
			w.snap.Err = msg
			w.log.Warn("cannot ask the coordinator which queries hold the drain; the drain goes on without it",
				zap.Error(err))
		}
		return nil, err
	}
	if w.snap.Err != "" {
		w.log.Info("the coordinator answers again about the queries that hold the drain")
	}
	qs = slices.Clone(qs)
	sortQueries(qs)
	w.snap.Err, w.snap.At, w.snap.Current = "", w.opts.Now(), qs
	for _, q := range qs {
		w.waited[q.ID] = q
	}
	if len(w.waited) > maxWaited { // a lister polled for ever without Run
		w.waited = map[string]Query{}
	}
	if !w.logged || !sameQueries(w.loggedQs, qs) {
		w.logSet(qs)
		w.logged, w.loggedQs = true, qs
	}
	var oldest time.Duration
	if len(qs) > 0 {
		oldest = qs[0].Elapsed
	}
	w.opts.Recorder.BlockingQueries(len(qs))
	w.opts.Recorder.OldestBlockingQuery(oldest)
	return slices.Clone(qs), nil
}

func (w *Watcher) sayUnknown() {
	w.once.Do(func() {
		w.log.Info("no trino.coordinator-url: the drain knows only the worker's task count, not which queries hold it")
	})
}

// maxWaited bounds the queries remembered between two Runs.
const maxWaited = 10000

func (w *Watcher) logSet(qs []Query) {
	if len(qs) == 0 {
		w.log.Info("blocking queries: none left on this worker", zap.Int("count", 0))
		return
	}
	w.log.Info("blocking queries", zap.Int("count", len(qs)), zap.Array("queries", queryList(qs)))
}

// warn logs the queries that will fail when the action completes at
// deadline, as the coordinator last listed them.
func (w *Watcher) warn(deadline time.Time) {
	w.mu.Lock()
	snap := w.snap
	w.mu.Unlock()
	left := deadline.Sub(w.opts.Now()).Round(time.Second)
	switch {
	case snap.At.IsZero():
		w.log.Warn("the drain's deadline is near and the coordinator has not said which queries hold it",
			zap.Duration("deadline_in", left), zap.String("error", snap.Err))
	case len(snap.Current) > 0:
		w.log.Warn("the drain's deadline is near: these queries will fail when the action completes",
			zap.Duration("deadline_in", left), zap.Int("count", len(snap.Current)),
			zap.Array("queries", queryList(snap.Current)), zap.Time("as_of", snap.At))
	}
}

// Snapshot returns what the watcher knows about the current or last drain.
func (w *Watcher) Snapshot() QuerySnapshot {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.snap
	s.Current = slices.Clone(s.Current)
	all := slices.Collect(maps.Values(w.waited))
	sortQueries(all)
	s.WaitedTotal = len(all)
	s.Waited = all[:min(len(all), MaxReportedQueries)]
	return s
}

// sortQueries orders longest running first, then by id.
func sortQueries(qs []Query) {
	slices.SortStableFunc(qs, func(a, b Query) int {
		return cmp.Or(cmp.Compare(b.Elapsed, a.Elapsed), strings.Compare(a.ID, b.ID))
	})
}

// sameQueries compares two sets by query id and state.
func sameQueries(a, b []Query) bool {
	if len(a) != len(b) {
		return false
	}
	key := func(qs []Query) []string {
		out := make([]string, len(qs))
		for i, q := range qs {
			out[i] = q.ID + " " + q.State
		}
		slices.Sort(out)
		return out
	}
	return slices.Equal(key(a), key(b))
}

// queryList logs queries as an array of objects, the first
// MaxReportedQueries of them.
type queryList []Query

func (l queryList) MarshalLogArray(enc zapcore.ArrayEncoder) error {
	for _, q := range l[:min(len(l), MaxReportedQueries)] {
		if err := enc.AppendObject(q); err != nil {
			return err
		}
	}
	return nil
}

// MarshalLogObject logs a query as query_id, user, source, state,
// elapsed_s (the field names of the drain report).
func (q Query) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	enc.AddString("query_id", q.ID)
	enc.AddString("user", q.User)
	enc.AddString("source", q.Source)
	enc.AddString("state", q.State)
	enc.AddFloat64("elapsed_s", float64(q.Elapsed.Round(time.Millisecond))/float64(time.Second))
	return nil
}
