// Command bench measures scaledownd against the wire-level test peers and
// writes BENCHMARKS.md (tables), bench/results.json and bench/p1.png for
// `make bench`; docs/benchmarks.md is the method. -quick is a smoke run.
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/scaledownd/scaledownd/internal/config"
	"github.com/scaledownd/scaledownd/internal/testenv"
)

// Options are the bench's inputs.
type Options struct {
	Quick                    bool
	Latency, Budget          time.Duration
	Binary, Lifecycled       string
	Out, JSON, Chart         string
	GoBench, Before, WorkDir string
	Since                    float64 // unix time `make bench` started
	Phases                   map[string]bool
	Progress                 func(format string, args ...any)
}

// runs reports whether a phase is to run.
func (o Options) runs(phase string) bool { return o.Phases == nil || o.Phases[phase] }

func defaultOptions() Options {
	return Options{Latency: 10 * time.Millisecond, Budget: 9 * time.Minute, Binary: "bin/scaledownd",
		Out: "BENCHMARKS.md", JSON: "bench/results.json", Chart: "bench/p1.png"}
}

func main() {
	o := defaultOptions()
	flag.BoolVar(&o.Quick, "quick", false, "smoke run: tiny fleets, few trials, short windows (seconds)")
	flag.DurationVar(&o.Budget, "budget", o.Budget, "time the run may take, from -since if given; the sqs and both cells shrink when it falls behind")
	flag.StringVar(&o.Binary, "binary", o.Binary, "the scaledownd binary for the 1-node and idle runs")
	flag.StringVar(&o.Lifecycled, "lifecycled", "", "the lifecycled binary P3 runs beside scaledownd (empty: not measured)")
	flag.StringVar(&o.Out, "out", o.Out, "the report to write")
	flag.StringVar(&o.JSON, "results", o.JSON, "the raw results to write (JSON)")
	flag.StringVar(&o.Chart, "chart", o.Chart, "the P1 chart to write (PNG)")
	flag.StringVar(&o.GoBench, "gobench", "", "output of `go test -bench` to include")
	flag.StringVar(&o.Before, "before", "", "a results.json whose figures the report shows as \"before\"")
	flag.Float64Var(&o.Since, "since", 0, "unix time `make bench` started, to report its whole runtime")
	from := flag.String("from", "", "re-render the report and chart from this results.json instead of measuring")
	phases := flag.String("phases", "all", "comma-separated subset: p3,p4,binary,imds,sqs,both,both-always (the in-process fleets by configuration)")
	flag.Parse()
	if *phases != "all" {
		o.Phases = map[string]bool{}
		for _, ph := range strings.Split(*phases, ",") {
			o.Phases[strings.TrimSpace(ph)] = true
		}
	}
	err := func() error {
		if *from != "" {
			var r Results
			if err := readJSON(*from, &r); err != nil {
				return err
			}
			o.JSON = "" // the results stay as they are
			return r.write(o)
		}
		testenv.HermeticAWS()
		_ = os.Unsetenv("AWS_CA_BUNDLE") // it adds a parsed CA pool to every daemon
		ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer cancel()
		return run(ctx, o)
	}()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// Names of the configurations the report compares.
const (
	cfgSQS    = "sqs"
	cfgIMDS   = "imds"
	cfgBoth   = "both"        // the default: mode both, queue paced by metadata
	cfgAlways = "both-always" // mode both, aws.sqs-idle-interval=0
)

// benchConfig is one daemon configuration the bench measures.
type benchConfig struct {
	Name     string
	Mode     string        // aws.mode
	IMDS     time.Duration // aws.imds-poll-interval
	SQSIdle  time.Duration // aws.sqs-idle-interval (0: poll all the time)
	WaitTime time.Duration // aws.wait-time; 0 keeps the default (the smoke run shortens it)
}

// apply sets the configuration on a daemon's settings.
func (c benchConfig) apply(cfg *config.Config) {
	cfg.AWS.Mode, cfg.AWS.IMDSPollInterval, cfg.AWS.SQSIdleInterval = c.Mode, c.IMDS, c.SQSIdle
	cfg.AWS.WaitTime = cmp.Or(c.WaitTime, cfg.AWS.WaitTime)
}

// paced reports whether the daemon long-polls the queue only once per
// idle interval while its metadata shows it in service.
func (c benchConfig) paced() bool { return c.Mode == "both" && c.SQSIdle > 0 }

// longPoll is the daemon's long-poll wait (aws.wait-time).
func (c benchConfig) longPoll() time.Duration {
	return cmp.Or(c.WaitTime, config.Default().AWS.WaitTime)
}

// rampSpec is one in-process fleet grown through the sizes of its P1
// cells and mass scale-ins (P5). MaxReceive > 0 gives its queue a redrive
// policy. Est is how long it takes on a quiet 2-core machine: with the
// time left it scales the budgets of the sequential cells.
type rampSpec struct {
	benchConfig
	Cell       map[int]cellOpts
	P5         []p5Spec
	MaxReceive int
	Est        time.Duration
}

// Plan is how much of everything to run.
type Plan struct {
	HBT                     time.Duration // the hook's HeartbeatTimeout
	IMDS, SQSIdle, WaitTime time.Duration // the default configuration's
	Configs                 []benchConfig // 1-node runs and P3
	Ramps                   []rampSpec
	Bin                     binOpts
	P3Window                time.Duration
	P4                      []time.Duration
}

// maxReceiveCount is the redrive policy of the mass scale-ins' queues.
const maxReceiveCount = 10

func plan(o Options) Plan {
	d := config.Default()
	p := Plan{HBT: 300 * time.Second, IMDS: d.AWS.IMDSPollInterval, SQSIdle: d.AWS.SQSIdleInterval, P4: []time.Duration{300 * time.Second, 7200 * time.Second}}
	slowIMDS := 5 * time.Second
	if o.Quick {
		p.IMDS, slowIMDS, p.SQSIdle, p.WaitTime = 250*time.Millisecond, 500*time.Millisecond, 2*time.Second, time.Second
	}
	conf := func(name, mode string, imds, idle time.Duration) benchConfig {
		return benchConfig{Name: name, Mode: mode, IMDS: imds, SQSIdle: idle, WaitTime: p.WaitTime}
	}
	sqs, imds, both, always := conf(cfgSQS, "sqs", p.IMDS, 0), conf(cfgIMDS, "imds", p.IMDS, 0), conf(cfgBoth, "both", p.IMDS, p.SQSIdle), conf(cfgAlways, "both", p.IMDS, 0)
	p.Configs = []benchConfig{sqs, imds, conf("imds@"+slowIMDS.String(), "imds", slowIMDS, 0), both, always}
	cells := func(trials int, budget, timeout, follow time.Duration, sizes ...int) map[int]cellOpts {
		m := map[int]cellOpts{}
		for _, n := range sizes {
			m[n] = cellOpts{Trials: trials, Budget: budget, TrialTimeout: timeout, Stagger: 400 * time.Millisecond, FinishWait: 30 * time.Second, FollowLimit: follow}
		}
		return m
	}
	if o.Quick {
		q := []p5Spec{{N: 5, K: 2, ReactLimit: 10 * time.Second, DrainLimit: 10 * time.Second}}
		// 20 s: an sqs owner can wait out a 10 s no-spin pause, more on a busy machine.
		cell := cells(3, 5*time.Second, 20*time.Second, 5*time.Second, 5)
		p.Ramps = []rampSpec{
			{benchConfig: imds, Cell: cell, P5: q},
			{benchConfig: sqs, Cell: cell},
			{benchConfig: both, Cell: cell, P5: q, MaxReceive: maxReceiveCount},
			{benchConfig: always, Cell: cell, P5: q, MaxReceive: maxReceiveCount},
		}
		p.Bin, p.P3Window = binOpts{Trials: 2, Stagger: 100 * time.Millisecond, MaxParallel: 4, TrialTimeout: 10 * time.Second}, 4*time.Second
	} else {
		// Budgets keep `make bench` under 10 minutes on 2 cores. sqs cells
		// are short: the fake hands a message to the scheduler's pick of
		// every waiting poll, ~12 ms a hand-back; the report adds the
		// random-hand-off model.
		sqsCells := cells(20, 8*time.Second, 15*time.Second, 0, 100, 500, 1000)
		sqsCells[10] = cellOpts{Trials: 20, Budget: 10 * time.Second, TrialTimeout: 20 * time.Second, FinishWait: 30 * time.Second}
		bothCells := cells(5, 12*time.Second, 30*time.Second, 10*time.Second, 100, 500, 1000)
		both10 := cells(20, 10*time.Second, 30*time.Second, 10*time.Second, 10, 100, 500, 1000)
		maps.Copy(both10, bothCells)
		mass := func(n int) p5Spec {
			return p5Spec{N: n, K: n / 2, ReactLimit: 60 * time.Second, DrainLimit: 10 * time.Second}
		}
		half := []p5Spec{mass(100), mass(500), mass(1000)}
		p.Ramps = []rampSpec{
			{benchConfig: imds, Cell: cells(20, 30*time.Second, 30*time.Second, 0, 10, 100, 500, 1000), P5: half[2:], Est: 65 * time.Second},
			{benchConfig: sqs, Cell: sqsCells, Est: 70 * time.Second},
			{benchConfig: both, Cell: both10, P5: half, MaxReceive: maxReceiveCount, Est: 150 * time.Second},
			{benchConfig: always, Cell: bothCells, P5: half, MaxReceive: maxReceiveCount, Est: 110 * time.Second},
		}
		p.Bin, p.P3Window = binOpts{Trials: 20, Stagger: 300 * time.Millisecond, MaxParallel: 10, TrialTimeout: 30 * time.Second}, p.SQSIdle+both.longPoll()+5*time.Second
	}
	p.Bin.Latency, p.Bin.HBT, p.Bin.Binary = o.Latency, p.HBT, o.Binary
	return p
}

func run(ctx context.Context, o Options) error {
	started := time.Now()
	say := o.Progress
	if say == nil {
		say = func(format string, args ...any) {
			fmt.Printf("%7.1fs  %s\n", time.Since(started).Seconds(), fmt.Sprintf(format, args...))
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
	meter := newCPUMeter()

	// P3 watches idle binaries for a paced poll cycle beside P4 and the
	// 1-node runs (light: a few binaries at a time); the fleets wait.
	cells := make([]P1Cell, len(p.Configs)) // the 1-node runs, side by side
	if err := each(len(cells)+2, func(i int) (err error) {
		switch {
		case i == len(cells) && o.runs("p3"):
			po := p3Opts{binOpts: p.Bin, Window: p.P3Window, Settle: 3 * time.Second, Lifecycled: o.Lifecycled, Interval: p.IMDS}
			res.P3, res.Pair, err = runP3(ctx, p.Configs, p.Configs[3], po)
		case i == len(cells)+1 && o.runs("p4"):
			for _, hbt := range p.P4 {
				r, err := runP4(ctx, hbt)
				if err != nil {
					return err
				}
				res.P4 = append(res.P4, r)
			}
		case i < len(cells) && o.runs("binary"):
			cells[i], err = runP1Binary(ctx, p.Configs[i], p.Bin)
			say("P1 %-12s N=1    (binary): %s", cells[i].Config, cells[i].short())
		}
		return err
	}); err != nil {
		return err
	}
	if o.runs("binary") {
		res.P1 = append(res.P1, cells...)
	}

	// The in-process fleets share the CPU: one at a time.
	var ramps []rampSpec
	for _, r := range p.Ramps {
		if o.runs(r.Name) {
			ramps = append(ramps, r)
		}
	}
	for i, r := range ramps {
		// Scale the sequential cells to the time left, so that `make
		// bench` stays within its budget on a busy machine too.
		var est time.Duration
		for _, later := range ramps[i:] {
			est += later.Est
		}
		from, scale := started, 1.0
		if o.Since > 0 {
			from = time.Unix(0, int64(o.Since*1e9))
		}
		if left := time.Until(from.Add(o.Budget)); o.Budget > 0 && left < est {
			scale = max(0.2, left.Seconds()/est.Seconds())
			say("behind schedule: %s left for about %s of work; the sqs and both cells get %.0f %% of their time", left.Round(time.Second), est.Round(time.Second), scale*100)
		}
		if err := runRamp(ctx, o, p, r, dir, res, say, scale); err != nil {
			return err
		}
	}
	if o.GoBench != "" {
		b, err := os.ReadFile(o.GoBench)
		if err != nil {
			return err
		}
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "Benchmark") {
				res.GoBench = append(res.GoBench, strings.Join(strings.Fields(line), " "))
			}
		}
	}
	res.finish(started, meter, o.Since)
	return res.write(o)
}

// runRamp grows one fleet through the sizes, measuring P1/P2 at each and
// P5 where a spec asks for that size. scale (≤ 1) shrinks the budgets of
// the sequential cells and of the mass scale-ins when the run is behind.
func runRamp(ctx context.Context, o Options, p Plan, r rampSpec, dir string, res *Results, say func(string, ...any), scale float64) error {
	w, err := NewWorld(o.Latency, p.HBT, memoryBase(), r.MaxReceive)
	if err != nil {
		return err
	}
	defer w.Close()
	logf, err := os.Create(filepath.Join(dir, "fleet-"+r.Name+".log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), logf, zapcore.ErrorLevel))
	f := &Fleet{W: w, Conf: r.benchConfig, Log: log, nodes: map[string]*Node{}}
	defer f.Close()
	stops := slices.Collect(maps.Keys(r.Cell))
	for _, s := range r.P5 {
		stops = append(stops, s.N)
	}
	slices.Sort(stops)
	stops = slices.Compact(stops)
	for si, n := range stops {
		if err := f.Add(ctx, n-f.Size()); err != nil {
			return fmt.Errorf("%s fleet of %d: %w", r.Name, n, err)
		}
		// The new daemons' first polls. A paced daemon long-polls once at
		// start-up, then once per idle interval: the measurements wait
		// until that start-up poll is over.
		settle := time.Second
		if r.paced() {
			settle = r.longPoll() + time.Second
		}
		time.Sleep(settle)
		if co, ok := r.Cell[n]; ok {
			if r.Mode != "imds" && scale < 1 {
				co.Budget = max(5*time.Second, time.Duration(float64(co.Budget)*scale))
				co.TrialTimeout = max(10*time.Second, time.Duration(float64(co.TrialTimeout)*scale))
			}
			c := runP1Cell(ctx, f, co)
			say("P1 %-12s N=%-4d (in-process): %s", r.Name, n, c.short())
			res.P1 = append(res.P1, c)
		}
		for _, s := range r.P5 {
			if s.N != n {
				continue
			}
			if scale < 1 {
				s.ReactLimit = max(20*time.Second, time.Duration(float64(s.ReactLimit)*scale))
			}
			p5 := runP5(ctx, f, s, r.MaxReceive, si == len(stops)-1)
			say("P5 %-11s N=%d K=%d: all reacted in %.1fs (%d), %d SQS requests, owners received %d, dead-lettered %d, non-owner deletes of live actions %d",
				r.Name, s.N, s.K, p5.AllReactedS, p5.Reacted, p5.SQSRequests, p5.OwnerReceived, p5.DeadLettered, p5.NonOwnerLive)
			res.P5 = append(res.P5, p5)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return nil
}

// each runs fn(0) … fn(n-1) side by side and joins their errors.
func each(n int, fn func(i int) error) error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = fn(i) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// short is a one-line summary for the progress log.
func (c P1Cell) short() string {
	return fmt.Sprintf("%d trials (%d censored), p50 %.3fs p99 %.3fs, receives mean %.0f, owner wait p50 %.3fs, P2 p99 %.3fs, %.2f cores, %.0fs",
		c.P1.N, c.P1.Censored, c.P1.P50, c.P1.P99, c.Receives.Mean, c.OwnerWait.P50, c.P2.P99, c.CPUCores, c.WallS)
}

// machine describes where the figures were taken.
func machine() string {
	var cpu string
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return fmt.Sprintf("%d cores, %s, Linux %s, %s", runtime.NumCPU(), cpu, strings.TrimSpace(string(kernel)), runtime.Version())
}
