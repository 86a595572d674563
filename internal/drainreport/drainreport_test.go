package drainreport_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/scaledownd/scaledownd/internal/drainreport"
)

func TestFinishComputesPhasesAndOrdersQueries(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 1, 48, 5, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	r := drainreport.Report{Kind: drainreport.KindTerminate, Source: "imds", Result: "CONTINUE", Reason: "drained",
		Timeline: drainreport.Timeline{Signal: at(0), Received: at(0.5), DrainingRequested: at(0.6), TasksZero: at(8.6),
			Drained: at(10.1), Completed: at(10.3)}}
	for i := range 25 {
		r.SeeQueries([]drainreport.Query{{QueryID: fmt.Sprintf("q%02d", i), ElapsedS: float64(i)}})
	}
	r.SeeQueries([]drainreport.Query{{QueryID: "q03", ElapsedS: 99, State: "RUNNING"}}) // seen again, later
	r.Finish()
	want := map[string]float64{"signal_to_draining": 0.6, "draining_to_tasks_zero": 8, "tasks_zero_to_drained": 1.5, "drained_to_completion": 0.2}
	got := map[string]float64{}
	r.Phases.Each(func(name string, d time.Duration) { got[name] = d.Seconds() })
	for k, v := range want {
		if diff := got[k] - v; diff > 1e-9 || diff < -1e-9 {
			t.Errorf("phase %s = %v, want %v", k, got[k], v)
		}
	}
	if r.InstanceSeconds != 10.3 {
		t.Errorf("instance_seconds %v, want 10.3", r.InstanceSeconds)
	}
	if len(r.Queries) != drainreport.MaxQueries || r.QueriesTotal != 25 {
		t.Fatalf("%d queries listed of %d, want %d of 25", len(r.Queries), r.QueriesTotal, drainreport.MaxQueries)
	}
	if r.Queries[0].QueryID != "q03" || r.Queries[1].QueryID != "q24" || r.Queries[19].QueryID != "q06" {
		t.Fatalf("queries not longest first: %v", r.Queries)
	}
	line := r.Line()
	for _, wantPart := range []string{"2026-11-26T01:48:15Z terminate", "CONTINUE drained", "held 10.3s", "signal→DRAINING 0.6s", "→tasks 0 8.0s", "queries 25, longest q03 99.0s"} {
		if !strings.Contains(line, wantPart) {
			t.Errorf("line %q lacks %q", line, wantPart)
		}
	}
}

func TestPhasesOfTheShutdownPathAndMissingSteps(t *testing.T) {
	t0 := time.Unix(0, 0)
	p := drainreport.PhasesOf(drainreport.Timeline{Received: t0, ShuttingDown: t0.Add(time.Second),
		ProcessGone: t0.Add(5 * time.Second), Completed: t0.Add(6 * time.Second)})
	if p.SignalToDraining == nil || *p.SignalToDraining != 1 || p.DrainingToTasksZero != nil ||
		p.DrainedToCompletion == nil || *p.DrainedToCompletion != 1 {
		t.Fatalf("shutdown path phases %+v", p)
	}
	// Nothing drained (a coordinator, no worker): no drain phases at all.
	p = drainreport.PhasesOf(drainreport.Timeline{Received: t0, Completed: t0.Add(time.Second)})
	n := 0
	p.Each(func(string, time.Duration) { n++ })
	if n != 0 {
		t.Fatalf("%d phases without a drain", n)
	}
}
