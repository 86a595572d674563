package main

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/scaledownd/scaledownd/internal/testpeers"
)

// P5Result is one mass scale-in: K of N nodes terminated at once.
type P5Result struct {
	Config string `json:"config"`
	Mode   string `json:"mode"`
	N      int    `json:"n"`
	K      int    `json:"k"`
	// AllReactedS is the time from the first termination until the last
	// targeted worker received PUT DRAINING; Reacted counts the targets
	// that reacted within the run's limit.
	AllReactedS  float64 `json:"all_reacted_s"`
	Reacted      int     `json:"reacted"`
	Reaction     Dist    `json:"reaction"` // per node, from its own termination
	WithinTarget int     `json:"within_5s"`
	// SourceIMDS/SourceSQS count which source started each drain.
	SourceSQS  int `json:"source_sqs"`
	SourceIMDS int `json:"source_imds"`
	// The queue and Auto Scaling traffic from the first termination until
	// every message was deleted (or the run's limit), and who deleted what.
	EventStats
	CPUCores       float64 `json:"cpu_cores"`
	OtherCores     float64 `json:"other_processes_cores"`
	Completed      int     `json:"completed"`
	CompletionErrs int     `json:"completion_errors"`
	// Removed is how many of its messages were still on the queue after
	// the event and were removed before the next measurement.
	Removed int `json:"leftovers_removed,omitempty"`
	// DrainLimitS is how long the messages were followed after the last
	// reaction.
	DrainLimitS float64 `json:"drain_limit_s"`
	Note        string  `json:"note,omitempty"`
}

// p5Opts bound a mass scale-in.
type p5Opts struct {
	K          int
	ReactLimit time.Duration // wait at most this for every target to react
	DrainLimit time.Duration // then at most this for every message to be deleted
	// Last says nothing is measured on the fleet afterwards: the
	// terminated nodes are not replaced.
	Last bool
}

// runP5 terminates K random nodes back to back and follows them.
func runP5(ctx context.Context, f *Fleet, src *sources, o p5Opts) P5Result {
	r := P5Result{Mode: f.Mode, N: f.Size(), K: o.K, DrainLimitS: o.DrainLimit.Seconds()}
	f.Settle(time.Minute)
	targets := f.PickIdle(o.K)
	w := f.W
	cpu0 := cpuTime()
	mach0, own0 := machineBusy(), ownCPU()

	pr := w.startProbe()
	start := time.Now()
	terms := make([]Termination, len(targets))
	for i, n := range targets {
		terms[i] = f.Terminate(n)
	}

	// Reactions: poll every pending worker's state history.
	reacted := make([]time.Time, len(terms))
	pending := len(terms)
	limit := time.Now().Add(o.ReactLimit)
	for pending > 0 && time.Now().Before(limit) && ctx.Err() == nil {
		for i, t := range terms {
			if !reacted[i].IsZero() {
				continue
			}
			if at, ok := stateAt(t.Node.Trino, testpeers.TrinoDraining); ok {
				reacted[i] = at
				pending--
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	var xs []float64
	var last time.Time
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
		if reacted[i].After(last) {
			last = reacted[i]
		}
	}
	r.Reaction = Summarise(xs, len(terms)-r.Reacted)
	if r.Reacted == len(terms) {
		r.AllReactedS = last.Sub(start).Seconds()
	} else {
		r.AllReactedS = o.ReactLimit.Seconds()
		r.Note = "not every target reacted within the limit"
	}

	// Completions, in the background, and the end of the SQS traffic.
	fz := &finisher{}
	var wg sync.WaitGroup
	for _, t := range terms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, o.ReactLimit+o.DrainLimit)
			defer cancel()
			fz.add(w.WaitCompleted(cctx, t))
		}()
	}
	w.waitOffQueue(ctx, terms, o.DrainLimit)
	r.EventStats = pr.finish(terms)
	r.CPUCores = (cpuTime() - cpu0).Seconds() / time.Since(start).Seconds()
	r.OtherCores = otherCores(mach0, own0, time.Since(start))

	// What the event left on the queue is counted above; it is removed so
	// the next measurement on this fleet starts from an empty queue.
	if !o.Last && r.Undeleted > 0 {
		r.Removed = w.removeLeftovers(ctx, terms)
	}

	wg.Wait()
	r.Completed = len(fz.completions)
	r.CompletionErrs = fz.errors
	// Which source started each drain: the job logs it once it has
	// planned, after the PUT DRAINING, so it is read at the end.
	for i, t := range terms {
		if reacted[i].IsZero() {
			continue
		}
		switch src.Of(t.Node.ID) {
		case "sqs":
			r.SourceSQS++
		case "imds":
			r.SourceIMDS++
		}
	}
	if o.Last {
		return r
	}
	// Replace the terminated nodes so the fleet keeps its size.
	parallel(terms, 32, func(t Termination) { _ = f.Replace(ctx, t.Node) })
	return r
}

// sortedKeys returns a map's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
