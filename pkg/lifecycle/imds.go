package lifecycle

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Signals that are not Auto Scaling lifecycle actions: nothing is
// completed for them, the drain only has to beat a deadline.
const (
	// TransitionSpot is a Spot interruption notice; the instance is
	// reclaimed at the notice's time whatever happens.
	TransitionSpot = "spot:interruption"
	// TransitionRebalance is a Spot rebalance recommendation: an early,
	// optional warning.
	TransitionRebalance = "spot:rebalance"
)

// IMDSAPI is the read the IMDS source needs, as IMDSClient offers it: one
// metadata path (relative to /latest/meta-data/) appended to dst, at most
// limit bytes; an error with HTTPStatusCode() 404 if the item is not there.
type IMDSAPI interface {
	Read(ctx context.Context, path string, dst []byte, limit int) ([]byte, error)
}

// HookResolver names the group and terminating hooks of this instance, for
// actions learned from IMDS (which carries neither).
type HookResolver func(ctx context.Context) (group string, hooks []string, err error)

// IMDSOptions configure an IMDSSource.
type IMDSOptions struct {
	InstanceID string
	// Interval between polls; AWS's own tutorial uses 5 s.
	Interval time.Duration
	// Resolve names group and hooks when a termination is seen.
	Resolve HookResolver
	// Spot turns on Spot interruption notices; Rebalance turns on
	// rebalance recommendations (off by default: a drained worker that is
	// then not reclaimed is lost capacity). Both exist only for Spot
	// instances: on an instance whose instance-life-cycle is not "spot"
	// neither is polled (if the service does not serve the item, both
	// are).
	Spot, Rebalance bool
	// Observe, if set, is told after every read of the target lifecycle
	// state whether the instance is leaving service and whether the read
	// failed (a 404 is a successful read: no state yet). Mode both paces
	// its queue polling by it.
	Observe func(leaving bool, err error)
	Logger  *zap.Logger
	Clock   Clock
}

// IMDSSource polls the instance metadata service for this instance's own
// signals: autoscaling/target-lifecycle-state, spot/instance-action and
// events/recommendations/rebalance. Its cost does not grow with the fleet.
// Through IMDSClient a poll costs about half the CPU and a third of the
// allocations it costs through the SDK's client (BenchmarkIMDSPollCPU).
type IMDSSource struct {
	api  IMDSAPI
	opts IMDSOptions
	log  *zap.Logger
}

// NewIMDSSource returns a source polling api.
func NewIMDSSource(api IMDSAPI, opts IMDSOptions) *IMDSSource {
	opts.Interval = positive(opts.Interval, 5*time.Second)
	opts.Logger = cmp.Or(opts.Logger, zap.NewNop())
	opts.Clock = cmp.Or[Clock](opts.Clock, RealClock{})
	return &IMDSSource{api: api, opts: opts, log: opts.Logger.With(zap.String("source", "imds"))}
}

// errNotPresent is a 404: the item is not there (yet).
var errNotPresent = errors.New("not present")

// Metadata paths the source reads.
const (
	pathTargetState   = "autoscaling/target-lifecycle-state"
	pathSpotAction    = "spot/instance-action"
	pathRebalance     = "events/recommendations/rebalance"
	pathInstanceCycle = "instance-life-cycle"
	// imdsMaxItem bounds one item the source reads; the documents it
	// polls are tens of bytes.
	imdsMaxItem = 4 << 10
)

// purchase is what instance-life-cycle said about Spot.
type purchase int

const (
	purchaseUnknown purchase = iota // not read yet, or the read failed: ask again
	purchaseSpot                    // "spot", or a 404 (assume so): Spot notices can arrive
	purchaseNotSpot                 // "on-demand", "scheduled", ...: they cannot
)

// Run polls until ctx ends, sending what it sees to out.
//
// Each poll reads autoscaling/target-lifecycle-state and, on a Spot
// instance with Spot notices or rebalance recommendations turned on,
// spot/instance-action and events/recommendations/rebalance. Whether the
// instance is a Spot instance is read once (meta-data/instance-life-cycle);
// only if the service does not say is it treated as one.
func (s *IMDSSource) Run(ctx context.Context, out chan<- Delivery, progress func()) error {
	var lastState string
	var spotSeen, rebalanceSeen bool
	cycle := purchaseUnknown
	buf := make([]byte, 0, imdsMaxItem) // every read reuses it
	send := func(ds ...Delivery) bool {
		for _, d := range ds {
			select {
			case out <- d:
			case <-ctx.Done():
				return false
			}
		}
		return true
	}
	for {
		if progress != nil {
			progress()
		}
		body, err := readItem(ctx, s.api, pathTargetState, buf)
		var state string
		if err == nil {
			state = lastState
			if string(body) != lastState { // no allocation while it stays the same
				state = string(body)
			}
		}
		if s.opts.Observe != nil && ctx.Err() == nil {
			// A 404 is a successful read (no state yet); a failed one
			// keeps the last state read.
			st, obsErr := state, err
			if errors.Is(err, errNotPresent) {
				obsErr = nil
			} else if err != nil {
				st = lastState
			}
			_, leavingNow := leaving(st)
			s.opts.Observe(leavingNow, obsErr)
		}
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, errNotPresent):
		case err != nil:
			s.log.Warn("cannot read the target lifecycle state", zap.Error(err))
		case state != lastState:
			s.log.Info("target lifecycle state", zap.String("target_state", state), zap.String("previous", lastState))
			lastState = state
			if dest, ok := leaving(state); ok {
				if !send(s.terminations(ctx, dest)...) {
					return nil
				}
			}
		}

		wantSpot := s.opts.Spot && !spotSeen
		wantRebalance := s.opts.Rebalance && !rebalanceSeen
		if (wantSpot || wantRebalance) && cycle == purchaseUnknown {
			cycle = s.purchase(ctx, buf)
		}
		if cycle == purchaseNotSpot {
			wantSpot, wantRebalance = false, false
		}
		if wantSpot {
			if d, ok := s.spot(ctx, buf); ok {
				spotSeen = true // the mock recomputes the time on every request: de-duplicate by presence
				if !send(d) {
					return nil
				}
			}
		}
		if wantRebalance {
			if _, err := readItem(ctx, s.api, pathRebalance, buf); err == nil {
				rebalanceSeen = true
				now := s.opts.Clock.Now()
				s.log.Warn("spot rebalance recommendation: draining the worker early")
				if !send(Delivery{Event: Event{Transition: TransitionRebalance, InstanceID: s.opts.InstanceID,
					Source: "imds", Time: now, ReceivedAt: now}}) {
					return nil
				}
			}
		}
		if sleep(ctx, s.opts.Clock, s.opts.Interval) != nil {
			return nil
		}
	}
}

// purchase reads instance-life-cycle: only Spot instances get Spot
// interruption notices and rebalance recommendations, so an on-demand
// instance need not poll for them. A failed read is asked again on the next
// poll; meanwhile, and if the service does not know the item, the notices
// are polled.
func (s *IMDSSource) purchase(ctx context.Context, buf []byte) purchase {
	body, err := readItem(ctx, s.api, pathInstanceCycle, buf)
	switch {
	case errors.Is(err, errNotPresent):
		s.log.Info("instance-life-cycle not in instance metadata: polling Spot notices")
		return purchaseSpot
	case err != nil:
		if ctx.Err() == nil {
			s.log.Debug("cannot read instance-life-cycle; polling Spot notices and asking again", zap.Error(err))
		}
		return purchaseUnknown
	case string(body) == "spot":
		return purchaseSpot
	}
	s.log.Info("not a Spot instance: Spot notices are not polled", zap.ByteString("instance_life_cycle", body))
	return purchaseNotSpot
}

// leaving reports whether a target lifecycle state means the instance is
// leaving service, and where it goes.
func leaving(state string) (destination string, ok bool) {
	switch {
	case state == "Terminated":
		return "EC2", true
	case strings.HasPrefix(state, "Warmed:"):
		return "WarmPool", true
	}
	return "", false
}

// terminations builds one delivery per terminating hook of the group.
func (s *IMDSSource) terminations(ctx context.Context, destination string) []Delivery {
	if s.opts.Resolve == nil {
		s.log.Error("instance is leaving service but no lifecycle hook is known to complete")
		return nil
	}
	group, hooks, err := s.opts.Resolve(ctx)
	if err != nil || group == "" || len(hooks) == 0 {
		s.log.Error("instance is leaving service but its group or terminating hook cannot be determined; "+
			"set aws.asg-name and aws.hook-name", zap.Error(err), zap.String("asg", group), zap.Strings("hooks", hooks))
		return nil
	}
	now := s.opts.Clock.Now()
	var out []Delivery
	for _, h := range hooks {
		out = append(out, Delivery{Event: Event{
			Transition: TransitionTerminating, InstanceID: s.opts.InstanceID, Group: group, Hook: h,
			Time: now, ReceivedAt: now, Source: "imds", Destination: destination,
		}})
	}
	return out
}

// spotNotice is the body of spot/instance-action.
type spotNotice struct {
	Action string `json:"action"`
	Time   string `json:"time"`
}

func (s *IMDSSource) spot(ctx context.Context, buf []byte) (Delivery, bool) {
	body, err := readItem(ctx, s.api, pathSpotAction, buf)
	if err != nil {
		if !errors.Is(err, errNotPresent) && ctx.Err() == nil {
			s.log.Warn("cannot read the spot instance action", zap.Error(err))
		}
		return Delivery{}, false
	}
	var n spotNotice
	now := s.opts.Clock.Now()
	at := now.Add(2 * time.Minute) // the documented notice period
	if json.Unmarshal(body, &n) == nil {
		if t, err := time.Parse(time.RFC3339, n.Time); err == nil {
			at = t
		}
	}
	s.log.Warn("spot interruption notice: draining the worker before the instance is reclaimed",
		zap.String("action", n.Action), zap.Time("reclaimed_at", at))
	return Delivery{Event: Event{Transition: TransitionSpot, InstanceID: s.opts.InstanceID, Source: "imds",
		Time: now, ReceivedAt: now, Deadline: at}}, true
}

// readItem reads one metadata path into buf, trimmed; errNotPresent for a
// 404. The result is valid until buf is used again.
func readItem(ctx context.Context, api IMDSAPI, path string, buf []byte) ([]byte, error) {
	b, err := api.Read(ctx, path, buf[:0], imdsMaxItem)
	if err != nil {
		var status interface{ HTTPStatusCode() int }
		if errors.As(err, &status) && status.HTTPStatusCode() == http.StatusNotFound {
			return nil, errNotPresent
		}
		return nil, err
	}
	return bytes.TrimSpace(b), nil
}

// Pacer paces the SQS source in mode both. A shared lifecycle queue makes
// every daemon that polls it receive, and hand back, every other
// instance's message; the more daemons poll, the longer an owner waits and
// the higher receive counts climb. With instance metadata as the first
// signal, an instance has no reason to poll while its metadata answers and
// shows it in service: it then polls once per idle interval (to clean up
// stale messages and as a cross-check), with a short long-poll wait so it
// listens on the queue for about a second, and continuously from the
// moment metadata shows it leaving service — its own message is then on
// the queue — or cannot be read, when the queue is the only signal left.
// Once its own termination message has been received, a leaving instance
// goes back to the idle pace: nothing it still needs is on the queue, and
// every daemon that stops listening leaves the others' messages to fewer
// rivals of their owners.
//
// The IMDS source feeds it through Observe; the SQS source calls Wait
// between receives, Paced before each and Delivered for its own message.
type Pacer struct {
	idle  time.Duration
	clock Clock
	log   *zap.Logger

	mu       sync.Mutex
	observed bool // metadata read once
	leaving  bool // metadata shows the instance leaving service
	failing  bool // the last metadata read failed
	found    bool // this instance's termination message was received
	urgent   bool
	wake     chan struct{} // closed when urgent turns true
}

// NewPacer returns a pacer that, while nothing is urgent, lets the queue be
// polled once per idle (idle 0: continuously, the pacer then only tells
// whether metadata answers). It starts urgent: until metadata has been read
// once, the queue is the only signal.
func NewPacer(idle time.Duration, clock Clock, log *zap.Logger) *Pacer {
	return &Pacer{idle: idle, clock: cmp.Or[Clock](clock, RealClock{}), log: cmp.Or(log, zap.NewNop()), urgent: true, wake: make(chan struct{})}
}

// Observe takes one read of the target lifecycle state: polling turns
// continuous when the instance is leaving service (until its own message
// has been received) or the read failed, and idle again once a read
// succeeds and shows it in service.
func (p *Pacer) Observe(leaving bool, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.leaving && !leaving && err == nil {
		p.found = false // back in service (a warm pool): the next termination is news
	}
	p.observed = true
	p.leaving, p.failing = leaving, err != nil
	p.updateLocked(err)
}

// Delivered records that this instance's own termination message was
// received: a leaving instance needs the queue no more.
func (p *Pacer) Delivered() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.found = true
	p.updateLocked(nil) // p.urgent already agrees with the state if found was set
}

func (p *Pacer) updateLocked(err error) {
	urgent := !p.observed || p.failing || (p.leaving && !p.found)
	if urgent == p.urgent {
		return
	}
	p.urgent = urgent
	switch {
	case p.idle <= 0: // polling is continuous whatever metadata says
	case urgent && p.leaving && !p.failing:
		p.log.Info("instance is leaving service: polling the lifecycle queue continuously")
	case urgent:
		p.log.Warn("instance metadata cannot be read: polling the lifecycle queue continuously until it can", zap.Error(err))
	case p.leaving:
		p.log.Info("this instance's termination message has been received: polling the lifecycle queue once per idle interval",
			zap.Duration("sqs_idle_interval", p.idle))
	default:
		p.log.Info("instance metadata answers and shows no termination: polling the lifecycle queue once per idle interval",
			zap.Duration("sqs_idle_interval", p.idle))
	}
	if urgent {
		close(p.wake)
	} else {
		p.wake = make(chan struct{})
	}
}

// MetadataAnswers reports whether metadata has been read and the last read
// succeeded.
func (p *Pacer) MetadataAnswers() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.observed && !p.failing
}

// Paced reports whether polling is paced now: the next receive is an idle
// one.
func (p *Pacer) Paced() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.urgent && p.idle > 0
}

// Wait returns after atLeast while polling is continuous; otherwise after
// the longer of atLeast and the idle interval, or as soon as polling turns
// continuous; or when ctx ends (with its error).
func (p *Pacer) Wait(ctx context.Context, atLeast time.Duration) error {
	p.mu.Lock()
	urgent, wake := p.urgent, p.wake
	p.mu.Unlock()
	if urgent || p.idle <= 0 {
		return sleep(ctx, p.clock, atLeast)
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-wake:
		return nil
	case <-p.clock.After(max(p.idle, atLeast)):
		return nil
	}
}
