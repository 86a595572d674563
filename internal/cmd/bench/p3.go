package main

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/scaledownd/scaledownd/internal/testpeers"
)

// P3Result is the idle footprint of the real binary in one configuration.
type P3Result struct {
	Config       string  `json:"config"` // mode, with the IMDS poll interval where it matters
	Mode         string  `json:"mode"`
	IMDSInterval string  `json:"imds_poll_interval,omitempty"`
	WindowS      float64 `json:"window_s"`
	PeakRSSMiB   float64 `json:"peak_rss_mib"`   // VmHWM at the end (includes start-up)
	SteadyRSSMiB float64 `json:"steady_rss_mib"` // median VmRSS over the window
	CPUPercent   float64 `json:"cpu_percent"`    // (utime+stime) / window, % of one core
	// CPUPercentSched is the same from /proc/pid/schedstat (ns resolution).
	CPUPercentSched float64        `json:"cpu_percent_schedstat"`
	AWSPerMin       float64        `json:"aws_requests_per_min"`
	AWSByOp         map[string]int `json:"aws_requests_by_op"`
	IMDSPerMin      float64        `json:"imds_requests_per_min"`
	StartupAWS      map[string]int `json:"startup_aws_requests_by_op"`
}

// runP3 runs each configuration's binary (all at once, each against its
// own peers), lets it settle, then watches it idle for window.
func runP3(ctx context.Context, configs []benchConfig, o binOpts, window time.Duration) ([]P3Result, error) {
	out := make([]P3Result, len(configs))
	errs := make([]error, len(configs))
	var wg sync.WaitGroup
	for i, c := range configs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i], errs[i] = oneP3(ctx, c, o, window)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

func oneP3(ctx context.Context, c benchConfig, o binOpts, window time.Duration) (P3Result, error) {
	r := P3Result{Config: c.Name, Mode: c.Mode, WindowS: window.Seconds(), AWSByOp: map[string]int{}, StartupAWS: map[string]int{}}
	if c.Mode != "sqs" {
		r.IMDSInterval = c.IMDS.String()
	}
	w, err := NewWorld(o.Latency, o.HBT, "")
	if err != nil {
		return r, err
	}
	defer w.Close()
	n := &Node{ID: newInstanceID()}
	n.Trino = testpeers.NewTrino(testpeers.TrinoOptions{Version: "476", NodeID: n.ID})
	if c.Mode != "sqs" {
		n.IMDS = testpeers.NewIMDS(testpeers.IMDSOptions{InstanceID: n.ID, Region: benchRegion})
		n.IMDS.SetTargetLifecycleState("InService")
	}
	defer n.closePeers()
	w.ASG.AddInstance(n.ID, benchGroup, "InService")
	settings := binSettings(w, n, c, w.QueueURL, filepath.Join(o.Dir, "state-p3-"+n.ID))
	p, err := startBinary(ctx, o.Binary, filepath.Join(o.Dir, "p3-"+c.Name+".log"), settings)
	if err != nil {
		return r, err
	}
	defer p.stop()
	time.Sleep(2 * time.Second) // start-up calls are done; idle from here

	awsCalls := func() []testpeers.Call { return append(w.SQS.Calls(), w.ASG.Calls()...) }
	imdsCalls := func() int {
		if n.IMDS == nil {
			return 0
		}
		return len(n.IMDS.Calls())
	}
	before := awsCalls()
	for _, call := range before {
		r.StartupAWS[call.Service+":"+call.Op]++
	}
	imds0 := imdsCalls()
	s0, err := readProc(p.Pid())
	if err != nil {
		return r, err
	}
	start := time.Now()
	var rss []float64
	for time.Since(start) < window {
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case <-time.After(time.Second):
		}
		if s, err := readProc(p.Pid()); err == nil {
			rss = append(rss, float64(s.VmRSS)/(1<<20))
		}
	}
	elapsed := time.Since(start)
	s1, err := readProc(p.Pid())
	if err != nil {
		return r, fmt.Errorf("%s: daemon gone during the window: %w", c.Name, err)
	}
	r.AWSByOp = diffOps(before, awsCalls())
	total := 0
	for _, v := range r.AWSByOp {
		total += v
	}
	mins := elapsed.Minutes()
	r.AWSPerMin = float64(total) / mins
	r.IMDSPerMin = float64(imdsCalls()-imds0) / mins
	r.CPUPercent = float64(s1.CPUTicks-s0.CPUTicks) / clockTicks / elapsed.Seconds() * 100
	r.CPUPercentSched = (s1.SchedTime - s0.SchedTime).Seconds() / elapsed.Seconds() * 100
	r.PeakRSSMiB = float64(s1.VmHWM) / (1 << 20)
	slices.Sort(rss)
	if len(rss) > 0 {
		r.SteadyRSSMiB = rss[len(rss)/2]
	}
	return r, nil
}

// diffOps counts calls by operation in after that are not in before.
func diffOps(before, after []testpeers.Call) map[string]int {
	count := func(cs []testpeers.Call) map[string]int {
		m := map[string]int{}
		for _, c := range cs {
			m[c.Service+":"+c.Op]++
		}
		return m
	}
	b, a := count(before), count(after)
	out := map[string]int{}
	for k, v := range a {
		if d := v - b[k]; d > 0 {
			out[k] = d
		}
	}
	return out
}
