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
}

// Group and hook names of every simulated world.
const (
	benchGroup  = "trino-workers"
	benchHook   = "trino-drain"
	benchRegion = "us-east-1"
)

// NewWorld starts the shared peers with per-call latency on SQS and Auto
// Scaling (as in a region) and none on IMDS (a link-local service).
func NewWorld(latency, hbt time.Duration) (*World, error) {
	dir, err := os.MkdirTemp("", "scaledownd-bench-")
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

// Node is one simulated instance: its daemon, its Trino worker and (in
// imds and both modes) its own instance metadata service.
type Node struct {
	Index    int
	ID       string
	Trino    *testpeers.TrinoWorker
	IMDS     *testpeers.IMDS
	Daemon   *testenv.Daemon
	StateDir string
}

var nodeSeq atomic.Int64

// newInstanceID returns a fresh, realistic-looking EC2 instance id.
func newInstanceID() string {
	return fmt.Sprintf("i-0b%015x", uint64(nodeSeq.Add(1))<<20|uint64(rand.IntN(1<<20)))
}

// Fleet is N in-process daemons in one mode sharing a World.
type Fleet struct {
	W      *World
	Mode   string
	Log    *zap.Logger
	IMDSIv time.Duration
	Grace  time.Duration

	mu    sync.Mutex
	nodes map[string]*Node
}

// NewFleet returns an empty fleet.
func NewFleet(w *World, mode string, log *zap.Logger) *Fleet {
	return &Fleet{W: w, Mode: mode, Log: log, IMDSIv: 5 * time.Second, Grace: 200 * time.Millisecond, nodes: map[string]*Node{}}
}

// Config is the daemon configuration of one simulated instance: the
// production defaults (20 s long poll, 5 s IMDS poll, 1 s Trino poll)
// pointed at the peers.
func (f *Fleet) Config(n *Node) config.Config {
	c := config.Default()
	c.AWS.Region = benchRegion
	c.AWS.InstanceID = n.ID
	c.AWS.Mode = f.Mode
	c.AWS.QueueURL = f.W.QueueURL
	c.AWS.Group = benchGroup
	c.AWS.Hook = benchHook
	c.AWS.SQSEndpoint = f.W.Proxy.EndpointFor(n.Index, n.ID)
	c.AWS.AutoScalingEP = f.W.ASG.URL()
	if n.IMDS != nil {
		c.AWS.IMDSEndpoint = n.IMDS.URL()
	}
	c.AWS.IMDSPollInterval = f.IMDSIv
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
	n.Trino = testpeers.NewTrino(testpeers.TrinoOptions{Version: "476", GracePeriod: f.Grace, NodeID: id})
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

// Pick returns k distinct random nodes.
func (f *Fleet) Pick(k int) []*Node {
	all := f.Nodes()
	rand.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	return all[:min(k, len(all))]
}

// Remove stops a node's daemon and peers (the instance is gone).
func (f *Fleet) Remove(n *Node) {
	f.mu.Lock()
	delete(f.nodes, n.ID)
	f.mu.Unlock()
	_ = n.Daemon.Stop(10 * time.Second)
	n.closePeers()
}

// Close stops every node, at most par at a time.
func (f *Fleet) Close() {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for _, n := range f.Nodes() {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			f.Remove(n)
		}()
	}
	wg.Wait()
}
