package supervisor

import (
	"context"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/scaledownd/scaledownd/pkg/lifecycle"
)

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

// transitionLabel is the closed label set of the unconfirmed metric.
func transitionLabel(transition string) string {
	if transition == lifecycle.TransitionLaunching {
		return "launching"
	}
	return "terminating"
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
	j.confirmed = true
	j.confirmSource = source
	if j.wake != nil {
		close(j.wake)
		j.wake = nil
	}
}

// isConfirmed reports whether the job may change the worker, and returns
// a channel closed once it may (nil when it already may).
func (j *job) isConfirmed() (bool, <-chan struct{}) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.confirmed {
		return true, nil
	}
	if j.wake == nil {
		j.wake = make(chan struct{})
	}
	return false, j.wake
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
	window := s.opts.ConfirmWindow
	again := s.rejectedBefore(j.key)
	if again {
		window = 0
	}
	interval := s.opts.ConfirmInterval
	start := s.opts.Clock.Now()
	deadline := start.Add(window)
	warned := false
	for {
		if ok, _ := j.isConfirmed(); ok {
			j.log().Info("lifecycle action confirmed by instance metadata while its message waited",
				zap.String("confirmed_by", j.confirmSourceOf()))
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
			if again {
				s.unreject(j.key)
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
		j.hideMessages(ctx, interval)
		_, wake := j.isConfirmed()
		select {
		case <-ctx.Done():
			return false
		case <-wake:
		case <-s.opts.Clock.After(min(interval, remaining)):
		}
	}
}

func (j *job) confirmSourceOf() string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.confirmSource
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

// hideMessages keeps the job's messages hidden until the next check and a
// margin: should the daemon die meanwhile, they come back soon.
func (j *job) hideMessages(ctx context.Context, interval time.Duration) {
	if j.s.opts.DryRun {
		return
	}
	for _, m := range j.messages() {
		if err := m.Extend(ctx, interval+j.s.opts.VisibilityMargin); err != nil && ctx.Err() == nil {
			j.log().Warn("could not extend the visibility of an unconfirmed message", zap.String("message_id", m.ID), zap.Error(err))
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
		s.opts.Recorder.Unconfirmed(transitionLabel(e.Transition))
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

// rejectedBefore reports whether the action was rejected before.
func (s *Supervisor) rejectedBefore(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.rejected[key]
	return ok
}

func (s *Supervisor) unreject(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.rejected, key)
}

// markRejected remembers the job's action as rejected and removes the
// job, so a redelivery from now on starts a new job (checked once) rather
// than joining this one. At most maxRejected actions are remembered, none
// longer than an action can live.
func (s *Supervisor) markRejected(j *job) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.jobs[j.key] == j {
		delete(s.jobs, j.key)
	}
	now := s.opts.Clock.Now()
	s.rejected[j.key] = now
	if len(s.rejected) <= maxRejected {
		return
	}
	oldest, oldestAt := "", now
	for k, t := range s.rejected {
		if now.Sub(t) > lifecycle.MaxGlobalTimeout {
			delete(s.rejected, k)
			continue
		}
		if !t.After(oldestAt) {
			oldest, oldestAt = k, t
		}
	}
	if len(s.rejected) > maxRejected {
		delete(s.rejected, oldest)
	}
}
