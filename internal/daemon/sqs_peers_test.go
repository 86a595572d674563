package daemon_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/scaledownd/scaledownd/internal/config"
	"github.com/scaledownd/scaledownd/internal/testenv"
	"github.com/scaledownd/scaledownd/internal/testpeers"
)

// The SQS side of the daemon against both SQS implementations: the
// project's fake and moto's server (written elsewhere). Every queue has a
// dead-letter queue with maxReceiveCount 10, as operators configure them.
// The Auto Scaling side stays on the fake (moto has no lifecycle actions).

const redriveMaxReceiveCount = 10

// peerQueue is a lifecycle queue (with its dead-letter queue) on one SQS
// implementation.
type peerQueue interface {
	// configure points the daemon at the queue.
	configure(cfg *config.Config)
	send(t *testing.T, body string) string
	// sendSNS delivers the notification through SNS: in the envelope, or
	// raw (RawMessageDelivery).
	sendSNS(t *testing.T, m testpeers.LifecycleMessage, raw bool)
	// held is how many messages the queue holds (visible or in flight).
	held(t *testing.T) int
	// deadLettered is how many messages reached the dead-letter queue.
	deadLettered(t *testing.T) int
}

// sqsPeers are the implementations each test runs against.
var sqsPeers = []struct {
	name  string
	queue func(t *testing.T, env *testenv.Env) peerQueue
}{
	{"fake", newFakeQueue},
	{"moto", newMotoQueue},
}

type fakeQueue struct {
	env      *testenv.Env
	url, dlq string
}

func newFakeQueue(t *testing.T, env *testenv.Env) peerQueue {
	dlq := env.SQS.CreateQueue("lifecycle-dlq", testpeers.SQSQueueOptions{})
	url := env.SQS.CreateQueue("lifecycle-redrive", testpeers.SQSQueueOptions{MaxReceiveCount: redriveMaxReceiveCount, DeadLetterQueue: "lifecycle-dlq"})
	return &fakeQueue{env: env, url: url, dlq: dlq}
}

func (q *fakeQueue) configure(cfg *config.Config)       { cfg.AWS.QueueURL = q.url }
func (q *fakeQueue) send(_ *testing.T, b string) string { return q.env.SQS.Send(q.url, b) }
func (q *fakeQueue) sendSNS(_ *testing.T, m testpeers.LifecycleMessage, raw bool) {
	if raw {
		q.env.SQS.Send(q.url, m.Direct())
		return
	}
	q.env.SQS.Send(q.url, m.SNS())
}

func (q *fakeQueue) held(*testing.T) int {
	n := 0
	for _, m := range q.env.SQS.Messages(q.url) {
		if !m.Deleted && m.MovedTo == "" {
			n++
		}
	}
	return n
}

func (q *fakeQueue) deadLettered(*testing.T) int { return len(q.env.SQS.Messages(q.dlq)) }

type motoQueue struct {
	moto *testpeers.Moto
	q    *testpeers.MotoQueue
}

func newMotoQueue(t *testing.T, _ *testenv.Env) peerQueue {
	moto := testpeers.SharedMoto(t)
	q, err := moto.CreateQueue(context.Background(), "lifecycle", redriveMaxReceiveCount)
	if err != nil {
		t.Fatal(err)
	}
	return &motoQueue{moto: moto, q: q}
}

func (q *motoQueue) configure(cfg *config.Config) {
	cfg.AWS.SQSEndpoint, cfg.AWS.QueueURL = q.moto.URL, q.q.URL
}

func (q *motoQueue) send(t *testing.T, b string) string {
	id, err := q.q.Send(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func (q *motoQueue) sendSNS(t *testing.T, m testpeers.LifecycleMessage, raw bool) {
	ctx := context.Background()
	topic, err := q.moto.SubscribedTopic(ctx, q.q, raw)
	if err != nil {
		t.Fatal(err)
	}
	verb := "TERMINATING"
	if m.Transition == testpeers.AutoScalingTransitionLaunching {
		verb = "LAUNCHING"
	}
	subject := fmt.Sprintf("Auto Scaling:  Lifecycle action '%s' for instance %s in progress.", verb, m.InstanceID)
	if err := topic.Publish(ctx, subject, m.Direct()); err != nil {
		t.Fatal(err)
	}
}

func (q *motoQueue) held(t *testing.T) int {
	v, f, err := q.q.Counts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return v + f
}

func (q *motoQueue) deadLettered(t *testing.T) int {
	v, f, err := q.q.DLQ.Counts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return v + f
}

// ownerGetsIt starts the daemon of the message's owner and waits until it
// has completed the action and nothing is left on the queue.
func ownerGetsIt(t *testing.T, env *testenv.Env, q peerQueue, owner, token string) {
	t.Helper()
	w := testpeers.NewTrino(testpeers.TrinoOptions{Version: "476", GracePeriod: 100 * time.Millisecond})
	t.Cleanup(w.Close)
	cfg := env.Config(owner)
	cfg.Trino.URL = w.URL()
	q.configure(&cfg)
	start(t, cfg)
	completedContinue(t, finished(t, env, token, 60*time.Second))
	testpeers.Eventually(t, 20*time.Second, "the owner's message deleted", func() bool { return q.held(t) == 0 })
	if n := q.deadLettered(t); n != 0 {
		t.Fatalf("%d messages dead-lettered", n)
	}
}

// ownerGetsItFromMetadata is ownerGetsIt for a fleet in mode both: the
// neighbour hid the message (it is the owner's fall-back only), and the
// owner, whose metadata shows it terminating, drains and completes through
// its metadata while the message stays off the dead-letter queue.
func ownerGetsItFromMetadata(t *testing.T, env *testenv.Env, q peerQueue, owner, token string) {
	t.Helper()
	w := testpeers.NewTrino(testpeers.TrinoOptions{Version: "476", GracePeriod: 100 * time.Millisecond})
	t.Cleanup(w.Close)
	meta := testpeers.NewIMDS(testpeers.IMDSOptions{InstanceID: owner, Region: testenv.Region})
	t.Cleanup(meta.Close)
	meta.SetTargetLifecycleState("Terminated")
	cfg := env.Config(owner)
	cfg.Trino.URL = w.URL()
	cfg.AWS.Mode = "both"
	cfg.AWS.IMDSEndpoint = meta.URL()
	cfg.AWS.IMDSPollInterval = 100 * time.Millisecond
	q.configure(&cfg)
	start(t, cfg)
	completedContinue(t, finished(t, env, token, 60*time.Second))
	if n := q.deadLettered(t); n != 0 {
		t.Fatalf("%d messages dead-lettered", n)
	}
}

// One daemon alone on a redrive queue (maxReceiveCount 10) with another
// instance's live message for 60 s, in modes sqs and both (in service and
// leaving), on the fake and on moto: it receives the message at most 10
// times, never deletes it, never lets it reach the dead-letter queue; the
// owner then gets its action (in mode both through its metadata: there
// the neighbour hides the message for a minute after its first receive,
// two after its second). The six scenarios share one 60 s window; the
// mode sqs ones are checked first, as the window ends.
func TestAForeignMessageBesideADaemonFor60sIsNeitherSpunNorDeadLettered(t *testing.T) {
	const window = 60 * time.Second
	const other = "i-0fedcba9876543210"
	type scenario struct {
		name      string
		env       *testenv.Env
		q         peerQueue
		d         *testenv.Daemon
		id, token string
	}
	var scenarios []*scenario
	for _, peer := range sqsPeers {
		for _, mode := range []string{"sqs", "both/in-service", "both/leaving"} {
			// A heartbeat timeout longer than the window: the foreign action
			// stays live (nobody heartbeats it) throughout.
			env, imds := imdsWorld(t, testenv.Options{HeartbeatTimeout: 10 * time.Minute})
			s := &scenario{name: peer.name + "/" + mode, env: env, q: peer.queue(t, env)}
			env.AddInstance(other)
			var msg testpeers.LifecycleMessage
			s.token, msg = env.Terminate(other)
			s.id = s.q.send(t, msg.Direct())
			cfg := env.Config(env.Instance)
			if mode != "sqs" {
				cfg = pacedConfig(env, imds, time.Minute)
			}
			s.q.configure(&cfg)
			if mode == "both/leaving" {
				// This instance is leaving too (its own message is not on
				// the queue): the queue is polled continuously.
				env.Trino.AddBlockedTask()
				env.Terminate(env.Instance)
				imds.SetTargetLifecycleState("Terminated")
			}
			s.d, _ = start(t, cfg)
			scenarios = append(scenarios, s)
		}
	}
	time.Sleep(window) // the fault window: a live foreign message beside each daemon
	slices.SortStableFunc(scenarios, func(a, b *scenario) int {
		return strings.Count(a.name, "both") - strings.Count(b.name, "both")
	})
	for _, s := range scenarios {
		t.Run(s.name, func(t *testing.T) {
			n := metricValue(t, s.d, "scaledownd_sqs_messages_received_total", "kind", "foreign")
			t.Logf("%s: the foreign message was received %.0f times in %s", s.name, n, window)
			if n < 1 || n > 10 {
				t.Fatalf("the foreign message was received %.0f times in %s, want 1 to 10", n, window)
			}
			if fq, ok := s.q.(*fakeQueue); ok {
				if r := s.env.SQS.Receives(fq.url, s.id); float64(r) != n {
					t.Fatalf("the fake counted %d receives, the daemon %.0f", r, n)
				}
			}
			if h, dl := s.q.held(t), s.q.deadLettered(t); h != 1 || dl != 0 {
				t.Fatalf("queue holds %d messages, dead-letter queue %d; want the live message kept and none dead-lettered", h, dl)
			}
			if a, _ := s.env.ASG.Action(s.token); a.State != testpeers.AutoScalingActionPending {
				t.Fatalf("the foreign action was touched: %+v", a)
			}
			if strings.Contains(s.name, "both") {
				ownerGetsItFromMetadata(t, s.env, s.q, other, s.token)
				return
			}
			// In mode sqs the owner and the neighbour race for each
			// receive, and the neighbour may have used 8 of the 10 by now:
			// two more wins of its would dead-letter the message whatever
			// the hand-back policy. With the neighbour gone, what is left
			// to show is that the message is still there to be had.
			if err := s.d.Stop(10 * time.Second); err != nil {
				t.Fatalf("stop the neighbour: %v", err)
			}
			ownerGetsIt(t, s.env, s.q, other, s.token)
		})
	}
}

// This instance's action in every shape the queue can carry it —
// directly, in SNS's envelope, raw through SNS, from EventBridge — is
// drained, completed and its message deleted. On moto the SNS shapes come
// from a real SNS topic subscribed to the queue.
func TestOwnMessageOnEitherSQSImplementation(t *testing.T) {
	for _, peer := range sqsPeers {
		for _, shape := range []string{"direct", "sns", "sns-raw", "eventbridge"} {
			t.Run(peer.name+"/"+shape, func(t *testing.T) {
				t.Parallel()
				env := world(t, testenv.Options{})
				q := peer.queue(t, env)
				env.Trino.AddTask(300 * time.Millisecond)
				cfg := env.Config(env.Instance)
				q.configure(&cfg)
				start(t, cfg)
				token, msg := env.Terminate(env.Instance)
				switch shape {
				case "direct":
					q.send(t, msg.Direct())
				case "sns":
					q.sendSNS(t, msg, false)
				case "sns-raw":
					q.sendSNS(t, msg, true)
				case "eventbridge":
					q.send(t, msg.EventBridge())
				}
				act := finished(t, env, token, 30*time.Second)
				completedContinue(t, act)
				if act.CompletedAt.Before(stateAt(env.Trino, "DRAINED")) {
					t.Fatal("completed before the worker was drained")
				}
				testpeers.Eventually(t, 20*time.Second, "message deleted", func() bool { return q.held(t) == 0 })
				if n := q.deadLettered(t); n != 0 {
					t.Fatalf("%d messages dead-lettered", n)
				}
			})
		}
	}
}

// Other instances' messages are handed back ten per
// ChangeMessageVisibilityBatch; among 25 of them this instance's own is
// found and completed, and none of the others is deleted or dead-lettered.
// A test notification is deleted, a malformed message kept.
func TestHandBackInBatchesOnEitherSQSImplementation(t *testing.T) {
	for _, peer := range sqsPeers {
		t.Run(peer.name, func(t *testing.T) {
			t.Parallel()
			env := world(t, testenv.Options{})
			q := peer.queue(t, env)
			const foreign = 25
			for i := 0; i < foreign; i++ {
				id := fmt.Sprintf("i-0bbbbbbbbbbbb%04d", i)
				env.AddInstance(id)
				_, m := env.Terminate(id)
				q.send(t, m.Direct())
			}
			q.send(t, `{"LifecycleTransition":"autoscaling:EC2_INSTANCE_TERMINATING","EC2InstanceId":42}`)
			q.send(t, env.ASG.TestNotification(testenv.Group))
			token, msg := env.Terminate(env.Instance)
			q.send(t, msg.Direct())
			cfg := env.Config(env.Instance)
			q.configure(&cfg)
			d, _ := start(t, cfg)
			completedContinue(t, finished(t, env, token, 60*time.Second))
			// Left: the foreign ones and the malformed one.
			testpeers.Eventually(t, 20*time.Second, "own message and test notification deleted", func() bool { return q.held(t) == foreign+1 })
			// The queue hands messages out in random order: the malformed one
			// may come after the own action has been completed.
			testpeers.Eventually(t, 20*time.Second, "the malformed message seen", func() bool {
				return metricValue(t, d, "scaledownd_sqs_messages_received_total", "kind", "malformed") >= 1
			})
			if n := q.deadLettered(t); n != 0 {
				t.Fatalf("%d messages dead-lettered", n)
			}
			if peer.name == "moto" {
				return
			}
			batches := 0
			for _, c := range env.SQS.Calls() {
				if c.Op == "ChangeMessageVisibilityBatch" {
					batches++
				}
			}
			if batches < 3 {
				t.Fatalf("%d ChangeMessageVisibilityBatch calls for %d foreign messages", batches, foreign)
			}
		})
	}
}
