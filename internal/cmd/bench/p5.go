package main

import (
	"context"
	"slices"
	"time"

	"github.com/scaledownd/scaledownd/internal/testpeers"
)

// P5Result is one mass scale-in: K of N nodes terminated at once, and what
// it cost on the shared queue and Auto Scaling from the first termination
// until every message was off the queue (or the limit).
type P5Result struct {
	Config          string `json:"config"`
	Mode            string `json:"mode"`
	N               int    `json:"n"`
	K               int    `json:"k"`
	MaxReceiveCount int    `json:"max_receive_count_policy"` // the queue's redrive policy (0: none)
	// AllReactedS: first termination → the last target's PUT DRAINING
	// (the limit if some never reacted); Reacted counts those that did.
	AllReactedS  float64 `json:"all_reacted_s"`
	Reacted      int     `json:"reacted"`
	Reaction     Dist    `json:"reaction"` // per node, from its own termination
	WithinTarget int     `json:"within_5s"`
	SourceSQS    int     `json:"source_sqs"`
	SourceIMDS   int     `json:"source_imds"`
	Messages     int     `json:"messages"`
	// OpenPolls is the number of receives open at the fake when the
	// terminations began: the daemons a message could go to first.
	OpenPolls   int64            `json:"open_polls_at_start"`
	SQSRequests int64            `json:"sqs_requests"`
	SQSByOp     map[string]int64 `json:"sqs_requests_by_op"`
	ASGRequests int              `json:"autoscaling_requests"`
	MaxReceive  int              `json:"max_receive_count"`
	// DeadLettered: moved to the dead-letter queue by the redrive policy;
	// Undeleted: still on the queue at the end.
	DeadLettered int `json:"dead_lettered"`
	Undeleted    int `json:"not_deleted"`
	// Delete requests by daemons other than the message's owner, while its
	// action was live (must never happen) or after it ended (stale clean-up).
	NonOwnerLive  int `json:"non_owner_deletes_of_live_actions"`
	NonOwnerEnded int `json:"non_owner_deletes_of_ended_actions"`
	// OwnerWaits: message sent → the first receive that handed it to its
	// owner, for each message its owner received.
	OwnerWaits    []float64 `json:"owner_waits_s"`
	OwnerReceived int       `json:"owners_received"`
	CPUCores      float64   `json:"cpu_cores"`
	OtherCores    float64   `json:"other_processes_cores"`
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
	f.Settle(time.Minute)
	w, r := f.W, P5Result{Config: f.Conf.Name, Mode: f.Conf.Mode, N: f.Size(), K: o.K, MaxReceiveCount: maxReceive, SQSByOp: map[string]int64{}}
	req0, ops0, asg0, del0, m := w.Proxy.Requests(), w.Proxy.OpCounts(), len(w.ASG.Calls()), len(w.Proxy.Deletes()), newCPUMeter()
	r.OpenPolls = w.Proxy.Polling()
	var terms []Termination
	for _, n := range f.PickIdle(o.K) {
		terms = append(terms, w.Terminate(n, r.Mode, w.QueueURL))
	}
	reacted := make([]time.Time, len(terms))
	for pending, limit := len(terms), time.Now().Add(o.ReactLimit); pending > 0 && time.Now().Before(limit) && ctx.Err() == nil; time.Sleep(20 * time.Millisecond) {
		for i, t := range terms {
			if at, ok := stateAt(t.Node.Trino, testpeers.TrinoDraining); ok && reacted[i].IsZero() {
				reacted[i], pending = at, pending-1
			}
		}
	}
	var xs []float64
	r.AllReactedS = o.ReactLimit.Seconds()
	for i, t := range terms {
		if !reacted[i].IsZero() {
			r.Reacted++
			xs = append(xs, reacted[i].Sub(t.T0).Seconds())
			if xs[len(xs)-1] <= targetP5 {
				r.WithinTarget++
			}
			if r.Reacted == len(terms) {
				r.AllReactedS = slices.MaxFunc(reacted, time.Time.Compare).Sub(m.start).Seconds()
			}
		}
	}
	r.Reaction = Summarise(xs, len(terms)-r.Reacted)

	done := make(chan struct{})
	go func() { // the completions, so that the nodes are replaced after them
		defer close(done)
		parallel(len(terms), len(terms)+1, func(i int) {
			cctx, cancel := context.WithTimeout(ctx, o.ReactLimit+o.DrainLimit)
			defer cancel()
			(&finisher{}).wait(cctx, w, terms[i])
		})
	}()
	w.waitOffQueue(ctx, terms, o.DrainLimit)
	r.SQSRequests, r.ASGRequests = w.Proxy.Requests()-req0, len(w.ASG.Calls())-asg0
	for op, v := range w.Proxy.OpCounts() {
		if d := v - ops0[op]; d > 0 {
			r.SQSByOp[op] = d
		}
	}
	owner := msgIDs(terms)
	r.Messages = len(owner)
	for _, msg := range w.SQS.Messages(w.QueueURL) {
		if _, ok := owner[msg.ID]; ok {
			r.MaxReceive = max(r.MaxReceive, msg.ReceiveCount)
			if msg.MovedTo != "" {
				r.DeadLettered++
			} else if !msg.Deleted {
				r.Undeleted++
			}
		}
	}
	ended := map[string]time.Time{} // token → when the action ended
	for _, a := range w.ASG.Actions() {
		ended[a.Token] = a.CompletedAt
		if a.State == testpeers.AutoScalingActionExpired {
			ended[a.Token] = a.ExpiredAt
		}
	}
	for _, d := range w.Proxy.Deletes()[del0:] {
		if t, ok := owner[d.MessageID]; ok && d.Daemon != t.Node.ID {
			if e := ended[t.Token]; !e.IsZero() && !d.At.Before(e) {
				r.NonOwnerEnded++
			} else {
				r.NonOwnerLive++
			}
		}
	}
	for i, t := range terms {
		owned, _ := w.Proxy.OwnerReceivedAt(t.MsgID)
		if !owned.IsZero() {
			r.OwnerReceived++
			r.OwnerWaits = append(r.OwnerWaits, owned.Sub(t.T0).Seconds())
		}
		if !reacted[i].IsZero() {
			switch startedBy(t, owned) {
			case "sqs":
				r.SourceSQS++
			case "imds":
				r.SourceIMDS++
			}
		}
	}
	r.CPUCores, r.OtherCores = m.cores()
	if !last && r.Undeleted > 0 {
		w.removeLeftovers(ctx, terms) // counted above; the next measurement starts from an empty queue
	}
	<-done
	if !last {
		parallel(len(terms), 32, func(i int) { f.Replace(ctx, terms[i].Node) })
	}
	return r
}
