package main

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/scaledownd/scaledownd/internal/testpeers"
)

// LifecycledCommit is the buildkite/lifecycled commit P3 compares with
// (also LIFECYCLED_VERSION in the Makefile).
const LifecycledCommit = "aae4e9e7640ac2100c3378b502ab9d75ac1683ff"

// P3Result is the idle footprint of one process over the P3 window.
type P3Result struct {
	Config       string  `json:"config"`
	Peer         string  `json:"imds_peer"` // fake IMDS, or amazon-ec2-metadata-mock
	WindowS      float64 `json:"window_s"`
	PeakRSSMiB   float64 `json:"peak_rss_mib"`   // VmHWM at the end (includes start-up)
	SteadyRSSMiB float64 `json:"steady_rss_mib"` // median VmRSS over the window
	AnonMiB      float64 `json:"anon_rss_mib"`   // RssAnon of the median sample: heap, stacks
	FileMiB      float64 `json:"file_rss_mib"`   // RssFile of that sample: the binary's mapped pages
	// CPUPercent is time on a CPU over the window, summed over all
	// threads' schedstat (ns), in % of one core.
	CPUPercent float64        `json:"cpu_percent"`
	AWSPerMin  float64        `json:"aws_requests_per_min"`
	AWSByOp    map[string]int `json:"aws_requests_by_op"`
	IMDSPerMin float64        `json:"imds_requests_per_min"`
}

// P3Pair is scaledownd beside lifecycled: the same window, the same
// amazon-ec2-metadata-mock, the same 1 s metadata poll.
type P3Pair struct {
	Commit     string   `json:"lifecycled_commit"`
	Missing    string   `json:"missing,omitempty"` // why lifecycled did not run
	Interval   string   `json:"poll_interval"`
	Scaledownd P3Result `json:"scaledownd"`
	Lifecycled P3Result `json:"lifecycled"`
	CPURatio   float64  `json:"cpu_ratio"` // scaledownd / lifecycled
	RSSRatio   float64  `json:"rss_ratio"` // steady RSS, scaledownd / lifecycled
}

// p3Opts are P3's inputs.
type p3Opts struct {
	binOpts
	Window, Settle time.Duration
	Lifecycled     string // binary; "" or missing: not measured
	Interval       time.Duration
}

// watch samples pid from start for window and fills the footprint.
func watch(ctx context.Context, pid int, start time.Time, window time.Duration, r *P3Result) error {
	time.Sleep(time.Until(start))
	s0, err := readProc(pid)
	if err != nil {
		return fmt.Errorf("%s: %w", r.Config, err)
	}
	var samples []procStat
	for time.Since(start) < window && ctx.Err() == nil {
		time.Sleep(time.Second)
		if s, err := readProc(pid); err == nil {
			samples = append(samples, s)
		}
	}
	s1, err := readProc(pid)
	if err != nil {
		return fmt.Errorf("%s: gone during the window: %w", r.Config, err)
	}
	elapsed := time.Since(start)
	r.WindowS = elapsed.Seconds()
	r.CPUPercent = (s1.CPU - s0.CPU).Seconds() / elapsed.Seconds() * 100
	r.PeakRSSMiB = mib(s1.VmHWM)
	slices.SortFunc(samples, func(a, b procStat) int { return cmp.Compare(a.RSS, b.RSS) })
	if len(samples) > 0 {
		m := samples[len(samples)/2]
		r.SteadyRSSMiB, r.AnonMiB, r.FileMiB = mib(m.RSS), mib(m.Anon), mib(m.File)
	}
	return ctx.Err()
}

// runP3 starts every configuration's binary against its own peers, and
// the pair on one amazon-ec2-metadata-mock, and watches them all idle in
// one window.
func runP3(ctx context.Context, configs []benchConfig, def benchConfig, o p3Opts) ([]P3Result, P3Pair, error) {
	start := time.Now().Add(o.Settle) // the window, after start-up
	out := make([]P3Result, len(configs))
	pair := P3Pair{Commit: LifecycledCommit, Interval: o.Interval.String()}
	err := each(len(configs)+1, func(i int) (err error) {
		if i == len(configs) {
			return runPair(ctx, def, o, start, &pair)
		}
		out[i], err = oneP3(ctx, configs[i], o, start, nil)
		return err
	})
	return out, pair, err
}

// oneP3 runs one scaledownd binary against its own fake SQS and Auto
// Scaling, and its own fake IMDS unless aemm is given.
func oneP3(ctx context.Context, c benchConfig, o p3Opts, start time.Time, aemm *testpeers.AEMM) (P3Result, error) {
	r := P3Result{Config: c.Name, Peer: "fake IMDS", AWSByOp: map[string]int{}}
	w, err := NewWorld(o.Latency, o.HBT, "", 0)
	if err != nil {
		return r, err
	}
	defer w.Close()
	mode := c.Mode
	if aemm != nil {
		mode, r.Peer = "sqs", "amazon-ec2-metadata-mock" // no fake IMDS
	}
	n := newNode(mode)
	if aemm != nil {
		n.ID = testpeers.AEMMInstance
	}
	defer n.closePeers()
	w.ASG.AddInstance(n.ID, benchGroup, "InService")
	settings := binSettings(w, n, c, w.QueueURL, filepath.Join(o.Dir, "state-p3-"+n.ID))
	if aemm != nil {
		settings["AWS_IMDS_ENDPOINT"] = aemm.URL
	}
	p, err := startDaemon(ctx, o.Binary, filepath.Join(o.Dir, "p3-"+c.Name+"-"+n.ID+".log"), settings)
	if err != nil {
		return r, err
	}
	defer p.stop()
	calls := func() map[string]int {
		m, all := map[string]int{}, append(w.SQS.Calls(), w.ASG.Calls()...)
		if n.IMDS != nil {
			all = append(all, n.IMDS.Calls()...)
		}
		for _, call := range all {
			m[call.Service+":"+call.Op]++
		}
		return m
	}
	time.Sleep(time.Until(start))
	startup := calls()
	if err := watch(ctx, p.cmd.Process.Pid, start, o.Window, &r); err != nil {
		return r, err
	}
	for k, v := range calls() {
		if d := float64(v-startup[k]) / (r.WindowS / 60); strings.HasPrefix(k, "imds:") {
			r.IMDSPerMin += d
		} else if d > 0 {
			r.AWSByOp[k], r.AWSPerMin = v-startup[k], r.AWSPerMin+d
		}
	}
	return r, nil
}

// runPair runs scaledownd's default configuration and lifecycled on one
// amazon-ec2-metadata-mock (IMDSv2, notices an hour out: both idle).
// lifecycled runs its spot listener alone at scaledownd's metadata poll
// interval: its Auto Scaling listener needs an SNS topic and creates an
// SQS queue subscribed to it, which the local peers do not offer.
func runPair(ctx context.Context, def benchConfig, o p3Opts, start time.Time, pair *P3Pair) error {
	if o.Lifecycled == "" {
		pair.Missing = "no lifecycled binary: `make bench LIFECYCLED=<binary>` was not given, and no module proxy served github.com/buildkite/lifecycled@" + LifecycledCommit[:12]
		return nil
	}
	if _, err := os.Stat(o.Lifecycled); err != nil {
		pair.Missing = "the lifecycled binary given does not exist"
		return nil
	}
	bin, err := testpeers.AEMMBinary(filepath.Join(os.TempDir(), "scaledownd-aemm-"+testpeers.AEMMVersion))
	if err != nil {
		return err
	}
	aemm, err := testpeers.StartAEMM(testpeers.AEMMOptions{Binary: bin, Dir: o.Dir,
		Args: []string{"--asg-termination-delay-sec", "3600", "--mock-delay-sec", "3600", "--rebalance-delay-sec", "3600"}})
	if err != nil {
		return err
	}
	defer aemm.Close()
	handler := filepath.Join(o.Dir, "lifecycled-handler.sh")
	if err := os.WriteFile(handler, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		return err
	}
	lc, err := startProc(filepath.Join(o.Dir, "p3-lifecycled.log"), cleanEnv("AWS_REGION="+benchRegion, "AWS_EC2_METADATA_SERVICE_ENDPOINT="+aemm.URL),
		o.Lifecycled, "--handler", handler, "--instance-id", testpeers.AEMMInstance, "--spot-listener-interval", o.Interval.String(), "--json")
	if err != nil {
		return err
	}
	defer lc.stop()
	pair.Lifecycled = P3Result{Config: "lifecycled", Peer: "amazon-ec2-metadata-mock"}
	if err := each(2, func(i int) (err error) {
		if i == 0 {
			pair.Scaledownd, err = oneP3(ctx, def, o, start, aemm)
			return err
		}
		if watch(ctx, lc.cmd.Process.Pid, start, o.Window, &pair.Lifecycled) != nil && ctx.Err() == nil {
			pair.Missing, pair.Lifecycled = "lifecycled stopped before the window ended", P3Result{}
		}
		return nil
	}); err != nil {
		return err
	}
	if pair.Missing == "" && pair.Lifecycled.CPUPercent > 0 && pair.Lifecycled.SteadyRSSMiB > 0 {
		pair.CPURatio = pair.Scaledownd.CPUPercent / pair.Lifecycled.CPUPercent
		pair.RSSRatio = pair.Scaledownd.SteadyRSSMiB / pair.Lifecycled.SteadyRSSMiB
	}
	return nil
}
