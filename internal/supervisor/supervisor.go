// Package supervisor joins the AWS side and the Trino side. It takes this
// instance's lifecycle actions from the sources, drains the worker while a
// keeper heartbeats the action, completes the action with CONTINUE once
// the drain is done or the deadline is reached, and only then deletes the
// SQS message.
package supervisor

import (
	"cmp"
	"context"
	"errors"
	"maps"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/scaledownd/scaledownd/internal/drainreport"
	"github.com/scaledownd/scaledownd/internal/statefile"
	"github.com/scaledownd/scaledownd/pkg/lifecycle"
	"github.com/scaledownd/scaledownd/pkg/trinoadmin"
)

// Drainer takes the local worker out of service and brings it back;
// *trinoadmin.Drainer is one.
type Drainer interface {
	// Drain takes the worker out of service for good.
	Drain(ctx context.Context, log *zap.Logger) (trinoadmin.Result, error)
	// Hold drains but keeps the process: the instance goes to a warm pool.
	Hold(ctx context.Context, log *zap.Logger) (trinoadmin.Result, error)
	// Activate waits until the worker is ACTIVE (launch, or back from a
	// warm pool).
	Activate(ctx context.Context, log *zap.Logger) error
}

// AutoScaling is the Auto Scaling side the supervisor needs;
// *lifecycle.Actions is one.
type AutoScaling interface {
	HookTiming(ctx context.Context, group, hook string) (lifecycle.HookTiming, error)
	lifecycle.Heartbeater
	lifecycle.Completer
}

// Recorder receives what the supervisor does, for metrics.
type Recorder interface {
	SetPhase(phase string)
	SetDeadline(t time.Time)
	Heartbeat(result string)
	ActionCompleted(result, reason string)
	DrainFinished(outcome string, d time.Duration)
	OwnMessageReceiveCount(n int)
	// Unconfirmed counts an action from the queue that AWS did not
	// confirm, by transition (terminating, launching).
	Unconfirmed(transition string)
}

// Phases of an action.
const (
	PhaseIdle       = "idle"
	PhaseReceived   = "received"
	PhaseDraining   = "draining"
	PhaseActivating = "activating" // a launch action: waiting for the worker to be ACTIVE
	PhaseCompleting = "completing"
)

// Reasons an action was completed.
const (
	ReasonDrained     = "drained"
	ReasonExited      = "exited"
	ReasonNotRunning  = "not-running"
	ReasonCoordinator = "coordinator"
	ReasonDeadline    = "deadline"
	ReasonLapsed      = "lapsed"
)

// Store persists actions in progress; *statefile.Store is one.
type Store interface {
	Save(statefile.Record) error
	Remove(key string) error
}

// Options configure a Supervisor.
type Options struct {
	// Store, if set, persists every action's progress so a restarted daemon
	// resumes it (see Resume).
	Store Store
	Plan  lifecycle.PlanOptions
	Retry lifecycle.RetryPolicy
	// LaunchTimeout bounds how long a launch action waits for the worker
	// to become ACTIVE before it is abandoned.
	LaunchTimeout time.Duration
	// VisibilityMargin is added to the heartbeat interval to keep an action's
	// SQS message hidden while it is being worked on. Should the daemon die,
	// the message reappears before the action's heartbeat timeout lapses.
	VisibilityMargin time.Duration
	// Confirmer, if set, is asked before an action learned from the queue
	// changes the worker (see Confirmer). Nil trusts every delivery.
	Confirmer Confirmer
	// ConfirmWindow is how long an unconfirmed action is re-checked before
	// it is rejected (0: checked once); ConfirmInterval how often, at most
	// (default 5 s).
	ConfirmWindow, ConfirmInterval time.Duration
	DryRun                         bool
	// Queries, if set, lists the queries that hold a drain, every
	// QueryInterval (default 10 s), for the drain report and /status.
	Queries       QueryLister
	QueryInterval time.Duration
	// Reports, if set, keeps each action's drain report: in progress
	// across restarts, and the finished ones in a bounded history.
	Reports  ReportStore
	Logger   *zap.Logger
	Recorder Recorder
	Clock    lifecycle.Clock
}

// Supervisor runs lifecycle actions, one drain per action, de-duplicated by
// token.
type Supervisor struct {
	asg     AutoScaling
	drainer Drainer
	opts    Options
	log     *zap.Logger

	mu       sync.Mutex
	jobs     map[string]*job
	done     map[string]time.Time // finished actions by key, to absorb redeliveries
	finished map[string]time.Time // when each hook/transition tuple last finished
	rejected map[string]time.Time // actions AWS did not confirm, by key: redeliveries are checked once
	status   Status
	resumed  []*job // jobs from a previous run, started by Run
}

// New returns a Supervisor.
func New(asg AutoScaling, drainer Drainer, opts Options) *Supervisor {
	opts.Logger = cmp.Or(opts.Logger, zap.NewNop())
	opts.Recorder = cmp.Or[Recorder](opts.Recorder, nopRecorder{})
	opts.Clock = cmp.Or[lifecycle.Clock](opts.Clock, lifecycle.RealClock{})
	if opts.VisibilityMargin <= 0 {
		opts.VisibilityMargin = 30 * time.Second
	}
	if opts.ConfirmInterval <= 0 {
		opts.ConfirmInterval = DefaultConfirmInterval
	}
	return &Supervisor{
		asg: asg, drainer: drainer, opts: opts, log: opts.Logger,
		jobs: map[string]*job{}, done: map[string]time.Time{}, finished: map[string]time.Time{},
		rejected: map[string]time.Time{},
		status:   Status{Phase: PhaseIdle},
	}
}

// Status is a snapshot of what the supervisor is doing.
type Status struct {
	Phase      string    `json:"phase"`
	InstanceID string    `json:"instance_id,omitempty"`
	Group      string    `json:"asg,omitempty"`
	Hook       string    `json:"hook,omitempty"`
	Token      string    `json:"token_prefix,omitempty"`
	Started    time.Time `json:"started,omitzero"`
	Deadline   time.Time `json:"deadline,omitzero"`
	// DeadlineIn is the time left until Deadline, in seconds, when Status
	// was taken.
	DeadlineIn *float64 `json:"deadline_in_s,omitempty"`
	// TrinoState, TasksLeft, BlockingQueries and Queries follow the drain
	// in progress: the worker's last state and task count, and how many
	// queries still have tasks on it (the longest listed), when known.
	TrinoState      string              `json:"trino_state,omitempty"`
	TasksLeft       *int                `json:"tasks_left,omitempty"`
	BlockingQueries *int                `json:"blocking_queries,omitempty"`
	Queries         []drainreport.Query `json:"queries,omitempty"`
	Completed       int                 `json:"completed"`
}

// Status returns what the supervisor is doing now.
func (s *Supervisor) Status() Status {
	s.mu.Lock()
	st := s.status
	s.mu.Unlock()
	if !st.Deadline.IsZero() {
		left := st.Deadline.Sub(s.opts.Clock.Now()).Round(time.Millisecond).Seconds()
		st.DeadlineIn = &left
	}
	st.Queries = append([]drainreport.Query(nil), st.Queries...)
	return st
}

// progressInterval is how often an idle Run reports progress. The daemon's
// health watch declares the loop stuck after 30 s of silence: three beats
// fit in that, and an idle daemon wakes for them only every 10 s instead of
// every second.
const progressInterval = 10 * time.Second

// Run takes deliveries until ctx ends. progress is called at least every
// progressInterval while the loop is alive. When ctx ends, actions in progress are
// abandoned without completing them (a restart picks them up again) and
// Run returns once their goroutines have stopped.
func (s *Supervisor) Run(ctx context.Context, in <-chan lifecycle.Delivery, progress func()) {
	var wg sync.WaitGroup
	defer wg.Wait()
	startJob := func(j *job) {
		wg.Go(func() {
			j.run(ctx)
			s.forget(j, false) // whatever way run ended
		})
	}
	s.mu.Lock()
	resumed := s.resumed
	s.resumed = nil
	s.mu.Unlock()
	for _, j := range resumed {
		startJob(j)
	}
	tick := time.NewTicker(progressInterval)
	defer tick.Stop()
	for {
		if progress != nil {
			progress()
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case d := <-in:
			if j := s.accept(ctx, d); j != nil {
				startJob(j)
			}
		}
	}
}

// forget removes a job, unless another job for its key has taken its place
// (a redelivery of a rejected action). With finished, its key is
// remembered as done, so later deliveries of the action are deleted
// instead of drained again. A finishing job calls it before deleting its
// messages: a delivery that arrives after that is handled as a
// redelivery, never attached to a job whose messages are already gone.
func (s *Supervisor) forget(j *job, finished bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.jobs[j.key] == j {
		delete(s.jobs, j.key)
	}
	if finished {
		now := s.opts.Clock.Now()
		s.done[j.key] = now
		s.finished[j.event.Tuple()] = now
		s.pruneDone()
	}
}

// Resume takes the actions a previous run persisted: finished ones are
// remembered so their redeliveries are deleted; unfinished ones are picked
// up where they stopped when Run starts. adopt rebuilds their SQS messages
// (nil when there is no queue).
func (s *Supervisor) Resume(recs []statefile.Record, adopt func(statefile.MessageRef) *lifecycle.Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.opts.Clock.Now()
	for _, r := range recs {
		if r.Phase == statefile.PhaseAcked {
			if now.Sub(r.Updated) > lifecycle.MaxGlobalTimeout {
				s.removeRecord(r.Key)
				continue
			}
			s.done[r.Key] = r.Updated
			s.finished[r.Event.Tuple()] = r.Updated
			continue
		}
		// The plan and timing persist with every save; a restart never moves the deadline.
		j := &job{s: s, key: r.Key, event: r.Event, resume: &r, planned: r.Plan, timing: r.Hook}
		if adopt != nil {
			for _, ref := range r.Messages {
				if m := adopt(ref); m != nil {
					j.msgs = append(j.msgs, m)
				}
			}
		}
		s.log.Info("resuming a lifecycle action from the state directory",
			append(actionFields(r.Event), zap.String("state", r.Phase), zap.Int("messages", len(j.msgs)))...)
		s.jobs[r.Key] = j
		s.resumed = append(s.resumed, j)
	}
}

func (s *Supervisor) removeRecord(key string) {
	if s.opts.Store == nil {
		return
	}
	if err := s.opts.Store.Remove(key); err != nil {
		s.log.Warn("could not remove a state record", zap.Error(err))
	}
}

// accept de-duplicates a delivery. It returns a new job to start, or nil
// when the delivery belongs to an action already running or finished.
func (s *Supervisor) accept(ctx context.Context, d lifecycle.Delivery) *job {
	e := d.Event
	key := e.Key()
	log := s.log.With(actionFields(e)...)
	if d.Msg != nil {
		s.opts.Recorder.OwnMessageReceiveCount(d.Msg.ReceiveCount)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	redelivery := func(why string) *job {
		log.Info(why+"; deleting the message", zap.String("state", "finished"))
		if d.Msg != nil && !s.opts.DryRun {
			if err := d.Msg.Delete(ctx); err != nil {
				log.Warn("could not delete the redelivered message", zap.Error(err))
			}
		}
		return nil
	}
	if _, ok := s.done[key]; ok {
		return redelivery("redelivery of an action already finished")
	}
	if j, ok := s.jobs[key]; ok {
		log.Info("duplicate delivery of the action in progress; joining it", zap.String("state", j.phase()))
		j.addMessage(d.Msg)
		return nil
	}
	if e.IsLifecycleAction() {
		// The same action from another source (IMDS first, the SQS message
		// later, or the other way round) joins the job under way and lends
		// it its token.
		for _, j := range s.jobs {
			if j.event.Tuple() == e.Tuple() {
				log.Info("the action in progress was also reported by "+e.Source+"; joining it", zap.String("state", j.phase()))
				j.lend(e.Token)
				j.addMessage(d.Msg)
				if !needsConfirmation(e) {
					// This instance's metadata reports it too: AWS confirms.
					j.confirmedBy(e.Source)
				}
				return nil
			}
		}
		// A message from before an action of its tuple finished (through
		// another source) belongs to that finished action.
		if fin, ok := s.finished[e.Tuple()]; ok && e.Token != "" && !e.Time.IsZero() && !e.Time.After(fin) {
			s.done[key] = fin
			return redelivery("the action was already finished through another source")
		}
	}
	j := &job{s: s, key: key, event: e}
	j.addMessage(d.Msg)
	s.jobs[key] = j
	return j
}

// pruneDone forgets finished and rejected actions after 48 h, the longest
// an action can live. Callers hold s.mu.
func (s *Supervisor) pruneDone() {
	now := s.opts.Clock.Now()
	old := func(_ string, t time.Time) bool { return now.Sub(t) > lifecycle.MaxGlobalTimeout }
	maps.DeleteFunc(s.done, func(k string, t time.Time) bool {
		if old(k, t) {
			s.removeRecord(k)
			return true
		}
		return false
	})
	maps.DeleteFunc(s.finished, old)
	maps.DeleteFunc(s.rejected, old)
}

func (s *Supervisor) setStatus(fn func(*Status)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fn(&s.status)
}

// actionFields are the fields every log line about an action carries.
func actionFields(e lifecycle.Event) []zap.Field {
	return []zap.Field{
		zap.String("instance_id", e.InstanceID),
		zap.String("asg", e.Group),
		zap.String("hook", e.Hook),
		zap.String("token", e.TokenPrefix()),
	}
}

// job is one lifecycle action from delivery to acknowledgement.
type job struct {
	s     *Supervisor
	key   string
	event lifecycle.Event

	resume *statefile.Record // set when picked up from a previous run

	mu      sync.Mutex
	msgs    []*lifecycle.Message // every SQS message that carried the action
	state   string
	timing  *lifecycle.HookTiming // once read, or resumed
	planned *lifecycle.Plan       // once computed, or resumed
	token   string                // lent by a later delivery of the same action

	confirmed     bool          // AWS confirmed the action (or its source is this instance's own state)
	confirmSource string        // what confirmed it
	wake          chan struct{} // closed when confirmed while a confirmation waits

	repMu   sync.Mutex          // held while the report changes and is written
	rep     *drainreport.Report // the drain report, once started (report.go)
	repDone bool                // the report is logged and stored, or was stored by a previous run
}

// lend takes the token of another delivery of the same action, for an
// action learned without one (IMDS).
func (j *job) lend(token string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if token != "" && j.event.Token == "" && j.token == "" {
		j.token = token
	}
}

// action is the Auto Scaling action, with a lent token if there is one.
func (j *job) action() lifecycle.Action {
	j.mu.Lock()
	defer j.mu.Unlock()
	act := lifecycle.ActionOf(j.event)
	if act.Token == "" {
		act.Token = j.token
	}
	return act
}

func (j *job) phase() string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.state
}

func (j *job) setPhase(p string) {
	j.mu.Lock()
	j.state = p
	j.mu.Unlock()
	j.s.opts.Recorder.SetPhase(p)
	j.s.setStatus(func(st *Status) { st.Phase = p })
}

// log returns a logger with the action's fields and its current phase.
func (j *job) log() *zap.Logger {
	return j.s.log.With(append(actionFields(j.event), zap.String("state", j.phase()))...)
}

// addMessage remembers a message carrying the action. A redelivery of the
// same message brings a newer receipt handle, which replaces the old one;
// another message (the same action through a second path) is added.
func (j *job) addMessage(m *lifecycle.Message) {
	if m == nil {
		return
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, old := range j.msgs {
		if old.ID == m.ID {
			old.Supersede(m)
			return
		}
	}
	j.msgs = append(j.msgs, m)
}

func (j *job) messages() []*lifecycle.Message {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]*lifecycle.Message(nil), j.msgs...)
}

// No drain AWS did not ask for: an action learned from the SQS queue
// changes the worker only once AWS confirms it for this instance (see
// lifecycle.Confirmer). Until then it is re-checked for ConfirmWindow
// while its messages stay hidden; an action still unconfirmed then is
// logged as an error, counted, never drained and never completed, and its
// messages are settled like stale ones. Metadata signals (target lifecycle
// state, Spot notices) and the start-up Pending:Wait delivery confirm
// themselves; so does an action of the same hook and transition reported
// by metadata while the queue's message waits.

// Confirmer asks AWS whether an action is real for this instance;
// *lifecycle.Confirmer is one.
type Confirmer interface {
	// Confirm reports what AWS says now; last marks the final check of a
	// window, which may ask more (see lifecycle.Confirmer).
	Confirm(ctx context.Context, e lifecycle.Event, last bool) (lifecycle.Confirmation, error)
}

const (
	// DefaultConfirmInterval is how often an unconfirmed action is
	// re-checked, at most.
	DefaultConfirmInterval = 5 * time.Second
	// maxRejected bounds how many rejected actions are remembered.
	maxRejected = 10000
)

// needsConfirmation reports whether e came from a source anyone could
// write to: the queue. Metadata and the start-up check read this
// instance's own state and confirm themselves.
func needsConfirmation(e lifecycle.Event) bool {
	return e.IsLifecycleAction() && e.Source == "sqs"
}

// confirmedBy marks the job confirmed by a self-confirming source (an
// action of the same hook and transition from instance metadata) and
// wakes a confirmation that waits.
func (j *job) confirmedBy(source string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.confirmed {
		return
	}
	j.confirmed, j.confirmSource = true, source
	if j.wake != nil {
		close(j.wake)
		j.wake = nil
	}
}

// confirmation returns what confirmed the job and nil once it may change
// the worker; until then "" and a channel closed once it may.
func (j *job) confirmation() (by string, wake <-chan struct{}) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.confirmed {
		return j.confirmSource, nil
	}
	if j.wake == nil {
		j.wake = make(chan struct{})
	}
	return "", j.wake
}

// confirm waits until AWS confirms the job's action, for at most the
// confirmation window (no window at all for an action rejected before).
// It returns false when the job must end without touching the worker:
// the action was rejected, or the daemon is stopping.
func (j *job) confirm(ctx context.Context) bool {
	s, e := j.s, j.event
	c := s.opts.Confirmer
	if c == nil || !needsConfirmation(e) || (j.resume != nil && j.resume.Confirmed) {
		j.confirmedBy(e.Source)
		return true
	}
	// An action rejected before is checked once, no longer remembered as
	// rejected: it is rejected anew (markRejected) if AWS still does not
	// confirm it. Meanwhile its redeliveries join this job.
	s.mu.Lock()
	_, again := s.rejected[j.key]
	delete(s.rejected, j.key)
	s.mu.Unlock()
	window := s.opts.ConfirmWindow
	if again {
		window = 0
	}
	interval := s.opts.ConfirmInterval
	start := s.opts.Clock.Now()
	deadline := start.Add(window)
	warned := false
	for {
		by, wake := j.confirmation()
		if wake == nil {
			j.log().Info("lifecycle action confirmed by instance metadata while its message waited",
				zap.String("confirmed_by", by))
			return true
		}
		last := !s.opts.Clock.Now().Before(deadline)
		conf, err := c.Confirm(ctx, e, last)
		if ctx.Err() != nil {
			return false
		}
		if err == nil && conf.Confirmed {
			j.confirmedBy(conf.By)
			fields := []zap.Field{zap.String("confirmed_by", conf.By), zap.String("aws_said", conf.Said())}
			if warned || again {
				j.log().Info("lifecycle action confirmed by AWS", append(fields, zap.Duration("after", s.opts.Clock.Now().Sub(start)))...)
			} else {
				j.log().Debug("lifecycle action confirmed by AWS", fields...)
			}
			return true
		}
		if last {
			j.reject(ctx, conf, err, again)
			return false
		}
		remaining := max(deadline.Sub(s.opts.Clock.Now()), 0)
		if !warned {
			warned = true
			j.log().Warn("AWS does not confirm this lifecycle action (yet); the worker is left alone while it is re-checked",
				j.confirmFields(conf, err, zap.Duration("confirm_window", window))...)
		}
		j.hideMessages(ctx, interval, "could not extend the visibility of an unconfirmed message")
		select {
		case <-ctx.Done():
			return false
		case <-wake:
		case <-s.opts.Clock.After(min(interval, remaining)):
		}
	}
}

// confirmFields are the fields naming what AWS said about the action.
func (j *job) confirmFields(conf lifecycle.Confirmation, err error, extra ...zap.Field) []zap.Field {
	var ids []string
	for _, m := range j.messages() {
		ids = append(ids, m.ID)
	}
	fields := []zap.Field{
		zap.String("message_id", strings.Join(ids, ",")),
		zap.String("transition", j.event.Transition),
		zap.String("aws_said", conf.Said()),
	}
	if conf.TargetState != "" {
		fields = append(fields, zap.String("target_lifecycle_state", conf.TargetState))
	}
	if conf.Asked {
		fields = append(fields, zap.String("lifecycle_state", conf.Membership.State), zap.String("member_of", conf.Membership.Group))
	}
	if err != nil {
		fields = append(fields, zap.Error(err))
	}
	return append(fields, extra...)
}

// hideMessages keeps the job's messages hidden for interval and a margin
// (until the next check or heartbeat): should the daemon die meanwhile,
// they come back soon. A failure is logged as failMsg.
func (j *job) hideMessages(ctx context.Context, interval time.Duration, failMsg string) {
	if j.s.opts.DryRun {
		return
	}
	for _, m := range j.messages() {
		if err := m.Extend(ctx, interval+j.s.opts.VisibilityMargin); err != nil && ctx.Err() == nil {
			j.log().Warn(failMsg, zap.String("message_id", m.ID), zap.Error(err))
		}
	}
}

// reject ends a job AWS did not confirm: never drained, never completed.
// The first rejection of an action is logged as an error and counted; a
// redelivery of it is checked once and settled again quietly. Its messages
// are deleted once Auto Scaling shows nothing to act on, else handed back.
func (j *job) reject(ctx context.Context, conf lifecycle.Confirmation, err error, again bool) {
	s, e := j.s, j.event
	s.markRejected(j)
	if again {
		j.log().Info("redelivered lifecycle message is still not confirmed by AWS; the worker is left alone",
			j.confirmFields(conf, err)...)
	} else {
		j.log().Error("lifecycle message not confirmed by AWS for this instance: the worker is not drained and the action is not completed. "+
			"Look for a misrouted lifecycle hook, a replayed or a forged notification",
			j.confirmFields(conf, err, zap.Duration("confirm_window", s.opts.ConfirmWindow))...)
		label := "terminating" // the metric's labels are a closed set
		if e.Transition == lifecycle.TransitionLaunching {
			label = "launching"
		}
		s.opts.Recorder.Unconfirmed(label)
	}
	if s.opts.DryRun {
		return
	}
	for _, m := range j.messages() {
		reason, deleted, err := m.SettleUnconfirmed(ctx, e)
		switch {
		case err != nil && ctx.Err() == nil:
			j.log().Warn("could not settle an unconfirmed message; it comes back when its visibility ends",
				zap.String("message_id", m.ID), zap.Error(err))
		case deleted:
			j.log().Info("deleted an unconfirmed lifecycle message: Auto Scaling shows nothing to act on",
				zap.String("message_id", m.ID), zap.String("reason", reason))
		case err == nil:
			j.log().Info("handed back an unconfirmed lifecycle message", zap.String("message_id", m.ID))
		}
	}
}

// markRejected remembers the job's action as rejected and removes the
// job, so a redelivery from now on starts a new job (checked once) rather
// than joining this one. At most maxRejected actions are remembered (the
// oldest go first), none longer than an action can live (pruneDone).
func (s *Supervisor) markRejected(j *job) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.jobs[j.key] == j {
		delete(s.jobs, j.key)
	}
	s.rejected[j.key] = s.opts.Clock.Now()
	if len(s.rejected) > maxRejected {
		oldest := ""
		for k, t := range s.rejected {
			if oldest == "" || t.Before(s.rejected[oldest]) {
				oldest = k
			}
		}
		delete(s.rejected, oldest)
	}
}

// run drives the action. It returns without completing when ctx ends.
func (j *job) run(ctx context.Context) {
	s, e := j.s, j.event
	j.setPhase(PhaseReceived)
	defer func() {
		s.opts.Recorder.SetDeadline(time.Time{})
		s.opts.Recorder.SetPhase(PhaseIdle)
		s.setStatus(func(st *Status) { *st = Status{Phase: PhaseIdle, Completed: st.Completed} })
	}()
	if !e.IsLifecycleAction() {
		j.runSignal(ctx)
		return
	}
	if j.resume != nil && j.resume.Phase == statefile.PhaseCompleted {
		// Completed before a restart; only the messages are left to delete.
		j.log().Info("resumed action was already completed; deleting its messages")
		j.ack(ctx)
		return
	}
	// Nothing changes the worker before AWS confirms the action.
	if !j.confirm(ctx) {
		return
	}
	// The report's confirmed step: from here on the action is this instance's.
	j.mark(func(t *drainreport.Timeline) *time.Time { return &t.Confirmed })

	// A terminating worker is told to drain before anything is read or
	// persisted: reading the hook's timeouts and two fsyncs would delay
	// DRAINING by tens of milliseconds, during which the coordinator keeps
	// scheduling new work on it. The deadline is applied once planned; a
	// crash before the plan is saved loses nothing (the message is still on
	// the queue, the metadata still says Terminated, DRAINING is idempotent).
	var run *task
	if e.Transition != lifecycle.TransitionLaunching && !j.resumedDrained() {
		run = j.startDrain(ctx)
	}
	timing, plan := j.plan(ctx)
	if ctx.Err() != nil {
		if run != nil {
			run.halt()
		}
		return
	}
	s.opts.Recorder.SetDeadline(plan.Deadline)
	s.setStatus(func(st *Status) {
		st.InstanceID, st.Group, st.Hook, st.Token = e.InstanceID, e.Group, e.Hook, e.TokenPrefix()
		st.Started, st.Deadline = plan.Started, plan.Deadline
	})
	j.log().Info("lifecycle action received",
		zap.String("transition", e.Transition), zap.String("source", e.Source), zap.String("shape", e.Shape),
		zap.String("destination", e.Destination), zap.Bool("resumed", j.resume != nil),
		zap.Time("action_started", plan.Started), zap.Duration("heartbeat_timeout", timing.HeartbeatTimeout),
		zap.Duration("heartbeat_interval", plan.HeartbeatInterval),
		zap.Time("deadline", plan.Deadline), zap.String("deadline_limit", plan.Limit))
	phase := PhaseDraining
	if e.Transition == lifecycle.TransitionLaunching {
		phase = PhaseActivating
	}
	j.setPhase(phase)
	j.save(statefile.PhaseDraining, "")

	// The keeper heartbeats from now until completion. The job never
	// returns while its keeper runs: no heartbeat or visibility change may
	// follow the end of the action.
	keeper := lifecycle.NewKeeper(j, lifecycle.ActionOf(e), plan.HeartbeatInterval, s.opts.Retry)
	keeping := goTask(ctx, func(ctx context.Context) (trinoadmin.Result, error) {
		keeper.OnHeartbeat = func(err error) { j.onHeartbeat(ctx, err, plan.HeartbeatInterval) }
		return trinoadmin.Result{}, keeper.Run(ctx)
	})
	defer keeping.halt()

	result, reason, ok := j.settle(ctx, run, plan, keeping)
	if !ok {
		return
	}
	j.save(statefile.PhaseCompleting, reason)
	j.setPhase(PhaseCompleting)
	if s.opts.DryRun {
		j.log().Info("dry run: would complete the lifecycle action", zap.String("result", result), zap.String("reason", reason))
		j.completed("dry-run", reason)
		j.ack(ctx)
		return
	}
	giveUp := plan.Started.Add(timing.GlobalTimeoutOf())
	act := j.action() // with a token lent by the SQS message of an action IMDS reported first
	already, err := lifecycle.Finish(ctx, s.asg, act, result, keeper.Confirmed(), giveUp, s.opts.Retry)
	keeping.halt()
	elapsed := s.opts.Clock.Now().Sub(plan.Started)
	switch {
	case err != nil && ctx.Err() != nil:
		j.log().Info("daemon stopping during completion; leaving the action for the next start", zap.Error(err))
		return
	case err != nil:
		// The message stays on the queue: it reappears and the action is
		// tried again while AWS still holds it.
		j.log().Error("could not complete the lifecycle action", zap.Error(err), zap.String("reason", reason))
		j.completed("error", reason) // the report goes on with the retry
		return
	case already:
		j.log().Warn("lifecycle action was already gone when completing it", zap.String("reason", reason))
		j.completed("already-done", reason)
	default:
		j.log().Info("lifecycle action completed", zap.String("result", result),
			zap.String("reason", reason), zap.Duration("elapsed", elapsed))
		j.completed(result, reason)
	}
	j.save(statefile.PhaseCompleted, reason)
	s.opts.Recorder.DrainFinished(reason, elapsed)
	s.setStatus(func(st *Status) { st.Completed++ })
	j.ack(ctx)
}

// Reasons a launch action is completed.
const (
	ReasonActive        = "active"         // the worker is ACTIVE: CONTINUE
	ReasonLaunchTimeout = "launch-timeout" // not ACTIVE in time: ABANDON
)

// runSignal drains for a Spot signal: no lifecycle action to heartbeat or
// complete, only a deadline — the reclaim time of an interruption notice,
// or lifecycle.max-drain-time for a rebalance recommendation.
func (j *job) runSignal(ctx context.Context) {
	s, e := j.s, j.event
	now := s.opts.Clock.Now()
	deadline := e.Deadline
	if deadline.IsZero() {
		deadline = now.Add(s.opts.Plan.MaxDrainTime)
	}
	plan := lifecycle.Plan{Started: now, Deadline: deadline, Limit: e.Transition}
	s.opts.Recorder.SetDeadline(deadline)
	j.setPhase(PhaseDraining)
	j.log().Warn("draining for a spot signal; there is no lifecycle action to complete",
		zap.String("transition", e.Transition), zap.Time("deadline", deadline))
	_, reason, ok := j.settle(ctx, j.startDrain(ctx), plan, &task{}) // no keeper: a task that never ends
	if !ok {
		return
	}
	j.log().Info("spot drain finished", zap.String("reason", reason), zap.Duration("elapsed", s.opts.Clock.Now().Sub(now)))
	j.completed("none", reason)
	s.forget(j, true)
	j.finishReport(ctx)
}

// plan reads the hook's timing and computes heartbeat interval and
// deadline — or takes both from the state of a resumed action, so a
// restart never moves the deadline.
func (j *job) plan(ctx context.Context) (lifecycle.HookTiming, lifecycle.Plan) {
	s, e := j.s, j.event
	if r := j.resume; r != nil && r.Plan != nil && r.Hook != nil {
		return *r.Hook, *r.Plan
	}
	j.save(statefile.PhaseReceived, "")
	timing, err := s.asg.HookTiming(ctx, e.Group, e.Hook)
	if err != nil && ctx.Err() == nil {
		j.log().Warn("cannot read the lifecycle hook's timeouts; heartbeating every 15 s and assuming the 48 h cap", zap.Error(err))
	}
	plan, notes := lifecycle.NewPlan(e.Started(), timing, s.opts.Plan)
	for _, n := range notes {
		j.log().Warn(n)
	}
	j.mu.Lock()
	j.timing, j.planned = &timing, &plan
	j.mu.Unlock()
	return timing, plan
}

// settle waits until the worker is drained — for a launch, until it is
// ACTIVE — or the deadline passes, and says how to complete the action:
// with CONTINUE, but a launch whose worker is not ACTIVE by the launch
// deadline with ABANDON. ok is false when the job must stop without
// completing: the daemon is stopping, or the action ended without us.
// run is the drain under way (nil for a launch), keeper the heartbeats.
func (j *job) settle(ctx context.Context, run *task, plan lifecycle.Plan, keeper *task) (result, reason string, ok bool) {
	s := j.s
	launch := j.event.Transition == lifecycle.TransitionLaunching
	if j.resumedDrained() {
		if launch && j.resume.Reason == ReasonLaunchTimeout {
			return lifecycle.ResultAbandon, j.resume.Reason, true
		}
		if !launch {
			j.log().Info("resumed action was drained before the restart; completing it", zap.String("reason", j.resume.Reason))
		}
		return lifecycle.ResultContinue, j.resume.Reason, true
	}
	deadline := plan.Deadline
	if launch {
		if lt := s.opts.LaunchTimeout; lt > 0 && plan.Started.Add(lt).Before(deadline) {
			deadline = plan.Started.Add(lt)
		}
		run = goTask(ctx, func(ctx context.Context) (trinoadmin.Result, error) {
			return trinoadmin.Result{}, s.drainer.Activate(ctx, j.log())
		})
	} else if w, ok := s.opts.Queries.(deadlineWatcher); ok {
		// A lister that also follows the drain towards its deadline warns
		// which queries will fail when the action completes.
		defer background(run.ctx, func(ctx context.Context) { w.Run(ctx, deadline) })()
	}
	defer run.stop(nil)
	s.stopAt(run.ctx, run.stop, deadline)

	select {
	case <-ctx.Done():
	case <-keeper.done:
		// The action ended without us: its heartbeat timeout lapsed, or
		// someone else completed it. There is nothing left to complete.
		run.halt()
		if ctx.Err() != nil {
			return "", "", false
		}
		msg := "lifecycle action is no longer active; stopping"
		if launch {
			msg = "launch " + msg
		}
		j.log().Error(msg, zap.Error(keeper.err))
		j.completed("already-done", ReasonLapsed)
		if !launch {
			s.opts.Recorder.DrainFinished(ReasonLapsed, s.opts.Clock.Now().Sub(plan.Started))
		}
		j.save(statefile.PhaseCompleted, ReasonLapsed)
		j.ack(ctx)
		return "", "", false
	case <-run.done:
	}
	switch {
	case ctx.Err() != nil:
		if !launch {
			j.log().Info("daemon stopping: leaving the action uncompleted for the next start")
		}
		run.halt()
		return "", "", false
	case !launch:
		return lifecycle.ResultContinue, j.reasonOf(run.res, run.err), true
	case run.err == nil:
		j.log().Info("trino worker is ACTIVE; continuing the launch")
		return lifecycle.ResultContinue, ReasonActive, true
	default:
		j.log().Error("trino worker did not become ACTIVE by the launch deadline; abandoning the launch",
			zap.Time("deadline", deadline), zap.Error(run.err))
		return lifecycle.ResultAbandon, ReasonLaunchTimeout, true
	}
}

// resumedDrained reports whether a previous run drained (or activated)
// this action and only its completion is left.
func (j *job) resumedDrained() bool {
	r := j.resume
	return r != nil && r.Phase == statefile.PhaseCompleting && r.Reason != ""
}

// startDrain starts draining the worker in the background. A drain that
// fails for any reason but the end of its context is tried again:
// completing early would kill the queries the drain protects.
func (j *job) startDrain(ctx context.Context) *task {
	s := j.s
	drain := s.drainer.Drain
	if j.event.Destination == "WarmPool" {
		drain = s.drainer.Hold // the worker comes back with the instance
	}
	return goTask(ctx, func(ctx context.Context) (trinoadmin.Result, error) {
		for backoff := time.Second; ; backoff = min(2*backoff, 30*time.Second) {
			r, err := j.observed(ctx, drain)
			if err == nil || ctx.Err() != nil {
				return r, err
			}
			j.log().Error("drain failed; trying again until the deadline", zap.Error(err), zap.Duration("retry_in", backoff))
			select {
			case <-ctx.Done():
				return r, ctx.Err()
			case <-s.opts.Clock.After(backoff):
			}
		}
	})
}

// errDeadline is the cause of a drain stopped at the action's deadline.
var errDeadline = errors.New("lifecycle deadline reached")

// task is work a job runs in the background on a context of its own: stop
// ends that context (with a cause), done is closed once the work has
// returned res and err.
type task struct {
	ctx  context.Context
	stop context.CancelCauseFunc
	done chan struct{}
	res  trinoadmin.Result
	err  error // errDeadline if stopped at the deadline
}

func goTask(ctx context.Context, fn func(context.Context) (trinoadmin.Result, error)) *task {
	ctx, stop := context.WithCancelCause(ctx)
	t := &task{ctx: ctx, stop: stop, done: make(chan struct{})}
	go func() {
		defer close(t.done)
		res, err := fn(ctx)
		t.res, t.err = res, cause(ctx, err)
	}()
	return t
}

// halt stops the task and waits for it to return.
func (t *task) halt() {
	t.stop(nil)
	<-t.done
}

// background runs fn as a task; stop ends its context and waits for fn to
// return.
func background(ctx context.Context, fn func(context.Context)) (stop func()) {
	return goTask(ctx, func(ctx context.Context) (trinoadmin.Result, error) {
		fn(ctx)
		return trinoadmin.Result{}, nil
	}).halt
}

// stopAt stops ctx with errDeadline at deadline. The deadline runs on the
// supervisor's clock (a fake one simulates a 48-hour drain in a test).
func (s *Supervisor) stopAt(ctx context.Context, stop context.CancelCauseFunc, deadline time.Time) {
	go func() {
		select {
		case <-ctx.Done():
		case <-s.opts.Clock.After(deadline.Sub(s.opts.Clock.Now())):
			stop(errDeadline)
		}
	}()
}

// cause returns errDeadline when ctx was stopped by the deadline, else err.
func cause(ctx context.Context, err error) error {
	if c := context.Cause(ctx); errors.Is(c, errDeadline) {
		return c
	}
	return err
}

// save persists the action's progress. A failure is logged, not fatal: the
// SQS message is the fallback record of the action.
func (j *job) save(phase, reason string) {
	s := j.s
	if s.opts.Store == nil || s.opts.DryRun {
		return
	}
	j.mu.Lock()
	r := statefile.Record{Key: j.key, Event: j.event, Phase: phase, Reason: reason, Plan: j.planned, Hook: j.timing,
		Confirmed: j.confirmed, Updated: s.opts.Clock.Now()}
	for _, m := range j.msgs {
		r.Messages = append(r.Messages, statefile.MessageRef{ID: m.ID, ReceiptHandle: m.ReceiptHandle(), ReceiveCount: m.ReceiveCount})
	}
	j.mu.Unlock()
	if err := s.opts.Store.Save(r); err != nil {
		j.log().Warn("could not persist the action's progress; a restart would rely on the SQS message alone", zap.Error(err))
	}
}

// reasonOf names why the action may now be completed, logging what it means.
func (j *job) reasonOf(r trinoadmin.Result, err error) string {
	log := j.log().With(zap.String("trino_version", r.Version), zap.String("strategy", string(r.Strategy)))
	switch {
	case errors.Is(err, errDeadline), errors.Is(err, context.DeadlineExceeded):
		log.Warn("deadline reached before the worker finished draining; completing with CONTINUE anyway")
		return ReasonDeadline
	case err != nil:
		log.Error("drain did not finish", zap.Error(err))
		return ReasonDeadline
	case r.Outcome == trinoadmin.OutcomeDrained:
		log.Info("trino worker drained")
		return ReasonDrained
	case r.Outcome == trinoadmin.OutcomeExited:
		log.Info("trino worker process has exited")
		return ReasonExited
	case r.Outcome == trinoadmin.OutcomeNotRunning:
		log.Warn("no trino worker is running here; nothing to drain")
		return ReasonNotRunning
	case r.Outcome == trinoadmin.OutcomeCoordinator:
		log.Error("the configured trino url points at a coordinator, which cannot be drained; " +
			"install scaledownd on workers only (or point trino.url at the local worker). Completing at once: there is nothing a drain can save")
		return ReasonCoordinator
	}
	return ReasonDeadline
}

// onHeartbeat records a heartbeat and keeps the action's SQS messages
// hidden for another interval.
func (j *job) onHeartbeat(ctx context.Context, err error, interval time.Duration) {
	s := j.s
	j.updateReport(func(rep *drainreport.Report) {
		if err == nil {
			rep.HeartbeatsSent++
		} else {
			rep.HeartbeatsFailed++
		}
	})
	switch {
	case err == nil:
		s.opts.Recorder.Heartbeat("ok")
		j.log().Debug("heartbeat recorded")
	case errors.Is(err, lifecycle.ErrNoActiveAction):
		s.opts.Recorder.Heartbeat("not-found")
		j.log().Warn("heartbeat: no active lifecycle action (yet); retrying", zap.Error(err))
	default:
		s.opts.Recorder.Heartbeat("error")
		j.log().Warn("heartbeat failed; retrying", zap.Error(err))
	}
	j.hideMessages(ctx, interval, "could not extend the message's visibility")
}

// ack marks the action finished and deletes every message that carried
// it. The finished record stays for 48 h, so a redelivery after a restart
// is deleted too, not drained again.
func (j *job) ack(ctx context.Context) {
	j.s.forget(j, true)
	msgs := j.messages()
	if j.s.opts.DryRun {
		j.log().Info("dry run: would delete the lifecycle message")
		msgs = nil // nor is anything saved
	}
	for _, m := range msgs {
		// Retried while the receipt handle is good, so an SQS outage does
		// not leave the message for its redelivery.
		if err := m.DeleteRetrying(ctx); err != nil {
			j.log().Warn("could not delete the lifecycle message; a redelivery will be recognised and deleted",
				zap.String("message_id", m.ID), zap.Error(err))
			continue
		}
		j.log().Info("lifecycle message deleted", zap.String("message_id", m.ID))
		j.mark(func(t *drainreport.Timeline) *time.Time { return &t.MessageDeleted }) // the first deletion counts
	}
	j.finishReport(ctx) // before the record says acked: a restart in between keeps one report
	if ctx.Err() == nil {
		j.save(statefile.PhaseAcked, "")
	}
}

// Heartbeat is what the keeper calls: the real API, or in a dry run a log
// line instead.
func (j *job) Heartbeat(ctx context.Context, act lifecycle.Action) error {
	if !j.s.opts.DryRun {
		return j.s.asg.Heartbeat(ctx, act)
	}
	j.log().Info("dry run: would record a lifecycle action heartbeat")
	return nil
}

type nopRecorder struct{}

func (nopRecorder) SetPhase(string)                     {}
func (nopRecorder) SetDeadline(time.Time)               {}
func (nopRecorder) Heartbeat(string)                    {}
func (nopRecorder) ActionCompleted(string, string)      {}
func (nopRecorder) DrainFinished(string, time.Duration) {}
func (nopRecorder) OwnMessageReceiveCount(int)          {}
func (nopRecorder) Unconfirmed(string)                  {}
