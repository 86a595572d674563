package lifecycle_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/scaledownd/scaledownd/internal/testpeers"
	"github.com/scaledownd/scaledownd/pkg/lifecycle"
)

// countingRecorder counts the messages the source handled.
type countingRecorder struct {
	handled atomic.Int64
	target  int64
	reached chan struct{}
}

func (r *countingRecorder) MessageReceived(string) {
	if r.handled.Add(1) == r.target {
		close(r.reached)
	}
}
func (r *countingRecorder) StaleDeleted(string) {}
func (r *countingRecorder) Polled(bool)         {}

// foreignBody is another instance's lifecycle notification.
func foreignBody(i int) string {
	return testpeers.LifecycleMessage{
		Group: "trino-workers", Hook: "trino-drain", InstanceID: "i-0fedcba98765" + strconv.Itoa(10000+i),
		Token: "cc34960c-1e41-4703-a665-bdb3e5b8" + strconv.Itoa(1000+i),
	}.Direct()
}

// runBenchSource lets src handle b.N messages and stops it.
func runBenchSource(b *testing.B, src func(lifecycle.Recorder) *lifecycle.SQSSource) {
	rec := &countingRecorder{target: int64(b.N), reached: make(chan struct{})}
	s := src(rec)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	b.ResetTimer()
	go func() { _ = s.Run(ctx, make(chan lifecycle.Delivery), nil); close(done) }()
	select {
	case <-rec.reached:
	case <-time.After(5 * time.Minute):
		b.Fatalf("handled %d of %d messages", rec.handled.Load(), b.N)
	}
	b.StopTimer()
	cancel()
	<-done
}

// stubSQS serves batches of ten foreign messages from memory and accepts
// every hand-back: the daemon's own per-message cost, without HTTP.
type stubSQS struct {
	batch []types.Message
	cmv   atomic.Int64
}

func (s *stubSQS) ReceiveMessage(ctx context.Context, _ *sqs.ReceiveMessageInput, _ ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return &sqs.ReceiveMessageOutput{Messages: s.batch}, nil
}

func (s *stubSQS) DeleteMessage(context.Context, *sqs.DeleteMessageInput, ...func(*sqs.Options)) (*sqs.DeleteMessageOutput, error) {
	return &sqs.DeleteMessageOutput{}, nil
}

func (s *stubSQS) ChangeMessageVisibility(context.Context, *sqs.ChangeMessageVisibilityInput, ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error) {
	s.cmv.Add(1)
	return &sqs.ChangeMessageVisibilityOutput{}, nil
}

func (s *stubSQS) ChangeMessageVisibilityBatch(_ context.Context, in *sqs.ChangeMessageVisibilityBatchInput, _ ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityBatchOutput, error) {
	s.cmv.Add(int64(len(in.Entries)))
	return &sqs.ChangeMessageVisibilityBatchOutput{}, nil
}

// BenchmarkSQSSourceMessages is the poll loop's cost per message received
// from a shared queue that holds only other instances' lifecycle
// messages — what every daemon pays for every hand-back in sqs mode. One
// op is one message: classified, found foreign, handed back (visibility 0,
// ten per ChangeMessageVisibilityBatch call).
//
//   - stub: an in-memory SQS; the daemon's own work.
//   - fake-sqs: the SDK client against the wire-level fake SQS on
//     loopback with no injected latency (ten messages that come straight
//     back after each hand-back); B/op and allocs/op then include the
//     fake server's share, which runs in the same process.
func BenchmarkSQSSourceMessages(b *testing.B) {
	b.Run("stub", func(b *testing.B) {
		b.ReportAllocs()
		stub := &stubSQS{}
		for i := 0; i < 10; i++ {
			stub.batch = append(stub.batch, types.Message{
				MessageId: aws.String("m-" + strconv.Itoa(i)), ReceiptHandle: aws.String("h-" + strconv.Itoa(i)),
				Body: aws.String(foreignBody(i)), Attributes: map[string]string{"ApproximateReceiveCount": "3"},
			})
		}
		runBenchSource(b, func(rec lifecycle.Recorder) *lifecycle.SQSSource {
			return lifecycle.NewSQSSource(stub, lifecycle.SQSOptions{
				QueueURL: "https://sqs.us-east-1.amazonaws.com/123456789012/q", Filter: lifecycle.Filter{InstanceID: "i-0123456789abcdef0"},
				WaitTime: time.Second, Recorder: rec,
			})
		})
		b.ReportMetric(float64(stub.cmv.Load())/float64(b.N), "handbacks/op")
	})
	b.Run("fake-sqs", func(b *testing.B) {
		b.ReportAllocs()
		fake := testpeers.NewSQS(testpeers.SQSOptions{})
		defer fake.Close()
		q := fake.CreateQueue("lifecycle", testpeers.SQSQueueOptions{})
		for i := 0; i < 10; i++ {
			fake.Send(q, foreignBody(i))
		}
		client := sqs.New(sqs.Options{Region: "us-east-1", BaseEndpoint: aws.String(fake.URL()), Credentials: aws.AnonymousCredentials{}})
		runBenchSource(b, func(rec lifecycle.Recorder) *lifecycle.SQSSource {
			return lifecycle.NewSQSSource(client, lifecycle.SQSOptions{
				QueueURL: q, Filter: lifecycle.Filter{InstanceID: "i-0123456789abcdef0"}, WaitTime: time.Second, Recorder: rec,
			})
		})
		requests := 0
		for _, op := range []string{"ReceiveMessage", "ChangeMessageVisibility", "ChangeMessageVisibilityBatch"} {
			requests += fake.CallCount(op)
		}
		b.ReportMetric(float64(requests)/float64(b.N), "requests/op")
	})
}
