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
	// SQS traffic from the first termination until every message was
	// deleted (or the run's limit).
	WindowS        float64          `json:"window_s"`
	SQSRequests    int64            `json:"sqs_requests"`
	SQSByOp        map[string]int64 `json:"sqs_requests_by_op"`
	ASGRequests    int              `json:"autoscaling_requests"`
	ASGByOp        map[string]int   `json:"autoscaling_requests_by_op"`
	MaxReceive     int              `json:"max_receive_count"`
	ReceiveCounts  IntDist          `json:"receive_counts"`
	Over3          int              `json:"receive_count_over_3"`
	Over5          int              `json:"receive_count_over_5"`
	Over10         int              `json:"receive_count_over_10"`
	Undeleted      int              `json:"messages_not_deleted"`
	Deletes        int              `json:"deletes"`
	OwnerDeletes   int              `json:"deletes_by_owner"`
	NonOwnerLive   int              `json:"non_owner_deletes_of_live_actions"`
	NonOwnerEnded  int              `json:"non_owner_deletes_of_ended_actions"`
	Unattributed   int              `json:"deletes_unattributed"`
	CPUCores       float64          `json:"cpu_cores"`
	OtherCores     float64          `json:"other_processes_cores"`
	Completed      int              `json:"completed"`
	CompletionErrs int              `json:"completion_errors"`
	Note           string           `json:"note,omitempty"`
}

// p5Opts bound a mass scale-in.
type p5Opts struct {
	K          int
	ReactLimit time.Duration // wait at most this for every target to react
	DrainLimit time.Duration // then at most this for every message to be deleted
}

// runP5 terminates K random nodes back to back and follows them.
func runP5(ctx context.Context, f *Fleet, src *sources, o p5Opts) P5Result {
	r := P5Result{Mode: f.Mode, N: f.Size(), K: o.K}
	f.Settle(time.Minute)
	targets := f.PickIdle(o.K)
	w := f.W
	req0, ops0 := w.Proxy.Requests(), w.Proxy.OpCounts()
	asg0 := len(w.ASG.Calls())
	del0 := len(w.Proxy.Deletes())
	cpu0 := cpuTime()
	mach0, own0 := machineBusy(), ownCPU()

	start := time.Now()
	terms := make([]Termination, len(targets))
	for i, n := range targets {
		terms[i] = f.Terminate(n)
	}
	owner := map[string]Termination{} // message id → termination
	for _, t := range terms {
		if t.MsgID != "" {
			owner[t.MsgID] = t
		}
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
		switch src.Of(t.Node.ID) {
		case "sqs":
			r.SourceSQS++
		case "imds":
			r.SourceIMDS++
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
	drainEnd := time.Now().Add(o.DrainLimit)
	for time.Now().Before(drainEnd) && ctx.Err() == nil {
		if len(owner) == 0 || allDeleted(w, owner) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.WindowS = time.Since(start).Seconds()
	r.SQSRequests = w.Proxy.Requests() - req0
	r.SQSByOp = map[string]int64{}
	for op, v := range w.Proxy.OpCounts() {
		if d := v - ops0[op]; d > 0 {
			r.SQSByOp[op] = d
		}
	}
	calls := w.ASG.Calls()
	r.ASGByOp = map[string]int{}
	for _, c := range calls[asg0:] {
		r.ASGByOp[c.Op]++
	}
	r.ASGRequests = len(calls) - asg0
	r.CPUCores = (cpuTime() - cpu0).Seconds() / time.Since(start).Seconds()
	r.OtherCores = otherCores(mach0, own0, time.Since(start))

	// Receive counts and who deleted what.
	var counts []int
	for _, m := range w.SQS.Messages(w.QueueURL) {
		if _, ok := owner[m.ID]; !ok {
			continue
		}
		counts = append(counts, m.ReceiveCount)
		if !m.Deleted {
			r.Undeleted++
		}
	}
	r.ReceiveCounts = SummariseInts(counts)
	r.MaxReceive = r.ReceiveCounts.Max
	for _, c := range counts {
		if c > 3 {
			r.Over3++
		}
		if c > 5 {
			r.Over5++
		}
		if c > 10 {
			r.Over10++
		}
	}
	ended := map[string]time.Time{} // token → when the action ended
	for _, a := range w.ASG.Actions() {
		switch a.State {
		case testpeers.AutoScalingActionCompleted:
			ended[a.Token] = a.CompletedAt
		case testpeers.AutoScalingActionExpired:
			ended[a.Token] = a.ExpiredAt
		}
	}
	for _, d := range w.Proxy.Deletes()[del0:] {
		t, ok := owner[d.MessageID]
		if !ok {
			r.Unattributed++
			continue
		}
		r.Deletes++
		switch {
		case d.Daemon == t.Node.ID:
			r.OwnerDeletes++
		case !ended[t.Token].IsZero() && !d.At.Before(ended[t.Token]):
			r.NonOwnerEnded++
		default:
			r.NonOwnerLive++
		}
	}

	wg.Wait()
	r.Completed = len(fz.completions)
	r.CompletionErrs = fz.errors
	// Replace the terminated nodes so the fleet keeps its size.
	sem := make(chan struct{}, 32)
	var rg sync.WaitGroup
	for _, t := range terms {
		rg.Add(1)
		sem <- struct{}{}
		go func() {
			defer rg.Done()
			defer func() { <-sem }()
			_ = f.Replace(ctx, t.Node)
		}()
	}
	rg.Wait()
	return r
}

func allDeleted(w *World, owner map[string]Termination) bool {
	left := 0
	for _, m := range w.SQS.Messages(w.QueueURL) {
		if _, ok := owner[m.ID]; ok && !m.Deleted {
			left++
		}
	}
	return left == 0
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
