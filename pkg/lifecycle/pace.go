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
// stale messages and as a cross-check), and continuously from the moment
// metadata shows it leaving service — its own message is then on the queue
// — or cannot be read, when the queue is the only signal left.
//
// The IMDS source feeds it through Observe; the SQS source calls Wait
// between receives.
type Pacer struct {
	idle  time.Duration
	clock Clock
	log   *zap.Logger

	mu     sync.Mutex
	urgent bool
	wake   chan struct{} // closed when urgent turns true
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
// continuous when the instance is leaving service or the read failed, and
// idle again once a read succeeds and shows it in service.
func (p *Pacer) Observe(leaving bool, err error) {
	urgent := leaving || err != nil
	p.mu.Lock()
	defer p.mu.Unlock()
	if urgent == p.urgent {
		return
	}
	p.urgent = urgent
	switch {
	case urgent && leaving:
		p.log.Info("instance is leaving service: polling the lifecycle queue continuously")
	case urgent:
		p.log.Warn("instance metadata cannot be read: polling the lifecycle queue continuously until it can", zap.Error(err))
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

// Wait returns at once while polling is continuous; otherwise after the
// idle interval, or as soon as polling turns continuous, or when ctx ends
// (with its error).
func (p *Pacer) Wait(ctx context.Context) error {
	p.mu.Lock()
	urgent, wake := p.urgent, p.wake
	p.mu.Unlock()
	if urgent || p.idle <= 0 {
		return ctx.Err()
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-wake:
		return nil
	case <-p.clock.After(p.idle):
		return nil
	}
}
