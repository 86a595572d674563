package testpeers

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
)

// The SQS behaviour the daemon relies on, checked against both SQS
// implementations the tests use: the fake above and moto's server. Where
// they differ, each case states which one follows AWS's documentation and
// asserts each implementation's own behaviour, so a new moto release that
// changes it is noticed (docs/sqs-peers.md has the list).

func TestMain(m *testing.M) {
	code := m.Run()
	StopSharedMoto()
	os.Exit(code)
}

// sqsImpl is one SQS implementation with a way to make queues on it.
type sqsImpl struct {
	name   string
	client *sqs.Client
	// queue returns a new queue's URL and, with maxReceiveCount > 0, its
	// dead-letter queue's URL and ARN.
	queue func(t *testing.T, maxReceiveCount int) (url, dlqURL, dlqARN string)
}

func sqsImpls(t *testing.T) []sqsImpl {
	fake := sqsTestFake(t, SQSOptions{})
	n := 0
	fakeImpl := sqsImpl{name: "fake", client: sqsTestClient(fake), queue: func(t *testing.T, mrc int) (string, string, string) {
		n++
		name := "q" + string(rune('a'+n))
		var dlq, arn string
		opts := SQSQueueOptions{}
		if mrc > 0 {
			dlq = fake.CreateQueue(name+"-dlq", SQSQueueOptions{})
			arn = "arn:aws:sqs:us-east-1:123456789012:" + name + "-dlq"
			opts = SQSQueueOptions{MaxReceiveCount: mrc, DeadLetterQueue: arn}
		}
		return fake.CreateQueue(name, opts), dlq, arn
	}}
	moto := SharedMoto(t)
	motoImpl := sqsImpl{name: "moto", client: moto.SQS(), queue: func(t *testing.T, mrc int) (string, string, string) {
		q, err := moto.CreateQueue(context.Background(), "contract", mrc)
		if err != nil {
			t.Fatal(err)
		}
		if q.DLQ == nil {
			return q.URL, "", ""
		}
		return q.URL, q.DLQ.URL, q.DLQ.ARN
	}}
	return []sqsImpl{fakeImpl, motoImpl}
}

func contractReceive(t *testing.T, ctx context.Context, c *sqs.Client, q string, wait, vis int32) []types.Message {
	t.Helper()
	out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
		QueueUrl: aws.String(q), MaxNumberOfMessages: 10, WaitTimeSeconds: wait, VisibilityTimeout: vis,
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameApproximateReceiveCount,
			types.MessageSystemAttributeNameSentTimestamp},
	})
	if err != nil {
		t.Fatalf("receive: %v", err)
	}
	return out.Messages
}

func contractSend(t *testing.T, ctx context.Context, c *sqs.Client, q, body string) string {
	t.Helper()
	out, err := c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(q), MessageBody: aws.String(body)})
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	return aws.ToString(out.MessageId)
}

func contractHandBack(t *testing.T, ctx context.Context, c *sqs.Client, q string, m types.Message) {
	t.Helper()
	out, err := c.ChangeMessageVisibilityBatch(ctx, &sqs.ChangeMessageVisibilityBatchInput{QueueUrl: aws.String(q),
		Entries: []types.ChangeMessageVisibilityBatchRequestEntry{{Id: aws.String("0"), ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: 0}}})
	if err != nil || len(out.Failed) != 0 {
		t.Fatalf("hand back: %v, failed %v", err, out)
	}
}

func contractCount(t *testing.T, ctx context.Context, c *sqs.Client, q string) (visible, inFlight string) {
	t.Helper()
	a, err := c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(q), AttributeNames: []types.QueueAttributeName{
		types.QueueAttributeNameApproximateNumberOfMessages, types.QueueAttributeNameApproximateNumberOfMessagesNotVisible}})
	if err != nil {
		t.Fatal(err)
	}
	return a.Attributes["ApproximateNumberOfMessages"], a.Attributes["ApproximateNumberOfMessagesNotVisible"]
}

func errorCode(err error) string {
	var api smithy.APIError
	if errors.As(err, &api) {
		return api.ErrorCode()
	}
	return ""
}

// Redrive: a message is delivered maxReceiveCount times and moved to the
// dead-letter queue at the next receive, keeping its id and receive count
// (both implementations; AWS: "when the ReceiveCount for a message exceeds
// the maxReceiveCount … moves the message to the dead-letter queue").
func TestSQSContractRedrive(t *testing.T) {
	for _, impl := range sqsImpls(t) {
		t.Run(impl.name, func(t *testing.T) {
			ctx := sqsTestCtx(t, 30*time.Second)
			c := impl.client
			q, dlq, dlqARN := impl.queue(t, 3)
			a, err := c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(q),
				AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameRedrivePolicy}})
			if err != nil {
				t.Fatal(err)
			}
			var rp struct {
				DeadLetterTargetArn string      `json:"deadLetterTargetArn"`
				MaxReceiveCount     json.Number `json:"maxReceiveCount"`
			}
			if err := json.Unmarshal([]byte(a.Attributes["RedrivePolicy"]), &rp); err != nil || rp.DeadLetterTargetArn != dlqARN || rp.MaxReceiveCount.String() != "3" {
				t.Fatalf("RedrivePolicy %q (%v), want the dead-letter queue %s and maxReceiveCount 3", a.Attributes["RedrivePolicy"], err, dlqARN)
			}
			id := contractSend(t, ctx, c, q, "redrive me")
			for i := 1; i <= 3; i++ {
				ms := contractReceive(t, ctx, c, q, 2, 10)
				if len(ms) != 1 || aws.ToString(ms[0].MessageId) != id {
					t.Fatalf("receive %d: %d messages", i, len(ms))
				}
				if got := ms[0].Attributes["ApproximateReceiveCount"]; got != string(rune('0'+i)) {
					t.Fatalf("receive %d: ApproximateReceiveCount %q", i, got)
				}
				contractHandBack(t, ctx, c, q, ms[0])
			}
			if ms := contractReceive(t, ctx, c, q, 1, 10); len(ms) != 0 {
				t.Fatalf("delivered a 4th time with maxReceiveCount 3: %v", ms[0].Attributes)
			}
			ms := contractReceive(t, ctx, c, dlq, 2, 10)
			if len(ms) != 1 || aws.ToString(ms[0].MessageId) != id {
				t.Fatalf("dead-letter queue holds %d messages, want the redriven one", len(ms))
			}
			// Our receive from the dead-letter queue counts too.
			if got := ms[0].Attributes["ApproximateReceiveCount"]; got != "4" {
				t.Fatalf("dead-lettered message's ApproximateReceiveCount %q, want 4 (3 kept + this receive)", got)
			}
		})
	}
}

// A hand-back of a batch with one bad entry: the good entries take effect,
// the bad one is reported in Failed with ReceiptHandleIsInvalid (both).
func TestSQSContractBatchHandBack(t *testing.T) {
	for _, impl := range sqsImpls(t) {
		t.Run(impl.name, func(t *testing.T) {
			ctx := sqsTestCtx(t, 30*time.Second)
			c := impl.client
			q, _, _ := impl.queue(t, 0)
			for i := 0; i < 3; i++ {
				contractSend(t, ctx, c, q, "m")
			}
			ms := contractReceive(t, ctx, c, q, 2, 60)
			for len(ms) < 3 {
				ms = append(ms, contractReceive(t, ctx, c, q, 2, 60)...)
			}
			entries := []types.ChangeMessageVisibilityBatchRequestEntry{{Id: aws.String("bad"), ReceiptHandle: aws.String("garbage"), VisibilityTimeout: 0}}
			for i, m := range ms {
				entries = append(entries, types.ChangeMessageVisibilityBatchRequestEntry{Id: aws.String(string(rune('a' + i))), ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: 0})
			}
			out, err := c.ChangeMessageVisibilityBatch(ctx, &sqs.ChangeMessageVisibilityBatchInput{QueueUrl: aws.String(q), Entries: entries})
			if err != nil {
				t.Fatal(err)
			}
			if len(out.Successful) != 3 || len(out.Failed) != 1 || aws.ToString(out.Failed[0].Id) != "bad" ||
				aws.ToString(out.Failed[0].Code) != "ReceiptHandleIsInvalid" || !out.Failed[0].SenderFault {
				t.Fatalf("batch result: %d successful, failed %+v", len(out.Successful), out.Failed)
			}
			if v, f := contractCount(t, ctx, c, q); v != "3" || f != "0" {
				t.Fatalf("after the hand-back %s visible, %s in flight, want 3 and 0", v, f)
			}
		})
	}
}

// Deleting: through the latest handle the message goes; again through the
// same handle succeeds; a handle that was never issued is
// ReceiptHandleIsInvalid (both).
func TestSQSContractDelete(t *testing.T) {
	for _, impl := range sqsImpls(t) {
		t.Run(impl.name, func(t *testing.T) {
			ctx := sqsTestCtx(t, 30*time.Second)
			c := impl.client
			q, _, _ := impl.queue(t, 0)
			contractSend(t, ctx, c, q, "m")
			ms := contractReceive(t, ctx, c, q, 2, 60)
			for i := 0; i < 2; i++ {
				if _, err := c.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(q), ReceiptHandle: ms[0].ReceiptHandle}); err != nil {
					t.Fatalf("delete %d: %v", i+1, err)
				}
			}
			if v, f := contractCount(t, ctx, c, q); v != "0" || f != "0" {
				t.Fatalf("after the delete %s visible, %s in flight", v, f)
			}
			_, err := c.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(q), ReceiptHandle: aws.String("garbage")})
			if code := errorCode(err); code != "ReceiptHandleIsInvalid" {
				t.Fatalf("delete through a garbage handle: %v (code %q)", err, code)
			}
		})
	}
}

// The differences. Each names the implementation that follows AWS's
// documentation.
func TestSQSContractDifferences(t *testing.T) {
	for _, impl := range sqsImpls(t) {
		t.Run(impl.name, func(t *testing.T) {
			ctx := sqsTestCtx(t, 60*time.Second)
			c := impl.client
			fake := impl.name == "fake"

			// 1. A superseded receipt handle. AWS (DeleteMessage): "you must
			// provide the most recently received ReceiptHandle for the
			// message (otherwise, the request succeeds, but the message will
			// not be deleted)". The fake follows it; moto deletes.
			q, _, _ := impl.queue(t, 0)
			contractSend(t, ctx, c, q, "m")
			old := contractReceive(t, ctx, c, q, 2, 1)[0]
			var cur []types.Message
			for len(cur) == 0 { // visible again after 1 s
				cur = contractReceive(t, ctx, c, q, 3, 60)
			}
			if _, err := c.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(q), ReceiptHandle: old.ReceiptHandle}); err != nil {
				t.Fatalf("delete through the old handle: %v", err)
			}
			if _, f := contractCount(t, ctx, c, q); (f == "1") != fake {
				t.Fatalf("after a delete through the superseded handle %s in flight; fake keeps it (as AWS documents), moto deletes it", f)
			}

			// 2. ChangeMessageVisibility on a message whose visibility
			// ran out (not in flight). AWS lists MessageNotInflight for it;
			// the fake answers so, moto accepts the change.
			q, _, _ = impl.queue(t, 0)
			contractSend(t, ctx, c, q, "m")
			m := contractReceive(t, ctx, c, q, 2, 1)[0]
			time.Sleep(1500 * time.Millisecond)
			_, err := c.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: aws.String(q), ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: 30})
			if code := errorCode(err); (code == "AWS.SimpleQueueService.MessageNotInflight") != fake || (!fake && err != nil) {
				t.Fatalf("visibility change of a message no longer in flight: %v", err)
			}

			// 3. A long poll open while a message is handed back (visibility
			// 0). AWS: long polling returns "as soon as a message is
			// available". The fake answers at once; moto notices within its
			// one-second re-scan.
			q, _, _ = impl.queue(t, 0)
			contractSend(t, ctx, c, q, "m")
			m = contractReceive(t, ctx, c, q, 2, 60)[0]
			go func() {
				time.Sleep(200 * time.Millisecond)
				_, _ = c.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: aws.String(q), ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: 0})
			}()
			start := time.Now()
			if ms := contractReceive(t, ctx, c, q, 5, 60); len(ms) != 1 {
				t.Fatal("long poll missed the handed-back message")
			}
			took := time.Since(start) - 200*time.Millisecond
			t.Logf("%s: long poll returned %s after the hand-back", impl.name, took.Round(time.Millisecond))
			if fake && took > 150*time.Millisecond || !fake && took > 1500*time.Millisecond {
				t.Fatalf("long poll returned %s after the hand-back", took)
			}

			// 4. CreatedTimestamp. AWS: "the time when the queue was created
			// in seconds (epoch time)", an integer in every example; moto
			// sends a fraction.
			a, err := c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(q), AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameCreatedTimestamp}})
			if err != nil {
				t.Fatal(err)
			}
			if ts := a.Attributes["CreatedTimestamp"]; strings.Contains(ts, ".") == fake {
				t.Fatalf("CreatedTimestamp %q", ts)
			}

			// 5. Delivery order among visible messages. Standard queues
			// promise none; moto returns them oldest first, the fake in a
			// seeded random order (InOrder makes it oldest first).
			q, _, _ = impl.queue(t, 0)
			for _, b := range []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"} {
				contractSend(t, ctx, c, q, b)
			}
			var order strings.Builder
			for _, m := range contractReceive(t, ctx, c, q, 2, 60) {
				order.WriteString(aws.ToString(m.Body))
			}
			t.Logf("%s: delivery order %s", impl.name, order.String())
			if !fake && order.String() != "0123456789" {
				t.Fatalf("moto delivered %s, it used to be oldest first", order.String())
			}
		})
	}
}
