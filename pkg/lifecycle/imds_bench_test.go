package lifecycle_test

import (
	"context"
	"testing"
	"time"

	"github.com/scaledownd/scaledownd/internal/testpeers"
	"github.com/scaledownd/scaledownd/pkg/lifecycle"
)

// pollClock lets the source poll again at once and counts the polls.
type pollClock struct{ polls chan struct{} }

func (c *pollClock) Now() time.Time { return time.Now() }

func (c *pollClock) After(time.Duration) <-chan time.Time {
	c.polls <- struct{}{}
	ch := make(chan time.Time, 1)
	ch <- time.Now()
	return ch
}

// BenchmarkIMDSSourcePoll is the cost of one instance-metadata poll in
// imds and both modes (target-lifecycle-state and, with Spot notices on as
// by default, spot/instance-action on a Spot instance; the fake is an
// on-demand one), through IMDSClient against the fake IMDS on loopback.
// The token is fetched before the timer starts. B/op and allocs/op include
// the fake server, which runs in the same process.
func BenchmarkIMDSSourcePoll(b *testing.B) {
	b.ReportAllocs()
	fake := testpeers.NewIMDS(testpeers.IMDSOptions{InstanceID: "i-0123456789abcdef0"})
	defer fake.Close()
	fake.SetTargetLifecycleState("InService")
	client := lifecycle.NewIMDSClient(lifecycle.IMDSClientOptions{Endpoint: fake.URL()})
	defer client.Close()
	clock := &pollClock{polls: make(chan struct{})}
	src := lifecycle.NewIMDSSource(client, lifecycle.IMDSOptions{
		InstanceID: "i-0123456789abcdef0", Interval: time.Second, Spot: true, Clock: clock,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = src.Run(ctx, make(chan lifecycle.Delivery), nil); close(done) }()
	<-clock.polls // the first poll, with the token
	calls0 := len(fake.Calls())
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		<-clock.polls
	}
	b.StopTimer()
	b.ReportMetric(float64(len(fake.Calls())-calls0)/float64(b.N), "requests/op")
	cancel()
	go func() {
		for range clock.polls {
		}
	}()
	<-done
	close(clock.polls)
}
