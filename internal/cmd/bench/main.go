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
	phases := flag.String("phases", "all", "comma-separated subset to run: p3,p4,binary,imds,sqs,both (for debugging; the report is then partial)")
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

// Plan is how much of everything to run.
type Plan struct {
	HBT          time.Duration // the simulated hook's HeartbeatTimeout
	IMDSInterval time.Duration // aws.imds-poll-interval (the default, 5 s)
	FastIMDS     time.Duration // the shorter interval also measured
	Ramps        []rampSpec    // in-process fleets, one configuration each
	Cell         map[int]cellOpts
	Bin          binOpts
	BinModes     []binMode
	P3Window     time.Duration
	P3           []p3Config
	P4           []time.Duration
}

// binMode is one configuration of the 1-node runs.
type binMode struct {
	Name, Mode string
	IMDS       time.Duration
}

// rampSpec is one in-process fleet grown through Sizes (P1 at each) with
// mass scale-ins (P5) at the sizes they name.
type rampSpec struct {
	Name, Mode string
	IMDS       time.Duration
	Sizes      []int
	P5         []p5Spec
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
	p := Plan{
		HBT:          300 * time.Second,
		IMDSInterval: 5 * time.Second,
		FastIMDS:     time.Second,
		P4:           []time.Duration{300 * time.Second, 7200 * time.Second},
	}
	fast := func(mode string) string { return mode + "@" + p.FastIMDS.String() }
	if o.Quick {
		p.IMDSInterval, p.FastIMDS = 500*time.Millisecond, 250*time.Millisecond
		q := []p5Spec{{N: 5, K: 2, Opts: p5Opts{ReactLimit: 10 * time.Second, DrainLimit: 10 * time.Second}}}
		p.Ramps = []rampSpec{
			{"imds", "imds", p.IMDSInterval, []int{5}, q, 0},
			{"sqs", "sqs", p.IMDSInterval, []int{5}, q, 0},
			{"both", "both", p.IMDSInterval, []int{5}, q, 0},
		}
		p.Cell = map[int]cellOpts{5: {Trials: 3, Budget: 5 * time.Second, TrialTimeout: 10 * time.Second, Stagger: 100 * time.Millisecond, FinishWait: 10 * time.Second}}
		p.Bin = binOpts{Trials: 2, Stagger: 100 * time.Millisecond, MaxParallel: 4, TrialTimeout: 10 * time.Second}
		p.P3Window = 2 * time.Second
	} else {
		seq := func(budget, timeout time.Duration) cellOpts {
			return cellOpts{Trials: 20, Budget: budget, TrialTimeout: timeout, Stagger: 400 * time.Millisecond, FinishWait: 30 * time.Second}
		}
		// Budgets keep `make bench` under 10 minutes on 2 cores. In sqs and
		// both modes the fake SQS wakes every waiting poll for each change
		// and serves them under one lock, so a hand-back costs ~18 ms at
		// 10–100 nodes but ~40 ms at 500 and ~95 ms at 1,000: those cells
		// get few trials, and the report adds the random-hand-off model.
		p.Cell = map[int]cellOpts{
			10:   seq(30*time.Second, 30*time.Second),
			100:  seq(25*time.Second, 30*time.Second),
			500:  seq(25*time.Second, 30*time.Second),
			1000: seq(20*time.Second, 30*time.Second),
		}
		mass := p5Opts{ReactLimit: 60 * time.Second, DrainLimit: 30 * time.Second}
		all := []int{10, 100, 500, 1000}
		p.Ramps = []rampSpec{
			{"imds", "imds", p.IMDSInterval, all, []p5Spec{{200, 100, mass}, {1000, 500, mass}}, 95 * time.Second},
			{fast("imds"), "imds", p.FastIMDS, []int{500}, []p5Spec{{1000, 500, mass}}, 35 * time.Second},
			{"sqs", "sqs", p.IMDSInterval, all, []p5Spec{{200, 100, mass}}, 150 * time.Second},
			{"both", "both", p.IMDSInterval, all, []p5Spec{{200, 100, mass}}, 110 * time.Second},
		}
		p.Bin = binOpts{Trials: 20, Stagger: 300 * time.Millisecond, MaxParallel: 10, TrialTimeout: 30 * time.Second}
		p.P3Window = 60 * time.Second
	}
	p.BinModes = []binMode{
		{"sqs", "sqs", p.IMDSInterval},
		{"imds", "imds", p.IMDSInterval},
		{"both", "both", p.IMDSInterval},
		{fast("imds"), "imds", p.FastIMDS},
		{fast("both"), "both", p.FastIMDS},
	}
	p.P3 = []p3Config{
		{"sqs", "sqs", p.IMDSInterval},
		{"imds", "imds", p.IMDSInterval},
		{"both", "both", p.IMDSInterval},
		{fast("imds"), "imds", p.FastIMDS},
	}
	p.Bin.Latency, p.Bin.HBT, p.Bin.IMDSInterval = o.Latency, p.HBT, p.IMDSInterval
	p.Bin.Binary = o.Binary
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
				bo.IMDSInterval, bo.Name = bm.IMDS, bm.Name
				cells[i], errs[i] = runP1Binary(ctx, bm.Mode, bo)
				cells[i].Config = bm.Name
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
		if o.runs(r.Mode) || o.runs(r.Name) {
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
				say("behind schedule: %s left for about %s of work; the sqs and both cells get %.0f %% of their time", left.Round(time.Second), est, scale*100)
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
// P5 where a spec asks for that size.
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
	f := NewFleet(w, r.Mode, log, r.IMDS)
	defer f.Close()
	stops := append([]int(nil), r.Sizes...)
	for _, s := range r.P5 {
		if !containsInt(stops, s.N) {
			stops = append(stops, s.N)
		}
	}
	sortInts(stops)
	for _, n := range stops {
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
		time.Sleep(time.Second) // the new daemons' first polls
		if containsInt(r.Sizes, n) {
			co := p.Cell[n]
			if r.Mode != "imds" && scale < 1 {
				co.Budget = max(5*time.Second, time.Duration(float64(co.Budget)*scale))
				co.TrialTimeout = max(10*time.Second, time.Duration(float64(co.TrialTimeout)*scale))
			}
			if r.Mode != "imds" && n >= 1000 && scale < 0.75 {
				say("P1 %-12s N=%-4d skipped: behind schedule", r.Name, n)
				res.add(func(rs *Results) { rs.Skipped = append(rs.Skipped, fmt.Sprintf("P1 %s at %d nodes", r.Name, n)) })
				continue
			}
			c := runP1Cell(ctx, f, src, co)
			c.Config = r.Name
			say("P1 %-12s N=%-4d (in-process): %s", r.Name, n, c.short())
			res.add(func(rs *Results) { rs.P1 = append(rs.P1, c) })
		}
		for _, s := range r.P5 {
			if s.N != n {
				continue
			}
			so := s.Opts
			so.K = s.K
			if scale < 1 {
				so.ReactLimit = max(20*time.Second, time.Duration(float64(so.ReactLimit)*scale))
			}
			p5 := runP5(ctx, f, src, so)
			p5.Config = r.Name
			say("P5 %-8s N=%d K=%d: all reacted in %.1fs (%d/%d), %d SQS requests, max receive count %d, non-owner deletes of live actions %d",
				r.Name, s.N, s.K, p5.AllReactedS, p5.Reacted, p5.K, p5.SQSRequests, p5.MaxReceive, p5.NonOwnerLive)
			res.add(func(rs *Results) { rs.P5 = append(rs.P5, p5) })
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	res.add(func(rs *Results) { rs.DaemonErrorLines[r.Name] = errLines.lines.Load() })
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
