package main

import (
	"fmt"
	"math"
	"strings"
)

// policyArm is one polling policy of mode both, as the report names it.
type policyArm struct {
	config, label string
}

// policyArms are the policies of issue 8: (a) every daemon long-polls the
// queue all the time; (b) a daemon polls once per idle interval while its
// metadata shows it in service (the default).
func (r *Results) policyArms() []policyArm {
	return []policyArm{
		{cfgAlways, "(a) all the time (`sqs-idle-interval=0`)"},
		{cfgBoth, fmt.Sprintf("(b) paced (`sqs-idle-interval=%s`, default)", dur(r.SQSIdleS))},
	}
}

// policySizes are the fleet sizes both arms were measured at.
func (r *Results) policySizes() []int {
	var out []int
	for _, i := range r.Idle {
		if i.Config == cfgBoth && !containsInt(out, i.N) {
			if _, ok := r.idleAt(cfgAlways, i.N); ok {
				out = append(out, i.N)
			}
		}
	}
	sortInts(out)
	return out
}

// armTotals sums what one arm's measurements cost over the fleet sizes.
type armTotals struct {
	singleReqs   float64 // SQS requests per one-node scale-in, mean over the sizes
	singleByN    []string
	singleMax    int // highest receive count of a one-node scale-in
	singleWait   Dist
	massByN      []string
	massMax      int
	massDone     map[int]int64 // requests of the mass scale-ins whose messages were all deleted in time
	massOwners   string        // owners that received their message in the largest mass scale-in
	nonOwnerLive int
	worstP1      float64 // the largest one-node-scale-in p99
	worstMass    float64 // the slowest "all reacted" of the mass scale-ins
	idle         float64 // steady idle requests per daemon per minute
}

func (r *Results) armTotals(config string, sizes []int) armTotals {
	t := armTotals{massDone: map[int]int64{}}
	var single, waits []float64
	for _, n := range sizes {
		if c, ok := r.cell(config, n); ok {
			t.worstP1 = math.Max(t.worstP1, c.P1.P99)
			if e := c.Events; e != nil && e.Events > 0 {
				per := float64(e.SQSRequests) / float64(e.Events)
				single = append(single, per)
				t.singleByN = append(t.singleByN, fmt.Sprintf("%.0f at %d", per, n))
				t.singleMax = max(t.singleMax, e.MaxReceive)
				t.nonOwnerLive += e.NonOwnerLive
				waits = append(waits, e.OwnerWaits...)
			}
		}
		if p, ok := r.p5At(config, n); ok {
			t.massMax = max(t.massMax, p.MaxReceive)
			t.nonOwnerLive += p.NonOwnerLive
			t.worstMass = math.Max(t.worstMass, p.AllReactedS)
			t.massOwners = fmt.Sprintf("%d of %d at %d nodes", p.OwnerReceived, p.Messages, n)
			text := fmt.Sprintf("%s at %d", thousands(float64(p.SQSRequests)), n)
			if p.Undeleted == 0 {
				t.massDone[n] = p.SQSRequests
			} else {
				text += fmt.Sprintf(" (%d left; %s/s)", p.Undeleted, thousands(float64(p.SQSRequests)/math.Max(p.WindowS, 1)))
			}
			t.massByN = append(t.massByN, text)
		}
	}
	if len(single) > 0 {
		sum := 0.0
		for _, x := range single {
			sum += x
		}
		t.singleReqs = sum / float64(len(single))
	}
	t.singleWait = Summarise(waits, 0)
	if st, ok := r.steadyIdle(config); ok {
		t.idle = st.SteadyPerMin
	}
	return t
}

// policySection compares the two polling policies of mode both (issue 8)
// and chooses aws.sqs-idle-interval's default from the figures.
func (r *Results) policySection(b *strings.Builder, o Options) {
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	w("## Polling policy (issue 8)\n\n")
	sizes := r.policySizes()
	if len(sizes) == 0 {
		w("Not measured in this run (`-phases` left the `policy` phase out).\n\n")
		return
	}
	arms := r.policyArms()
	w("In mode both the drain starts from whichever signal comes first, and with a %s metadata poll that is nearly always metadata. The shared queue is then there for the owner to find its message (its token, and the delete after completion), as the signal where metadata cannot be read, and to clean up after instances that are gone. The question is how the idle daemons poll it: **(a)** every daemon long-polls all the time (`aws.sqs-idle-interval=0`, `%s`), or **(b)** a daemon long-polls once per idle interval while its metadata answers and shows it in service, and continuously from the moment metadata shows `Terminated` or cannot be read (`aws.sqs-idle-interval=%s`, `%s`, the default).\n\n",
		dur(r.IMDSPollS), cfgAlways, dur(r.SQSIdleS), cfgBoth)
	w("Measured per policy on one fleet grown to %s nodes, both with the default %s metadata poll, in the same run as everything else (the default's fleet is the `%s` fleet of P1 and P5). At each size: the fleet idles (its queue traffic counted for %.0f s), then single nodes scale in one at a time — each followed from the send until its message was deleted — then half the fleet at once. *Owner's message wait*: the message sent → the first receive that hands the owner its own message. *Open receives*: the long polls open at the fake when the message was sent — the daemons that could take it first.\n\n",
		joinInts(sizes), dur(r.IMDSPollS), cfgBoth, r.idleWindowS())

	// One node.
	w("**One node scales in** (one termination at a time; figures per termination unless summed):\n\n")
	w("| Policy | N | Terminations | Reaction p50 / p99 | Owner's message wait p50 / p99 | Owner received its message | Open receives when sent (mean) | SQS requests per termination | Auto Scaling requests per termination | Max receive count | Non-owner deletes of live actions | Messages cleaned up as stale | Not deleted at the end |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, arm := range arms {
		for _, n := range sizes {
			c, ok := r.cell(arm.config, n)
			if !ok || c.Events == nil || c.Events.Events == 0 {
				w("| %s | %d | – | – | – | – | – | – | – | – | – | – | – |\n", arm.label, n)
				continue
			}
			e := c.Events
			k := float64(e.Events)
			w("| %s | %d | %d | %s / %s | %s | %d of %d | %.0f | %.0f (%s) | %.0f | %d | **%d** | %d | %d |\n", arm.label, n, e.Events,
				pct(c.P1, c.P1.P50), pct(c.P1, c.P1.P99), waitText(*e), e.OwnerReceived, e.Messages, float64(e.OpenPolls)/k,
				float64(e.SQSRequests)/k, sqsOpsText(e.SQSByOp, k), float64(e.ASGRequests)/k, e.MaxReceive, e.NonOwnerLive, e.StaleCleaned, e.Undeleted)
		}
	}
	w("\n")

	// Half the fleet.
	w("**Half the fleet scales in at once** (K = N/2 terminations back to back; traffic from the first until every message was deleted, or %s after the last reaction):\n\n", r.drainLimitText())
	w("| Policy | N | K | All reacted after | Reaction p50 / p99 | Owner's message wait p50 / p99 | Owners that received their own message (all after) | Open receives when sent | SQS requests | Auto Scaling requests | Max receive count (messages received > 10 times) | Non-owner deletes of live actions | Messages cleaned up as stale | Not deleted at the end (their action ended) |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, arm := range arms {
		for _, n := range sizes {
			p, ok := r.p5At(arm.config, n)
			if !ok {
				w("| %s | %d | – | – | – | – | – | – | – | – | – | – | – | – |\n", arm.label, n)
				continue
			}
			w("| %s | %d | %d | %s | %s / %s | %s | %s | %d | %s (%s) | %d | %d (%d) | **%d** | %d | %d (%d) |\n", arm.label, n, p.K, pctP5(p),
				pct(p.Reaction, p.Reaction.P50), pct(p.Reaction, p.Reaction.P99), waitText(p.EventStats), ownersText(p.EventStats), p.OpenPolls,
				thousands(float64(p.SQSRequests)), sqsOpsText(p.SQSByOp, 1), p.ASGRequests, p.MaxReceive, p.Over10, p.NonOwnerLive, p.StaleCleaned, p.Undeleted, p.UndeletedEnded)
		}
	}
	w("\n")

	// Idle.
	w("**Idle cost** (no termination under way):\n\n")
	w("| Policy | N | SQS requests per daemon per minute, steady | Idle cycles (mean) | In the %.0f s window before the scale-ins | Open receives in the window (mean) | P3 target ≤ %.0f AWS requests/min |\n|---|---|---|---|---|---|---|\n", r.idleWindowS(), targetAWSPerMn)
	for _, arm := range arms {
		for _, n := range sizes {
			i, ok := r.idleAt(arm.config, n)
			if !ok {
				continue
			}
			steady, cycles, mark := "–", "–", "–"
			if i.Cycles > 0 {
				steady = fmt.Sprintf("%.2f", i.SteadyPerMin)
				cycles = fmt.Sprintf("%d (%.1f s)", i.Cycles, i.Cycle.Mean)
				mark = "✅"
				if i.SteadyPerMin > targetAWSPerMn+0.01 {
					mark = "❌"
				}
			}
			w("| %s | %d | %s | %s | %.2f | %.0f | %s |\n", arm.label, n, steady, cycles, i.PerDaemonPerMin, i.OpenPolls, mark)
		}
	}
	w("\nSteady: 60 s over the mean time from one receive that came back empty after a full long poll to the same daemon's next receive — each daemon's rate on a quiet queue, whatever its phase. The window figure counts the requests sent in the window; the daemons of one size started together, so a paced fleet's once-a-cycle polls fall in or out of a short window together (its new daemons' start-up polls began before the window and the next ones come after it).\n\n")

	r.leftoverText(b)
	r.policyChoice(b, sizes)
	w("**Reproduce.** `%s` runs the comparison with everything else. Alone: `make build && go build -o bin/bench ./internal/cmd/bench && bin/bench -binary bin/scaledownd -phases policy -out /tmp/policy.md -results /tmp/policy.json -chart /tmp/policy.png`", r.Command)
	if a, ok := r.FleetS[cfgAlways]; ok {
		if bb, ok := r.FleetS[cfgBoth]; ok {
			w(" (the two fleets took %s here)", minsec(a+bb))
		}
	}
	w("; it writes a report with only these parts.\n\n")
}

// drainLimitText is how long the mass scale-ins' messages were followed
// after the last reaction.
func (r *Results) drainLimitText() string {
	for _, p := range r.P5 {
		if p.DrainLimitS > 0 && p.Mode != "imds" {
			return secs(p.DrainLimitS)
		}
	}
	return "the limit"
}

// waitText is the owner's message wait p50 / p99.
func waitText(e EventStats) string {
	if e.OwnerWait.N == 0 {
		return "–"
	}
	return fmt.Sprintf("%s / %s", secs(e.OwnerWait.P50), secs(e.OwnerWait.P99))
}

// idleWindowS is the policy arms' idle window, seconds.
func (r *Results) idleWindowS() float64 {
	if len(r.Idle) == 0 {
		return 0
	}
	return math.Round(r.Idle[0].WindowS)
}

// leftoverText says what each arm's scale-ins left on the queue, and why.
func (r *Results) leftoverText(b *strings.Builder) {
	var parts []string
	for _, arm := range r.policyArms() {
		var e EventStats
		for _, p := range r.P5 {
			if p.Config == arm.config {
				e.add(p.EventStats)
			}
		}
		for _, c := range r.P1 {
			if c.Config == arm.config && c.Events != nil && c.N >= 100 {
				e.add(*c.Events)
			}
		}
		if e.Messages == 0 {
			continue
		}
		t := fmt.Sprintf("%s: of %d messages, %d were deleted by their owner and %d by another daemon as stale once their action had ended (from %s delete requests by other daemons)", arm.label, e.Messages, e.OwnerDeletes, e.StaleCleaned, thousands(float64(e.NonOwnerEnded)))
		if e.Undeleted == 0 {
			t += "; none was left"
		} else {
			t += fmt.Sprintf("; %d were left when the harness stopped following them, %d of them for actions that had ended", e.Undeleted, e.UndeletedEnded)
		}
		parts = append(parts, t+".")
	}
	if len(parts) == 0 {
		return
	}
	fmt.Fprintf(b, "**Messages left on the queue** (the scale-ins above at 100 nodes and more). %s ", strings.Join(parts, " "))
	fmt.Fprintf(b, "Why: in mode both the drain starts from metadata and completes by instance id, so an owner that finishes before its message reaches it no longer needs it, and the message is left to the stale clean-up. Two things hold that clean-up back. It asks Auto Scaling about a message at most once per daemon per 10 minutes (`pkg/lifecycle/stale.go`, `allow`), and the daemons polling during the scale-in asked while the action was still live. And it runs after the hand-back: by the time Auto Scaling has answered, another daemon has usually received the message again, and a delete with the superseded receipt handle does nothing — hence many delete requests for few deletions. Until a daemon deletes it with a current handle, the message circulates, a request or two per receive. The harness removes what is left after each scale-in (straight at the fake, not counted) so that the next measurement starts from an empty queue. Nothing deleted a live action's message.\n\n")
}

// policyChoice chooses aws.sqs-idle-interval's default from the figures:
// paced unless it reacts worse, deletes a live action's message or costs
// more requests (idle, per termination, or in the mass scale-ins both arms
// finished; where the fake SQS was saturated the counts are its throughput).
func (r *Results) policyChoice(b *strings.Builder, sizes []int) {
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	a, p := r.armTotals(cfgAlways, sizes), r.armTotals(cfgBoth, sizes)
	slack := func(x float64) float64 { return math.Max(0.25, 0.2*x) }
	reactOK := p.worstP1 <= a.worstP1+slack(a.worstP1) && p.worstMass <= a.worstMass+slack(a.worstMass)
	var doneA, doneB int64
	var doneN []int
	for _, n := range sizes {
		ra, okA := a.massDone[n]
		rb, okB := p.massDone[n]
		if okA && okB {
			doneA, doneB = doneA+ra, doneB+rb
			doneN = append(doneN, n)
		}
	}
	cheaper := p.idle < a.idle && p.singleReqs <= 1.1*a.singleReqs && float64(doneB) <= 1.1*float64(doneA)
	paced := reactOK && cheaper && p.nonOwnerLive == 0
	var why []string
	why = append(why, fmt.Sprintf("*Reaction* — metadata starts the drain under both: the slowest one-node p99 over the sizes is %s paced against %s all the time, the slowest mass scale-in had every node reacting after %s against %s",
		secs(p.worstP1), secs(a.worstP1), secs(p.worstMass), secs(a.worstMass)))
	why = append(why, fmt.Sprintf("*Requests* — a one-node scale-in cost %s SQS requests paced against %s all the time (per termination, N = %s)",
		strings.Join(p.singleByN, ", "), strings.Join(a.singleByN, ", "), joinInts(sizes)))
	t := fmt.Sprintf("*Mass scale-ins* — %s requests paced against %s all the time", strings.Join(p.massByN, ", "), strings.Join(a.massByN, ", "))
	if len(doneN) < len(sizes) {
		t += "; where messages were left after the follow-up, both arms kept the fake SQS at its limit on 2 shared cores, so those counts are its throughput (per second, in brackets), not what the daemons would have sent to SQS: compare the receive counts and the owners instead"
	}
	why = append(why, t)
	why = append(why, fmt.Sprintf("*Receive counts* — at most %d paced against %d all the time in a one-node scale-in, %d against %d in the mass ones; a dead-letter queue takes a message after `maxReceiveCount` receives", p.singleMax, a.singleMax, p.massMax, a.massMax))
	if p.singleWait.N > 0 && a.singleWait.N > 0 {
		why = append(why, fmt.Sprintf("*Owner's message wait* — one-node scale-ins p50 %s, p99 %s paced against %s, %s all the time (a paced owner starts polling at its metadata poll; all the time, the message waits for the chain of hand-backs); in the largest mass scale-in %s owners had their message within the follow-up paced against %s",
			secs(p.singleWait.P50), secs(p.singleWait.P99), secs(a.singleWait.P50), secs(a.singleWait.P99), p.massOwners, a.massOwners))
	}
	if p.idle > 0 && a.idle > 0 {
		why = append(why, fmt.Sprintf("*Idle cost* — %.2f against %.2f SQS requests per daemon per minute (P3 target ≤ %.0f): for 1,000 idle instances %s against %s requests a day", p.idle, a.idle, targetAWSPerMn,
			thousands(p.idle*1000*1440), thousands(a.idle*1000*1440)))
	}
	if paced {
		w("**Chosen default: `aws.sqs-idle-interval=%s` (policy (b)), as the daemon ships.** ", dur(r.SQSIdleS))
	} else {
		var fails []string
		if !reactOK {
			fails = append(fails, "it reacts later")
		}
		if !cheaper {
			fails = append(fails, "it does not cost fewer requests idle, or costs more per termination or in the scale-ins both finished")
		}
		if p.nonOwnerLive > 0 {
			fails = append(fails, fmt.Sprintf("it deleted %d messages of live actions", p.nonOwnerLive))
		}
		w("**Chosen default: `aws.sqs-idle-interval=0` (policy (a)) — the paced default does not hold up here: %s.** ", strings.Join(fails, ", "))
	}
	w("From the numbers: %s.\n\n", strings.Join(why, "; "))
	idleFrac := r.WaitTimeS / (r.WaitTimeS + r.SQSIdleS)
	w("**What paced polling costs.** (1) A daemon whose metadata silently never flips — it keeps answering `InService` while Auto Scaling terminates the instance — relies on the idle poll: it finds its own message at its next once-per-interval long poll, up to %s + %s after the termination, among the daemons polling then; polling all the time, the queue hands it over within the one-node owner wait above. Metadata that fails outright (errors, timeouts) is not this case: the daemon polls continuously from its next metadata poll (%s), as in (a). (2) The drain does not wait for the owner's message, only the message's deletion does; a paced owner starts looking for it at its metadata poll, so its wait starts there. (3) The idle poll is a %s long poll, so in a fleet whose daemons started at random times about %.0f %% of them are listening at any moment (%.0f of 1,000) and each takes — and hands back, and stale-checks — up to ten messages before its next pause: a message may go through that many idle daemons before its owner. The fleets here started each size's daemons together, so when the scale-ins came only the few open receives in the tables were listening: the paced figures are for that small pool, and a real fleet's would carry up to that many more receives per message — still bounded by the fleet's idle fraction, where polling all the time makes every daemon part of every chain. (4) A message whose owner is gone waits for a daemon that has not checked it yet to delete it as stale: the next idle poll that takes it, up to an idle interval in a small fleet.\n\n",
		dur(r.SQSIdleS), dur(r.WaitTimeS), dur(r.IMDSPollS), dur(r.WaitTimeS), 100*idleFrac, 1000*idleFrac)
	// The metadata poll itself.
	var mt []string
	if c, ok := r.cell(cfgBoth, 1); ok {
		mt = append(mt, fmt.Sprintf("1 node (real binary) p50 %s, p99 %s", pct(c.P1, c.P1.P50), pct(c.P1, c.P1.P99)))
	}
	for _, n := range []int{500, 1000} {
		if c, ok := r.cell(cfgBoth, n); ok {
			mt = append(mt, fmt.Sprintf("%d nodes p99 %s", n, pct(c.P1, c.P1.P99)))
		}
	}
	if m, ok := r.p5At(cfgBoth, 1000); ok {
		mt = append(mt, fmt.Sprintf("all %d of %d within %s", m.K, m.N, pctP5(m)))
	}
	if len(mt) > 0 {
		w("**The %s metadata poll** sets the reaction of both policies: %s.", dur(r.IMDSPollS), strings.Join(mt, ", "))
		fast, ok1 := r.p3(cfgIMDS)
		slow, ok2 := r.p3(r.slowName())
		if ok1 && ok2 {
			w(" Its price is idle CPU and memory: %.3f %% CPU and %.1f MiB peak RSS at %s against %.3f %% and %.1f MiB at %s (P3).", fast.CPUPercent, fast.PeakRSSMiB, dur(r.IMDSPollS), slow.CPUPercent, slow.PeakRSSMiB, dur(r.SlowIMDSS))
		}
		w("\n\n")
	}
}

// joinInts writes sizes as "100, 500 and 1,000".
func joinInts(xs []int) string {
	var s []string
	for _, x := range xs {
		s = append(s, thousands(float64(x)))
	}
	if len(s) <= 1 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + " and " + s[len(s)-1]
}
