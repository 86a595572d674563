package main

import (
	"context"
	"sync"
	"time"
)

// P1Trial is one termination's reaction.
type P1Trial struct {
	Node     string  `json:"node"`
	Seconds  float64 `json:"p1_s"`
	Censored bool    `json:"censored,omitempty"`
	Source   string  `json:"source,omitempty"`   // which source started the drain: sqs or imds
	Receives int     `json:"receives,omitempty"` // ApproximateReceiveCount of the message when the owner had it
	Requests int64   `json:"sqs_requests,omitempty"`
	// OwnerWaitS is the time from the message being sent to its owner's
	// first receive of it (mode both; 0 when the owner never received it).
	OwnerWaitS float64 `json:"owner_wait_s,omitempty"`
	// OpenPolls is the number of receives open at the fake when the
	// message was sent: the daemons it could go to first.
	OpenPolls int64 `json:"open_polls,omitempty"`
}

// P1Cell is one mode at one fleet size.
type P1Cell struct {
	Config string    `json:"config"` // mode, with the IMDS poll interval when not the default
	Mode   string    `json:"mode"`
	N      int       `json:"n"`
	Runner string    `json:"runner"` // binary (subprocess) or in-process
	Trials []P1Trial `json:"trials"`
	P1     Dist      `json:"p1"`
	P2     Dist      `json:"p2"`
	// P2Samples are the DRAINED → CompleteLifecycleAction times, seconds.
	P2Samples []float64 `json:"p2_samples_s"`
	Receives  IntDist   `json:"receives"`
	// BounceMs is the mean reaction divided by the mean receive count: the
	// cost of one hand-back on the critical path (sqs mode).
	BounceMs   float64 `json:"bounce_ms,omitempty"`
	SourceSQS  int     `json:"source_sqs"`
	SourceIMDS int     `json:"source_imds"`
	// CPUCores is the bench process's CPU use during the cell (2 cores =
	// saturated): above ~1.6 the fleet is CPU-bound and times are inflated.
	CPUCores float64 `json:"cpu_cores"`
	// OtherCores is the CPU other processes on the machine used meanwhile.
	OtherCores float64 `json:"other_processes_cores"`
	WallS      float64 `json:"wall_s"`
	// Planned is the number of trials planned; Limited says the time
	// budget cut it.
	Planned int  `json:"trials_planned"`
	Limited bool `json:"budget_limited,omitempty"`
	// Overlapped says terminations were started before the previous one
	// reacted (imds: nothing is shared between targets but the CPU).
	Overlapped bool   `json:"overlapped,omitempty"`
	Errors     int    `json:"errors,omitempty"`
	Note       string `json:"note,omitempty"`
	// Events sums each termination's queue traffic (mode both, where each
	// termination is followed until its message is deleted).
	Events *EventStats `json:"events,omitempty"`
}

// cellOpts bound one cell.
type cellOpts struct {
	Trials       int
	Budget       time.Duration // no new trial after this
	TrialTimeout time.Duration // a reaction slower than this is censored
	Stagger      time.Duration // imds: time between terminations
	FinishWait   time.Duration // completion and deletion after the reaction
	// FollowLimit bounds how long, in mode both, a termination's message
	// is followed after the reaction until it is deleted (0: the rest of
	// TrialTimeout); what is left then is counted and removed.
	FollowLimit time.Duration
}

// finisher collects what happens after the reactions.
type finisher struct {
	mu          sync.Mutex
	completions []Completion
	errors      int
}

func (fz *finisher) add(c Completion, err error) {
	fz.mu.Lock()
	defer fz.mu.Unlock()
	if err != nil {
		fz.errors++
		return
	}
	fz.completions = append(fz.completions, c)
}

// finish waits in the background for the action's completion (and in sqs
// mode its message's deletion), then replaces the node.
//
// In sqs and both modes the replacement is deferred to replacePending,
// which the cell calls between terminations: stopping a daemon while its
// long poll is being answered leaves the message it was handed hidden for
// the receive's visibility (10 s; 60 s before receives were shortened) — a
// real hazard of a shared queue (an instance that terminates while others'
// messages circulate), but one that would make each reaction depend on
// the harness's timing. The first run of this bench, which replaced nodes
// at once, saw it: a 10-node reaction took over 30 s.
func (f *Fleet) finish(ctx context.Context, t Termination, wait time.Duration, fz *finisher) {
	f.Background(func() {
		cctx, cancel := context.WithTimeout(ctx, wait)
		defer cancel()
		fz.add(f.W.WaitCompleted(cctx, t))
		if f.Mode == "sqs" {
			// The owner deletes its message after completing (mode both
			// waited for the deletion before the next termination).
			_ = f.W.WaitDeleted(cctx, t)
		}
		if f.Mode == "imds" {
			_ = f.Replace(ctx, t.Node)
			return
		}
		f.mu.Lock()
		f.finished = append(f.finished, t.Node)
		f.mu.Unlock()
	})
}

// replacePending replaces the nodes whose termination finished; callers
// make sure no message circulates meanwhile.
func (f *Fleet) replacePending(ctx context.Context) {
	f.mu.Lock()
	done := f.finished
	f.finished = nil
	f.mu.Unlock()
	for _, n := range done {
		_ = f.Replace(ctx, n)
	}
}

// runP1Cell measures reactions in a running fleet. In sqs and both modes
// terminations run one at a time: the next starts once the previous
// message no longer circulates. In imds mode they overlap.
func runP1Cell(ctx context.Context, f *Fleet, src *sources, o cellOpts) P1Cell {
	cell := P1Cell{Mode: f.Mode, N: f.Size(), Runner: "in-process", Overlapped: f.Mode == "imds", Planned: o.Trials}
	start, cpu0 := time.Now(), cpuTime()
	mach0, own0 := machineBusy(), ownCPU()
	fz := &finisher{}
	var mu sync.Mutex
	add := func(tr P1Trial) {
		mu.Lock()
		defer mu.Unlock()
		cell.Trials = append(cell.Trials, tr)
	}
	// measure follows one termination until its worker reacts. In mode
	// both, pr follows it further, until its message is off the queue —
	// deleted by its owner after the drain, or as stale by another daemon —
	// so that the next termination's chain is not slowed by this one and
	// the event's traffic is complete.
	measure := func(t Termination, pr *probe) (P1Trial, bool) {
		req0 := f.W.Proxy.Requests()
		tctx, cancel := context.WithTimeout(ctx, o.TrialTimeout)
		defer cancel()
		at, err := WaitDraining(tctx, t, 2*time.Millisecond)
		tr := P1Trial{Node: t.Node.ID}
		if err != nil {
			tr.Seconds, tr.Censored = o.TrialTimeout.Seconds(), true
		} else {
			tr.Seconds = at.Sub(t.T0).Seconds()
		}
		if pr != nil {
			deadline, _ := tctx.Deadline()
			follow := time.Until(deadline)
			if o.FollowLimit > 0 {
				follow = min(follow, o.FollowLimit)
			}
			f.W.waitOffQueue(tctx, []Termination{t}, follow)
		}
		if t.MsgID != "" {
			tr.Receives = f.W.SQS.Receives(t.QueueURL, t.MsgID)
		}
		tr.Requests = f.W.Proxy.Requests() - req0
		if pr != nil {
			ev := pr.finish([]Termination{t})
			if ev.Undeleted > 0 {
				// Left on the queue (counted): removed, so the next
				// termination's traffic is its own.
				f.W.removeLeftovers(ctx, []Termination{t})
			}
			tr.OpenPolls = ev.OpenPolls
			if len(ev.OwnerWaits) > 0 {
				tr.OwnerWaitS = ev.OwnerWaits[0]
			}
			mu.Lock()
			if cell.Events == nil {
				cell.Events = &EventStats{}
			}
			cell.Events.add(ev)
			mu.Unlock()
		}
		return tr, err == nil
	}

	if f.Mode == "imds" {
		var wg sync.WaitGroup
		for i := 0; i < o.Trials && ctx.Err() == nil; {
			nodes := f.PickIdle(1)
			if len(nodes) == 0 {
				time.Sleep(20 * time.Millisecond)
				continue
			}
			i++
			wg.Add(1)
			go func() {
				defer wg.Done()
				t := f.Terminate(nodes[0])
				tr, ok := measure(t, nil)
				add(tr)
				f.finish(ctx, t, finishWait(o, ok), fz)
			}()
			time.Sleep(o.Stagger)
		}
		wg.Wait()
	} else {
		for len(cell.Trials) < o.Trials && ctx.Err() == nil {
			if time.Since(start) > o.Budget {
				cell.Limited = true
				break
			}
			nodes := f.PickIdle(1)
			if len(nodes) == 0 {
				time.Sleep(20 * time.Millisecond)
				continue
			}
			var pr *probe
			if f.Mode == "both" {
				p := f.W.startProbe()
				pr = &p
			}
			t := f.Terminate(nodes[0])
			tr, ok := measure(t, pr)
			add(tr)
			f.finish(ctx, t, finishWait(o, ok), fz)
			// Nothing circulates now (the owner holds its message): the
			// moment to replace the instances that finished.
			f.replacePending(ctx)
			if !ok {
				cell.Note = "a reaction exceeded the trial limit; the cell stopped there"
				break
			}
		}
	}
	if !f.Settle(o.FinishWait + 30*time.Second) {
		cell.Note += " (some completions still pending at the end of the cell)"
	}
	f.replacePending(ctx)
	// Which source started each drain: the job logs it once it has
	// planned, after the PUT DRAINING, so it is read at the end.
	for i, tr := range cell.Trials {
		if !tr.Censored {
			cell.Trials[i].Source = src.Of(tr.Node)
		}
	}
	wall := time.Since(start)
	cell.WallS = wall.Seconds()
	cell.CPUCores = (cpuTime() - cpu0).Seconds() / wall.Seconds()
	cell.OtherCores = otherCores(mach0, own0, wall)
	cell.P2Samples = f.W.P2(fz.completions)
	cell.P2 = Summarise(cell.P2Samples, 0)
	cell.Errors = fz.errors
	cell.summarise()
	return cell
}

// summarise fills the cell's distributions from its trials.
func (c *P1Cell) summarise() {
	var xs []float64
	var recv []int
	censored := 0
	for _, t := range c.Trials {
		xs = append(xs, t.Seconds)
		if t.Censored {
			censored++
		}
		if t.Receives > 0 {
			recv = append(recv, t.Receives)
		}
		switch t.Source {
		case "sqs":
			c.SourceSQS++
		case "imds":
			c.SourceIMDS++
		}
	}
	c.P1 = Summarise(xs, censored)
	c.Receives = SummariseInts(recv)
	if c.Mode == "sqs" && c.N > 1 && c.Receives.Mean > 0 && c.P1.N > 0 {
		c.BounceMs = c.P1.Mean / c.Receives.Mean * 1000
	}
}

// otherCores is the CPU used by other processes since mach0/own0.
func otherCores(mach0, own0, wall time.Duration) float64 {
	return max(0, ((machineBusy()-mach0)-(ownCPU()-own0)).Seconds()/wall.Seconds())
}

// finishWait is how long to wait for a termination's completion: not long
// when the node never reacted (its drain has not even started).
func finishWait(o cellOpts, reacted bool) time.Duration {
	if !reacted {
		return time.Second
	}
	return o.FinishWait
}
