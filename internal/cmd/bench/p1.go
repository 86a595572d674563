package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"time"

	"github.com/scaledownd/scaledownd/internal/testpeers"
)

// P1Trial is one termination's reaction.
type P1Trial struct {
	Node     string  `json:"node"`
	Seconds  float64 `json:"p1_s"`
	Censored bool    `json:"censored,omitempty"`
	Source   string  `json:"source,omitempty"`   // sqs or imds, see startedBy
	Receives int     `json:"receives,omitempty"` // the message's receive count when it was followed to the end
	// OwnerWaitS: message sent → the first receive that handed it to its
	// owner (0 when the owner never received it).
	OwnerWaitS float64 `json:"owner_wait_s,omitempty"`
}

// P1Cell is one configuration at one fleet size.
type P1Cell struct {
	Config  string    `json:"config"`
	Mode    string    `json:"mode"`
	N       int       `json:"n"`
	Runner  string    `json:"runner"` // binary (subprocess) or in-process
	Planned int       `json:"trials_planned"`
	Trials  []P1Trial `json:"trials"`
	P1      Dist      `json:"p1"`
	// P2Samples: DRAINED → CompleteLifecycleAction, seconds.
	P2Samples  []float64 `json:"p2_samples_s"`
	P2         Dist      `json:"p2"`
	Receives   Dist      `json:"receives"`
	OwnerWait  Dist      `json:"owner_wait"`
	SourceSQS  int       `json:"source_sqs"`
	SourceIMDS int       `json:"source_imds"`
	// BounceMs is the mean reaction over the mean receive count: one
	// hand-back's cost on the critical path (sqs mode).
	BounceMs float64 `json:"bounce_ms,omitempty"`
	// CPUCores is the bench's CPU use during the cell (2 = saturated),
	// OtherCores that of the machine's other processes.
	CPUCores   float64 `json:"cpu_cores"`
	OtherCores float64 `json:"other_processes_cores"`
	WallS      float64 `json:"wall_s"`
}

// cellOpts bound one cell.
type cellOpts struct {
	Trials       int
	Budget       time.Duration // no new trial after this
	TrialTimeout time.Duration // a reaction slower than this is censored
	Stagger      time.Duration // imds: time between terminations
	FinishWait   time.Duration // completion and deletion after the reaction
	FollowLimit  time.Duration // mode both: follow the message this long after the reaction
}

// summarise fills the cell's distributions from its trials.
func (c *P1Cell) summarise(fz *finisher, m cpuMeter) {
	var xs, recv, waits []float64
	censored := 0
	for _, t := range c.Trials {
		xs = append(xs, t.Seconds)
		if t.Censored {
			censored++
		}
		if t.Receives > 0 {
			recv = append(recv, float64(t.Receives))
		}
		if t.OwnerWaitS > 0 {
			waits = append(waits, t.OwnerWaitS)
		}
		switch t.Source {
		case "sqs":
			c.SourceSQS++
		case "imds":
			c.SourceIMDS++
		}
	}
	c.P1, c.Receives, c.OwnerWait = Summarise(xs, censored), Summarise(recv, 0), Summarise(waits, 0)
	if c.Mode == "sqs" && c.N > 1 && c.Receives.Mean > 0 {
		c.BounceMs = c.P1.Mean / c.Receives.Mean * 1000
	}
	c.P2Samples, c.P2 = fz.p2, Summarise(fz.p2, 0)
	c.CPUCores, c.OtherCores = m.cores()
	c.WallS = time.Since(m.start).Seconds()
}

// startedBy is the signal that started t's drain: sqs if its owner had
// received the message (at owned) before the worker's PUT DRAINING.
func startedBy(t Termination, owned time.Time) string {
	at, ok := stateAt(t.Node.Trino, testpeers.TrinoDraining)
	switch {
	case !ok:
		return ""
	case t.MsgID != "" && !owned.IsZero() && owned.Before(at):
		return "sqs"
	case t.Node.IMDS != nil:
		return "imds"
	}
	return ""
}

// react waits for t's worker to receive PUT DRAINING, at most timeout.
func react(ctx context.Context, t Termination, timeout time.Duration) (P1Trial, bool) {
	tr := P1Trial{Node: t.Node.ID, Seconds: timeout.Seconds(), Censored: true}
	for end := time.Now().Add(timeout); time.Now().Before(end) && ctx.Err() == nil; time.Sleep(2 * time.Millisecond) {
		if at, ok := stateAt(t.Node.Trino, testpeers.TrinoDraining); ok {
			tr.Seconds, tr.Censored = at.Sub(t.T0).Seconds(), false
			break
		}
	}
	return tr, !tr.Censored
}

// runP1Cell measures reactions in a running fleet. In sqs and both modes
// terminations run one at a time: in sqs mode the next starts once the
// owner holds its message, in mode both once the message is off the
// queue. In imds mode they overlap, o.Stagger apart.
func runP1Cell(ctx context.Context, f *Fleet, o cellOpts) P1Cell {
	mode := f.Conf.Mode
	cell := P1Cell{Config: f.Conf.Name, Mode: mode, N: f.Size(), Runner: "in-process", Planned: o.Trials}
	m, fz := newCPUMeter(), &finisher{}
	var mu sync.Mutex
	one := func(n *Node) bool {
		t := f.W.Terminate(n, mode, f.W.QueueURL)
		tr, ok := react(ctx, t, o.TrialTimeout)
		if mode == "both" {
			// Followed until its message is off the queue (deleted by its
			// owner, or as stale), then what is left is removed, so the
			// next termination's queue is its own.
			f.W.waitOffQueue(ctx, []Termination{t}, min(o.FollowLimit, o.TrialTimeout))
			f.W.removeLeftovers(ctx, []Termination{t})
		}
		owned, _ := f.W.Proxy.OwnerReceivedAt(t.MsgID)
		tr.Source = startedBy(t, owned)
		if t.MsgID != "" {
			tr.Receives = f.W.SQS.Receives(t.QueueURL, t.MsgID)
			if !owned.IsZero() {
				tr.OwnerWaitS = owned.Sub(t.T0).Seconds()
			}
		}
		mu.Lock()
		cell.Trials = append(cell.Trials, tr)
		mu.Unlock()
		f.bg.Add(1)
		go func() {
			defer f.bg.Done()
			wait := o.FinishWait
			if !ok {
				wait = time.Second // its drain has not even started
			}
			cctx, cancel := context.WithTimeout(ctx, wait)
			defer cancel()
			fz.wait(cctx, f.W, t)
			if mode == "imds" {
				f.Replace(ctx, n)
				return
			}
			if mode == "sqs" {
				_ = f.W.SQS.WaitDeleted(cctx, t.QueueURL, t.MsgID)
			}
			f.mu.Lock()
			f.finished = append(f.finished, n)
			f.mu.Unlock()
		}()
		return ok
	}
	var wg sync.WaitGroup
	for i := 0; i < o.Trials && ctx.Err() == nil && time.Since(m.start) < o.Budget; {
		nodes := f.PickIdle(1)
		if len(nodes) == 0 {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		i++
		if mode == "imds" {
			wg.Go(func() { one(nodes[0]) })
			time.Sleep(o.Stagger)
			continue
		}
		ok := one(nodes[0])
		// Nothing circulates now: the moment to replace finished nodes.
		f.replacePending(ctx)
		if !ok {
			break // a reaction hit the trial limit: the cell stops there
		}
	}
	wg.Wait()
	f.Settle(o.FinishWait + 30*time.Second)
	f.replacePending(ctx)
	cell.summarise(fz, m)
	return cell
}

// binOpts configure the runs of the real binary.
type binOpts struct {
	Binary, Dir                         string
	Latency, HBT, Stagger, TrialTimeout time.Duration
	Trials, MaxParallel                 int
}

// binSettings is the configuration of one subprocess daemon: production
// defaults with c's mode, metadata poll and queue pacing, pointed at w.
func binSettings(w *World, n *Node, c benchConfig, queueURL, stateDir string) map[string]string {
	s := map[string]string{
		"AWS_REGION": benchRegion, "AWS_INSTANCE_ID": n.ID, "AWS_QUEUE_URL": queueURL, "AWS_MODE": c.Mode,
		"AWS_ASG_NAME": benchGroup, "AWS_HOOK_NAME": benchHook, "AWS_SQS_ENDPOINT": w.SQS.URL(),
		"AWS_AUTOSCALING_ENDPOINT": w.ASG.URL(), "AWS_IMDS_POLL_INTERVAL": c.IMDS.String(),
		"AWS_SQS_IDLE_INTERVAL": c.SQSIdle.String(), "TRINO_URL": n.Trino.URL(), "STATE_DIR": stateDir,
	}
	if c.WaitTime > 0 {
		s["AWS_WAIT_TIME"] = c.WaitTime.String()
	}
	if n.IMDS != nil {
		s["AWS_IMDS_ENDPOINT"] = n.IMDS.URL()
	}
	return s
}

// runP1Binary measures the 1-node reaction of the real binary. Every
// trial is its own 1-node world (own queue, instance, worker, metadata
// service), so trials overlap without sharing anything but the machine.
func runP1Binary(ctx context.Context, c benchConfig, o binOpts) (P1Cell, error) {
	cell := P1Cell{Config: c.Name, Mode: c.Mode, N: 1, Runner: "binary", Planned: o.Trials}
	w, err := NewWorld(o.Latency, o.HBT, "", 0)
	if err != nil {
		return cell, err
	}
	defer w.Close()
	m, fz := newCPUMeter(), &finisher{}
	var mu sync.Mutex
	var errs []error
	parallel(o.Trials, o.MaxParallel, func(i int) {
		time.Sleep(time.Until(m.start.Add(time.Duration(i) * o.Stagger))) // a new world every Stagger
		tr, err := oneBinaryTrial(ctx, w, c, i, o, fz)
		mu.Lock()
		defer mu.Unlock()
		if errs = append(errs, err); err == nil {
			cell.Trials = append(cell.Trials, tr)
		}
	})
	cell.summarise(fz, m)
	if len(cell.Trials) == 0 {
		return cell, errors.Join(errs...)
	}
	return cell, nil
}

func oneBinaryTrial(ctx context.Context, w *World, c benchConfig, i int, o binOpts, fz *finisher) (P1Trial, error) {
	queue := w.SQS.CreateQueue(fmt.Sprintf("q-%s-%d", c.Name, i), testpeers.SQSQueueOptions{})
	n := newNode(c.Mode)
	defer n.closePeers()
	w.ASG.AddInstance(n.ID, benchGroup, "InService")
	logPath := filepath.Join(o.Dir, fmt.Sprintf("p1-%s-%d.log", c.Name, i))
	settings := binSettings(w, n, c, queue, filepath.Join(o.Dir, "state-"+n.ID))
	p, err := startDaemon(ctx, o.Binary, logPath, settings)
	if err != nil {
		return P1Trial{}, err
	}
	defer p.stop()
	// Let the first long poll open (a paced daemon's start-up poll end:
	// the termination finds it as it is most of the time, not polling),
	// and land the termination at a random point of the metadata poll.
	settle := 150 * time.Millisecond
	if c.paced() {
		settle = c.longPoll() + time.Second
	}
	if c.Mode != "sqs" {
		settle += rand.N(c.IMDS)
	}
	time.Sleep(settle)
	t := w.Terminate(n, c.Mode, queue)
	tr, _ := react(ctx, t, o.TrialTimeout)
	var owned time.Time // only the owner polls a 1-node world's queue
	for _, m := range w.SQS.Messages(queue) {
		tr.Receives, owned = m.ReceiveCount, m.FirstReceivedAt
	}
	tr.Source = startedBy(t, owned)
	fctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	fz.wait(fctx, w, t)
	if t.MsgID != "" {
		_ = w.SQS.WaitDeleted(fctx, queue, t.MsgID)
	}
	return tr, nil
}
