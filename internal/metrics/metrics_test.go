package metrics

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/aws/smithy-go"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestMetricsLintClean(t *testing.T) {
	m := New("test")
	m.SetPhase("draining")
	m.DrainFinished("drained", 90*time.Second)
	m.ActionCompleted("CONTINUE", "drained")
	m.AWSCall("ReceiveMessage", "ok")
	m.OwnMessageReceiveCount(3)
	problems, err := testutil.GatherAndLint(m.Registry)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
}

func TestEveryNameIsPrefixed(t *testing.T) {
	mfs, err := New("test").Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		n := mf.GetName()
		if !strings.HasPrefix(n, "scaledownd_") && !strings.HasPrefix(n, "go_") && !strings.HasPrefix(n, "process_") {
			t.Errorf("metric %s lacks the scaledownd_ prefix", n)
		}
	}
}

func TestPhaseIsAStateSet(t *testing.T) {
	m := New("test")
	m.SetPhase("completing")
	for _, p := range Phases {
		want := 0.0
		if p == "completing" {
			want = 1
		}
		if got := testutil.ToFloat64(m.phase.WithLabelValues(p)); got != want {
			t.Errorf("phase %s = %v, want %v", p, got, want)
		}
	}
}

func TestDeadlineRemaining(t *testing.T) {
	m := New("test")
	now := time.Unix(1_800_000_000, 0)
	m.now = func() time.Time { return now }
	if v := m.deadlineRemaining(); !math.IsNaN(v) {
		t.Fatalf("idle deadline = %v, want NaN", v)
	}
	m.SetDeadline(now.Add(90 * time.Second))
	if v := m.deadlineRemaining(); v != 90 {
		t.Fatalf("remaining = %v, want 90", v)
	}
}

func TestOutcome(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{nil, "ok"},
		{&smithy.GenericAPIError{Code: "Throttling"}, "throttled"},
		{&smithy.GenericAPIError{Code: "ValidationError"}, "client-error"},
		{errors.New("boom"), "client-error"},
	}
	for _, tt := range tests {
		if got := Outcome(tt.err); got != tt.want {
			t.Errorf("Outcome(%v) = %s, want %s", tt.err, got, tt.want)
		}
	}
}
