package lifecycle_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/scaledownd/scaledownd/internal/testpeers"
	"github.com/scaledownd/scaledownd/pkg/lifecycle"
)

type staleRecorder struct {
	mu      sync.Mutex
	reasons map[string]int
}

func (r *staleRecorder) MessageReceived(string) {}
func (r *staleRecorder) Polled(bool)            {}
func (r *staleRecorder) StaleDeleted(reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reasons[reason]++
}

// staleWorld is a shared queue and a daemon's source for self, with
// Auto Scaling answering the stale checks.
func staleWorld(t *testing.T) (*testpeers.SQS, string, *testpeers.AutoScaling, *lifecycle.SQSSource, *staleRecorder) {
	t.Helper()
	q := testpeers.NewSQS(testpeers.SQSOptions{})
	t.Cleanup(q.Close)
	url := q.CreateQueue("shared", testpeers.SQSQueueOptions{})
	asgFake, actions := asgWorld(t, 60*time.Second)
	_ = actions
	client := sqs.New(sqs.Options{Region: "us-east-1", BaseEndpoint: aws.String(q.URL()), Credentials: aws.AnonymousCredentials{}, Retryer: retryer()})
	asClient := autoscaling.New(autoscaling.Options{Region: "us-east-1", BaseEndpoint: aws.String(asgFake.URL()), Credentials: aws.AnonymousCredentials{}, Retryer: retryer()})
	rec := &staleRecorder{reasons: map[string]int{}}
	src := lifecycle.NewSQSSource(client, lifecycle.SQSOptions{
		QueueURL: url, Filter: lifecycle.Filter{InstanceID: self}, WaitTime: time.Second,
		Recorder: rec, Stale: lifecycle.NewActions(asClient, time.Second),
	})
	return q, url, asgFake, src, rec
}

func runSource(t *testing.T, src *lifecycle.SQSSource) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	out := make(chan lifecycle.Delivery, 100)
	go func() { _ = src.Run(ctx, out, nil); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func TestStaleForeignMessagesAreDeletedLiveOnesNever(t *testing.T) {
	q, url, asgFake, src, rec := staleWorld(t)
	const live, inService, gone = "i-00000000000000a01", "i-00000000000000a02", "i-00000000000000a03"
	asgFake.AddInstance(live, group, "InService")
	asgFake.AddInstance(inService, group, "InService")
	liveToken := asgFake.StartAction(group, hook, live) // Terminating:Wait
	msg := func(instance, token string, at time.Time) string {
		return testpeers.LifecycleMessage{Group: group, Hook: hook, InstanceID: instance, Token: token,
			Transition: testpeers.AutoScalingTransitionTerminating, Time: at}.Direct()
	}
	now := time.Now()
	ids := map[string]string{
		"live":       q.Send(url, msg(live, liveToken, now)),
		"in-service": q.Send(url, msg(inService, "22222222-2222-2222-2222-222222222222", now.Add(-time.Minute))),
		"gone":       q.Send(url, msg(gone, "33333333-3333-3333-3333-333333333333", now.Add(-time.Minute))),
		"expired":    q.Send(url, msg(live, "44444444-4444-4444-4444-444444444444", now.Add(-72*time.Hour))),
		// Older than this hook's global timeout (100 × 60 s) but younger than 48 h.
		"past-hook-cap": q.Send(url, msg(live, "55555555-5555-5555-5555-555555555555", now.Add(-3*time.Hour))),
	}
	runSource(t, src)
	for _, name := range []string{"in-service", "gone", "expired", "past-hook-cap"} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := q.WaitDeleted(ctx, url, ids[name]); err != nil {
			t.Errorf("stale message %s not deleted: %v", name, err)
		}
		cancel()
	}
	// The live one keeps circulating (handed back, received again), never
	// deleted.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := q.WaitReceives(ctx, url, ids["live"], 2); err != nil {
		t.Fatal(err)
	}
	for _, m := range q.Messages(url) {
		if m.ID == ids["live"] && m.Deleted {
			t.Fatal("a live action's message was deleted by a non-owner")
		}
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.reasons["expired"] != 2 || rec.reasons["instance-gone"] != 1 || rec.reasons["not-waiting"] != 1 {
		t.Fatalf("reasons = %v", rec.reasons)
	}
}

func TestStaleChecksAreRateLimitedUnderAFlood(t *testing.T) {
	q, url, asgFake, src, _ := staleWorld(t)
	const flood = 300
	for i := 0; i < flood; i++ {
		q.Send(url, testpeers.LifecycleMessage{Group: group, Hook: hook, InstanceID: fmt.Sprintf("i-%017x", 0xb000+i),
			Token: fmt.Sprintf("%08x-0000-0000-0000-000000000000", i), Transition: testpeers.AutoScalingTransitionTerminating,
			Time: time.Now().Add(-time.Minute)}.Direct())
	}
	started := time.Now()
	runSource(t, src)
	// Wait until the flood has circulated twice (the second time around
	// at the source's pace for messages it has seen).
	testpeers.Eventually(t, 40*time.Second, "flood received twice", func() bool {
		total := 0
		for _, m := range q.Messages(url) {
			total += m.ReceiveCount
		}
		return total >= 2*flood
	})
	// A burst of 4, then one check per 5 s: a handful of calls, not 300.
	limit := 4 + int(time.Since(started)/(5*time.Second)) + 1
	if n := asgFake.CallCount("DescribeAutoScalingInstances"); n > limit {
		t.Fatalf("%d DescribeAutoScalingInstances calls for a flood of %d messages, want at most %d", n, flood, limit)
	}
	deleted := len(q.Deleted(url))
	if deleted == 0 || deleted > limit {
		t.Fatalf("%d stale messages deleted; want a few, at the rate limit (at most %d)", deleted, limit)
	}
}

// On a busy queue another daemon takes a message back the moment it is
// visible, so a stale message must be deleted while this daemon still
// holds it: every delete the daemon counts must have removed the message.
func TestStaleMessagesAreDeletedOnABusyQueue(t *testing.T) {
	q, url, _, src, rec := staleWorld(t)
	// A second daemon long-polls the same queue and hands everything back.
	client := sqs.New(sqs.Options{Region: "us-east-1", BaseEndpoint: aws.String(q.URL()), Credentials: aws.AnonymousCredentials{}, Retryer: retryer()})
	busy := lifecycle.NewSQSSource(client, lifecycle.SQSOptions{
		QueueURL: url, Filter: lifecycle.Filter{InstanceID: "i-0ffffffffffffff99"}, WaitTime: time.Second,
	})
	const gone = 6 // instances no longer in any group
	for i := 0; i < gone; i++ {
		q.Send(url, testpeers.LifecycleMessage{Group: group, Hook: hook, InstanceID: fmt.Sprintf("i-%017x", 0xc000+i),
			Token: fmt.Sprintf("%08x-0000-0000-0000-000000000000", i), Transition: testpeers.AutoScalingTransitionTerminating,
			Time: time.Now().Add(-time.Minute)}.Direct())
	}
	runSource(t, busy)
	runSource(t, src)
	// The burst allows 4 checks at once, then one per 5 s.
	testpeers.Eventually(t, 20*time.Second, "stale messages deleted", func() bool { return len(q.Deleted(url)) >= 4 })
	rec.mu.Lock()
	counted := rec.reasons["instance-gone"]
	rec.mu.Unlock()
	if deleted := len(q.Deleted(url)); counted > deleted {
		t.Fatalf("%d stale deletes counted but only %d messages deleted: deletes through a superseded receipt handle", counted, deleted)
	}
}
