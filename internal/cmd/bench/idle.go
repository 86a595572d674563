package main

import (
	"context"
	"time"
)

// IdleResult is a fleet's queue traffic while nothing terminates: what a
// polling policy costs when there is nothing to find.
type IdleResult struct {
	Config string `json:"config"`
	N      int    `json:"n"`
	// The window: SQS requests of all daemons in it, and per daemon per
	// minute. The daemons of one fleet size start together, so a window
	// shorter than a paced daemon's cycle can miss or catch their polls
	// together: Steady below is the figure to plan with.
	WindowS         float64          `json:"window_s"`
	Requests        int64            `json:"sqs_requests"`
	ByOp            map[string]int64 `json:"sqs_requests_by_op"`
	PerDaemonPerMin float64          `json:"per_daemon_per_min"`
	// OpenPolls is the mean number of receives open at the fake during the
	// window: the daemons a newly sent message could go to.
	OpenPolls float64 `json:"open_polls_mean"`
	// Cycles are the idle cycles seen in this fleet before its scale-in:
	// from a receive that came back empty after a full long poll to the
	// same daemon's next receive. SteadyPerMin is 60 s over their mean:
	// each daemon's request rate on a quiet queue, whatever its phase.
	Cycles       int     `json:"idle_cycles"`
	Cycle        Dist    `json:"idle_cycle"`
	SteadyPerMin float64 `json:"steady_per_daemon_per_min"`
}

// measureIdle counts the fleet's queue traffic for window while nothing
// terminates, sampling the open receives.
func (w *World) measureIdle(ctx context.Context, config string, n int, window time.Duration) IdleResult {
	r := IdleResult{Config: config, N: n}
	start, req0, ops0 := time.Now(), w.Proxy.Requests(), w.Proxy.OpCounts()
	var open, samples int64
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	end := time.NewTimer(window)
	defer end.Stop()
sample:
	for {
		select {
		case <-ctx.Done():
			break sample
		case <-end.C:
			break sample
		case <-tick.C:
			open += w.Proxy.Polling()
			samples++
		}
	}
	elapsed := time.Since(start)
	r.WindowS = elapsed.Seconds()
	r.Requests = w.Proxy.Requests() - req0
	r.ByOp = countsSince(ops0, w.Proxy.OpCounts())
	if n > 0 && elapsed > 0 {
		r.PerDaemonPerMin = float64(r.Requests) / float64(n) / elapsed.Minutes()
	}
	if samples > 0 {
		r.OpenPolls = float64(open) / float64(samples)
	}
	return r
}

// idleCycles adds the idle cycles that ended since from: those whose empty
// receive was a full long poll (a quiet queue, not one answered early), of
// daemons never terminated (a terminating daemon polls all the time).
func (w *World) idleCycles(r *IdleResult, from time.Time, longPoll time.Duration) {
	var gaps []float64
	for _, c := range w.Proxy.IdleCycles(from, time.Now()) {
		if _, leaving := w.terminated.Load(c.Daemon); !leaving && c.PrevDur >= longPoll*9/10 {
			gaps = append(gaps, c.Gap.Seconds())
		}
	}
	r.Cycles = len(gaps)
	r.Cycle = Summarise(gaps, 0)
	if r.Cycle.Mean > 0 {
		r.SteadyPerMin = 60 / r.Cycle.Mean
	}
}
