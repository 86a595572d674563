package lifecycle_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/scaledownd/scaledownd/internal/testpeers"
	"github.com/scaledownd/scaledownd/pkg/lifecycle"
)

// These tests run the SQS source against the wire fake on a fake clock:
// a minute of queue time passes in about a second, and the receive counts
// are those of a real minute (every wait of the source and every
// visibility timeout of the fake runs on the same clock).

// spinWorld is a queue on a fake clock, with a redrive policy as operators
// configure one (maxReceiveCount 10), and a source for this instance.
type spinWorld struct {
	clock *testpeers.FakeClock
	fake  *testpeers.SQS
	queue string
	dlq   string
	src   *lifecycle.SQSSource
	pacer *lifecycle.Pacer
}

func newSpinWorld(t *testing.T, paced bool) *spinWorld {
	return newSpinWorldOrdered(t, paced, false)
}

// newSpinWorldOrdered is newSpinWorld with the fake delivering the oldest
// messages first (as moto does, and SQS tends to) when inOrder is set.
func newSpinWorldOrdered(t *testing.T, paced, inOrder bool) *spinWorld {
	t.Helper()
	if !paced {
		return newSpinWorldIdle(t, -1, inOrder)
	}
	return newSpinWorldIdle(t, time.Minute, inOrder)
}

// newSpinWorldIdle is newSpinWorld in mode sqs for idle < 0, else in mode
// both with that aws.sqs-idle-interval (0: polled continuously).
func newSpinWorldIdle(t *testing.T, idle time.Duration, inOrder bool) *spinWorld {
	t.Helper()
	w := &spinWorld{clock: testpeers.NewFakeClock(time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC))}
	w.fake = testpeers.NewSQS(testpeers.SQSOptions{Now: w.clock.Now, InOrder: inOrder})
	t.Cleanup(w.fake.Close)
	w.dlq = w.fake.CreateQueue("lifecycle-dlq", testpeers.SQSQueueOptions{})
	w.queue = w.fake.CreateQueue("lifecycle", testpeers.SQSQueueOptions{MaxReceiveCount: 10, DeadLetterQueue: "lifecycle-dlq"})
	client := sqs.New(sqs.Options{Region: "us-east-1", BaseEndpoint: aws.String(w.fake.URL()), Credentials: aws.AnonymousCredentials{}, Retryer: retryer()})
	opts := lifecycle.SQSOptions{
		QueueURL: w.queue, Filter: lifecycle.Filter{InstanceID: self, Hook: hook}, WaitTime: 20 * time.Second,
		Clock: w.clock,
	}
	if idle >= 0 {
		w.pacer = lifecycle.NewPacer(idle, w.clock, nil)
		opts.Pace = w.pacer
	}
	w.src = lifecycle.NewSQSSource(client, opts)
	return w
}

func lifecycleBody(instance string) string {
	return testpeers.LifecycleMessage{Group: group, Hook: hook, InstanceID: instance,
		Token: "11111111-2222-3333-4444-" + instance[len(instance)-12:], Transition: testpeers.AutoScalingTransitionTerminating}.Direct()
}

// run runs the source for d of fake time, stepping the clock 50 ms every
// 2 ms of real time; every tick also calls each (for arrivals). Deliveries
// are collected.
func (w *spinWorld) run(t *testing.T, d time.Duration, each func(now time.Time)) []lifecycle.Delivery {
	t.Helper()
	out := make(chan lifecycle.Delivery, 100)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.src.Run(ctx, out, nil) }()
	end := w.clock.Now().Add(d)
	for w.clock.Now().Before(end) {
		time.Sleep(2 * time.Millisecond)
		w.clock.Advance(50 * time.Millisecond)
		if each != nil {
			each(w.clock.Now())
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	close(out)
	var ds []lifecycle.Delivery
	for d := range out {
		ds = append(ds, d)
	}
	return ds
}

// checkForeign asserts the message was received at most max times, never
// deleted nor dead-lettered, and first handed back with visibility
// firstVis (seconds).
func (w *spinWorld) checkForeign(t *testing.T, id string, max int, firstVis string) int {
	t.Helper()
	n := w.fake.Receives(w.queue, id)
	if n > max || n < 1 {
		t.Errorf("foreign message received %d times in a minute, want 1 to %d", n, max)
	}
	for _, m := range w.fake.Messages(w.queue) {
		if m.ID == id && (m.Deleted || m.MovedTo != "") {
			t.Errorf("foreign message deleted %v, moved to %q", m.Deleted, m.MovedTo)
		}
	}
	first := ""
	for _, c := range w.fake.Calls() {
		if c.Op == "ChangeMessageVisibilityBatch" {
			first = c.Params["Entries.1.VisibilityTimeout"]
			break
		}
	}
	if first != firstVis {
		t.Errorf("first hand-back with visibility %q s, want %s s", first, firstVis)
	}
	return n
}

func TestOneDaemonReceivesAForeignMessageAtMostOncePer10s(t *testing.T) {
	for _, tc := range []struct {
		name  string
		paced bool
		// observe feeds the pacer (mode both): leaving or in service.
		leaving bool
		// own also queues this instance's termination: the phase after
		// its own message was received.
		own bool
		// failing: this instance's metadata cannot be read.
		failing bool
		// always: mode both with aws.sqs-idle-interval 0.
		always bool
		// firstVis is the first hand-back's visibility: at once where the
		// queue may be its owner's only signal (mode sqs, or metadata
		// failing here as it may on the owner), a minute in mode both.
		firstVis string
	}{
		{name: "sqs", firstVis: "0"},
		{name: "sqs/after-own-message", own: true, firstVis: "0"},
		{name: "both/idle", paced: true, firstVis: "60"},
		{name: "both/leaving", paced: true, leaving: true, firstVis: "60"},
		{name: "both/after-own-message", paced: true, leaving: true, own: true, firstVis: "60"},
		{name: "both/metadata-failing", paced: true, failing: true, firstVis: "0"},
		{name: "both-always/leaving", paced: true, always: true, leaving: true, firstVis: "60"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newSpinWorld(t, tc.paced)
			if tc.always {
				w = newSpinWorldIdle(t, 0, false)
			}
			if w.pacer != nil {
				var err error
				if tc.failing {
					err = errors.New("metadata: connection refused")
				}
				w.pacer.Observe(tc.leaving, err)
			}
			id := w.fake.Send(w.queue, lifecycleBody(other))
			if tc.own {
				w.fake.Send(w.queue, lifecycleBody(self))
			}
			ds := w.run(t, time.Minute, nil)
			n := w.checkForeign(t, id, 10, tc.firstVis)
			t.Logf("%s: foreign message received %d times in 60 s; %d SQS requests", tc.name, n, len(w.fake.Calls()))
			// (Nobody extends or deletes it here: it is delivered again
			// when its visibility timeout ends.)
			if tc.own && len(ds) == 0 {
				t.Error("this instance's message was not delivered")
			}
			if tc.own && w.pacer != nil && !w.pacer.Paced() {
				t.Error("polling still continuous after this instance's termination message was received")
			}
		})
	}
}

// On a busy queue — new messages keep arriving, so the daemon never pauses
// — a message it has seen before is handed back hidden for 10 s, so it
// still receives it at most once per 10 s.
func TestABusyQueueDoesNotMakeADaemonSpinOnAMessage(t *testing.T) {
	t.Parallel()
	w := newSpinWorld(t, false)
	id := w.fake.Send(w.queue, lifecycleBody(other))
	next, i := w.clock.Now(), 0
	w.run(t, time.Minute, func(now time.Time) {
		if now.Before(next) {
			return
		}
		next = now.Add(500 * time.Millisecond)
		i++
		w.fake.Send(w.queue, lifecycleBody(fmt.Sprintf("i-0aaaaaaa%08d", i)))
	})
	n := w.fake.Receives(w.queue, id)
	if n > 10 {
		t.Errorf("a foreign message was received %d times in a minute on a busy queue, want at most 10", n)
	}
	hidden := false
	for _, c := range w.fake.Calls() {
		if c.Op != "ChangeMessageVisibilityBatch" {
			continue
		}
		for k, v := range c.Params {
			if strings.HasSuffix(k, "VisibilityTimeout") && v != "0" {
				if s, _ := strconv.Atoi(v); s == 10 {
					hidden = true
				}
			}
		}
	}
	if !hidden {
		t.Error("no message seen again was handed back hidden (10 s)")
	}
	t.Logf("busy queue: foreign message received %d times in 60 s while %d others arrived", n, i)
}

// The first sighting of a message is handed back at once: its owner, which
// polls too, gets it with its next receive.
func TestTheFirstHandBackDoesNotSlowTheOwner(t *testing.T) {
	t.Parallel()
	w := newSpinWorld(t, false)
	client := sqs.New(sqs.Options{Region: "us-east-1", BaseEndpoint: aws.String(w.fake.URL()), Credentials: aws.AnonymousCredentials{}, Retryer: retryer()})
	owner := lifecycle.NewSQSSource(client, lifecycle.SQSOptions{
		QueueURL: w.queue, Filter: lifecycle.Filter{InstanceID: other, Hook: hook}, WaitTime: 20 * time.Second, Clock: w.clock,
	})
	id := w.fake.Send(w.queue, lifecycleBody(other))
	// Only this instance's source polls first: it hands the message back.
	w.run(t, time.Second, nil)
	if n := w.fake.Receives(w.queue, id); n < 1 {
		t.Fatal("the non-owner never received the message")
	}
	sent := w.clock.Now()
	out := make(chan lifecycle.Delivery, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = owner.Run(ctx, out, nil) }()
	select {
	case d := <-out:
		if d.Msg.ID != id {
			t.Fatalf("owner got %s, want %s", d.Msg.ID, id)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the owner did not get its message")
	}
	if waited := w.clock.Now().Sub(sent); waited != 0 {
		t.Fatalf("owner waited %s of queue time for a message handed back at once", waited)
	}
}

// A queue that delivers the oldest messages first: the daemon's own
// message behind 25 foreign ones is still found at once (the ten it saw
// again are hidden, not met in every receive), and no foreign message is
// received more than twice.
func TestOwnMessageBehindFullBatchesOfForeignOnes(t *testing.T) {
	t.Parallel()
	w := newSpinWorldOrdered(t, false, true)
	var ids []string
	for i := 0; i < 25; i++ {
		ids = append(ids, w.fake.Send(w.queue, lifecycleBody(fmt.Sprintf("i-0ccccccc%08d", i))))
	}
	w.fake.Send(w.queue, lifecycleBody(self))
	ds := w.run(t, time.Second, nil)
	if len(ds) != 1 || ds[0].Event.InstanceID != self {
		t.Fatalf("%d deliveries within a second of queue time, want this instance's", len(ds))
	}
	for _, id := range ids {
		if n := w.fake.Receives(w.queue, id); n > 2 {
			t.Fatalf("a foreign message was received %d times before the own one was found", n)
		}
	}
}

// A mass scale-in in mode both on a shared queue with a redrive policy
// (maxReceiveCount 10): 40 daemons, 20 of them leaving, whose metadata
// told them so; their 20 messages circulate for half an hour of queue time
// (drains that long, handled through their metadata) and none reaches the
// dead-letter queue. In mode sqs the same fleet would hand each message
// back at once and receive it dozens of times within seconds.
func TestAMassScaleInInModeBothDeadLettersNothing(t *testing.T) {
	t.Parallel()
	w := newSpinWorld(t, true)
	client := sqs.New(sqs.Options{Region: "us-east-1", BaseEndpoint: aws.String(w.fake.URL()), Credentials: aws.AnonymousCredentials{}, Retryer: retryer()})
	const daemons, leaving = 40, 20
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := make(chan lifecycle.Delivery, daemons)
	done := make(chan struct{}, daemons)
	var ids []string
	for i := range daemons {
		instance := fmt.Sprintf("i-0dddddddd%07d", i)
		pacer := lifecycle.NewPacer(time.Minute, w.clock, nil)
		pacer.Observe(i < leaving, nil)
		if i < leaving {
			ids = append(ids, w.fake.Send(w.queue, lifecycleBody(instance)))
		}
		src := lifecycle.NewSQSSource(client, lifecycle.SQSOptions{
			QueueURL: w.queue, Filter: lifecycle.Filter{InstanceID: instance, Hook: hook}, WaitTime: 20 * time.Second,
			Clock: w.clock, Pace: pacer,
		})
		go func() { _ = src.Run(ctx, out, nil); done <- struct{}{} }()
	}
	owners := 0
	for end := w.clock.Now().Add(30 * time.Minute); w.clock.Now().Before(end); {
		time.Sleep(2 * time.Millisecond)
		w.clock.Advance(time.Second)
		for len(out) > 0 {
			d := <-out
			owners++
			// The owner keeps its message hidden while it drains, as the
			// job's heartbeats do.
			if err := d.Msg.Extend(ctx, time.Hour); err != nil {
				t.Error(err)
			}
		}
	}
	cancel()
	for range daemons {
		<-done
	}
	maxCount := 0
	for _, m := range w.fake.Messages(w.queue) {
		if m.MovedTo != "" {
			t.Errorf("message %s dead-lettered after %d receives", m.ID, m.ReceiveCount)
		}
		maxCount = max(maxCount, m.ReceiveCount)
	}
	if n := len(w.fake.Messages(w.dlq)); n != 0 {
		t.Errorf("%d messages in the dead-letter queue", n)
	}
	// Hidden for 1, 2, 4, 8, 16 minutes after its receives: at most six
	// receives in 30 minutes.
	if maxCount > 6 {
		t.Errorf("a message was received %d times in 30 minutes, want at most 6", maxCount)
	}
	t.Logf("%d daemons, %d messages, 30 min: max receive count %d, %d owners received their message", daemons, len(ids), maxCount, owners)
}
