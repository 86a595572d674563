// Package drainreport is the record of one finished drain: what started it,
// when each step happened, how long each phase took, the heartbeats, the
// queries the drain waited for and how long it held the instance. The
// daemon logs it as one event ("drain report"), keeps the last ones in its
// state directory and `scaledownd history` prints them.
package drainreport

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Kinds of action a report describes.
const (
	KindTerminate   = "terminate"
	KindWarmPool    = "warm-pool"
	KindLaunch      = "launch"
	KindSpot        = "spot"
	KindRebalance   = "rebalance"
	KindMaintenance = "maintenance" // `scaledownd drain --wait`
)

// Phase names, as in phases_s and the label of
// scaledownd_drain_phase_duration_seconds.
const (
	PhaseSignalToDraining    = "signal_to_draining"
	PhaseDrainingToTasksZero = "draining_to_tasks_zero"
	PhaseTasksZeroToDrained  = "tasks_zero_to_drained"
	PhaseDrainedToCompletion = "drained_to_completion"
)

// PhaseNames lists the phases in the order a drain passes them.
var PhaseNames = []string{PhaseSignalToDraining, PhaseDrainingToTasksZero, PhaseTasksZeroToDrained, PhaseDrainedToCompletion}

// MaxQueries is how many queries a finished report lists (longest first);
// QueriesTotal counts them all.
const MaxQueries = 20

// maxTracked bounds the queries an unfinished report remembers (and
// counts).
const maxTracked = 1000

// Timeline holds when each step of the action happened; a step that did
// not happen is the zero time (omitted in JSON).
type Timeline struct {
	Signal            time.Time `json:"signal,omitzero"`   // the action began (Auto Scaling's time, or when the signal was seen)
	Received          time.Time `json:"received,omitzero"` // scaledownd learned of it
	Confirmed         time.Time `json:"confirmed,omitzero"`
	DrainingRequested time.Time `json:"draining_requested,omitzero"`
	TasksZero         time.Time `json:"tasks_zero,omitzero"`
	Drained           time.Time `json:"drained,omitzero"`
	ShuttingDown      time.Time `json:"shutting_down,omitzero"`
	ProcessGone       time.Time `json:"process_gone,omitzero"`
	Completed         time.Time `json:"completed,omitzero"`
	MessageDeleted    time.Time `json:"message_deleted,omitzero"`
}

// Phases are the durations between steps, in seconds; a phase whose ends
// did not both happen is nil (omitted).
type Phases struct {
	SignalToDraining    *float64 `json:"signal_to_draining,omitempty"`
	DrainingToTasksZero *float64 `json:"draining_to_tasks_zero,omitempty"`
	TasksZeroToDrained  *float64 `json:"tasks_zero_to_drained,omitempty"`
	DrainedToCompletion *float64 `json:"drained_to_completion,omitempty"`
}

// Query is one query that held the drain.
type Query struct {
	QueryID  string  `json:"query_id"`
	User     string  `json:"user,omitempty"`
	Source   string  `json:"source,omitempty"`
	State    string  `json:"state,omitempty"`
	ElapsedS float64 `json:"elapsed_s"` // as last seen during the drain
}

// Report is one finished action.
type Report struct {
	Kind             string   `json:"kind"`
	InstanceID       string   `json:"instance_id,omitempty"`
	ASG              string   `json:"asg,omitempty"`
	Hook             string   `json:"hook,omitempty"`
	TokenPrefix      string   `json:"token_prefix,omitempty"`
	Source           string   `json:"source"`
	Timeline         Timeline `json:"timeline"`
	Phases           Phases   `json:"phases_s"`
	Result           string   `json:"result"`
	Reason           string   `json:"reason,omitempty"`
	HeartbeatsSent   int      `json:"heartbeats_sent"`
	HeartbeatsFailed int      `json:"heartbeats_failed"`
	Queries          []Query  `json:"queries"`
	QueriesTotal     int      `json:"queries_total"`
	InstanceSeconds  float64  `json:"instance_seconds"`
}

// SeeQueries merges one observation of the queries holding the drain: new
// ones are added, known ones take the newer state and elapsed time.
func (r *Report) SeeQueries(qs []Query) {
	for _, q := range qs {
		if q.QueryID == "" {
			continue
		}
		i := slices.IndexFunc(r.Queries, func(k Query) bool { return k.QueryID == q.QueryID })
		switch {
		case i >= 0:
			r.Queries[i] = q
		case len(r.Queries) < maxTracked:
			r.Queries = append(r.Queries, q)
			r.QueriesTotal++
		}
	}
}

// Finish computes the phases and instance-seconds from the timeline and
// keeps the MaxQueries longest queries, longest first.
func (r *Report) Finish() {
	r.Phases = PhasesOf(r.Timeline)
	t := r.Timeline
	if start := first(t.Signal, t.Received); !start.IsZero() && !t.Completed.IsZero() {
		r.InstanceSeconds = seconds(t.Completed.Sub(start))
	}
	slices.SortStableFunc(r.Queries, func(a, b Query) int {
		return cmp.Or(cmp.Compare(b.ElapsedS, a.ElapsedS), strings.Compare(a.QueryID, b.QueryID))
	})
	r.Queries = append([]Query{}, r.Queries[:min(len(r.Queries), MaxQueries)]...) // [] in JSON, never null
	r.QueriesTotal = max(r.QueriesTotal, len(r.Queries))
}

// PhasesOf computes the phase durations of a timeline. The drain starts at
// DRAINING (SHUTTING_DOWN on the shutdown path) and ends at DRAINED (the
// exit on the shutdown path).
func PhasesOf(t Timeline) Phases {
	start := first(t.Signal, t.Received)
	drainStart := t.DrainingRequested
	if drainStart.IsZero() && t.Drained.IsZero() {
		drainStart = t.ShuttingDown
	}
	drainEnd := first(t.Drained, t.ProcessGone)
	return Phases{
		SignalToDraining:    span(start, drainStart),
		DrainingToTasksZero: span(drainStart, t.TasksZero),
		TasksZeroToDrained:  span(t.TasksZero, drainEnd),
		DrainedToCompletion: span(drainEnd, t.Completed),
	}
}

// Each calls fn for every phase that has a duration, in order.
func (p Phases) Each(fn func(name string, d time.Duration)) {
	for i, v := range []*float64{p.SignalToDraining, p.DrainingToTasksZero, p.TasksZeroToDrained, p.DrainedToCompletion} {
		if v != nil {
			fn(PhaseNames[i], time.Duration(*v*float64(time.Second)))
		}
	}
}

func first(ts ...time.Time) time.Time {
	for _, t := range ts {
		if !t.IsZero() {
			return t
		}
	}
	return time.Time{}
}

// span is the seconds from a to b, nil unless both happened (a step seen
// out of order, e.g. after a restart, counts as 0).
func span(a, b time.Time) *float64 {
	if a.IsZero() || b.IsZero() {
		return nil
	}
	return new(max(seconds(b.Sub(a)), 0))
}

func seconds(d time.Duration) float64 {
	return float64(d.Round(time.Millisecond)) / float64(time.Second)
}

// Line is the report in one line, for `scaledownd history`:
//
//	2026-11-26T01:48:05Z terminate i-0123… CONTINUE drained held 12.4s (signal→DRAINING 0.1s, →tasks 0 8.0s, →DRAINED 4.1s, →completion 0.2s) heartbeats 5 (0 failed) queries 2, longest 20261126_014805_00042_abcde 9.5s
func (r Report) Line() string {
	var b strings.Builder
	at := "-"
	if t := first(r.Timeline.Completed, r.Timeline.Received, r.Timeline.Signal); !t.IsZero() {
		at = t.UTC().Format(time.RFC3339)
	}
	fmt.Fprintf(&b, "%s %s %s %s %s held %.1fs", at, cmp.Or(r.Kind, "-"), cmp.Or(r.InstanceID, "-"), cmp.Or(r.Result, "-"), cmp.Or(r.Reason, "-"), r.InstanceSeconds)
	var parts []string
	labels := []string{"signal→DRAINING", "→tasks 0", "→DRAINED", "→completion"} // in the order of PhaseNames
	r.Phases.Each(func(name string, d time.Duration) {
		parts = append(parts, fmt.Sprintf("%s %.1fs", labels[slices.Index(PhaseNames, name)], d.Seconds()))
	})
	if len(parts) > 0 {
		fmt.Fprintf(&b, " (%s)", strings.Join(parts, ", "))
	}
	fmt.Fprintf(&b, " heartbeats %d (%d failed) queries %d", r.HeartbeatsSent, r.HeartbeatsFailed, r.QueriesTotal)
	if len(r.Queries) > 0 {
		q := r.Queries[0]
		fmt.Fprintf(&b, ", longest %s", q.QueryID)
		if q.User != "" {
			fmt.Fprintf(&b, " (%s)", q.User)
		}
		fmt.Fprintf(&b, " %.1fs", q.ElapsedS)
	}
	return b.String()
}
