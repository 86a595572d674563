package main

import (
	"context"
	"time"

	"github.com/scaledownd/scaledownd/internal/testenv"
	"github.com/scaledownd/scaledownd/internal/testpeers"
)

// P4Result is one simulated full-length drain.
type P4Result struct {
	HeartbeatTimeoutS float64 `json:"heartbeat_timeout_s"`
	CapS              float64 `json:"cap_s"` // min(48 h, 100 × HeartbeatTimeout)
	CompletedAtS      float64 `json:"completed_at_s"`
	Heartbeats        int     `json:"heartbeats"`
	PerTimeout        float64 `json:"heartbeats_per_timeout"`
	LargestGapS       float64 `json:"largest_gap_s"`
	Lapses            int     `json:"lapses"` // gaps longer than the heartbeat timeout
	Result            string  `json:"result"`
}

// runP4 drains a worker that never finishes for as long as AWS allows, on
// a fake clock, through the real supervisor, keeper and Auto Scaling wire
// protocol (testenv.SimulateFullDrain, as the test of the 48-hour maths
// does), and reads the heartbeats the fake Auto Scaling recorded.
func runP4(ctx context.Context, hbt time.Duration) (P4Result, error) {
	sim, err := testenv.SimulateFullDrain(ctx, hbt)
	if err != nil {
		return P4Result{}, err
	}
	act, end := sim.Action, sim.Action.CompletedAt
	r := P4Result{HeartbeatTimeoutS: hbt.Seconds(), CapS: act.GlobalDeadline.Sub(sim.Start).Seconds(), Heartbeats: len(act.Heartbeats), Result: sim.Completion}
	if act.State != testpeers.AutoScalingActionCompleted {
		r.Result, r.Lapses, end = act.State+"/"+act.ExpiryReason, 1, act.ExpiredAt
	}
	r.CompletedAtS = end.Sub(sim.Start).Seconds()
	prev := act.Started
	for _, hb := range append(act.Heartbeats, end) {
		r.LargestGapS = max(r.LargestGapS, hb.Sub(prev).Seconds())
		if hb.Sub(prev) > hbt {
			r.Lapses++
		}
		prev = hb
	}
	if d := end.Sub(act.Started); d > 0 {
		r.PerTimeout = float64(r.Heartbeats) * float64(hbt) / float64(d)
	}
	return r, nil
}
