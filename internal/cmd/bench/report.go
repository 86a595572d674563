package main

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// Targets the report compares against.
const (
	targetP1One    = 1.0  // s, 1 node
	targetP1At500  = 2.0  // s, p99 at 500 nodes, default mode
	targetP2       = 1.0  // s
	targetRSS      = 16.0 // MiB
	targetCPU      = 0.05 // % of one core
	targetAWSPerMn = 3.0  // requests per minute (0 in imds mode)
	targetHBPerTO  = 2.0  // heartbeats per HeartbeatTimeout
	targetP5       = 5.0  // s, every targeted node reacts
)

// secs formats seconds for a table: milliseconds below one second.
func secs(x float64) string {
	switch {
	case math.IsNaN(x):
		return "–"
	case x < 1:
		return fmt.Sprintf("%.0f ms", x*1000)
	case x < 10:
		return fmt.Sprintf("%.2f s", x)
	default:
		return fmt.Sprintf("%.1f s", x)
	}
}

// pct formats a percentile that may be a lower bound (censored trials).
func pct(d Dist, x float64) string {
	if d.N == 0 {
		return "–"
	}
	if d.Censored > 0 && x >= d.Max {
		return "≥ " + secs(x)
	}
	return secs(x)
}

// cell is a configuration's P1 cell at fleet size n.
func (r *Results) cell(config string, n int) (P1Cell, bool) {
	return find(r.P1, func(c P1Cell) bool { return c.Config == config && c.N == n })
}

func (r *Results) p3(config string) (P3Result, bool) {
	return find(r.P3, func(p P3Result) bool { return p.Config == config })
}

func (r *Results) p5At(config string, n int) (P5Result, bool) {
	return find(r.P5, func(p P5Result) bool { return p.Config == config && p.N == n })
}

// dur writes seconds from the results as a setting is written: 500ms,
// 1s, 1m (not 1m0s).
func dur(s float64) string {
	t := time.Duration(s * float64(time.Second)).String()
	if strings.HasSuffix(t, "m0s") {
		t = strings.TrimSuffix(t, "0s")
	}
	if strings.HasSuffix(t, "h0m") {
		t = strings.TrimSuffix(t, "0m")
	}
	return t
}

// slowName names the old default metadata poll (imds@5s).
func (r *Results) slowName() string { return "imds@" + dur(r.SlowIMDSS) }

func (r *Results) idleAt(config string, n int) (IdleResult, bool) {
	return find(r.Idle, func(i IdleResult) bool { return i.Config == config && i.N == n })
}

// steadyIdle is a configuration's SQS requests per daemon per minute on a
// quiet queue: from the idle cycles of its largest fleet.
func (r *Results) steadyIdle(config string) (IdleResult, bool) {
	var best IdleResult
	found := false
	for _, i := range r.Idle {
		if i.Config == config && i.Cycles > 0 && (!found || i.N > best.N) {
			best, found = i, true
		}
	}
	return best, found
}

// check is one target for one configuration.
type check struct {
	name     string
	measured string
	ok       bool
	known    bool
	reaction bool // a reaction target (P1, P5), as opposed to footprint
}

// candidate is a configuration that could be the default.
type candidate struct {
	config         string
	checks         []check
	score, known   int // all targets
	react, reactOf int // reaction targets
	p5Reqs         int64
	hasP5          bool
}

func (r *Results) evaluate(config string) candidate {
	c := candidate{config: config}
	add := func(ch check) {
		c.checks = append(c.checks, ch)
		if !ch.known {
			return
		}
		c.known++
		if ch.reaction {
			c.reactOf++
		}
		if ch.ok {
			c.score++
			if ch.reaction {
				c.react++
			}
		}
	}
	const (
		nameOne  = "P1 1 node p99 ≤ 1 s"
		name500  = "P1 500 nodes p99 ≤ 2 s"
		nameP3   = "P3 idle: ≤ 16 MiB, ≤ 0.05 % CPU, ≤ 3 AWS req/min (0 in imds)"
		nameMass = "P5 500 of 1,000 all within 5 s, 0 non-owner deletions"
	)
	if b, ok := r.cell(config, 1); ok {
		add(check{nameOne, secs(b.P1.P99) + missBy(b.P1.P99, targetP1One, ""), b.P1.P99 <= targetP1One && b.P1.Censored == 0, true, true})
	} else {
		add(check{name: nameOne, measured: "not measured", reaction: true})
	}
	if m, ok := r.cell(config, 500); ok {
		add(check{name500, pct(m.P1, m.P1.P99) + missBy(m.P1.P99, targetP1At500, ""), m.P1.P99 <= targetP1At500 && m.P1.Censored == 0, true, true})
	} else {
		add(check{name: name500, measured: "not measured", reaction: true})
	}
	if p, ok := r.p3(config); ok {
		aws := targetAWSPerMn
		if strings.HasPrefix(config, "imds") {
			aws = 0
		}
		awsRate := p.AWSPerMin
		awsText := fmt.Sprintf("%.1f AWS req/min", p.AWSPerMin)
		if st, ok := r.steadyIdle(config); ok && config == cfgBoth {
			// A 60 s window sees 0 or 1 of a paced daemon's polls: the
			// fleet's idle cycles give its rate.
			awsRate = max(awsRate, st.SteadyPerMin)
			awsText = fmt.Sprintf("%.1f AWS req/min in the %.0f s window, %.2f steady (one long poll per %.0f s)", p.AWSPerMin, p.WindowS, st.SteadyPerMin, st.Cycle.Mean)
		}
		var over []string
		if p.PeakRSSMiB > targetRSS {
			over = append(over, fmt.Sprintf("RSS by %.1f MiB", p.PeakRSSMiB-targetRSS))
		}
		if p.CPUPercent > targetCPU {
			over = append(over, fmt.Sprintf("CPU by %.3f %%", p.CPUPercent-targetCPU))
		}
		if awsRate > aws+0.01 {
			over = append(over, fmt.Sprintf("AWS requests by %.1f/min", awsRate-aws))
		}
		text := fmt.Sprintf("%.1f MiB, %.3f %% CPU, %s", p.PeakRSSMiB, p.CPUPercent, awsText)
		if len(over) > 0 {
			text += " (misses: " + strings.Join(over, ", ") + ")"
		}
		add(check{nameP3, text, len(over) == 0, true, false})
	} else {
		add(check{name: nameP3, measured: "not measured"})
	}
	if p, ok := r.p5At(config, 1000); ok {
		c.p5Reqs, c.hasP5 = p.SQSRequests, true
		text := fmt.Sprintf("last after %s, %d non-owner deletions of live actions", pctP5(p), p.NonOwnerLive)
		if p.Reacted == p.K {
			text += missBy(p.AllReactedS, targetP5, "")
		}
		add(check{nameMass, text, p.Reacted == p.K && p.AllReactedS <= targetP5 && p.NonOwnerLive == 0, true, true})
	} else {
		add(check{name: nameMass, measured: "not measured at 1,000 nodes (see P5)", reaction: true})
	}
	return c
}

func pctP5(p P5Result) string {
	if p.Reacted < p.K {
		return "≥ " + secs(p.AllReactedS)
	}
	return secs(p.AllReactedS)
}

// footprintOK reports whether the candidate met its P3 target.
func (c candidate) footprintOK() bool {
	for _, ch := range c.checks {
		if !ch.reaction && ch.known {
			return ch.ok
		}
	}
	return false
}

// candidates are the configurations the verdict compares, the default
// first: the seed's shared queue, metadata alone, and mode both polling
// the queue all the time.
func (r *Results) candidates() []candidate {
	var cs []candidate
	for _, cfg := range []string{cfgBoth, cfgSQS, cfgIMDS, cfgAlways} {
		cs = append(cs, r.evaluate(cfg))
	}
	return cs
}

// best ranks the candidates by the report's rule. Reaction comes first — a
// termination noticed late is a drain that starts late, and may not finish
// — so: most reaction targets met (P1 at 1 and 500 nodes, P5 at 1,000);
// then the least SQS traffic in the mass scale-in at 1,000 (zero for imds;
// a shared queue's cost grows with the pollers); then the idle footprint.
func best(cs []candidate) candidate {
	better := func(a, b candidate) bool {
		if a.react != b.react {
			return a.react > b.react
		}
		if a.hasP5 != b.hasP5 {
			return a.hasP5
		}
		if a.p5Reqs != b.p5Reqs {
			return a.p5Reqs < b.p5Reqs
		}
		return a.footprintOK() && !b.footprintOK()
	}
	top := cs[0]
	for _, c := range cs[1:] {
		if better(c, top) {
			top = c
		}
	}
	return top
}

func (r *Results) markdown(o Options) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	cands := r.candidates()
	def := cands[0]

	w("# scaledownd benchmarks\n\n")
	w("Written by `%s` (`internal/cmd/bench`); do not edit by hand — rerun it. Raw figures: `bench/results.json`; chart: `bench/p1.png`.\n\n", r.Command)
	if r.Quick {
		w("> **Smoke run (`-quick`)**: tiny fleets, few trials, a %s idle window, a %s metadata poll, a %s long poll and a %s queue idle interval. These figures only show that the tool works.\n\n",
			minsec(r.firstP3Window()), dur(r.IMDSPollS), dur(r.WaitTimeS), dur(r.SQSIdleS))
	}
	w("| | |\n|---|---|\n")
	w("| Date | %s |\n", r.Date)
	w("| Machine | %d cores (`nproc`), %.1f GiB memory, %s, %s |\n", r.Machine.NProc, r.Machine.MemGiB, r.Machine.CPU, r.Machine.Kernel)
	w("| Go | %s |\n", r.Machine.GoVersion)
	w("| Other load | other processes used %.2f cores on average during the run (load average %.1f at the start, %.1f at the end)%s |\n",
		r.OtherCores, r.LoadStart, r.LoadEnd, loadWarning(r.OtherCores))
	w("| Revision | `%s` |\n", r.Git)
	w("| Reproduce | `%s` |\n", r.Command)
	if r.MakeS > 0 {
		w("| Runtime | `make bench` %s (build, Go benchmarks and this tool; the tool alone %s) |\n", minsec(r.MakeS), minsec(r.ToolS))
	} else {
		w("| Runtime | %s (this tool) |\n", minsec(r.ToolS))
	}
	w("| Injected latency | %.0f ms per call on the fake SQS and the fake Auto Scaling (a region); none on the fake IMDS (link-local) |\n", r.LatencyMs)
	w("| Daemon settings | production defaults (`config.Default()`): `aws.mode` both, `aws.imds-poll-interval` %s, `aws.sqs-idle-interval` %s, `aws.wait-time` %s, `trino.poll-interval` %s, `aws.delete-stale` on, log level error; each configuration changes only what its name says (below); hook HeartbeatTimeout %.0f s |\n\n",
		dur(r.IMDSPollS), dur(r.SQSIdleS), dur(r.WaitTimeS), dur(r.TrinoPollS), r.HBTs)
	w("| Configuration | Settings |\n|---|---|\n")
	w("| `%s` (the default) | mode both; the queue is long-polled once per `aws.sqs-idle-interval` (%s) while instance metadata shows the instance in service, all the time from the moment it shows it leaving (or cannot be read) — policy (b) of issue 8 |\n", cfgBoth, dur(r.SQSIdleS))
	w("| `%s` | mode both with `aws.sqs-idle-interval=0`: every daemon long-polls the queue all the time — policy (a) |\n", cfgAlways)
	w("| `%s` | mode imds: instance metadata alone, no queue |\n", cfgIMDS)
	w("| `%s` | mode imds with the old default `aws.imds-poll-interval=%s` (1-node and idle runs only: what a metadata poll costs) |\n", r.slowName(), dur(r.SlowIMDSS))
	w("| `%s` | mode sqs: the seed's design, every daemon long-polls the shared queue and hands back the others' messages |\n\n", cfgSQS)

	// ---- verdict
	w("## Verdict\n\n")
	w("%s\n\n", r.verdict(def, cands))
	w("Targets (benchmarks, not unit-test assertions), for the default and the configurations it is compared with:\n\n")
	w("| Target | %s |\n|---|%s\n", strings.Join(configNames(cands), " | "), strings.Repeat("---|", len(cands)))
	for i := range cands[0].checks {
		row := []string{cands[0].checks[i].name}
		for _, c := range cands {
			ch := c.checks[i]
			mark := "–"
			if ch.known {
				mark = "✅"
				if !ch.ok {
					mark = "❌"
				}
			}
			row = append(row, mark+" "+ch.measured)
		}
		w("| %s |\n", strings.Join(row, " | "))
	}
	w("| Reaction targets met | %s |\n", strings.Join(reactScores(cands), " | "))
	w("| All targets met | %s |\n\n", strings.Join(scores(cands), " | "))
	w("✅ met, ❌ missed, – not measured in this configuration. The report ranks configurations by reaction first — a termination noticed late is a drain that starts late — then by the SQS traffic of the mass scale-in at 1,000 nodes, then by the idle footprint.\n\n")
	r.targetsTable(&b)

	// ---- method
	w("## How it was measured\n\n")
	w("- **Peers**: `internal/testpeers` — the fake SQS (AWS JSON 1.0), fake Auto Scaling (Query/XML) and one fake IMDSv2 per instance, with one fake Trino 476 worker per instance. Every daemon talks to them through its real clients (aws-sdk-go-v2, net/http), as in production.\n")
	w("- **1 node**: the real binary (`%s`) as a subprocess configured by `SCALEDOWND_*` variables, state directory on disk. Each trial is its own 1-node world (own queue, instance, worker, metadata service), so trials may overlap; the 1-node runs share the machine with the idle binaries of P3.\n", o.Binary)
	w("- **10–1,000 nodes**: `daemon.Run` once per simulated instance in one process (each with its own instance id in the fake group, own worker, own IMDS in imds/both modes, own metrics registry), sharing one queue. Every daemon reaches the queue through its own path of a recording pass-through (`/d/<n>`), so each `DeleteMessage` is attributed to the daemon that sent it. State directories are on tmpfs: on disk, 500 daemons' fsyncs queue behind each other on this machine's one disk (a 500-node scale-in took 14 s instead of 6 s), where real instances each have their own.\n")
	w("- **P1** starts when the lifecycle message is put on the queue and/or the instance's `autoscaling/target-lifecycle-state` turns `Terminated` (the same instant in mode both; the instance enters `Terminating:Wait` just before), and ends when the target's worker records `PUT /v1/info/state DRAINING`. It excludes how long AWS takes to deliver either signal (not documented for IMDS; not simulated for SQS). In sqs and both modes terminations run one at a time: in sqs mode the next starts once the owner holds its message; in both modes once the message is off the queue (deleted by its owner after the drain, or by another daemon as stale once the action ended), and each such termination's queue traffic is counted from the send to that deletion. In imds mode a new termination starts every 0.4 s, because nothing but the CPU is shared between targets. The target is a random idle node; a terminated node is replaced by a new instance, so the fleet keeps its size.\n")
	w("- **Paced daemons** (`%s`) long-poll once at start-up and then once per idle interval, so the measurements on a fleet wait until the start-up polls are over (%s after the fleet reached its size), and the 1-node runs of the real binary land the termination after that too: the termination finds the daemon as it is most of the time (not polling; in the other %.0f %% of the time its open long poll takes the message at once, as in `%s`). The daemons of one fleet size start together, so their idle polls stay in step: how many are polling when a message is sent (\"open receives\") is measured, not assumed.\n",
		cfgBoth, dur(r.WaitTimeS+1), 100*r.WaitTimeS/(r.WaitTimeS+r.SQSIdleS), cfgAlways)
	w("- **Owner's message wait** runs from the message being sent to the first `ReceiveMessage` answer that hands the owner its own message: the pass-through reads every receive's answer on its way to the daemon.\n")
	w("- **P2** runs from the worker's `DRAINED` (its state history) to the arrival of `CompleteLifecycleAction` at the fake Auto Scaling (before its injected latency), for every completed termination of P1. Each worker's `shutdown.grace-period` is drawn from 50–550 ms, so `DRAINED` lands at a random point of the daemon's %s poll cycle, as the end of the last query does.\n", dur(r.TrinoPollS))
	w("- **Percentiles** are nearest-rank: with 20 trials p95 is the 19th value and p99 the largest. Where a trial did not react within its limit it counts at that limit and the percentile is shown as a lower bound (≥).\n")
	w("- **Hand-off in the fake SQS.** When a message becomes visible the fake wakes every waiting long poll and the Go scheduler decides who takes it; it serves them under one lock. This is not how SQS is documented to behave (it is not documented at all), and it makes a hand-back cost about %s on the critical path at 10–100 nodes but %s at 500 and %s at 1,000 on this machine. Where the fake is the bottleneck, the tables add the random-pick model (receive count R ~ Geometric(1/N): p50 ≈ 0.69 N, p95 ≈ 3 N, p99 ≈ 4.6 N) times the hand-back cost measured at 100 nodes, labelled **[model]**. `/work/shared/reference/fleetsim.md` measured 11.9 ms per hand-back with a random hand-off fake and no stale check.\n\n",
		bounceAt(r, 100), bounceAt(r, 500), bounceAt(r, 1000))

	if len(r.Skipped) > 0 {
		w("**Left out to keep within the time budget** (the machine was busy): %s.\n\n", strings.Join(r.Skipped, "; "))
	}

	// ---- P1
	w("## P1 — reaction latency\n\n")
	w("Lifecycle message visible in SQS (or IMDS state flipped) → the worker receives `PUT DRAINING`.\n\n")
	w("![P1 p99 by fleet size](bench/p1.png)\n\n")
	w("Chart: p99 by fleet size, both axes logarithmic; dashed lines at the 1 s and 2 s targets; a hollow square is a lower bound (a trial hit its limit).\n\n")
	w("| Line | Configuration |\n|---|---|\n| red | `%s` (one shared queue) |\n| blue | `%s` (instance metadata, %s poll) |\n| green | `%s` (the default: first signal wins, %s poll, queue paced) |\n| orange | `%s` (first signal wins, %s poll, queue polled all the time) |\n\n",
		cfgSQS, cfgIMDS, dur(r.IMDSPollS), cfgBoth, dur(r.IMDSPollS), cfgAlways, dur(r.IMDSPollS))
	w("| Config | N | Runner | Trials | p50 | p95 | p99 | max | Started by (sqs/imds) | Receive count mean / max | Hand-back | CPU: bench / other processes (cores) |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, c := range r.P1 {
		recv := "–"
		if c.Receives.N > 0 {
			recv = fmt.Sprintf("%.0f / %d", c.Receives.Mean, c.Receives.Max)
		}
		bounce := "–"
		if c.BounceMs > 0 {
			bounce = fmt.Sprintf("%.0f ms", c.BounceMs)
		}
		trials := fmt.Sprintf("%d", c.P1.N)
		if c.P1.N < c.Planned || c.Note != "" {
			trials = fmt.Sprintf("%d of %d*", c.P1.N, c.Planned)
		}
		w("| %s | %d | %s | %s | %s | %s | %s | %s | %d / %d | %s | %s | %.2f / %.2f |\n", c.Config, c.N, c.Runner, trials,
			pct(c.P1, c.P1.P50), pct(c.P1, c.P1.P95), pct(c.P1, c.P1.P99), pct(c.P1, c.P1.Max), c.SourceSQS, c.SourceIMDS, recv, bounce, c.CPUCores, c.OtherCores)
	}
	w("\n\\* fewer trials than planned: the cell's time budget ended it (in sqs and both modes terminations run one at a time, each until its message stops circulating), or a trial hit its limit.\n\n")
	r.sqsModel(&b)

	// ---- P2
	w("## P2 — completion overhead\n\n")
	w("`DRAINED` → `CompleteLifecycleAction` received by Auto Scaling.\n\n")
	w("| Sample | n | p50 | p95 | p99 | max |\n|---|---|---|---|---|---|\n")
	w("| all terminations | %d | %s | %s | %s | %s |\n", r.P2.All.N, secs(r.P2.All.P50), secs(r.P2.All.P95), secs(r.P2.All.P99), secs(r.P2.All.Max))
	w("| real binary, 1 node | %d | %s | %s | %s | %s |\n", r.P2.Binary.N, secs(r.P2.Binary.P50), secs(r.P2.Binary.P95), secs(r.P2.Binary.P99), secs(r.P2.Binary.Max))
	for _, m := range sortedKeys(r.P2.ByMode) {
		d := r.P2.ByMode[m]
		w("| mode %s | %d | %s | %s | %s | %s |\n", m, d.N, secs(d.P50), secs(d.P95), secs(d.P99), secs(d.Max))
	}
	w("\nThe daemon reads the worker's state every `trino.poll-interval` (%s); after `DRAINED` it sends `SHUTTING_DOWN` (a local call) and then `CompleteLifecycleAction`. So P2 ≈ U(0, poll interval) + an Auto Scaling round trip and the CPU the fleet leaves: p50 ≈ half an interval, p99 about one interval.\n\n", dur(r.TrinoPollS))

	// ---- P3
	w("## P3 — idle footprint of the real binary\n\n")
	if len(r.P3) > 0 {
		w("Each configuration ran against its own peers — the %d side by side, alongside P4 and the 1-node runs; the fleets started only afterwards — and after 2 s of start-up each process was watched for %.0f s.\n\n", len(r.P3), r.P3[0].WindowS)
	}
	w("| Config | Peak RSS (VmHWM) | Steady RSS (median VmRSS) | CPU (utime+stime) | CPU (schedstat) | AWS requests/min | IMDS requests/min | AWS requests in start-up |\n|---|---|---|---|---|---|---|---|\n")
	for _, p := range r.P3 {
		w("| %s | %.1f MiB | %.1f MiB | %.3f %% | %.4f %% | %.1f (%s) | %.1f | %s |\n", p.Config, p.PeakRSSMiB, p.SteadyRSSMiB, p.CPUPercent, p.CPUPercentSched,
			p.AWSPerMin, opsText(p.AWSByOp), p.IMDSPerMin, opsText(p.StartupAWS))
	}
	w("\nCPU is %% of one core: utime+stime from `/proc/<pid>/stat` over the window (the figure compared with the target; it counts 10 ms clock ticks, ±0.017 %% over a minute), and as a finer cross-check the threads' `schedstat` run time in nanoseconds. `AWS_CA_BUNDLE`, which this machine's environment sets, was removed from the daemon's environment: it makes the SDK load a CA pool (about 2.5 MB more RSS) and is not set on a worker AMI.\n\n")
	if st, ok := r.steadyIdle(cfgBoth); ok {
		if p, ok := r.p3(cfgBoth); ok {
			w("A paced daemon (`%s`) long-polls at start-up (counted under start-up) and then once per %s + %s: a %.0f s window holds 0 or 1 of its polls (here %.0f). Its rate is one poll per cycle, %.2f requests per minute: the %d-node fleet's daemons took a mean %.1f s from one empty long poll to the next (%d cycles; see the polling policy section).\n\n",
				cfgBoth, dur(r.SQSIdleS), dur(r.WaitTimeS), p.WindowS, p.AWSPerMin*p.WindowS/60, st.SteadyPerMin, st.N, st.Cycle.Mean, st.Cycles)
		}
	}

	// ---- P4
	w("## P4 — heartbeats over a full-length drain\n\n")
	w("A worker whose queries never end, drained through the real supervisor, keeper and Auto Scaling wire protocol on a fake clock (as `internal/supervisor/longdrain_test.go`), until the deadline completes the action.\n\n")
	w("| HeartbeatTimeout | AWS cap | Completed at | Before the cap | Heartbeats | Per HeartbeatTimeout | Largest gap | Lapses | Result | Wall time |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for _, p := range r.P4 {
		w("| %.0f s | %s | %s | %.0f s | %d | %.2f | %.0f s | %d | %s | %.1f s |\n", p.HeartbeatTimeoutS, hours(p.CapS), hours(p.CompletedAtS), p.LeadS,
			p.Heartbeats, p.PerTimeout, p.LargestGapS, p.Lapses, p.Reason, p.WallS)
	}
	w("\nAWS caps an action at min(48 h, 100 × HeartbeatTimeout): with 300 s that is 8 h 20 min, not 48 h, whatever the daemon does. A lapse is a gap between heartbeats (or to completion) longer than the HeartbeatTimeout.\n\n")

	// ---- P5
	r.p5Section(&b)

	// ---- the polling policy
	r.policySection(&b, o)

	// ---- designs
	r.designs(&b)

	// ---- go benchmarks
	w("## Go benchmarks (hot paths)\n\n")
	if len(r.GoBench) == 0 {
		w("Not run (`-gobench` not given).\n\n")
	} else {
		w("`go test -run '^$' -bench . -benchmem -benchtime 300ms ./pkg/lifecycle/`, run by `make bench` before the tool on the same machine (with the other load noted above):\n\n")
		w("| Benchmark | ns/op | MB/s | B/op | allocs/op | other |\n|---|---|---|---|---|---|\n")
		for _, g := range r.GoBench {
			mbs, other := "", []string{}
			for _, k := range sortedKeys(g.Extra) {
				if k == "MB/s" {
					mbs = fmt.Sprintf("%.1f", g.Extra[k])
					continue
				}
				other = append(other, fmt.Sprintf("%.3g %s", g.Extra[k], k))
			}
			w("| `%s` | %.0f | %s | %.0f | %.0f | %s |\n", g.Name, g.NsPerOp, mbs, g.BytesPerOp, g.AllocsPerOp, strings.Join(other, ", "))
		}
		w("\n`BenchmarkClassify` classifies one body of each shape (rendered by the fake Auto Scaling's notification builders). `BenchmarkSQSSourceMessages` is the poll loop's cost per foreign message — classify, find it foreign, hand it back (visibility 0, ten per `ChangeMessageVisibilityBatch`): `stub` with an in-memory SQS (the daemon's own work), `fake-sqs` through the SDK against the fake SQS on loopback with no injected latency (its B/op and allocs/op include the fake server, which runs in the same process).\n\n")
	}

	// ---- for the lead
	r.forTheLead(&b, def)
	return b.String()
}

func loadWarning(other float64) string {
	if other < 0.2 {
		return ""
	}
	return "; **the machine was shared, so times may be inflated**: see the per-cell column"
}

func configNames(cs []candidate) []string {
	var out []string
	for _, c := range cs {
		name := "`" + c.config + "`"
		if c.config == cfgBoth {
			name += " (default)"
		}
		out = append(out, name)
	}
	return out
}

// firstP3Window is the idle window of P3, seconds.
func (r *Results) firstP3Window() float64 {
	if len(r.P3) == 0 {
		return 0
	}
	return r.P3[0].WindowS
}

func reactScores(cs []candidate) []string {
	var out []string
	for _, c := range cs {
		out = append(out, fmt.Sprintf("%d of %d", c.react, c.reactOf))
	}
	return out
}

func scores(cs []candidate) []string {
	var out []string
	for _, c := range cs {
		out = append(out, fmt.Sprintf("%d of %d", c.score, c.known))
	}
	return out
}

func minsec(s float64) string {
	d := time.Duration(s * float64(time.Second)).Round(time.Second)
	return fmt.Sprintf("%d min %02d s", int(d.Minutes()), int(d.Seconds())%60)
}

func hours(s float64) string {
	d := time.Duration(s * float64(time.Second))
	h := int(d.Hours())
	m := int(d.Minutes()) % 60
	return fmt.Sprintf("%d h %02d min", h, m)
}

func opsText(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%s %d", strings.TrimPrefix(strings.TrimPrefix(k, "sqs:"), "autoscaling:"), m[k]))
	}
	return strings.Join(parts, ", ")
}

func bounceAt(r *Results, n int) string {
	if c, ok := r.cell("sqs", n); ok && c.Receives.Mean > 0 {
		return fmt.Sprintf("%.0f ms", c.P1.Mean/c.Receives.Mean*1000)
	}
	return "(not measured)"
}

// modelBounce is the hand-back cost measured where the fake is not the
// bottleneck (100 nodes, else 10), and where it comes from.
func (r *Results) modelBounce() (float64, string) {
	for _, n := range []int{100, 10} {
		if c, ok := r.cell("sqs", n); ok && c.BounceMs > 0 {
			return c.BounceMs / 1000, fmt.Sprintf("measured here at %d nodes", n)
		}
	}
	return 0.0119, "fleetsim's figure: not measured in this run"
}

func (r *Results) modelBounceS() float64 { c, _ := r.modelBounce(); return c }

// sqsModel is the random-pick model for the shared queue.
func (r *Results) sqsModel(b *strings.Builder) {
	c, from := r.modelBounce()
	fmt.Fprintf(b, "**[model]** Shared queue (sqs) with a random hand-off, at %.1f ms per hand-back (%s):\n\n", c*1000, from)
	fmt.Fprintf(b, "| N | Receive count p50 / p95 / p99 | P1 p50 | P1 p95 | P1 p99 | P(a dead-letter queue with maxReceiveCount 10 takes the owner's message) |\n|---|---|---|---|---|---|\n")
	for _, n := range []int{10, 100, 500, 1000} {
		q50, q95, q99 := geometricQuantile(n, 0.5), geometricQuantile(n, 0.95), geometricQuantile(n, 0.99)
		fmt.Fprintf(b, "| %d | %.0f / %.0f / %.0f | %s | %s | %s | %.0f %% |\n", n, q50, q95, q99, secs(q50*c), secs(q95*c), secs(q99*c),
			100*math.Pow(1-1/float64(n), 10))
	}
	b.WriteString("\n")
}

func (r *Results) p5Section(b *strings.Builder) {
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	w("## P5 — half the fleet scaled in at once\n\n")
	w("K random nodes of N are terminated back to back (all K messages queued and/or all K metadata states flipped within milliseconds). Reaction as in P1, per node from its own termination; SQS and Auto Scaling traffic from the first termination until every message was deleted (or the limit).\n\n")
	w("| Config | N | K | All reacted after | Reaction p50 / p99 | Within 5 s | Started by (sqs/imds) | Owners that received their own message (all after) | SQS requests | Auto Scaling requests | Max receive count | Receive count > 3 / > 5 / > 10 | Messages deleted by their owner / as stale | Delete requests by non-owners: live action / ended action | Not deleted | CPU: bench / others (cores) |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, p := range r.P5 {
		w("| %s | %d | %d | %s | %s / %s | %d of %d | %d / %d | %s | %d (%s) | %d (%s) | %d | %d / %d / %d | %d / %d | **%d** / %d | %d | %.2f / %.2f |\n",
			p.Config, p.N, p.K, pctP5(p), pct(p.Reaction, p.Reaction.P50), pct(p.Reaction, p.Reaction.P99), p.WithinTarget, p.K, p.SourceSQS, p.SourceIMDS,
			ownersText(p.EventStats), p.SQSRequests, sqsOpsText(p.SQSByOp, 1), p.ASGRequests, opsText(p.ASGByOp), p.MaxReceive, p.Over3, p.Over5, p.Over10,
			p.OwnerDeletes, p.StaleCleaned, p.NonOwnerLive, p.NonOwnerEnded, p.Undeleted, p.CPUCores, p.OtherCores)
	}
	w("\nA non-owner deletion of a *live* action (its lifecycle action still pending when the delete was sent) is the one that must never happen; deletions of messages whose action had already ended are the stale-message clean-up (`aws.delete-stale`). Attribution is exact: each daemon has its own path through the pass-through, and the message id is read from the receipt handle; several daemons may send a delete for the same stale message, and only the one with the current receipt handle takes effect. In mode both an owner need not receive its message: metadata starts the drain and completion goes by instance id, so a message whose action ended first is deleted by whichever daemon receives it next.\n\n")

	// Why no mass scale-in in sqs mode.
	c, from := r.modelBounce()
	if _, ok := r.p5At(cfgSQS, 1000); !ok {
		n, k := 1000.0, 500.0
		last := n * (math.Log(k) + 0.5772) * c
		w("**Why sqs has no mass scale-in here.** 1,000 in-process daemons fit (%s), but in a shared-queue scale-in every message is received about N times until its owner gets it: at 1,000 nodes and 500 messages about N·K = 500,000 receives, each a hand-back of about %s on this machine's fake (%s), several minutes of the 10-minute budget for one cell. **[model]** at N = 1,000, K = 500 with a random hand-off: the last owner gets its message after about N·(ln K + 0.58)·c = %s; every message is received about N = 1,000 times on average, so a dead-letter queue with `maxReceiveCount` ≤ 1000 (the SQS maximum) would take about %.0f %% of them before their owner saw them. `%s` below is the measured version of the same traffic with metadata starting every drain.\n\n",
			r.fleetMemText(), secs(c), from, secs(last), 100*math.Pow(1-1/n, 1000), cfgAlways)
	}
}

// ownersText is how many owners received their own message and when the
// last of them did.
func ownersText(e EventStats) string {
	if e.Messages == 0 {
		return "–"
	}
	t := fmt.Sprintf("%d of %d", e.OwnerReceived, e.Messages)
	if e.AllOwnersS > 0 {
		t += fmt.Sprintf(" (%s)", secs(e.AllOwnersS))
	}
	return t
}

// sqsOpsText lists SQS requests by operation, divided by div (1: totals).
func sqsOpsText(m map[string]int64, div float64) string {
	short := map[string]string{"ReceiveMessage": "Receive", "ChangeMessageVisibilityBatch": "hand-back batch", "ChangeMessageVisibility": "CMV", "DeleteMessage": "Delete"}
	var parts []string
	for _, op := range sortedKeys(m) {
		name := short[op]
		if name == "" {
			name = op
		}
		if div == 1 {
			parts = append(parts, fmt.Sprintf("%s %d", name, m[op]))
		} else {
			parts = append(parts, fmt.Sprintf("%s %.1f", name, float64(m[op])/div))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// fleetMemText says how much memory the largest fleet took: the smallest
// figure among the configurations at that size (the later runs also hold
// what earlier ones left to the collector's pacing).
func (r *Results) fleetMemText() string {
	best, cfg, size := 0.0, "", 0
	for c, m := range r.FleetMemMiB {
		for n, v := range m {
			if n > size || (n == size && v < best) {
				best, cfg, size = v, c, n
			}
		}
	}
	if size == 0 {
		return "not measured"
	}
	return fmt.Sprintf("the %s run held %d daemons with their workers and metadata services in %.0f MiB of live heap and stacks", cfg, size, best)
}

func (r *Results) designs(b *strings.Builder) {
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	w("## The designs compared (same run)\n\n")
	w("| | `%s` (the default: both, queue paced) | one shared queue (`%s`) | instance metadata (`%s`, %s) | `%s` (both, queue all the time) |\n|---|---|---|---|---|\n",
		cfgBoth, cfgSQS, cfgIMDS, dur(r.IMDSPollS), cfgAlways)
	cfgs := []string{cfgBoth, cfgSQS, cfgIMDS, cfgAlways}
	row := func(name string, f func(string) string) {
		cells := []string{name}
		for _, c := range cfgs {
			cells = append(cells, f(c))
		}
		w("| %s |\n", strings.Join(cells, " | "))
	}
	p1 := func(n int) func(string) string {
		return func(cfg string) string {
			c, ok := r.cell(cfg, n)
			if !ok {
				return "–"
			}
			return fmt.Sprintf("%s / %s", pct(c.P1, c.P1.P50), pct(c.P1, c.P1.P99))
		}
	}
	row("P1 1 node p50 / p99", p1(1))
	row("P1 10 nodes p50 / p99", p1(10))
	row("P1 100 nodes p50 / p99", p1(100))
	row("P1 500 nodes p50 / p99", p1(500))
	row("P1 1,000 nodes p50 / p99", p1(1000))
	row("P5 500 of 1,000", func(cfg string) string {
		p, ok := r.p5At(cfg, 1000)
		if !ok {
			return "–"
		}
		t := fmt.Sprintf("all after %s; %s SQS + %s Auto Scaling requests; max receive count %d", pctP5(p), thousands(float64(p.SQSRequests)), thousands(float64(p.ASGRequests)), p.MaxReceive)
		if p.Undeleted > 0 {
			t += fmt.Sprintf(" (%d messages left after %s: the fake SQS saturated)", p.Undeleted, secs(p.DrainLimitS))
		}
		return t
	})
	row("SQS requests per termination (one at a time, mean over 100–1,000 nodes)", func(cfg string) string {
		if t := r.armTotals(cfg, r.policySizes()); len(t.singleByN) > 0 {
			return fmt.Sprintf("%.0f", t.singleReqs)
		}
		if cfg == cfgIMDS {
			return "0"
		}
		return "–"
	})
	row("Idle AWS requests/min per instance", func(cfg string) string {
		if st, ok := r.steadyIdle(cfg); ok {
			return fmt.Sprintf("%.2f (fleet, steady)", st.SteadyPerMin)
		}
		p, ok := r.p3(cfg)
		if !ok {
			return "–"
		}
		return fmt.Sprintf("%.1f", p.AWSPerMin)
	})
	row("Idle IMDS requests/min per instance (local, free)", func(cfg string) string {
		p, ok := r.p3(cfg)
		if !ok {
			return "–"
		}
		return fmt.Sprintf("%.0f", p.IMDSPerMin)
	})
	row("Idle CPU (utime+stime; schedstat)", func(cfg string) string {
		p, ok := r.p3(cfg)
		if !ok {
			return "–"
		}
		return fmt.Sprintf("%.3f %%; %.4f %%", p.CPUPercent, p.CPUPercentSched)
	})
	row("Cost grows with the fleet", func(cfg string) string {
		switch cfg {
		case cfgSQS:
			return "yes: reaction ≈ N hand-backs; receive count ≈ N; requests ≈ N per termination (fewer per message when many circulate: batched)"
		case cfgAlways:
			return "reaction no (metadata bounds it); SQS requests and receive counts yes (every daemon is a poller), until the owner or the stale clean-up takes the message"
		case cfgBoth:
			return "reaction no; SQS traffic with the daemons polling at that moment: the terminating ones and the idle ones inside their once-per-interval long poll"
		default:
			return "no"
		}
	})
	row("Dead-letter queue on the queue", func(cfg string) string {
		switch cfg {
		case cfgSQS:
			return "unsafe above a few nodes: P(lost) = (1 − 1/N)^maxReceiveCount"
		case cfgBoth, cfgAlways:
			return "unsafe as sqs (with fewer pollers when paced), but a lost message only loses the cross-check"
		default:
			return "no queue needed"
		}
	})
	row("Needs", func(cfg string) string {
		switch cfg {
		case cfgSQS:
			return "a queue and the hook → queue wiring"
		case cfgBoth, cfgAlways:
			return "the queue (optional: without one it is imds) and IMDSv2 reachable from the daemon"
		default:
			return "IMDSv2 reachable from the daemon (hop limit ≥ 2 if it runs in a container); no queue"
		}
	})
	w("\n")
}

// targetsTable lists every target with the figures, independent of mode.
func (r *Results) targetsTable(b *strings.Builder) {
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	w("Mode-independent targets:\n\n| Target | Measured | |\n|---|---|---|\n")
	ok := func(v bool) string {
		if v {
			return "✅"
		}
		return "❌"
	}
	if r.P2.All.N > 0 {
		w("| P2 ≤ 1 s (DRAINED → CompleteLifecycleAction) | p50 %s, p99 %s (n = %d) | %s%s |\n", secs(r.P2.All.P50), secs(r.P2.All.P99), r.P2.All.N,
			ok(r.P2.All.P99 <= targetP2), missBy(r.P2.All.P99, targetP2, "p99"))
	}
	for _, p := range r.P4 {
		good := p.PerTimeout <= targetHBPerTO+0.05 && p.Lapses == 0
		w("| P4 HeartbeatTimeout %.0f s: ≤ 2 heartbeats per timeout, 0 lapses | %.2f per timeout, %d lapses, largest gap %.0f s | %s |\n",
			p.HeartbeatTimeoutS, p.PerTimeout, p.Lapses, p.LargestGapS, ok(good))
	}
	for _, p := range r.P5 {
		w("| P5 %s %d of %d: 0 non-owner deletions of live actions | %d (messages cleaned up as stale after their action ended: %d) | %s |\n", p.Config, p.K, p.N, p.NonOwnerLive, p.StaleCleaned, ok(p.NonOwnerLive == 0))
	}
	w("\n")
}

// missBy says by how much got exceeds target, as " (misses by …)" or
// " (what misses by …)"; "" when it does not.
func missBy(got, target float64, what string) string {
	if got <= target {
		return ""
	}
	if what == "" {
		return fmt.Sprintf(" (misses by %s)", secs(got-target))
	}
	return fmt.Sprintf(" (%s misses by %s)", what, secs(got-target))
}

// verdict judges the targets on the default configuration and compares
// it with the others, from the figures.
func (r *Results) verdict(def candidate, cands []candidate) string {
	var parts []string
	parts = append(parts, fmt.Sprintf("**Default: `aws.mode=both`, `aws.imds-poll-interval=%s`, `aws.sqs-idle-interval=%s` (`%s`).** It meets %d of its %d measured targets (reaction targets: %d of %d).",
		dur(r.IMDSPollS), dur(r.SQSIdleS), cfgBoth, def.score, def.known, def.react, def.reactOf))
	for _, ch := range def.checks {
		switch {
		case !ch.known:
			parts = append(parts, fmt.Sprintf("Not measured: %s.", ch.name))
		case !ch.ok:
			parts = append(parts, fmt.Sprintf("**Missed — %s:** %s. %s", ch.name, ch.measured, r.whyMissed(cfgBoth, ch.name)))
		}
	}
	if t := r.reactionText(cfgBoth); t != "" {
		parts = append(parts, "Its reaction is the metadata poll's, whatever the fleet size: "+t+".")
	}
	if s, ok := r.cell(cfgSQS, 500); ok {
		parts = append(parts, fmt.Sprintf("The seed's design (`%s`) waits for the shared queue's chain of about N hand-backs instead: at 500 nodes p50 %s, p99 %s (%d trials; the random-pick model says p99 %s), growing with the fleet.",
			cfgSQS, pct(s.P1, s.P1.P50), pct(s.P1, s.P1.P99), s.P1.N, secs(geometricQuantile(500, 0.99)*r.modelBounceS())))
	}
	pa, pb := r.armTotals(cfgAlways, r.policySizes()), r.armTotals(cfgBoth, r.policySizes())
	if t := r.reactionText(cfgIMDS); t != "" {
		t = fmt.Sprintf("`%s` reacts the same way (%s) and sends no SQS request", cfgIMDS, t)
		if len(pb.singleByN) > 0 {
			t += fmt.Sprintf("; the default's queue costs %.0f SQS requests per termination (one at a time, mean over the fleet sizes)", pb.singleReqs)
			if st, ok := r.steadyIdle(cfgBoth); ok {
				t += fmt.Sprintf(" and %.2f per idle instance per minute", st.SteadyPerMin)
			}
			t += ", and buys a second signal where metadata cannot be read (the daemon then polls the queue continuously) plus the action's token"
		}
		parts = append(parts, t+".")
	}
	if len(pa.singleByN) > 0 && len(pb.singleByN) > 0 {
		t := fmt.Sprintf("`%s` reacts at the same pace in fleets", cfgAlways)
		if rt := r.reactionText(cfgAlways); rt != "" {
			t += " (" + rt + ")"
		}
		a1, okA := r.cell(cfgAlways, 1)
		d1, okD := r.cell(cfgBoth, 1)
		if okA && okD && a1.P1.P99 < d1.P1.P99/2 {
			t += fmt.Sprintf(" — alone, its open long poll hands it the message at once (1-node p99 %s against the default's %s, which waits for its metadata poll) —", pct(a1.P1, a1.P1.P99), pct(d1.P1, d1.P1.P99))
		}
		t += fmt.Sprintf(" but makes every daemon part of every message's chain: a termination cost %.0f SQS requests against the default's %.0f (highest receive count %d against %d)",
			pa.singleReqs, pb.singleReqs, pa.singleMax, pb.singleMax)
		if pa.idle > 0 && pb.idle > 0 {
			t += fmt.Sprintf(", and an idle instance sends %.2f requests per minute against %.2f", pa.idle, pb.idle)
		}
		t += " — see the polling policy section"
		var saturated []string
		for _, n := range r.policySizes() {
			pa, okA := r.p5At(cfgAlways, n)
			pd, okD := r.p5At(cfgBoth, n)
			if okA && okD && (pa.Undeleted > 0 || pd.Undeleted > 0) && n >= 500 {
				saturated = append(saturated, thousands(float64(n)))
			}
		}
		if len(saturated) > 0 {
			t += fmt.Sprintf(" (its mass scale-ins at %s nodes left messages circulating and saturated the fake SQS under both policies, so their request counts are not compared)", strings.Join(saturated, " and "))
		}
		parts = append(parts, t+".")
	}
	top := best(cands)
	if top.config == cfgBoth {
		parts = append(parts, "By the report's rule (below) the default also ranks first among the four.")
	} else {
		t := fmt.Sprintf("By the report's rule (below) `%s` ranks first: it meets %d reaction targets against the default's %d", top.config, top.react, def.react)
		if top.hasP5 && def.hasP5 && top.p5Reqs < def.p5Reqs {
			t += fmt.Sprintf(" and sent %s SQS requests in the 500-of-1,000 scale-in against %s", thousands(float64(top.p5Reqs)), thousands(float64(def.p5Reqs)))
		}
		if top.config == cfgIMDS && top.react == def.react {
			t += "; the default is mode both for the queue as a fallback and cross-check, at the queue cost above, not for speed"
		}
		parts = append(parts, t+".")
	}
	return strings.Join(parts, " ")
}

// reactionText summarises a configuration's reaction at 1 and 500 nodes
// and in the mass scale-in at 1,000.
func (r *Results) reactionText(config string) string {
	var t []string
	if c, ok := r.cell(config, 1); ok {
		t = append(t, fmt.Sprintf("1 node p50 %s, p99 %s", pct(c.P1, c.P1.P50), pct(c.P1, c.P1.P99)))
	}
	if c, ok := r.cell(config, 500); ok {
		t = append(t, fmt.Sprintf("500 nodes p99 %s", pct(c.P1, c.P1.P99)))
	}
	if c, ok := r.cell(config, 1000); ok {
		t = append(t, fmt.Sprintf("1,000 nodes p99 %s", pct(c.P1, c.P1.P99)))
	}
	if p, ok := r.p5At(config, 1000); ok {
		t = append(t, fmt.Sprintf("all %d of %d within %s", p.K, p.N, pctP5(p)))
	}
	return strings.Join(t, ", ")
}

// whyMissed explains a missed target of a configuration from the figures.
func (r *Results) whyMissed(config, name string) string {
	switch {
	case strings.HasPrefix(name, "P1 1 node"):
		c, ok := r.cell(config, 1)
		if !ok {
			return ""
		}
		if c.SourceIMDS >= c.SourceSQS {
			return fmt.Sprintf("Metadata started %d of the %d drains, so a termination waits for the next metadata poll: up to one `aws.imds-poll-interval` (%s) plus the `PUT` itself (p50 %s is about half an interval). A p99 within 1 s needs a shorter interval (e.g. 500 ms) or a termination that finds the queue poll open.",
				c.SourceIMDS, c.P1.N, dur(r.IMDSPollS), pct(c.P1, c.P1.P50))
		}
		return "The queue's long poll and the hand-back take it."
	case strings.HasPrefix(name, "P1 500"):
		c, ok := r.cell(config, 500)
		if !ok {
			return ""
		}
		if config == cfgSQS {
			return fmt.Sprintf("The owner waits for a chain of hand-backs (receive count mean %.0f).", c.Receives.Mean)
		}
		return fmt.Sprintf("Up to %s of it is the metadata poll; the rest is 500 daemons with their workers on this machine's 2 shared cores (bench %.2f cores, other processes %.2f during the cell).", dur(r.IMDSPollS), c.CPUCores, c.OtherCores)
	case strings.HasPrefix(name, "P3"):
		p, ok := r.p3(config)
		if !ok {
			return ""
		}
		var why []string
		if p.CPUPercent > targetCPU {
			t := fmt.Sprintf("the CPU is the metadata poll's: %.0f polls a minute", p.IMDSPerMin/2)
			if ms := r.perPollMs(); ms > 0 {
				t += fmt.Sprintf(" at about %.1f ms of CPU each in the idle binary (`%s` %.3f %% against `%s` %.3f %%)", ms, cfgIMDS, r.p3CPU(cfgIMDS), r.slowName(), r.p3CPU(r.slowName()))
			}
			why = append(why, t)
		}
		if p.PeakRSSMiB > targetRSS {
			why = append(why, fmt.Sprintf("the peak RSS (VmHWM) is %.1f MiB, steady %.1f MiB", p.PeakRSSMiB, p.SteadyRSSMiB))
		}
		if len(why) == 0 {
			return ""
		}
		t := strings.Join(why, "; ")
		return strings.ToUpper(t[:1]) + t[1:] + "."
	case strings.HasPrefix(name, "P5"):
		p, ok := r.p5At(config, 1000)
		if !ok {
			return ""
		}
		return fmt.Sprintf("The metadata poll allows up to %s; the rest is %d drains starting at once on this machine's 2 shared cores (bench %.2f cores, other processes %.2f); on real instances each drain has its own CPU.", dur(r.IMDSPollS), p.K, p.CPUCores, p.OtherCores)
	}
	return ""
}

func (r *Results) p3CPU(config string) float64 {
	p, _ := r.p3(config)
	return p.CPUPercent
}

// perPollMs is the CPU one metadata poll costs the idle binary, from the
// two imds configurations of P3 (their difference cancels the rest).
func (r *Results) perPollMs() float64 {
	fast, ok1 := r.p3(cfgIMDS)
	slow, ok2 := r.p3(r.slowName())
	if !ok1 || !ok2 || r.IMDSPollS <= 0 || r.SlowIMDSS <= r.IMDSPollS {
		return 0
	}
	perSec := (fast.CPUPercent - slow.CPUPercent) / 100
	polls := 1/r.IMDSPollS - 1/r.SlowIMDSS
	if perSec <= 0 || polls <= 0 {
		return 0
	}
	return perSec / polls * 1000
}

// forTheLead lists the concrete changes the figures ask for.
func (r *Results) forTheLead(b *strings.Builder, def candidate) {
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	w("## What would close the gaps\n\n")
	i := 0
	item := func(format string, args ...any) {
		i++
		w("%d. ", i)
		w(format, args...)
		w("\n")
	}
	if p, ok := r.p3(cfgBoth); ok && (p.CPUPercent > targetCPU || p.PeakRSSMiB > targetRSS) {
		t := "**Cost of a metadata poll (P3).** "
		if ms := r.perPollMs(); ms > 0 {
			t += fmt.Sprintf("The idle binary spends about %.1f ms of CPU per poll (`%s` against `%s`), %.0f polls a minute at the default interval", ms, cfgIMDS, r.slowName(), 60/r.IMDSPollS)
		} else {
			t += "Each poll goes through the SDK's IMDS client"
		}
		t += "; `BenchmarkIMDSSourcePoll` shows its requests, allocations and bytes per poll (fake server included), which also grow the heap (RSS rises with the poll rate in P3). In `pkg/lifecycle/imds.go`: read `instance-life-cycle` once at start and poll `spot/instance-action` only on Spot instances, poll it less often than the lifecycle state (its notice gives two minutes), and do the per-poll GETs with a plain `net/http` client and a cached IMDSv2 token instead of the SDK's middleware stack. Re-run `make bench` to check the 0.05 % CPU and 16 MiB targets."
		item("%s", t)
	}
	if one, ok := r.cell(cfgBoth, 1); ok && one.P1.P99 > targetP1One {
		item("**1-node P1 (p99 %s > 1 s, by %s).** A termination that lands just after a metadata poll waits the whole `aws.imds-poll-interval` (%s); the `PUT DRAINING` adds milliseconds. Either accept ~1 s as the bound, or poll every 500 ms (twice the idle CPU of item 1 until that is cheaper).", secs(one.P1.P99), secs(one.P1.P99-targetP1One), dur(r.IMDSPollS))
	}
	if r.P2.All.P99 > targetP2 {
		item("**P2 (p99 %s > 1 s, by %s).** `DRAINED` is seen at the next `trino.poll-interval` (%s) poll, then `CompleteLifecycleAction` takes an Auto Scaling round trip; where the fleet's CPU is busy (P5) both stretch.", secs(r.P2.All.P99), secs(r.P2.All.P99-targetP2), dur(r.TrinoPollS))
	}
	if pb, ok := r.p5At(cfgBoth, 1000); ok {
		frac := r.WaitTimeS / (r.WaitTimeS + r.SQSIdleS)
		item("**Idle polls still listen (mode both).** A paced daemon's once-per-interval poll is a %s long poll, so in a fleet whose daemons started at random times about %.0f %% of them are listening at any moment (%.0f of 1,000; here only %d receives were open when the 1,000-node scale-in began, because each size's daemons started together) and take — and hand back, and stale-check — messages that are not theirs. An idle poll with a short wait (`WaitTimeSeconds` 1–2 s; only a leaving instance's continuous polling needs 20 s) would cut the listeners to 2–3 %% at the same request rate, and with them the owners' competition (`pkg/lifecycle/sqs.go`, `receive`; `pace.go`).", dur(r.WaitTimeS), 100*frac, 1000*frac, pb.OpenPolls)
	}
	var stale EventStats
	for _, p := range r.P5 {
		if p.Mode == "both" {
			stale.add(p.EventStats)
		}
	}
	if stale.NonOwnerEnded > 0 {
		item("**The stale clean-up mostly misses on a busy queue (mode both).** In the mass scale-ins other daemons sent %s deletes for messages whose action had ended, and %d took effect; %d messages were still on the queue when the harness stopped following them. The check now runs after the hand-back (`pkg/lifecycle/sqs.go`, `Run`: `releaseAll`, then `deleteStale`), so by the time Auto Scaling answers, another daemon has usually received the message and replaced its receipt handle. Checking a message before handing it back puts the Auto Scaling call on that message's path again, but the check is rate-limited (4, then one per 5 s per daemon) and only needed for messages whose owner has had time to take them: check before the hand-back only messages older than a few seconds (`SentTimestamp`), hand back all others at once.",
			thousands(float64(stale.NonOwnerEnded)), stale.StaleCleaned, stale.Undeleted)
	}
	item("**The fake SQS limits this benchmark, not the daemon** (`internal/testpeers/peer.go` `notify`/`await`, `sqs.go` `opReceiveMessage`): every change wakes every waiting long poll, `begin` notifies on every request, and all of them re-scan the queue (every message it ever held) under one lock. Handing a newly visible message to one random waiting poll (a per-queue waiter list) would let the sqs cells at 500 and 1,000 nodes run their full trials and match the random-pick model.")
	w("\n")
}

// thousands formats a count with thousands separators.
func thousands(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	var out []byte
	for i := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}
