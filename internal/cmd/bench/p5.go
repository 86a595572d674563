package main

import (
	"context"
	"time"

	"github.com/scaledownd/scaledownd/internal/testpeers"
)

// P5Result is one mass scale-in: K of N nodes terminated at once.
type P5Result struct {
	Config string `json:"config"`
	Mode   string `json:"mode"`
	N      int    `json:"n"`
	K      int    `json:"k"`
	// MaxReceiveCount is the queue's redrive policy (0: none).
	MaxReceiveCount int `json:"max_receive_count_policy"`
	// AllReactedS: first termination → the last target's PUT DRAINING
	// (the limit if some never reacted); Reacted counts those that did.
	AllReactedS  float64 `json:"all_reacted_s"`
	Reacted      int     `json:"reacted"`
	Reaction     Dist    `json:"reaction"` // per node, from its own termination
	WithinTarget int     `json:"within_5s"`
	SourceSQS    int     `json:"source_sqs"`
	SourceIMDS   int     `json:"source_imds"`
	// The queue and Auto Scaling traffic from the first termination until
	// every message was off the queue (or the limit).
	EventStats
	CPUCores    float64 `json:"cpu_cores"`
	OtherCores  float64 `json:"other_processes_cores"`
	DrainLimitS float64 `json:"drain_limit_s"`
}

// p5Spec is one mass scale-in: K of N, each target waited for at most
// ReactLimit, then every message at most DrainLimit.
type p5Spec struct {
	N, K                   int
	ReactLimit, DrainLimit time.Duration
}

// runP5 terminates K random nodes back to back and follows them; last
// says nothing is measured on the fleet afterwards (no replacements).
func runP5(ctx context.Context, f *Fleet, o p5Spec, maxReceive int, last bool) P5Result {
	r := P5Result{Config: f.Conf.Name, Mode: f.Conf.Mode, N: f.Size(), K: o.K, MaxReceiveCount: maxReceive, DrainLimitS: o.DrainLimit.Seconds()}
	f.Settle(time.Minute)
	targets := f.PickIdle(o.K)
	w, m := f.W, newCPUMeter()
	pr := w.startProbe()
	terms := make([]Termination, len(targets))
	for i, n := range targets {
		terms[i] = w.Terminate(n, r.Mode, w.QueueURL)
	}
	reacted := make([]time.Time, len(terms))
	for pending, limit := len(terms), time.Now().Add(o.ReactLimit); pending > 0 && time.Now().Before(limit) && ctx.Err() == nil; time.Sleep(20 * time.Millisecond) {
		for i, t := range terms {
			if reacted[i].IsZero() {
				if at, ok := stateAt(t.Node.Trino, testpeers.TrinoDraining); ok {
					reacted[i] = at
					pending--
				}
			}
		}
	}
	var xs []float64
	var lastAt time.Time
	for i, t := range terms {
		if reacted[i].IsZero() {
			continue
		}
		r.Reacted++
		d := reacted[i].Sub(t.T0).Seconds()
		xs = append(xs, d)
		if d <= 5 {
			r.WithinTarget++
		}
		if reacted[i].After(lastAt) {
			lastAt = reacted[i]
		}
	}
	r.Reaction = Summarise(xs, len(terms)-r.Reacted)
	r.AllReactedS = o.ReactLimit.Seconds()
	if r.Reacted == len(terms) {
		r.AllReactedS = lastAt.Sub(m.start).Seconds()
	}

	fz := &finisher{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		parallel(len(terms), len(terms)+1, func(i int) {
			cctx, cancel := context.WithTimeout(ctx, o.ReactLimit+o.DrainLimit)
			defer cancel()
			fz.wait(cctx, w, terms[i])
		})
	}()
	w.waitOffQueue(ctx, terms, o.DrainLimit)
	r.EventStats = pr.finish(terms)
	r.CPUCores, r.OtherCores = m.cores()
	// What is left was counted; it is removed so the next measurement on
	// this fleet starts from an empty queue.
	if !last && r.Undeleted > 0 {
		w.removeLeftovers(ctx, terms)
	}
	<-done
	for i, t := range terms {
		if owned, _ := w.Proxy.OwnerReceivedAt(t.MsgID); !reacted[i].IsZero() {
			switch startedBy(t, owned) {
			case "sqs":
				r.SourceSQS++
			case "imds":
				r.SourceIMDS++
			}
		}
	}
	if !last {
		parallel(len(terms), 32, func(i int) { f.Replace(ctx, terms[i].Node) })
	}
	return r
}
