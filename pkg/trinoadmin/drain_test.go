package trinoadmin_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/scaledownd/scaledownd/internal/testpeers"
	"github.com/scaledownd/scaledownd/pkg/trinoadmin"
)

const grace = 100 * time.Millisecond

func worker(t *testing.T, opts testpeers.TrinoOptions) *testpeers.TrinoWorker {
	t.Helper()
	if opts.GracePeriod == 0 {
		opts.GracePeriod = grace
	}
	w := testpeers.NewTrino(opts)
	t.Cleanup(w.Close)
	return w
}

func drainer(t *testing.T, url string, opts trinoadmin.DrainOptions) *trinoadmin.Drainer {
	t.Helper()
	c, err := trinoadmin.New(trinoadmin.Options{URL: url, User: "scaledownd", Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if opts.PollInterval == 0 {
		opts.PollInterval = 20 * time.Millisecond
	}
	if opts.Backoff == 0 {
		opts.Backoff = 20 * time.Millisecond
	}
	if opts.NotRunningWindow == 0 {
		opts.NotRunningWindow = 300 * time.Millisecond
	}
	opts.Logger = zaptest.NewLogger(t)
	return trinoadmin.NewDrainer(c, opts)
}

func drain(t *testing.T, d *trinoadmin.Drainer, within time.Duration) (trinoadmin.Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	return d.Drain(ctx, nil)
}

func states(w *testpeers.TrinoWorker) []string {
	var out []string
	for _, c := range w.StateHistory() {
		out = append(out, c.State)
	}
	return out
}

func TestDrainStrategies(t *testing.T) {
	tests := []struct {
		name         string
		version      string
		strategy     trinoadmin.Strategy
		shutdown     bool // ShutdownAfterDrain
		wantOutcome  trinoadmin.Outcome
		wantStrategy trinoadmin.Strategy
		wantStates   string // the worker's state history
	}{
		{"476 auto drains", "476", trinoadmin.StrategyAuto, false, trinoadmin.OutcomeDrained, trinoadmin.StrategyDrain, "ACTIVE DRAINING DRAINED"},
		{"476 auto drains then lets the idle worker exit", "476", trinoadmin.StrategyAuto, true, trinoadmin.OutcomeDrained, trinoadmin.StrategyDrain, "ACTIVE DRAINING DRAINED SHUTTING_DOWN EXITED"},
		{"476 shutdown waits for the exit", "476", trinoadmin.StrategyShutdown, false, trinoadmin.OutcomeExited, trinoadmin.StrategyShutdown, "ACTIVE SHUTTING_DOWN EXITED"},
		{"475 shutdown is overridden to drain", "475", trinoadmin.StrategyShutdown, false, trinoadmin.OutcomeDrained, trinoadmin.StrategyDrain, "ACTIVE DRAINING DRAINED"},
		{"474 auto drains", "474", trinoadmin.StrategyAuto, false, trinoadmin.OutcomeDrained, trinoadmin.StrategyDrain, "ACTIVE DRAINING DRAINED"},
		{"470 auto drains", "470", trinoadmin.StrategyAuto, false, trinoadmin.OutcomeDrained, trinoadmin.StrategyDrain, "ACTIVE DRAINING DRAINED"},
		{"443-e.3 auto falls back to shutdown", "443-e.3", trinoadmin.StrategyAuto, false, trinoadmin.OutcomeExited, trinoadmin.StrategyShutdown, "ACTIVE SHUTTING_DOWN EXITED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := worker(t, testpeers.TrinoOptions{Version: tt.version})
			w.AddTask(300 * time.Millisecond)
			w.AddTask(500 * time.Millisecond)
			res, err := drain(t, drainer(t, w.URL(), trinoadmin.DrainOptions{Strategy: tt.strategy, ShutdownAfterDrain: tt.shutdown}), 20*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if res.Outcome != tt.wantOutcome || res.Strategy != tt.wantStrategy || res.Version != tt.version {
				t.Fatalf("result = %+v, want outcome %s strategy %s", res, tt.wantOutcome, tt.wantStrategy)
			}
			if tt.shutdown {
				select {
				case <-w.Exited():
				case <-time.After(5 * time.Second):
					t.Fatal("drained worker did not exit after SHUTTING_DOWN")
				}
			}
			if got := strings.Join(states(w), " "); got != tt.wantStates {
				t.Fatalf("states = %s, want %s", got, tt.wantStates)
			}
			if n := w.FailedTasks(); n != 0 {
				t.Fatalf("%d tasks failed: the drain did not wait for them", n)
			}
		})
	}
}

func TestDrainNeverUsesShutdownOn475EvenWhenDrainingIsRefused(t *testing.T) {
	// 475 with a user that may not write: every attempt is refused; the
	// drain keeps trying DRAINING until the deadline and never falls back.
	w := worker(t, testpeers.TrinoOptions{Version: "475", WriteUsers: []string{"admin"}})
	w.AddBlockedTask()
	_, err := drain(t, drainer(t, w.URL(), trinoadmin.DrainOptions{Strategy: trinoadmin.StrategyAuto}), time.Second)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the deadline", err)
	}
	for _, r := range w.Requests() {
		if r.Method == http.MethodPut && strings.Contains(r.Body, "SHUTTING_DOWN") {
			t.Fatal("SHUTTING_DOWN sent to a 475 worker")
		}
	}
	if w.State() != "ACTIVE" || w.FailedTasks() != 0 {
		t.Fatalf("state %s, failed tasks %d", w.State(), w.FailedTasks())
	}
}

func TestDrainEdgeCases(t *testing.T) {
	t.Run("coordinator is refused without a state change", func(t *testing.T) {
		w := worker(t, testpeers.TrinoOptions{Coordinator: true})
		res, err := drain(t, drainer(t, w.URL(), trinoadmin.DrainOptions{}), 5*time.Second)
		if err != nil || res.Outcome != trinoadmin.OutcomeCoordinator {
			t.Fatalf("result %+v, err %v", res, err)
		}
		for _, r := range w.Requests() {
			if r.Method == http.MethodPut {
				t.Fatal("state change sent to a coordinator")
			}
		}
	})
	t.Run("nothing listening is not running", func(t *testing.T) {
		w := worker(t, testpeers.TrinoOptions{})
		url := w.URL()
		w.Close()
		res, err := drain(t, drainer(t, url, trinoadmin.DrainOptions{}), 5*time.Second)
		if err != nil || res.Outcome != trinoadmin.OutcomeNotRunning {
			t.Fatalf("result %+v, err %v", res, err)
		}
	})
	t.Run("crash mid-drain counts as exited", func(t *testing.T) {
		w := worker(t, testpeers.TrinoOptions{})
		w.AddBlockedTask()
		d := drainer(t, w.URL(), trinoadmin.DrainOptions{})
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = w.WaitState(ctx, "DRAINING")
			w.Crash()
		}()
		res, err := drain(t, d, 10*time.Second)
		if err != nil || res.Outcome != trinoadmin.OutcomeExited {
			t.Fatalf("result %+v, err %v", res, err)
		}
	})
	t.Run("a hung worker never hangs the drain past its deadline", func(t *testing.T) {
		w := worker(t, testpeers.TrinoOptions{})
		w.Hang(true)
		start := time.Now()
		_, err := drain(t, drainer(t, w.URL(), trinoadmin.DrainOptions{}), 1500*time.Millisecond)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want the deadline", err)
		}
		if took := time.Since(start); took > 3*time.Second {
			t.Fatalf("drain returned %s after its 1.5 s deadline", took)
		}
	})
	t.Run("a worker that starts late is waited for", func(t *testing.T) {
		w := worker(t, testpeers.TrinoOptions{StartupDelay: 400 * time.Millisecond})
		res, err := drain(t, drainer(t, w.URL(), trinoadmin.DrainOptions{}), 10*time.Second)
		if err != nil || res.Outcome != trinoadmin.OutcomeDrained {
			t.Fatalf("result %+v, err %v", res, err)
		}
	})
	t.Run("reactivated during the drain is drained again", func(t *testing.T) {
		w := worker(t, testpeers.TrinoOptions{GracePeriod: 300 * time.Millisecond})
		c, _ := trinoadmin.New(trinoadmin.Options{URL: w.URL(), User: "scaledownd"})
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = w.WaitState(ctx, "DRAINING")
			_ = c.SetState(ctx, "ACTIVE") // an operator's undrain
		}()
		res, err := drain(t, drainer(t, w.URL(), trinoadmin.DrainOptions{}), 10*time.Second)
		if err != nil || res.Outcome != trinoadmin.OutcomeDrained {
			t.Fatalf("result %+v, err %v", res, err)
		}
	})
	t.Run("joins a drain already under way", func(t *testing.T) {
		w := worker(t, testpeers.TrinoOptions{})
		c, _ := trinoadmin.New(trinoadmin.Options{URL: w.URL(), User: "scaledownd"})
		if err := c.SetState(context.Background(), "DRAINING"); err != nil {
			t.Fatal(err)
		}
		res, err := drain(t, drainer(t, w.URL(), trinoadmin.DrainOptions{}), 10*time.Second)
		if err != nil || res.Outcome != trinoadmin.OutcomeDrained {
			t.Fatalf("result %+v, err %v", res, err)
		}
		puts := 0
		for _, r := range w.Requests() {
			if r.Method == http.MethodPut {
				puts++
			}
		}
		if puts != 1 {
			t.Fatalf("%d PUTs; the drain under way should have been joined", puts)
		}
	})
}

func TestClientRequests(t *testing.T) {
	w := worker(t, testpeers.TrinoOptions{Version: "476"})
	w.AddBlockedTask()
	c, err := trinoadmin.New(trinoadmin.Options{URL: w.URL(), User: "scaledownd"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	info, err := c.Info(ctx)
	if err != nil || info.Version != "476" || info.Coordinator || info.Major() != 476 {
		t.Fatalf("info = %+v, %v", info, err)
	}
	if n, ok, err := c.ActiveTasks(ctx); err != nil || !ok || n != 1 {
		t.Fatalf("tasks = %d %v %v", n, ok, err)
	}
	if err := c.SetState(ctx, "DRAINING"); err != nil {
		t.Fatal(err)
	}
	if s, err := c.State(ctx); err != nil || s != "DRAINING" {
		t.Fatalf("state = %q %v", s, err)
	}
	var se *trinoadmin.StatusError
	if err := c.SetState(ctx, "BOGUS"); !errors.As(err, &se) || se.Code != 400 {
		t.Fatalf("bogus state: %v", err)
	}

	other, _ := trinoadmin.New(trinoadmin.Options{URL: w.URL(), User: "intruder"})
	if err := other.SetState(ctx, "ACTIVE"); !errors.As(err, &se) || !se.Forbidden() || !strings.Contains(se.Body, "Management only resource") {
		t.Fatalf("intruder: %v", err)
	}
	if _, err := trinoadmin.New(trinoadmin.Options{URL: "http://127.0.0.1:1", Password: "x"}); err == nil {
		t.Fatal("password over http accepted")
	}
}

func TestParseTaskCount(t *testing.T) {
	tests := []struct {
		body string
		n    int
		ok   bool
	}{
		{"# TYPE x gauge\ntrino_execution_executor_dedicated_name_ThreadPerDriverTaskExecutor_Tasks 3.0\n# EOF\n", 3, true},
		{"trino_execution_executor_timesharing_name_TimeSharingTaskExecutor_Tasks{a=\"b\"} 2 1700000000\n", 2, true},
		{"trino_execution_executor_dedicated_name_ThreadPerDriverTaskExecutor_TasksTotal 9\n", 0, false},
		{"trino_execution_executor_dedicated_name_ThreadPerDriverTaskExecutor_Tasks NaN\n", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		n, ok := trinoadmin.ParseTaskCount([]byte(tt.body))
		if n != tt.n || ok != tt.ok {
			t.Errorf("ParseTaskCount(%q) = %d %v, want %d %v", tt.body, n, ok, tt.n, tt.ok)
		}
	}
}

func FuzzParseTaskCount(f *testing.F) {
	f.Add([]byte("trino_execution_executor_dedicated_name_ThreadPerDriverTaskExecutor_Tasks 3.0\n"))
	f.Add([]byte("trino_execution_executor_name_TaskExecutor_Tasks{x=\"}\"} 1e3\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		if n, ok := trinoadmin.ParseTaskCount(body); ok && (n < 0 || n > 1e9) {
			t.Fatalf("implausible count %d", n)
		}
	})
}

func TestMajorVersion(t *testing.T) {
	for v, want := range map[string]int{"476": 476, "443-e.3": 443, "476-SNAPSHOT": 476, "": 0, "0.289": 0, "x": 0} {
		if got := trinoadmin.MajorVersion(v); got != want {
			t.Errorf("MajorVersion(%q) = %d, want %d", v, got, want)
		}
	}
}

// FuzzInfo feeds arbitrary /v1/info and /v1/info/state bodies through the
// client: it must return an error or a value, never panic. One server and
// one client serve the whole run over a kept-alive connection: a server
// per input left a thousand sockets a second in TIME_WAIT, which used up
// the machine's ephemeral ports within half a minute.
func FuzzInfo(f *testing.F) {
	f.Add([]byte(`{"nodeVersion":{"version":"476"},"environment":"test","coordinator":false,"starting":false,"uptime":"41.17s"}`), []byte(`"DRAINED"`))
	f.Add([]byte(`{"nodeVersion":null}`), []byte(`null`))
	f.Add([]byte(`[]`), []byte(`"`))
	type bodies struct{ info, state []byte }
	var current atomic.Pointer[bodies]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := current.Load()
		if r.URL.Path == "/v1/info/state" {
			_, _ = w.Write(b.state)
			return
		}
		_, _ = w.Write(b.info)
	}))
	f.Cleanup(srv.Close)
	c, err := trinoadmin.New(trinoadmin.Options{URL: srv.URL, User: "u"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, info, state []byte) {
		current.Store(&bodies{info: info, state: state})
		if i, err := c.Info(context.Background()); err == nil {
			_ = i.Major()
		}
		_, _ = c.State(context.Background())
	})
}
