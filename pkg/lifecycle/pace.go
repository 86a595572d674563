package lifecycle

import (
	"context"
	"sync"
	"time"

	"go.uber.org/zap"
)

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
// polled once per idle. It starts urgent: until metadata has been read
// once, the queue is the only signal.
func NewPacer(idle time.Duration, clock Clock, log *zap.Logger) *Pacer {
	if clock == nil {
		clock = RealClock{}
	}
	if log == nil {
		log = zap.NewNop()
	}
	return &Pacer{idle: idle, clock: clock, log: log, urgent: true, wake: make(chan struct{})}
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
	if p.found {
		return
	}
	p.found = true
	p.updateLocked(nil)
}

func (p *Pacer) updateLocked(err error) {
	urgent := !p.observed || p.failing || (p.leaving && !p.found)
	if urgent == p.urgent {
		return
	}
	p.urgent = urgent
	switch {
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
