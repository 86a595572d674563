// Package supervisor joins the AWS side and the Trino side. It takes this
// instance's lifecycle actions from the sources, drains the worker while a
// keeper heartbeats the action, completes the action with CONTINUE once
// the drain is done or the deadline is reached, and only then deletes the
// SQS message.
package supervisor

import (
	"context"
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
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Recorder == nil {
		opts.Recorder = nopRecorder{}
	}
	if opts.Clock == nil {
		opts.Clock = lifecycle.RealClock{}
	}
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
		wg.Add(1)
		go func() {
			defer wg.Done()
			j.run(ctx)
			s.drop(j) // whatever way run ended
		}()
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

// forget removes a job. With finished, its key is remembered as done, so
// later deliveries of the action are deleted instead of drained again. The
// job calls it before deleting its messages: a delivery that arrives after
// that is handled as a redelivery, never attached to a job whose messages
// are already gone.
func (s *Supervisor) forget(key string, finished bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.jobs[key]
	delete(s.jobs, key)
	if finished {
		now := s.opts.Clock.Now()
		s.done[key] = now
		if j != nil {
			s.finished[j.event.Tuple()] = now
		}
		s.pruneDone()
	}
}

// drop removes a job that has ended, unless another job for its key has
// taken its place (a redelivery of a rejected action).
func (s *Supervisor) drop(j *job) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.jobs[j.key] == j {
		delete(s.jobs, j.key)
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
		log := s.log.With(append(actionFields(r.Event), zap.String("state", r.Phase))...)
		if r.Phase == statefile.PhaseAcked {
			if now.Sub(r.Updated) > lifecycle.MaxGlobalTimeout {
				s.removeRecord(r.Key)
				continue
			}
			s.done[r.Key] = r.Updated
			s.finished[r.Event.Tuple()] = r.Updated
			continue
		}
		j := &job{s: s, key: r.Key, event: r.Event, resume: &r}
		if adopt != nil {
			for _, ref := range r.Messages {
				if m := adopt(ref); m != nil {
					j.msgs = append(j.msgs, m)
				}
			}
		}
		log.Info("resuming a lifecycle action from the state directory", zap.Int("messages", len(j.msgs)))
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

// pruneDone forgets finished actions after 48 h, the longest an action can
// live. Callers hold s.mu.
func (s *Supervisor) pruneDone() {
	now := s.opts.Clock.Now()
	for k, t := range s.done {
		if now.Sub(t) > lifecycle.MaxGlobalTimeout {
			delete(s.done, k)
			s.removeRecord(k)
		}
	}
	for k, t := range s.finished {
		if now.Sub(t) > lifecycle.MaxGlobalTimeout {
			delete(s.finished, k)
		}
	}
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

type nopRecorder struct{}

func (nopRecorder) SetPhase(string)                     {}
func (nopRecorder) SetDeadline(time.Time)               {}
func (nopRecorder) Heartbeat(string)                    {}
func (nopRecorder) ActionCompleted(string, string)      {}
func (nopRecorder) DrainFinished(string, time.Duration) {}
func (nopRecorder) OwnMessageReceiveCount(int)          {}
func (nopRecorder) Unconfirmed(string)                  {}
