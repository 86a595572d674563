package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/scaledownd/scaledownd/internal/config"
	"github.com/scaledownd/scaledownd/internal/testenv"
	"github.com/scaledownd/scaledownd/internal/testpeers"
)

// Group, hook and region of every simulated world.
const (
	benchGroup  = "trino-workers"
	benchHook   = "trino-drain"
	benchRegion = "us-east-1"
	deadLetter  = "trino-lifecycle-dlq"
)

// World is the shared part of a simulated Auto Scaling group: one SQS
// queue behind the attributing pass-through, one Auto Scaling endpoint.
type World struct {
	SQS      *testpeers.SQS
	ASG      *testpeers.AutoScaling
	Proxy    *sqsProxy
	QueueURL string
	Dir      string
}

// NewWorld starts the shared peers with per-call latency on SQS and Auto
// Scaling (as in a region; none on IMDS, a link-local service). With
// maxReceive > 0 the queue redrives to a dead-letter queue after that
// many receives, as operators configure it. base is where state
// directories go ("": the system's temporary directory).
func NewWorld(latency, hbt time.Duration, base string, maxReceive int) (*World, error) {
	dir, err := os.MkdirTemp(base, "scaledownd-bench-")
	if err != nil {
		return nil, err
	}
	w := &World{Dir: dir, SQS: testpeers.NewSQS(testpeers.SQSOptions{})}
	w.SQS.SetLatency(latency)
	qo := testpeers.SQSQueueOptions{}
	if maxReceive > 0 {
		w.SQS.CreateQueue(deadLetter, testpeers.SQSQueueOptions{})
		qo = testpeers.SQSQueueOptions{MaxReceiveCount: maxReceive, DeadLetterQueue: deadLetter}
	}
	w.QueueURL = w.SQS.CreateQueue("trino-lifecycle", qo)
	w.ASG = testpeers.NewAutoScaling(testpeers.AutoScalingOptions{Region: benchRegion})
	w.ASG.SetLatency(latency)
	w.ASG.AddGroup(benchGroup, 0, 5000)
	w.ASG.AddHook(testpeers.AutoScalingHook{Group: benchGroup, Name: benchHook, HeartbeatTimeout: hbt, DefaultResult: "ABANDON"})
	if w.Proxy, err = newSQSProxy(w.SQS.URL()); err != nil {
		w.Close()
		return nil, err
	}
	return w, nil
}

// Close stops the shared peers.
func (w *World) Close() {
	if w.Proxy != nil {
		w.Proxy.Close()
	}
	w.ASG.Close()
	w.SQS.Close()
	_ = os.RemoveAll(w.Dir)
}

// memoryBase is tmpfs for the in-process fleets' state directories: a
// thousand simulated instances share one disk here, where each real
// instance has its own, and their fsyncs would queue behind each other.
func memoryBase() string {
	if f, err := os.CreateTemp("/dev/shm", "bench-probe-"); err == nil {
		f.Close()
		os.Remove(f.Name())
		return "/dev/shm"
	}
	return ""
}

// Node is one simulated instance: its daemon, its Trino worker and (in
// imds and both modes) its own instance metadata service.
type Node struct {
	ID     string
	Index  int
	busy   bool // a termination is under way
	Trino  *testpeers.TrinoWorker
	IMDS   *testpeers.IMDS
	Daemon *testenv.Daemon
}

var nodeSeq atomic.Int64

// newNode starts the node's own peers (no daemon yet).
func newNode(mode string) *Node {
	id := fmt.Sprintf("i-0b%015x", uint64(nodeSeq.Add(1))<<20|uint64(rand.IntN(1<<20)))
	// DRAINED comes two grace periods after DRAINING: 50–550 ms puts it
	// at a random point of the daemon's Trino poll cycle.
	grace := 50*time.Millisecond + rand.N(500*time.Millisecond)
	n := &Node{ID: id, Trino: testpeers.NewTrino(testpeers.TrinoOptions{Version: "476", GracePeriod: grace, NodeID: id})}
	if mode != "sqs" {
		n.IMDS = testpeers.NewIMDS(testpeers.IMDSOptions{InstanceID: id, Region: benchRegion})
		n.IMDS.SetTargetLifecycleState("InService")
	}
	return n
}

func (n *Node) closePeers() {
	n.Trino.Close()
	if n.IMDS != nil {
		n.IMDS.Close()
	}
}

// Fleet is N in-process daemons in one configuration sharing a World.
type Fleet struct {
	W    *World
	Conf benchConfig
	Log  *zap.Logger

	mu       sync.Mutex
	nodes    map[string]*Node
	finished []*Node        // terminated, to be replaced between terminations
	bg       sync.WaitGroup // terminations finishing in the background
}

// Add starts count new nodes, 32 at a time.
func (f *Fleet) Add(ctx context.Context, count int) error {
	var mu sync.Mutex
	var errs []error
	parallel(count, 32, func(int) {
		if err := f.addOne(ctx); err != nil {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}
	})
	return errors.Join(errs...)
}

func (f *Fleet) addOne(ctx context.Context) error {
	n := newNode(f.Conf.Mode)
	n.Index = f.W.Proxy.Register(n.ID)
	f.W.ASG.AddInstance(n.ID, benchGroup, "InService")
	c := config.Default()
	f.Conf.apply(&c)
	c.AWS.Region, c.AWS.InstanceID, c.AWS.Group, c.AWS.Hook = benchRegion, n.ID, benchGroup, benchHook
	c.AWS.QueueURL, c.AWS.SQSEndpoint, c.AWS.AutoScalingEP = f.W.QueueURL, f.W.Proxy.EndpointFor(n.Index), f.W.ASG.URL()
	if n.IMDS != nil {
		c.AWS.IMDSEndpoint = n.IMDS.URL()
	}
	c.Trino.URL = n.Trino.URL()
	c.Listen = "127.0.0.1:0"
	c.StateDir = filepath.Join(f.W.Dir, "state-"+n.ID)
	c.Log.Level = "error"
	d, err := testenv.StartDaemon(ctx, c, f.Log)
	if err != nil {
		n.closePeers()
		return fmt.Errorf("start daemon %s: %w", n.ID, err)
	}
	n.Daemon = d
	f.mu.Lock()
	f.nodes[n.ID] = n
	f.mu.Unlock()
	return nil
}

func (f *Fleet) Size() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.nodes)
}

// PickIdle marks k distinct random nodes without a termination under way
// as busy and returns them (fewer if not enough are idle).
func (f *Fleet) PickIdle(k int) []*Node {
	f.mu.Lock()
	defer f.mu.Unlock()
	var idle []*Node
	for _, n := range f.nodes {
		if !n.busy {
			idle = append(idle, n)
		}
	}
	rand.Shuffle(len(idle), func(i, j int) { idle[i], idle[j] = idle[j], idle[i] })
	idle = idle[:min(k, len(idle))]
	for _, n := range idle {
		n.busy = true
	}
	return idle
}

// Replace stops a terminated node and starts a new instance in its
// place, as Auto Scaling replaces capacity: the fleet keeps its size.
func (f *Fleet) Replace(ctx context.Context, n *Node) {
	f.Remove(n)
	_ = f.addOne(ctx)
}

// replacePending replaces the nodes whose termination finished; callers
// make sure no message circulates meanwhile (a daemon stopped while its
// long poll is answered would hide the message it was handed).
func (f *Fleet) replacePending(ctx context.Context) {
	f.mu.Lock()
	done := f.finished
	f.finished = nil
	f.mu.Unlock()
	for _, n := range done {
		f.Replace(ctx, n)
	}
}

// Settle waits for the background terminations, at most timeout.
func (f *Fleet) Settle(timeout time.Duration) bool {
	done := make(chan struct{})
	go func() { f.bg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// Remove stops a node's daemon and peers (the instance is gone).
func (f *Fleet) Remove(n *Node) {
	f.mu.Lock()
	delete(f.nodes, n.ID)
	f.mu.Unlock()
	_ = n.Daemon.Stop(10 * time.Second)
	n.closePeers()
}

// Close stops every node, 64 at a time.
func (f *Fleet) Close() {
	f.mu.Lock()
	all := slices.Collect(maps.Values(f.nodes))
	f.mu.Unlock()
	parallel(len(all), 64, func(i int) { f.Remove(all[i]) })
}

// Termination is one scale-in of one node as the harness started it.
type Termination struct {
	Node     *Node
	Token    string
	QueueURL string
	MsgID    string    // "" when no SQS message was sent (imds mode)
	T0       time.Time // message visible in SQS and/or IMDS state flipped
}

// Terminate starts a terminate lifecycle action for n, as Auto Scaling
// does: the instance enters Terminating:Wait, then (by mode) the
// notification goes on the queue and/or metadata shows Terminated.
func (w *World) Terminate(n *Node, mode, queueURL string) Termination {
	token := w.ASG.StartAction(benchGroup, benchHook, n.ID)
	body := w.ASG.Message(token).Direct()
	t := Termination{Node: n, Token: token, QueueURL: queueURL, T0: time.Now()}
	if mode != "imds" {
		t.MsgID = w.SQS.Send(queueURL, body)
	}
	if mode != "sqs" {
		n.IMDS.SetTargetLifecycleState("Terminated")
	}
	return t
}

// stateAt returns when the worker first entered state, if it has.
func stateAt(w *testpeers.TrinoWorker, state string) (time.Time, bool) {
	for _, c := range w.StateHistory() {
		if c.State == state {
			return c.At, true
		}
	}
	return time.Time{}, false
}

// finisher collects the P2 samples (DRAINED → CompleteLifecycleAction at
// the fake, before its injected latency) of completed terminations.
type finisher struct {
	mu sync.Mutex
	p2 []float64
}

// wait waits until t's action ended and records its P2 sample.
func (fz *finisher) wait(ctx context.Context, w *World, t Termination) {
	act, err := w.ASG.WaitAction(ctx, t.Token)
	drained, ok := stateAt(t.Node.Trino, testpeers.TrinoDrained)
	var arrived time.Time
	for _, c := range w.ASG.Calls() {
		if c.Op == "CompleteLifecycleAction" && c.Params["InstanceId"] == t.Node.ID {
			arrived = c.At
		}
	}
	fz.mu.Lock()
	defer fz.mu.Unlock()
	if err == nil && act.State == testpeers.AutoScalingActionCompleted && ok && !arrived.IsZero() {
		fz.p2 = append(fz.p2, arrived.Sub(drained).Seconds())
	}
}

// msgIDs are the messages the terminations put on the queue.
func msgIDs(terms []Termination) map[string]Termination {
	out := map[string]Termination{}
	for _, t := range terms {
		if t.MsgID != "" {
			out[t.MsgID] = t
		}
	}
	return out
}

// onQueue returns the receipt handles ("" if never received) of the
// messages of ids still on the queue: not deleted, not dead-lettered.
func (w *World) onQueue(ids map[string]Termination) (handles []string) {
	for _, m := range w.SQS.Messages(w.QueueURL) {
		if _, ok := ids[m.ID]; ok && !m.Deleted && m.MovedTo == "" {
			handles = append(handles, m.ReceiptHandle)
		}
	}
	return handles
}

// waitOffQueue waits until every message of terms is off the queue, at
// most limit.
func (w *World) waitOffQueue(ctx context.Context, terms []Termination, limit time.Duration) {
	ids := msgIDs(terms)
	for end := time.Now().Add(limit); len(w.onQueue(ids)) > 0 && time.Now().Before(end) && ctx.Err() == nil; {
		time.Sleep(20 * time.Millisecond)
	}
}

// removeLeftovers deletes the messages of terms still on the queue
// straight at the fake (not counted as any daemon's traffic), so that the
// next measurement starts from an empty queue. A daemon that receives one
// meanwhile replaces its handle, so it tries again, for at most 5 s.
func (w *World) removeLeftovers(ctx context.Context, terms []Termination) {
	ids := msgIDs(terms)
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end) && ctx.Err() == nil; {
		handles := slices.DeleteFunc(w.onQueue(ids), func(h string) bool { return h == "" })
		if len(handles) == 0 {
			return
		}
		parallel(len(handles), 32, func(i int) {
			body, _ := json.Marshal(map[string]string{"QueueUrl": w.QueueURL, "ReceiptHandle": handles[i]})
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, w.SQS.URL()+"/", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/x-amz-json-1.0")
			req.Header.Set("X-Amz-Target", "AmazonSQS.DeleteMessage")
			if resp, err := w.Proxy.client.Do(req); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
}
