// Command bench measures scaledownd against the wire-level test peers and
// writes BENCHMARKS.md, bench/results.json and bench/p1.png. `make bench`
// runs it (under 10 minutes on 2 cores); -quick is a smoke run of seconds,
// -from re-renders the report from a results.json, -phases runs a part.
//
// What it measures (see BENCHMARKS.md for the figures):
//
//	P1  reaction: lifecycle message visible in SQS (or IMDS state flipped)
//	    → the worker receives PUT DRAINING, for fleets of 1 (the real
//	    binary) to 1,000 (daemon.Run in-process) in modes sqs, imds, both
//	P2  DRAINED → CompleteLifecycleAction arrives at Auto Scaling
//	P3  the idle footprint of the real binary over a minute
//	P4  heartbeats over a full-length drain on a fake clock
//	P5  half of a fleet scaled in at once
//
// and the polling policies of mode both (issue 8): the default, which polls
// the queue once per aws.sqs-idle-interval while metadata shows the
// instance in service, against polling all the time (both-always), at 100,
// 500 and 1,000 nodes: one-node and half-fleet scale-ins and the idle cost.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/scaledownd/scaledownd/internal/config"
	"github.com/scaledownd/scaledownd/internal/testenv"
)

func main() {
	o := defaultOptions()
	flag.BoolVar(&o.Quick, "quick", false, "smoke run: tiny fleets, few trials, short windows (seconds)")
	flag.DurationVar(&o.Latency, "latency", o.Latency, "per-call latency of the fake SQS and Auto Scaling, as in a region")
	flag.DurationVar(&o.Budget, "budget", 9*time.Minute, "time the run may take, counted from -since if given (make bench's start); the sqs and both cells shrink when it falls behind")
	flag.StringVar(&o.Binary, "binary", o.Binary, "the scaledownd binary for the 1-node and idle runs")
	flag.StringVar(&o.Out, "out", o.Out, "the report to write")
	flag.StringVar(&o.JSON, "results", o.JSON, "the raw results to write (JSON)")
	flag.StringVar(&o.Chart, "chart", o.Chart, "the P1 chart to write (PNG)")
	flag.StringVar(&o.GoBench, "gobench", o.GoBench, "output of `go test -bench` to include (optional)")
	flag.Float64Var(&o.Since, "since", 0, "unix time `make bench` started, to report its whole runtime")
	flag.StringVar(&o.Command, "command", "make bench", "the command that reproduces the report, as printed in it")
	from := flag.String("from", "", "re-render the report and chart from this results.json instead of measuring")
	phases := flag.String("phases", "all", "comma-separated subset to run: p3,p4,binary,imds,sqs,both,both-always, or policy (the two mode-both fleets of the polling comparison); the report is then partial")
	flag.Parse()
	if *phases != "all" {
		o.Phases = map[string]bool{}
		for _, ph := range strings.Split(*phases, ",") {
			o.Phases[strings.TrimSpace(ph)] = true
		}
	}
	if *from != "" {
		if err := rerender(*from, o); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	hermetic()
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	if err := run(ctx, o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// rerender writes the report and the chart again from saved results.
func rerender(path string, o Options) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var r Results
	if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := writeChart(o.Chart, &r); err != nil {
		return err
	}
	return os.WriteFile(o.Out, []byte(r.markdown(o)), 0o644)
}

// hermetic gives the in-process daemons static credentials and keeps the
// SDK away from shared files, IMDS credentials and the machine's CA bundle
// (AWS_CA_BUNDLE would add a parsed CA pool to every daemon).
func hermetic() {
	testenv.HermeticAWS()
	_ = os.Unsetenv("AWS_CA_BUNDLE")
}

// Options are the bench's inputs.
type Options struct {
	Quick            bool
	Latency          time.Duration
	Binary           string
	Out, JSON, Chart string
	GoBench          string
	Since            float64
	Command          string
	// Budget bounds the measurements: the sqs and both cells shrink when
	// the run falls behind (0: no bound).
	Budget   time.Duration
	Progress func(format string, args ...any)
	WorkDir  string
	// Phases, if set, limits the run to these parts (p3, p4, binary, and
	// the modes of the in-process fleets).
	Phases map[string]bool
}

// runs reports whether a phase is to run.
func (o Options) runs(phase string) bool { return o.Phases == nil || o.Phases[phase] }

func defaultOptions() Options {
	return Options{
		Latency: 10 * time.Millisecond,
		Binary:  "bin/scaledownd",
		Out:     "BENCHMARKS.md",
		JSON:    "bench/results.json",
		Chart:   "bench/p1.png",
	}
}

// Names of the configurations the report compares. The default is mode
// both paced by instance metadata (policy (b) of issue 8); both-always is
// mode both with aws.sqs-idle-interval=0 (policy (a)).
const (
	cfgSQS    = "sqs"
	cfgIMDS   = "imds"
	cfgBoth   = "both"
	cfgAlways = "both-always"
)

// benchConfig is one daemon configuration the bench measures.
type benchConfig struct {
	Name    string        // as the report names it
	Mode    string        // aws.mode
	IMDS    time.Duration // aws.imds-poll-interval
	SQSIdle time.Duration // aws.sqs-idle-interval (mode both; 0: poll all the time)
	// WaitTime is aws.wait-time; 0 keeps the default (20 s). Only the
	// smoke run shortens it.
	WaitTime time.Duration
}

// apply sets the configuration on a daemon's settings.
func (c benchConfig) apply(cfg *config.Config) {
	cfg.AWS.Mode = c.Mode
	cfg.AWS.IMDSPollInterval = c.IMDS
	cfg.AWS.SQSIdleInterval = c.SQSIdle
	if c.WaitTime > 0 {
		cfg.AWS.WaitTime = c.WaitTime
	}
}

// paced reports whether the daemon long-polls the queue only once per
// idle interval while its metadata shows it in service.
func (c benchConfig) paced() bool { return c.Mode == "both" && c.SQSIdle > 0 }

// longPoll is the daemon's long-poll wait (aws.wait-time).
func (c benchConfig) longPoll() time.Duration {
	if c.WaitTime > 0 {
		return c.WaitTime
	}
	return config.Default().AWS.WaitTime
}

// Plan is how much of everything to run.
type Plan struct {
	HBT time.Duration // the simulated hook's HeartbeatTimeout
	// The default configuration's metadata poll and queue pacing
	// (config.Default(); shorter in a smoke run), the long-poll wait, and
	// the old default metadata poll, measured for what a poll costs.
	IMDSInterval, SQSIdle, WaitTime, SlowIMDS time.Duration
	Ramps                                     []rampSpec // in-process fleets, one configuration each
	Bin                                       binOpts
	BinModes                                  []benchConfig
	P3Window                                  time.Duration
	P3                                        []benchConfig
	P4                                        []time.Duration
}

// rampSpec is one in-process fleet grown through Sizes (P1 at each) with
// mass scale-ins (P5) at the sizes they name.
type rampSpec struct {
	benchConfig
	Sizes []int
	Cell  map[int]cellOpts // P1 bounds by fleet size
	P5    []p5Spec
	// Policy marks an arm of the polling-policy comparison (issue 8): at
	// each P5 size the fleet first idles for IdleWindow and its queue
	// traffic is counted.
	Policy     bool
	IdleWindow time.Duration
	// Est is how long the ramp takes on a quiet 2-core machine; with the
	// time left it scales the budgets of the sequential cells.
	Est time.Duration
}

// p5Spec is one mass scale-in: K of N.
type p5Spec struct {
	N, K int
	Opts p5Opts
}

func plan(o Options) Plan {
	d := config.Default()
	p := Plan{
		HBT:          300 * time.Second,
		IMDSInterval: d.AWS.IMDSPollInterval,
		SQSIdle:      d.AWS.SQSIdleInterval,
		SlowIMDS:     5 * time.Second,
		P4:           []time.Duration{300 * time.Second, 7200 * time.Second},
	}
	if o.Quick {
		p.IMDSInterval, p.SlowIMDS, p.SQSIdle, p.WaitTime = 250*time.Millisecond, 500*time.Millisecond, 2*time.Second, time.Second
	}
	conf := func(name, mode string, imds, idle time.Duration) benchConfig {
		return benchConfig{Name: name, Mode: mode, IMDS: imds, SQSIdle: idle, WaitTime: p.WaitTime}
	}
	sqs := conf(cfgSQS, "sqs", p.IMDSInterval, 0)
	imds := conf(cfgIMDS, "imds", p.IMDSInterval, 0)
	slow := conf("imds@"+p.SlowIMDS.String(), "imds", p.SlowIMDS, 0)
	both := conf(cfgBoth, "both", p.IMDSInterval, p.SQSIdle)
	always := conf(cfgAlways, "both", p.IMDSInterval, 0)
	if o.Quick {
		q := []p5Spec{{N: 5, K: 2, Opts: p5Opts{ReactLimit: 10 * time.Second, DrainLimit: 10 * time.Second}}}
		cell := map[int]cellOpts{5: {Trials: 3, Budget: 5 * time.Second, TrialTimeout: 10 * time.Second, Stagger: 100 * time.Millisecond, FinishWait: 10 * time.Second, FollowLimit: 5 * time.Second}}
		p.Ramps = []rampSpec{
			{benchConfig: imds, Sizes: []int{5}, Cell: cell, P5: q},
			{benchConfig: sqs, Sizes: []int{5}, Cell: cell},
			{benchConfig: both, Sizes: []int{5}, Cell: cell, P5: q, Policy: true, IdleWindow: time.Second},
			{benchConfig: always, Sizes: []int{5}, Cell: cell, P5: q, Policy: true, IdleWindow: time.Second},
		}
		p.Bin = binOpts{Trials: 2, Stagger: 100 * time.Millisecond, MaxParallel: 4, TrialTimeout: 10 * time.Second}
		p.P3Window = 2 * time.Second
	} else {
		cells := func(trials int, budget, timeout time.Duration, sizes ...int) map[int]cellOpts {
			m := map[int]cellOpts{}
			for _, n := range sizes {
				m[n] = cellOpts{Trials: trials, Budget: budget, TrialTimeout: timeout, Stagger: 400 * time.Millisecond, FinishWait: 30 * time.Second}
			}
			return m
		}
		// Budgets keep `make bench` under 10 minutes on 2 cores. In imds
		// mode terminations overlap (0.4 s apart). In sqs and both modes
		// they run one at a time. sqs cells are short: the fake SQS wakes
		// every waiting poll for each change and serves them under one
		// lock, so a hand-back costs ~20 ms at 10–100 nodes and more at
		// 500 and 1,000, and the report adds the random-hand-off model.
		// The two polling policies get 5–10 one-node scale-ins per size.
		imdsCells := cells(20, 30*time.Second, 30*time.Second, 10, 100, 500, 1000)
		sqsCells := cells(20, 8*time.Second, 15*time.Second, 100, 500, 1000)
		sqsCells[10] = cellOpts{Trials: 20, Budget: 10 * time.Second, TrialTimeout: 20 * time.Second, FinishWait: 30 * time.Second}
		policyCells := cells(5, 12*time.Second, 30*time.Second, 10, 100, 500, 1000)
		policyCells[10] = cellOpts{Trials: 20, Budget: 10 * time.Second, TrialTimeout: 30 * time.Second, FinishWait: 30 * time.Second}
		for n, c := range policyCells {
			// Each termination's message is followed for 10 s after the
			// reaction, as in the mass scale-ins.
			c.FollowLimit = 10 * time.Second
			policyCells[n] = c
		}
		// A policy arm's scale-in is followed for 10 s after the last
		// reaction; what is still on the queue then is counted as left.
		mass := p5Opts{ReactLimit: 60 * time.Second, DrainLimit: 10 * time.Second}
		half := []p5Spec{{100, 50, mass}, {500, 250, mass}, {1000, 500, mass}}
		// sqs keeps short cells (the model covers it) and runs before the
		// policy arms, whose cells shrink first when the run falls behind.
		p.Ramps = []rampSpec{
			{benchConfig: imds, Sizes: []int{10, 100, 500, 1000}, Cell: imdsCells, P5: []p5Spec{{1000, 500, mass}}, Est: 65 * time.Second},
			{benchConfig: sqs, Sizes: []int{10, 100, 500, 1000}, Cell: sqsCells, Est: 70 * time.Second},
			{benchConfig: both, Sizes: []int{10, 100, 500, 1000}, Cell: policyCells, P5: half, Policy: true, IdleWindow: 20 * time.Second, Est: 170 * time.Second},
			{benchConfig: always, Sizes: []int{100, 500, 1000}, Cell: policyCells, P5: half, Policy: true, IdleWindow: 20 * time.Second, Est: 130 * time.Second},
		}
		p.Bin = binOpts{Trials: 20, Stagger: 300 * time.Millisecond, MaxParallel: 10, TrialTimeout: 30 * time.Second}
		p.P3Window = 60 * time.Second
	}
	p.BinModes = []benchConfig{sqs, imds, slow, both, always}
	p.P3 = []benchConfig{sqs, imds, slow, both, always}
	p.Bin.Latency, p.Bin.HBT, p.Bin.Binary = o.Latency, p.HBT, o.Binary
	return p
}

func run(ctx context.Context, o Options, stdout *os.File) error {
	started := time.Now()
	say := o.Progress
	if say == nil {
		say = func(format string, args ...any) {
			fmt.Fprintf(stdout, "%7.1fs  %s\n", time.Since(started).Seconds(), fmt.Sprintf(format, args...))
		}
	}
	p := plan(o)
	dir := o.WorkDir
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "scaledownd-bench-run-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	}
	p.Bin.Dir = dir
	res := newResults(o, p)

	// P3 watches idle binaries for a minute. It runs alongside P4 and the
	// 1-node runs (light: a few binaries at a time, ~0.15 cores), and the
	// fleets wait for it: a busy neighbour would evict an idle process's
	// caches and inflate its CPU time.
	type p3out struct {
		r   []P3Result
		err error
	}
	p3done := make(chan p3out, 1)
	if o.runs("p3") {
		say("P3: %d idle binaries for %s", len(p.P3), p.P3Window)
		go func() {
			r, err := runP3(ctx, p.P3, p.Bin, p.P3Window)
			p3done <- p3out{r, err}
		}()
	} else {
		p3done <- p3out{}
	}

	for _, hbt := range p.P4 {
		if !o.runs("p4") {
			break
		}
		r, err := runP4(ctx, hbt)
		if err != nil {
			return fmt.Errorf("P4 %s: %w", hbt, err)
		}
		say("P4: HeartbeatTimeout %s: %d heartbeats, largest gap %.0fs, %d lapses, %s", hbt, r.Heartbeats, r.LargestGapS, r.Lapses, r.Reason)
		res.P4 = append(res.P4, r)
	}

	if o.runs("binary") {
		// The 1-node configurations are independent worlds; they run side
		// by side, each with at most p.Bin.MaxParallel binaries at once.
		cells := make([]P1Cell, len(p.BinModes))
		errs := make([]error, len(p.BinModes))
		var wg sync.WaitGroup
		for i, bm := range p.BinModes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				bo := p.Bin
				bo.Conf = bm
				cells[i], errs[i] = runP1Binary(ctx, bo)
			}()
		}
		wg.Wait()
		for i, c := range cells {
			if errs[i] != nil {
				return fmt.Errorf("P1 1-node %s: %w", p.BinModes[i].Name, errs[i])
			}
			say("P1 %-12s N=1    (binary): %s", c.Config, c.short())
			res.P1 = append(res.P1, c)
		}
	}

	out := <-p3done
	if out.err != nil {
		return fmt.Errorf("P3: %w", out.err)
	}
	res.P3 = out.r
	for _, r := range res.P3 {
		say("P3 %-9s peak RSS %.1f MiB, steady %.1f MiB, CPU %.3f%%, AWS %.1f/min, IMDS %.1f/min",
			r.Config, r.PeakRSSMiB, r.SteadyRSSMiB, r.CPUPercent, r.AWSPerMin, r.IMDSPerMin)
	}

	// The in-process fleets share the CPU, so they run one at a time (in a
	// quick run side by side: nothing there is timed finely).
	var ramps []rampSpec
	for _, r := range p.Ramps {
		if o.runs(r.Mode) || o.runs(r.Name) || (r.Policy && o.runs("policy")) {
			ramps = append(ramps, r)
		}
	}
	if o.Quick {
		errs := make([]error, len(ramps))
		var wg sync.WaitGroup
		for i, r := range ramps {
			wg.Add(1)
			go func() { defer wg.Done(); errs[i] = runRamp(ctx, o, p, r, dir, res, say, 1) }()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				return err
			}
		}
	} else {
		for i, r := range ramps {
			// Scale the sequential cells to the time left, so that `make
			// bench` stays within its 10 minutes on a busy machine too.
			var est time.Duration
			for _, later := range ramps[i:] {
				est += later.Est
			}
			scale := 1.0
			from := started
			if o.Since > 0 {
				from = time.Unix(0, int64(o.Since*1e9))
			}
			if left := time.Until(from.Add(o.Budget)); o.Budget > 0 && est > 0 && left < est {
				scale = max(0.2, left.Seconds()/est.Seconds())
				say("behind schedule: %s left for about %s of work; the sqs and both cells get %.0f %% of their time", left.Round(time.Second), est.Round(time.Second), scale*100)
			}
			if err := runRamp(ctx, o, p, r, dir, res, say, scale); err != nil {
				return err
			}
		}
	}

	if o.GoBench != "" {
		gb, err := parseGoBench(o.GoBench)
		if err != nil {
			return fmt.Errorf("read %s: %w", o.GoBench, err)
		}
		res.GoBench = gb
	}
	res.finish(started, o.Since)
	return res.write(o)
}

// runRamp grows one fleet through the sizes, measuring P1/P2 at each and
// P5 where a spec asks for that size; a policy arm also measures its idle
// queue traffic before each mass scale-in.
//
// scale (≤ 1) shrinks the time budgets of the sequential (sqs and both)
// cells and of the mass scale-ins when the run is behind schedule.
func runRamp(ctx context.Context, o Options, p Plan, r rampSpec, dir string, res *Results, say func(string, ...any), scale float64) error {
	w, err := NewWorld(o.Latency, p.HBT, memoryBase())
	if err != nil {
		return err
	}
	defer w.Close()
	log, src, errLines, err := fleetLogger(filepath.Join(dir, "fleet-"+r.Name+".log"))
	if err != nil {
		return err
	}
	defer errLines.Close()
	f := NewFleet(w, r.benchConfig, log)
	defer f.Close()
	rampStart := time.Now()
	stops := append([]int(nil), r.Sizes...)
	for _, s := range r.P5 {
		if !containsInt(stops, s.N) {
			stops = append(stops, s.N)
		}
	}
	sortInts(stops)
	for si, n := range stops {
		t0 := time.Now()
		if err := f.Add(ctx, n-f.Size(), 32); err != nil {
			return fmt.Errorf("%s fleet of %d: %w", r.Name, n, err)
		}
		d := time.Since(t0)
		// Live memory of the whole fleet (daemons, workers, metadata
		// services and the shared fakes) after a collection.
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		live := float64(ms.HeapInuse+ms.StackInuse) / (1 << 20)
		res.add(func(rs *Results) { rs.noteStartup(r.Name, n, d, live) })
		var mass []p5Spec
		for _, s := range r.P5 {
			if s.N == n {
				mass = append(mass, s)
			}
		}
		// The new daemons' first polls. A paced daemon long-polls once at
		// start-up, then once per idle interval: the measurements wait
		// until that start-up poll is over. A policy arm counts its idle
		// traffic meanwhile.
		settle := time.Second
		if r.paced() {
			settle = r.longPoll() + time.Second
		}
		var idle *IdleResult
		if r.Policy && len(mass) > 0 {
			settle = max(settle, r.IdleWindow+time.Second)
			time.Sleep(time.Second)
			ir := w.measureIdle(ctx, r.Name, n, settle-time.Second)
			idle = &ir
		} else {
			time.Sleep(settle)
		}
		if containsInt(r.Sizes, n) {
			co := r.Cell[n]
			if r.Mode != "imds" && scale < 1 {
				co.Budget = max(5*time.Second, time.Duration(float64(co.Budget)*scale))
				co.TrialTimeout = max(10*time.Second, time.Duration(float64(co.TrialTimeout)*scale))
			}
			if r.Mode != "imds" && !r.Policy && n >= 1000 && scale < 0.3 {
				say("P1 %-12s N=%-4d skipped: behind schedule", r.Name, n)
				res.add(func(rs *Results) { rs.Skipped = append(rs.Skipped, fmt.Sprintf("P1 %s at %d nodes", r.Name, n)) })
			} else {
				c := runP1Cell(ctx, f, src, co)
				c.Config = r.Name
				say("P1 %-12s N=%-4d (in-process): %s", r.Name, n, c.short())
				res.add(func(rs *Results) { rs.P1 = append(rs.P1, c) })
			}
		}
		if idle != nil {
			// Idle cycles seen in this fleet so far, up to its scale-in.
			w.idleCycles(idle, rampStart, r.longPoll())
			ir := *idle
			say("idle %-11s N=%-4d %.2f SQS requests per daemon per minute in %.0f s (%d open polls on average); steady: %.2f per minute (%d idle cycles, median %.1f s)",
				r.Name, n, ir.PerDaemonPerMin, ir.WindowS, int(ir.OpenPolls), ir.SteadyPerMin, ir.Cycles, ir.Cycle.P50)
			res.add(func(rs *Results) { rs.Idle = append(rs.Idle, ir) })
		}
		for _, s := range mass {
			so := s.Opts
			so.K, so.Last = s.K, si == len(stops)-1
			if scale < 1 {
				so.ReactLimit = max(20*time.Second, time.Duration(float64(so.ReactLimit)*scale))
			}
			p5 := runP5(ctx, f, src, so)
			p5.Config = r.Name
			say("P5 %-11s N=%d K=%d: all reacted in %.1fs (%d/%d), %d SQS requests, max receive count %d, owners received %d/%d (last %.1fs), non-owner deletes of live actions %d, left %d",
				r.Name, s.N, s.K, p5.AllReactedS, p5.Reacted, p5.K, p5.SQSRequests, p5.MaxReceive, p5.OwnerReceived, p5.Messages, p5.AllOwnersS, p5.NonOwnerLive, p5.Undeleted)
			res.add(func(rs *Results) { rs.P5 = append(rs.P5, p5) })
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	res.add(func(rs *Results) {
		rs.DaemonErrorLines[r.Name] = errLines.lines.Load()
		rs.FleetS[r.Name] = time.Since(rampStart).Seconds()
	})
	return nil
}

func containsInt(xs []int, x int) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

func sortInts(xs []int) {
	for i := 1; i < len(xs); i++ {
		for j := i; j > 0 && xs[j] < xs[j-1]; j-- {
			xs[j], xs[j-1] = xs[j-1], xs[j]
		}
	}
}

// short is a one-line summary for the progress log.
func (c P1Cell) short() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d trials, p50 %.3fs p95 %.3fs p99 %.3fs", c.P1.N, c.P1.P50, c.P1.P95, c.P1.P99)
	if c.P1.Censored > 0 {
		fmt.Fprintf(&b, " (%d censored)", c.P1.Censored)
	}
	if c.Receives.N > 0 {
		fmt.Fprintf(&b, ", receives mean %.0f max %d", c.Receives.Mean, c.Receives.Max)
	}
	fmt.Fprintf(&b, ", P2 p50 %.3fs p99 %.3fs, %.2f cores, %.0fs", c.P2.P50, c.P2.P99, c.CPUCores, c.WallS)
	return b.String()
}
