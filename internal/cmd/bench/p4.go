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
	LeadS             float64 `json:"lead_before_cap_s"`
	Heartbeats        int     `json:"heartbeats"`
	PerTimeout        float64 `json:"heartbeats_per_timeout"`
	LargestGapS       float64 `json:"largest_gap_s"`
	Lapses            int     `json:"lapses"` // gaps longer than the heartbeat timeout
	Result            string  `json:"result"`
	Reason            string  `json:"reason"`
	WallS             float64 `json:"wall_s"`
}

// runP4 drains a worker that never finishes for as long as AWS allows, on
// a fake clock, through the real supervisor, keeper and Auto Scaling wire
// protocol (testenv.SimulateFullDrain, as the test of the 48-hour maths
// does), and reads the heartbeats the fake Auto Scaling recorded.
func runP4(ctx context.Context, hbt time.Duration) (P4Result, error) {
	wallStart := time.Now()
	r := P4Result{HeartbeatTimeoutS: hbt.Seconds()}
	sim, err := testenv.SimulateFullDrain(ctx, hbt)
	if err != nil {
		return r, err
	}
	start, act := sim.Start, sim.Action
	r.CapS = act.GlobalDeadline.Sub(start).Seconds()
	r.Result = act.Result
	if act.State != testpeers.AutoScalingActionCompleted {
		r.Result = act.State + "/" + act.ExpiryReason
		r.Lapses = 1
	}
	end := act.CompletedAt
	if end.IsZero() {
		end = act.ExpiredAt
	}
	r.CompletedAtS = end.Sub(start).Seconds()
	r.LeadS = act.GlobalDeadline.Sub(end).Seconds()
	r.Heartbeats = len(act.Heartbeats)
	prev := act.Started
	for _, hb := range append(act.Heartbeats, end) {
		gap := hb.Sub(prev)
		r.LargestGapS = max(r.LargestGapS, gap.Seconds())
		if gap > hbt {
			r.Lapses++
		}
		prev = hb
	}
	if d := end.Sub(act.Started); d > 0 {
		r.PerTimeout = float64(r.Heartbeats) * float64(hbt) / float64(d)
	}
	r.Reason = sim.Completion
	r.WallS = time.Since(wallStart).Seconds()
	return r, nil
}
