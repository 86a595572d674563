package lifecycle_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/scaledownd/scaledownd/internal/testpeers"
	"github.com/scaledownd/scaledownd/pkg/lifecycle"
)

const (
	self  = "i-0123456789abcdef0"
	other = "i-0fedcba9876543210"
	group = "trino-workers"
	hook  = "drain"
)

func retryer() aws.Retryer {
	return retry.NewStandard(func(o *retry.StandardOptions) { o.MaxBackoff = 50 * time.Millisecond })
}

func asgWorld(t *testing.T, hbt time.Duration) (*testpeers.AutoScaling, *lifecycle.Actions) {
	t.Helper()
	fake := testpeers.NewAutoScaling(testpeers.AutoScalingOptions{})
	t.Cleanup(fake.Close)
	fake.AddGroup(group, 1, 4)
	fake.AddHook(testpeers.AutoScalingHook{Group: group, Name: hook, HeartbeatTimeout: hbt})
	fake.AddInstance(self, group, "InService")
	client := autoscaling.New(autoscaling.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(fake.URL()), Credentials: aws.AnonymousCredentials{}, Retryer: retryer(),
	})
	return fake, lifecycle.NewActions(client, 2*time.Second)
}

func TestHookTiming(t *testing.T) {
	_, actions := asgWorld(t, 300*time.Second)
	ht, err := actions.HookTiming(context.Background(), group, hook)
	if err != nil {
		t.Fatal(err)
	}
	if ht.HeartbeatTimeout != 300*time.Second || ht.GlobalTimeoutOf() != 30000*time.Second {
		t.Fatalf("timing = %+v", ht)
	}
	if _, err := actions.HookTiming(context.Background(), group, "nope"); err == nil {
		t.Fatal("want an error for an unknown hook")
	}
}

func TestMembership(t *testing.T) {
	_, actions := asgWorld(t, time.Minute)
	m, err := actions.MembershipOf(context.Background(), self)
	if err != nil || m.Group != group || m.State != "InService" {
		t.Fatalf("membership = %+v, %v", m, err)
	}
	m, err = actions.MembershipOf(context.Background(), "i-00000000000000001")
	if err != nil || m.Group != "" {
		t.Fatalf("membership of a stranger = %+v, %v", m, err)
	}
}

func TestKeeperHeartbeatsUntilCancelled(t *testing.T) {
	fake, actions := asgWorld(t, time.Second)
	token := fake.StartAction(group, hook, self)
	act := lifecycle.Action{InstanceID: self, Group: group, Hook: hook, Token: token}
	k := lifecycle.NewKeeper(actions, act, 200*time.Millisecond, lifecycle.RetryPolicy{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- k.Run(ctx) }()
	testpeers.Eventually(t, 5*time.Second, "five heartbeats", func() bool {
		a, _ := fake.Action(token)
		return len(a.Heartbeats) >= 5
	})
	if !k.Confirmed() {
		t.Fatal("keeper not confirmed after successful heartbeats")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("keeper returned %v on cancel", err)
	}
	n := fake.CallCount("RecordLifecycleActionHeartbeat")
	if a, _ := fake.Action(token); a.State != testpeers.AutoScalingActionPending {
		t.Fatalf("action ended while heartbeating: %+v", a)
	}
	// No heartbeat loop outlives its context.
	time.Sleep(500 * time.Millisecond) // proving an absence needs a wait
	if m := fake.CallCount("RecordLifecycleActionHeartbeat"); m != n {
		t.Fatalf("%d heartbeats after the keeper stopped", m-n)
	}
}

func TestKeeperReportsAnActionThatEnded(t *testing.T) {
	fake, actions := asgWorld(t, time.Minute)
	token := fake.StartAction(group, hook, self)
	act := lifecycle.Action{InstanceID: self, Group: group, Hook: hook, Token: token}
	k := lifecycle.NewKeeper(actions, act, 100*time.Millisecond, lifecycle.RetryPolicy{NotFoundWindow: time.Hour})
	done := make(chan error, 1)
	go func() { done <- k.Run(context.Background()) }()
	testpeers.Eventually(t, 5*time.Second, "confirmed", k.Confirmed)
	// Someone else completes the action: the confirmed keeper believes the
	// "No active Lifecycle Action" at once, whatever the window.
	if err := actions.Complete(context.Background(), act, lifecycle.ResultContinue); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, lifecycle.ErrNoActiveAction) {
			t.Fatalf("err = %v, want ErrNoActiveAction", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("keeper kept going after the action ended")
	}
}

func TestFinishRidesOutThePropagationRace(t *testing.T) {
	fake, actions := asgWorld(t, time.Minute)
	fake.SetActivationDelay(700 * time.Millisecond)
	token := fake.StartAction(group, hook, self)
	act := lifecycle.Action{InstanceID: self, Group: group, Hook: hook, Token: token}
	already, err := lifecycle.Finish(context.Background(), actions, act, lifecycle.ResultContinue, false,
		time.Now().Add(time.Minute), lifecycle.RetryPolicy{NotFoundWindow: 5 * time.Second, Backoff: 100 * time.Millisecond})
	if err != nil || already {
		t.Fatalf("Finish = already %v, err %v; want a real completion", already, err)
	}
	if a, _ := fake.Action(token); a.State != testpeers.AutoScalingActionCompleted || a.Result != "CONTINUE" {
		t.Fatalf("action = %+v", a)
	}
	if n := fake.CallCount("CompleteLifecycleAction"); n < 2 {
		t.Fatalf("only %d completion calls; the first should have met the race", n)
	}
}

func TestFinishTreatsAPersistentNotFoundAsDone(t *testing.T) {
	fake, actions := asgWorld(t, time.Minute)
	act := lifecycle.Action{InstanceID: self, Group: group, Hook: hook, Token: "00000000-0000-0000-0000-000000000000"}
	start := time.Now()
	already, err := lifecycle.Finish(context.Background(), actions, act, lifecycle.ResultContinue, false,
		time.Now().Add(time.Minute), lifecycle.RetryPolicy{NotFoundWindow: 600 * time.Millisecond, Backoff: 100 * time.Millisecond})
	if err != nil || !already {
		t.Fatalf("Finish = already %v, err %v; want already done", already, err)
	}
	if took := time.Since(start); took < 600*time.Millisecond {
		t.Fatalf("believed the not-found after %s, before the window", took)
	}
	if n := fake.CallCount("CompleteLifecycleAction"); n < 3 {
		t.Fatalf("%d completion attempts; want retries through the window", n)
	}
}

func TestFinishRetriesServerErrors(t *testing.T) {
	fake, actions := asgWorld(t, time.Minute)
	token := fake.StartAction(group, hook, self)
	// More failures than the SDK's three attempts: Finish's own loop must
	// carry on until one succeeds.
	fake.InjectFault("CompleteLifecycleAction", testpeers.Fault{Status: 503, Times: 5})
	act := lifecycle.Action{InstanceID: self, Group: group, Hook: hook, Token: token}
	already, err := lifecycle.Finish(context.Background(), actions, act, lifecycle.ResultContinue, true,
		time.Now().Add(time.Minute), lifecycle.RetryPolicy{Backoff: 50 * time.Millisecond})
	if err != nil || already {
		t.Fatalf("Finish = already %v, err %v", already, err)
	}
	if a, _ := fake.Action(token); a.State != testpeers.AutoScalingActionCompleted {
		t.Fatalf("action = %+v", a)
	}
}

func TestNoActiveActionErrorHidesTheToken(t *testing.T) {
	_, actions := asgWorld(t, time.Minute)
	act := lifecycle.Action{InstanceID: self, Group: group, Hook: hook, Token: "abcdef12-3456-7890-abcd-ef1234567890"}
	err := actions.Heartbeat(context.Background(), act)
	if !errors.Is(err, lifecycle.ErrNoActiveAction) {
		t.Fatalf("err = %v", err)
	}
	if s := err.Error(); strings.Contains(s, "3456-7890") || !strings.Contains(s, "abcdef12") {
		t.Fatalf("error text should keep only the token prefix: %s", s)
	}
}

// sqsWorld is a queue and a source for this instance.
func sqsWorld(t *testing.T) (*testpeers.SQS, string, *lifecycle.SQSSource, *recorder) {
	t.Helper()
	fake := testpeers.NewSQS(testpeers.SQSOptions{})
	t.Cleanup(fake.Close)
	q := fake.CreateQueue("lifecycle", testpeers.SQSQueueOptions{})
	client := sqs.New(sqs.Options{Region: "us-east-1", BaseEndpoint: aws.String(fake.URL()), Credentials: aws.AnonymousCredentials{}, Retryer: retryer()})
	rec := &recorder{kinds: map[string]int{}}
	src := lifecycle.NewSQSSource(client, lifecycle.SQSOptions{
		QueueURL: q, Filter: lifecycle.Filter{InstanceID: self, Hook: hook}, WaitTime: time.Second, Recorder: rec,
	})
	return fake, q, src, rec
}

type recorder struct {
	kinds map[string]int
	polls int
}

func (r *recorder) MessageReceived(kind string) { r.kinds[kind]++ }
func (r *recorder) StaleDeleted(string)         {}
func (r *recorder) Polled(bool)                 { r.polls++ }

func TestSQSSourceSortsMessages(t *testing.T) {
	fake, q, src, _ := sqsWorld(t)
	msg := func(instance, hookName string) testpeers.LifecycleMessage {
		return testpeers.LifecycleMessage{Group: group, Hook: hookName, InstanceID: instance,
			Token: "11111111-2222-3333-4444-" + instance[len(instance)-12:], Transition: testpeers.AutoScalingTransitionTerminating}
	}
	own := fake.Send(q, msg(self, hook).SNS())
	foreign := fake.Send(q, msg(other, hook).Direct())
	otherHook := fake.Send(q, msg(self, "log-shipper").EventBridge())
	test := fake.Send(q, testpeers.AutoScalingTestNotification(group))
	junk := fake.Send(q, `{"surprise":true}`)

	out := make(chan lifecycle.Delivery, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, out, nil) }()
	var d lifecycle.Delivery
	select {
	case d = <-out:
	case <-time.After(10 * time.Second):
		t.Fatal("own message not delivered")
	}
	if d.Event.InstanceID != self || d.Msg == nil || d.Msg.ID != own || d.Event.Shape != lifecycle.ShapeSNS {
		t.Fatalf("delivery = %+v", d)
	}
	ctxw, cw := context.WithTimeout(context.Background(), 5*time.Second)
	defer cw()
	if err := fake.WaitDeleted(ctxw, q, test); err != nil {
		t.Fatalf("test notification not deleted: %v", err)
	}
	// Foreign messages keep coming back; they are never deleted.
	for _, id := range []string{foreign, otherHook} {
		if err := fake.WaitReceives(ctxw, q, id, 2); err != nil {
			t.Fatalf("foreign message %s not handed back: %v", id, err)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, m := range fake.Messages(q) {
		switch m.ID {
		case foreign, otherHook, junk, own:
			if m.Deleted {
				t.Errorf("message %s deleted", m.ID)
			}
		}
		if m.ID == junk && (m.Visible || time.Until(m.VisibleAt) < 20*time.Second) {
			t.Errorf("malformed message should be hidden for a while, visible at %s", m.VisibleAt)
		}
	}
}

func TestSQSSourceBacksOffOnErrors(t *testing.T) {
	fake, _, src, rec := sqsWorld(t)
	fake.InjectFault("ReceiveMessage", testpeers.Fault{Status: 500})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	_ = src.Run(ctx, make(chan lifecycle.Delivery), nil)
	// 1 s, 2 s backoff after failures: at most three receive rounds of three
	// SDK attempts each in four seconds, never a tight loop.
	if n := fake.CallCount("ReceiveMessage"); n > 9 || n < 3 {
		t.Fatalf("%d ReceiveMessage calls in 4 s of failures", n)
	}
	if rec.polls == 0 {
		t.Fatal("failed polls not recorded")
	}
}
