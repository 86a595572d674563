package supervisor

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/scaledownd/scaledownd/internal/statefile"
	"github.com/scaledownd/scaledownd/pkg/lifecycle"
	"github.com/scaledownd/scaledownd/pkg/trinoadmin"
)

// job is one lifecycle action from delivery to acknowledgement.
type job struct {
	s     *Supervisor
	key   string
	event lifecycle.Event

	resume *statefile.Record // set when picked up from a previous run

	mu      sync.Mutex
	msgs    []*lifecycle.Message // every SQS message that carried the action
	state   string
	timing  *lifecycle.HookTiming // once read
	planned *lifecycle.Plan       // once computed
	token   string                // lent by a later delivery of the same action

	confirmed     bool          // AWS confirmed the action (or its source is this instance's own state)
	confirmSource string        // what confirmed it
	wake          chan struct{} // closed when confirmed while a confirmation waits
	rep           *jobReport    // the drain report, once started (report.go)
}

// lend takes the token of another delivery of the same action, for an
// action learned without one (IMDS).
func (j *job) lend(token string) {
	if token == "" {
		return
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.event.Token == "" && j.token == "" {
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
	j.confirmedNow() // the report's confirmed step: from here on the action is this instance's

	// A terminating worker is told to drain before anything is read or
	// persisted: reading the hook's timeouts and two fsyncs would delay
	// DRAINING by tens of milliseconds, during which the coordinator keeps
	// scheduling new work on it. The deadline is applied once planned; a
	// crash before the plan is saved loses nothing (the message is still on
	// the queue, the metadata still says Terminated, DRAINING is idempotent).
	var run *drainRun
	if e.Transition != lifecycle.TransitionLaunching && !j.resumedDrained() {
		run = j.startDrain(ctx)
	}
	timing, plan := j.plan(ctx)
	if ctx.Err() != nil {
		if run != nil {
			run.stop(nil)
			<-run.done
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
	if e.Transition == lifecycle.TransitionLaunching {
		j.setPhase(PhaseActivating)
	} else {
		j.setPhase(PhaseDraining)
	}
	j.save(statefile.PhaseDraining, "")

	// The keeper heartbeats from now until completion; its context ends
	// whichever way the job ends, so no heartbeat loop outlives the action.
	act := lifecycle.ActionOf(e)
	keepCtx, stopKeeper := context.WithCancel(ctx)
	keeper := lifecycle.NewKeeper(j.heartbeater(), act, plan.HeartbeatInterval, s.opts.Retry)
	keeper.OnHeartbeat = func(err error) { j.onHeartbeat(keepCtx, err, plan.HeartbeatInterval) }
	keeperDone := make(chan error, 1)
	keeperExited := make(chan struct{})
	go func() {
		defer close(keeperExited)
		keeperDone <- keeper.Run(keepCtx)
	}()
	// The job never returns while its keeper runs: no heartbeat or
	// visibility change may follow the end of the action.
	defer func() {
		stopKeeper()
		<-keeperExited
	}()

	result, reason, ok := lifecycle.ResultContinue, "", false
	if e.Transition == lifecycle.TransitionLaunching {
		result, reason, ok = j.activate(ctx, plan, keeperDone)
	} else {
		reason, ok = j.drain(ctx, run, plan, keeperDone)
	}
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
	act = j.action() // with a token lent by the SQS message of an action IMDS reported first
	already, err := lifecycle.Finish(ctx, s.asg, act, result, keeper.Confirmed(), giveUp, s.opts.Retry)
	stopKeeper()
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

// activate waits for the worker to be ACTIVE for a launch action: CONTINUE
// once it is, ABANDON when it is not by the launch deadline. ok is false
// when the job must stop without completing.
func (j *job) activate(ctx context.Context, plan lifecycle.Plan, keeperDone <-chan error) (result, reason string, ok bool) {
	s := j.s
	if r := j.resume; r != nil && r.Phase == statefile.PhaseCompleting && r.Reason != "" {
		if r.Reason == ReasonLaunchTimeout {
			return lifecycle.ResultAbandon, r.Reason, true
		}
		return lifecycle.ResultContinue, r.Reason, true
	}
	deadline := plan.Deadline
	if lt := s.opts.LaunchTimeout; lt > 0 && plan.Started.Add(lt).Before(deadline) {
		deadline = plan.Started.Add(lt)
	}
	actCtx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	go func() {
		select {
		case <-actCtx.Done():
		case <-s.opts.Clock.After(deadline.Sub(s.opts.Clock.Now())):
			stop(errDeadline)
		}
	}()
	done := make(chan error, 1)
	go func() { done <- s.drainer.Activate(actCtx, j.log()) }()
	select {
	case <-ctx.Done():
		stop(nil)
		<-done
		return "", "", false
	case err := <-keeperDone:
		stop(nil)
		<-done
		if ctx.Err() == nil {
			j.log().Error("launch lifecycle action is no longer active; stopping", zap.Error(err))
			j.completed("already-done", ReasonLapsed)
			j.save(statefile.PhaseCompleted, ReasonLapsed)
			j.ack(ctx)
		}
		return "", "", false
	case err := <-done:
		switch {
		case ctx.Err() != nil:
			return "", "", false
		case err == nil:
			j.log().Info("trino worker is ACTIVE; continuing the launch")
			return lifecycle.ResultContinue, ReasonActive, true
		default:
			j.log().Error("trino worker did not become ACTIVE by the launch deadline; abandoning the launch",
				zap.Time("deadline", deadline), zap.Error(cause(actCtx, err)))
			return lifecycle.ResultAbandon, ReasonLaunchTimeout, true
		}
	}
}

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
	reason, ok := j.drain(ctx, j.startDrain(ctx), plan, nil)
	if !ok {
		return
	}
	j.log().Info("spot drain finished", zap.String("reason", reason), zap.Duration("elapsed", s.opts.Clock.Now().Sub(now)))
	j.completed("none", reason)
	s.forget(j.key, true)
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

// drain runs the drain until it ends or the deadline passes, and says why
// the action may be completed. ok is false when the job must stop without
// completing: the daemon is stopping, or the action ended without us.
func (j *job) drain(ctx context.Context, run *drainRun, plan lifecycle.Plan, keeperDone <-chan error) (reason string, ok bool) {
	s := j.s
	if j.resumedDrained() {
		j.log().Info("resumed action was drained before the restart; completing it", zap.String("reason", j.resume.Reason))
		return j.resume.Reason, true
	}
	if run == nil {
		run = j.startDrain(ctx)
	}
	drainCtx, stopDrain, drained := run.ctx, run.stop, run.done
	defer stopDrain(nil)
	// A lister that also follows the drain towards its deadline warns
	// which queries will fail when the action completes.
	if w, ok := s.opts.Queries.(deadlineWatcher); ok {
		watched := make(chan struct{})
		go func() {
			defer close(watched)
			w.Run(drainCtx, plan.Deadline)
		}()
		defer func() {
			stopDrain(nil)
			<-watched
		}()
	}
	// The deadline runs on the supervisor's clock (a fake one simulates a
	// 48-hour drain in a test), so it cancels the drain with a cause.
	go func() {
		select {
		case <-drainCtx.Done():
		case <-s.opts.Clock.After(plan.Deadline.Sub(s.opts.Clock.Now())):
			stopDrain(errDeadline)
		}
	}()

	select {
	case <-ctx.Done():
		j.log().Info("daemon stopping: leaving the action uncompleted for the next start")
		stopDrain(nil)
		<-drained
		return "", false
	case err := <-keeperDone:
		// The action ended without us: its heartbeat timeout lapsed, or
		// someone else completed it. There is nothing left to complete.
		stopDrain(nil)
		<-drained
		if ctx.Err() != nil {
			return "", false
		}
		j.log().Error("lifecycle action is no longer active; stopping", zap.Error(err))
		j.completed("already-done", ReasonLapsed)
		s.opts.Recorder.DrainFinished(ReasonLapsed, s.opts.Clock.Now().Sub(plan.Started))
		j.save(statefile.PhaseCompleted, ReasonLapsed)
		j.ack(ctx)
		return "", false
	case r := <-drained:
		if ctx.Err() != nil {
			j.log().Info("daemon stopping: leaving the action uncompleted for the next start")
			return "", false
		}
		return j.reasonOf(r.res, r.err), true
	}
}

// drainRun is a drain started by startDrain: stop cancels it (with a
// cause), done delivers its one result.
type drainRun struct {
	ctx  context.Context
	stop context.CancelCauseFunc
	done chan drainResult
}

type drainResult struct {
	res trinoadmin.Result
	err error
}

// resumedDrained reports whether a previous run drained this action and
// only its completion is left.
func (j *job) resumedDrained() bool {
	r := j.resume
	return r != nil && r.Phase == statefile.PhaseCompleting && r.Reason != ""
}

// startDrain starts draining the worker in the background. A drain that
// fails for any reason but the end of its context is tried again:
// completing early would kill the queries the drain protects.
func (j *job) startDrain(ctx context.Context) *drainRun {
	s := j.s
	drainCtx, stop := context.WithCancelCause(ctx)
	run := &drainRun{ctx: drainCtx, stop: stop, done: make(chan drainResult, 1)}
	drained := run.done
	go func() {
		backoff := time.Second
		for {
			drain := s.drainer.Drain
			if j.event.Destination == "WarmPool" {
				drain = s.drainer.Hold // the worker comes back with the instance
			}
			r, err := j.observed(drainCtx, drain)
			if err == nil || drainCtx.Err() != nil {
				drained <- drainResult{r, cause(drainCtx, err)}
				return
			}
			j.log().Error("drain failed; trying again until the deadline", zap.Error(err), zap.Duration("retry_in", backoff))
			select {
			case <-drainCtx.Done():
				drained <- drainResult{r, cause(drainCtx, drainCtx.Err())}
				return
			case <-s.opts.Clock.After(backoff):
			}
			backoff = min(2*backoff, 30*time.Second)
		}
	}()
	return run
}

// errDeadline is the cause of a drain stopped at the action's deadline.
var errDeadline = errors.New("lifecycle deadline reached")

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
	if j.resume != nil {
		if r.Plan == nil {
			r.Plan = j.resume.Plan
		}
		if r.Hook == nil {
			r.Hook = j.resume.Hook
		}
	}
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
	}
	switch r.Outcome {
	case trinoadmin.OutcomeDrained:
		log.Info("trino worker drained")
		return ReasonDrained
	case trinoadmin.OutcomeExited:
		log.Info("trino worker process has exited")
		return ReasonExited
	case trinoadmin.OutcomeNotRunning:
		log.Warn("no trino worker is running here; nothing to drain")
		return ReasonNotRunning
	case trinoadmin.OutcomeCoordinator:
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
	j.report().heartbeat(err)
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
	if s.opts.DryRun {
		return
	}
	for _, m := range j.messages() {
		if err := m.Extend(ctx, interval+s.opts.VisibilityMargin); err != nil && ctx.Err() == nil {
			j.log().Warn("could not extend the message's visibility", zap.Error(err))
		}
	}
}

// ack marks the action finished and deletes every message that carried
// it. The finished record stays for 48 h, so a redelivery after a restart
// is deleted too, not drained again.
func (j *job) ack(ctx context.Context) {
	j.s.forget(j.key, true)
	if j.s.opts.DryRun {
		j.log().Info("dry run: would delete the lifecycle message")
		j.finishReport(ctx)
		return
	}
	for _, m := range j.messages() {
		// Retried while the receipt handle is good, so an SQS outage does
		// not leave the message for its redelivery.
		if err := m.DeleteRetrying(ctx); err != nil {
			j.log().Warn("could not delete the lifecycle message; a redelivery will be recognised and deleted",
				zap.String("message_id", m.ID), zap.Error(err))
			continue
		}
		j.log().Info("lifecycle message deleted", zap.String("message_id", m.ID))
		j.messageDeleted()
	}
	j.finishReport(ctx) // before the record says acked: a restart in between keeps one report
	if ctx.Err() == nil {
		j.save(statefile.PhaseAcked, "")
	}
}

// heartbeater returns what the keeper calls: the real API, or in a dry run
// a stand-in that logs instead.
func (j *job) heartbeater() lifecycle.Heartbeater {
	if !j.s.opts.DryRun {
		return j.s.asg
	}
	return dryHeartbeater{log: j.log()}
}

type dryHeartbeater struct{ log *zap.Logger }

func (d dryHeartbeater) Heartbeat(context.Context, lifecycle.Action) error {
	d.log.Info("dry run: would record a lifecycle action heartbeat")
	return nil
}
