package daemon

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/scaledownd/scaledownd/internal/config"
	"github.com/scaledownd/scaledownd/internal/metrics"
	"github.com/scaledownd/scaledownd/internal/testpeers"
)

// The query watcher as the daemon wires it: from trino.coordinator-url,
// with the worker's credentials, feeding the two metrics.
func TestQueryWatcherWiring(t *testing.T) {
	coord := testpeers.NewTrino(testpeers.TrinoOptions{Coordinator: true})
	t.Cleanup(coord.Close)
	w := testpeers.NewTrino(testpeers.TrinoOptions{NodeID: "worker-9"})
	t.Cleanup(w.Close)
	id, finish := coord.StartQuery("alice", "superset", w)
	defer finish()

	cfg := config.Default()
	cfg.Trino.URL = w.URL()
	tc, err := TrinoClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New("test")
	core, logs := observer.New(zapcore.InfoLevel)

	without := QueryWatcher(cfg, tc, zap.New(core), m)
	without.Run(context.Background(), time.Now().Add(time.Hour))
	if without.Snapshot().Known || logs.FilterMessageSnippet("knows only the worker's task count").Len() != 1 {
		t.Errorf("without trino.coordinator-url: snapshot %+v, logs %v", without.Snapshot(), logs.All())
	}

	cfg.Trino.CoordinatorURL = coord.URL()
	watcher := QueryWatcher(cfg, tc, zap.New(core), m)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); watcher.Run(ctx, time.Now().Add(time.Hour)) }()
	testpeers.Eventually(t, 5*time.Second, "the query listed", func() bool {
		s := watcher.Snapshot()
		return len(s.Current) == 1 && s.Current[0].ID == id && s.Current[0].User == "alice"
	})
	testpeers.Eventually(t, 5*time.Second, "the gauge", func() bool { return queryGauge(t, m, "scaledownd_trino_oldest_blocking_query_age_seconds") > 0 })
	if e := logs.FilterMessage("blocking queries").All(); len(e) != 1 || e[0].ContextMap()["component"] != "trino-queries" ||
		!strings.Contains(e[0].ContextMap()["queries"].([]any)[0].(map[string]any)["query_id"].(string), id) {
		t.Errorf("log: %v", e)
	}
	cancel()
	<-done
	if v := queryGauge(t, m, "scaledownd_trino_oldest_blocking_query_age_seconds"); v != 0 {
		t.Errorf("scaledownd_trino_oldest_blocking_query_age_seconds = %v after the drain, want 0", v)
	}
	// As the supervisor's QueryLister it answers from the same questions.
	if qs, err := watcher.BlockingQueries(context.Background()); err != nil || len(qs) != 1 || qs[0].ID != id {
		t.Errorf("BlockingQueries: %+v, %v", qs, err)
	}
}

// gauge reads a gauge without labels from the daemon's registry.
func queryGauge(t *testing.T, m *metrics.Metrics, name string) float64 {
	t.Helper()
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name && len(f.GetMetric()) == 1 {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no gauge %s", name)
	return 0
}
