package trinoadmin_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scaledownd/scaledownd/internal/testpeers"
	"github.com/scaledownd/scaledownd/pkg/trinoadmin"
)

// recordingObserver keeps what a drain reported, in order.
type recordingObserver struct {
	mu         sync.Mutex
	milestones []string
	tasks      []int
	states     []string
}

func (o *recordingObserver) DrainMilestone(m trinoadmin.Milestone) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.milestones = append(o.milestones, string(m))
}

func (o *recordingObserver) DrainTasks(n int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.tasks = append(o.tasks, n)
}

func (o *recordingObserver) DrainState(s string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.states = append(o.states, s)
}

func TestDrainReportsItsMilestones(t *testing.T) {
	tests := []struct {
		name     string
		strategy trinoadmin.Strategy
		shutdown bool
		want     string
	}{
		{"drain", trinoadmin.StrategyDrain, false, "draining_requested tasks_zero drained"},
		{"drain then exit", trinoadmin.StrategyAuto, true, "draining_requested tasks_zero drained shutting_down"},
		{"shutdown waits for the exit", trinoadmin.StrategyShutdown, false, "shutting_down tasks_zero process_gone"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := worker(t, testpeers.TrinoOptions{Version: "476"})
			w.AddTask(200 * time.Millisecond)
			d := drainer(t, w.URL(), trinoadmin.DrainOptions{Strategy: tc.strategy, ShutdownAfterDrain: tc.shutdown})
			obs := &recordingObserver{}
			ctx, cancel := context.WithTimeout(trinoadmin.WithObserver(context.Background(), obs), 10*time.Second)
			defer cancel()
			if _, err := d.Drain(ctx, nil); err != nil {
				t.Fatal(err)
			}
			obs.mu.Lock()
			defer obs.mu.Unlock()
			if got := strings.Join(obs.milestones, " "); got != tc.want {
				t.Fatalf("milestones %q, want %q", got, tc.want)
			}
			if len(obs.tasks) < 2 || obs.tasks[0] != 1 || obs.tasks[len(obs.tasks)-1] != 0 {
				t.Fatalf("task counts %v, want 1 first and 0 last", obs.tasks)
			}
			if len(obs.states) == 0 {
				t.Fatal("no worker states reported")
			}
		})
	}
}

// A drain without an observer in its context works as before.
func TestDrainWithoutObserver(t *testing.T) {
	w := worker(t, testpeers.TrinoOptions{Version: "476"})
	d := drainer(t, w.URL(), trinoadmin.DrainOptions{})
	if res, err := drain(t, d, 10*time.Second); err != nil || res.Outcome != trinoadmin.OutcomeDrained {
		t.Fatalf("drain: %v %v", res, err)
	}
}
