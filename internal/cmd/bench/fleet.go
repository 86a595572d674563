package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/scaledownd/scaledownd/internal/config"
	"github.com/scaledownd/scaledownd/internal/testenv"
	"github.com/scaledownd/scaledownd/internal/testpeers"
)

// World is the shared part of a simulated Auto Scaling group: one SQS
// queue (behind the attributing pass-through), one Auto Scaling endpoint.
type World struct {
	SQS      *testpeers.SQS
	ASG      *testpeers.AutoScaling
	Proxy    *sqsProxy
	QueueURL string
	Dir      string
	Latency  time.Duration
	HBT      time.Duration
	// terminated holds the instance ids terminations were started for.
	terminated sync.Map
}

// Group and hook names of every simulated world.
const (
	benchGroup  = "trino-workers"
	benchHook   = "trino-drain"
	benchRegion = "us-east-1"
)

// NewWorld starts the shared peers with per-call latency on SQS and Auto
// Scaling (as in a region) and none on IMDS (a link-local service).
//
// base is where the daemons' state directories go ("" for the system's
// temporary directory).
func NewWorld(latency, hbt time.Duration, base string) (*World, error) {
	dir, err := os.MkdirTemp(base, "scaledownd-bench-")
	if err != nil {
		return nil, err
	}
	w := &World{Dir: dir, Latency: latency, HBT: hbt}
	w.SQS = testpeers.NewSQS(testpeers.SQSOptions{})
	w.SQS.SetLatency(latency)
	w.QueueURL = w.SQS.CreateQueue("trino-lifecycle", testpeers.SQSQueueOptions{})
	w.ASG = testpeers.NewAutoScaling(testpeers.AutoScalingOptions{Region: benchRegion})
	w.ASG.SetLatency(latency)
	w.ASG.AddGroup(benchGroup, 0, 5000)
	w.ASG.AddHook(testpeers.AutoScalingHook{Group: benchGroup, Name: benchHook, HeartbeatTimeout: hbt, DefaultResult: "ABANDON"})
	w.Proxy, err = newSQSProxy(w.SQS.URL())
	if err != nil {
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
// thousand simulated instances share this machine's one disk, where each
// real instance has its own, and their fsyncs queue behind each other
// (a 500-node scale-in took 14 s instead of 6 s to react on disk). The
// real binary's runs keep their state on disk.
func memoryBase() string {
	const shm = "/dev/shm"
	if st, err := os.Stat(shm); err == nil && st.IsDir() {
		if f, err := os.CreateTemp(shm, "bench-probe-"); err == nil {
			f.Close()
			os.Remove(f.Name())
			return shm
		}
	}
	return ""
}

// Node is one simulated instance: its daemon, its Trino worker and (in
// imds and both modes) its own instance metadata service.
type Node struct {
	Index    int
	ID       string
	Trino    *testpeers.TrinoWorker
	IMDS     *testpeers.IMDS
	Daemon   *testenv.Daemon
	StateDir string
	busy     bool // a termination is under way
}

var nodeSeq atomic.Int64

// newInstanceID returns a fresh, realistic-looking EC2 instance id.
func newInstanceID() string {
	return fmt.Sprintf("i-0b%015x", uint64(nodeSeq.Add(1))<<20|uint64(rand.IntN(1<<20)))
}

// Fleet is N in-process daemons in one configuration sharing a World.
type Fleet struct {
	W    *World
	Conf benchConfig
	Mode string // Conf.Mode
	Log  *zap.Logger

	mu       sync.Mutex
	nodes    map[string]*Node
	finished []*Node        // terminated, to be replaced between terminations
	bg       sync.WaitGroup // terminations finishing in the background
}

// NewFleet returns an empty fleet.
func NewFleet(w *World, conf benchConfig, log *zap.Logger) *Fleet {
	return &Fleet{W: w, Conf: conf, Mode: conf.Mode, Log: log, nodes: map[string]*Node{}}
}

// randomGrace is a worker's shutdown.grace-period: DRAINED comes two grace
// periods after DRAINING, so a grace drawn from 50–550 ms puts DRAINED at
// a uniformly random point of the daemon's 1 s poll cycle, as the end of
// the last query does on a real worker.
func randomGrace() time.Duration {
	return 50*time.Millisecond + time.Duration(rand.Int64N(int64(500*time.Millisecond)))
}

// Config is the daemon configuration of one simulated instance: the
// production defaults with the fleet's configuration (mode, IMDS poll,
// queue pacing) pointed at the peers.
func (f *Fleet) Config(n *Node) config.Config {
	c := config.Default()
	f.Conf.apply(&c)
	c.AWS.Region = benchRegion
	c.AWS.InstanceID = n.ID
	c.AWS.QueueURL = f.W.QueueURL
	c.AWS.Group = benchGroup
	c.AWS.Hook = benchHook
	c.AWS.SQSEndpoint = f.W.Proxy.EndpointFor(n.Index)
	c.AWS.AutoScalingEP = f.W.ASG.URL()
	if n.IMDS != nil {
		c.AWS.IMDSEndpoint = n.IMDS.URL()
	}
	c.Trino.URL = n.Trino.URL()
	c.Listen = "127.0.0.1:0"
	c.StateDir = n.StateDir
	c.Log.Level = "error"
	return c
}

// Add starts count new nodes, at most par at a time.
func (f *Fleet) Add(ctx context.Context, count, par int) error {
	var wg sync.WaitGroup
	sem := make(chan struct{}, par)
	var firstErr error
	var errMu sync.Mutex
	for i := 0; i < count; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if _, err := f.addOne(ctx); err != nil {
				errMu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				errMu.Unlock()
			}
		}()
	}
	wg.Wait()
	return firstErr
}

func (f *Fleet) addOne(ctx context.Context) (*Node, error) {
	id := newInstanceID()
	n := &Node{ID: id, Index: f.W.Proxy.Register(id)}
	n.StateDir = filepath.Join(f.W.Dir, "state-"+id)
	n.Trino = testpeers.NewTrino(testpeers.TrinoOptions{Version: "476", GracePeriod: randomGrace(), NodeID: id})
	if f.Mode != "sqs" {
		n.IMDS = testpeers.NewIMDS(testpeers.IMDSOptions{InstanceID: id, Region: benchRegion})
		n.IMDS.SetTargetLifecycleState("InService")
	}
	f.W.ASG.AddInstance(id, benchGroup, "InService")
	d, err := testenv.StartDaemon(ctx, f.Config(n), f.Log)
	if err != nil {
		n.closePeers()
		return nil, fmt.Errorf("start daemon %s: %w", id, err)
	}
	n.Daemon = d
	f.mu.Lock()
	f.nodes[id] = n
	f.mu.Unlock()
	return n, nil
}

func (n *Node) closePeers() {
	n.Trino.Close()
	if n.IMDS != nil {
		n.IMDS.Close()
	}
}

// Size is the number of running nodes.
func (f *Fleet) Size() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.nodes)
}

// Nodes returns the running nodes.
func (f *Fleet) Nodes() []*Node {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]*Node, 0, len(f.nodes))
	for _, n := range f.nodes {
		out = append(out, n)
	}
	return out
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

// Replace removes a terminated node and starts a new instance in its
// place, as Auto Scaling replaces capacity, so the fleet keeps its size.
func (f *Fleet) Replace(ctx context.Context, n *Node) error {
	f.Remove(n)
	_, err := f.addOne(ctx)
	return err
}

// Background runs fn as a termination finishing in the background.
func (f *Fleet) Background(fn func()) {
	f.bg.Add(1)
	go func() { defer f.bg.Done(); fn() }()
}

// Settle waits for the background terminations, at most timeout; it
// reports whether they all finished.
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
func (f *Fleet) Close() { parallel(f.Nodes(), 64, f.Remove) }

// ownReceived is how many of its own messages the node's daemon received,
// from its metrics.
func ownReceived(n *Node) float64 {
	return counterValue(n.Daemon.Metrics.Registry, "scaledownd_sqs_messages_received_total", "kind", "own")
}

// counterValue reads one labelled counter from a registry.
func counterValue(g prometheus.Gatherer, name, label, value string) float64 {
	mfs, err := g.Gather()
	if err != nil {
		return 0
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
