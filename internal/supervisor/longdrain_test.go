package supervisor_test

import (
	"context"
	"testing"
	"time"

	"github.com/scaledownd/scaledownd/internal/testenv"
	"github.com/scaledownd/scaledownd/internal/testpeers"
)

// TestFullLengthDrainOnAFakeClock simulates drains that never finish, for
// the whole time AWS allows, with the real Auto Scaling wire protocol on a
// fake clock: heartbeats never lapse and CONTINUE is sent before the cap.
// With HeartbeatTimeout 300 s the cap is 100 × 300 s = 30,000 s, not 48 h;
// with 7,200 s it is 48 h.
func TestFullLengthDrainOnAFakeClock(t *testing.T) {
	tests := []struct {
		hbt     time.Duration
		wantCap time.Duration
	}{
		{300 * time.Second, 30000 * time.Second},
		{7200 * time.Second, 48 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.hbt.String(), func(t *testing.T) {
			sim, err := testenv.SimulateFullDrain(context.Background(), tt.hbt)
			if err != nil {
				t.Fatal(err)
			}
			start := sim.Start
			act := sim.Action
			if act.State != testpeers.AutoScalingActionCompleted || act.Result != "CONTINUE" {
				t.Fatalf("action ended %s/%s (%s) at +%s", act.State, act.Result, act.ExpiryReason, act.ExpiredAt.Sub(start))
			}
			if !act.CompletedAt.Before(act.GlobalDeadline) {
				t.Fatalf("completed at +%s, not before the cap at +%s", act.CompletedAt.Sub(start), act.GlobalDeadline.Sub(start))
			}
			if got := act.GlobalDeadline.Sub(start); got != tt.wantCap {
				t.Fatalf("the fake's cap is %s, want %s", got, tt.wantCap)
			}
			if lead := act.GlobalDeadline.Sub(act.CompletedAt); lead > 3*time.Minute {
				t.Fatalf("completed %s before the cap: the deadline wastes time", lead)
			}
			var maxGap time.Duration
			prev := act.Started
			for _, hb := range append(act.Heartbeats, act.CompletedAt) {
				maxGap = max(maxGap, hb.Sub(prev))
				prev = hb
			}
			if maxGap > tt.hbt/2 {
				t.Fatalf("largest gap %s exceeds half the heartbeat timeout %s", maxGap, tt.hbt)
			}
			perTimeout := float64(len(act.Heartbeats)) * float64(tt.hbt) / float64(act.CompletedAt.Sub(act.Started))
			t.Logf("HeartbeatTimeout %s: completed at +%s (cap +%s), %d heartbeats (%.2f per timeout), largest gap %s",
				tt.hbt, act.CompletedAt.Sub(start), act.GlobalDeadline.Sub(start), len(act.Heartbeats), perTimeout, maxGap)
			if perTimeout > 2.05 {
				t.Fatalf("%.2f heartbeats per timeout, want at most 2", perTimeout)
			}
			if sim.Completion != "CONTINUE/deadline" {
				t.Fatalf("completion recorded as %q, want CONTINUE/deadline", sim.Completion)
			}
		})
	}
}
