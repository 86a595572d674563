// Tests of the fake SQS, driven through the real aws-sdk-go-v2 SQS client
// (and raw HTTP where the wire format itself is the subject), plus the
// shared peer machinery.

package testpeers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
)

// sqsTestRetryer is the SDK standard retryer with short backoff and no
// client-side retry quota, so injected faults do not slow tests down.
func sqsTestRetryer() aws.Retryer {
	return retry.NewStandard(func(o *retry.StandardOptions) {
		o.MaxBackoff = 20 * time.Millisecond
		o.RateLimiter = ratelimit.None
	})
}

// sqsTestFake starts a fake SQS that is closed with the test.
func sqsTestFake(t *testing.T, opts SQSOptions) *SQS {
	t.Helper()
	f := NewSQS(opts)
	t.Cleanup(f.Close)
	return f
}

// sqsTestClient builds a real SQS client pointed at the fake, by hand (no
// config.LoadDefaultConfig), as in production tests.
func sqsTestClient(f *SQS) *sqs.Client {
	return sqs.New(sqs.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(f.URL()),
		Credentials:  aws.AnonymousCredentials{},
		Retryer:      sqsTestRetryer(),
	})
}

// sqsTestCtx returns a context bounded for one test step.
func sqsTestCtx(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// sqsReceiveResult carries a ReceiveMessage outcome across goroutines.
type sqsReceiveResult struct {
	out *sqs.ReceiveMessageOutput
	err error
	at  time.Time
}

func TestSQSLongPollReturnsAtFirstMessage(t *testing.T) {
	t.Parallel()
	f := sqsTestFake(t, SQSOptions{})
	c := sqsTestClient(f)
	q := f.CreateQueue("lifecycle", SQSQueueOptions{})
	ctx := sqsTestCtx(t, 15*time.Second)

	done := make(chan sqsReceiveResult, 1)
	go func() {
		out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl:            aws.String(q),
			MaxNumberOfMessages: 10, // must not wait for 10 messages
			WaitTimeSeconds:     10,
		})
		done <- sqsReceiveResult{out, err, time.Now()}
	}()
	Eventually(t, 5*time.Second, "the long poll to reach the fake", func() bool { return f.CallCount("ReceiveMessage") == 1 })

	sent, err := c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(q), MessageBody: aws.String(`{"hello":"world"}`)})
	if err != nil {
		t.Fatalf("SendMessage: %v", err) // also validates MD5OfMessageBody
	}
	sentAt := time.Now()
	var res sqsReceiveResult
	select {
	case res = <-done:
	case <-ctx.Done():
		t.Fatal("long poll did not return")
	}
	if res.err != nil {
		t.Fatalf("ReceiveMessage: %v", res.err) // the SDK validated MD5OfBody
	}
	if got := res.at.Sub(sentAt); got > 3*time.Second {
		t.Errorf("long poll returned %v after the message was sent; want well before the 10 s wait", got)
	}
	if len(res.out.Messages) != 1 {
		t.Fatalf("got %d messages, want 1", len(res.out.Messages))
	}
	m := res.out.Messages[0]
	if aws.ToString(m.MessageId) != aws.ToString(sent.MessageId) || aws.ToString(m.Body) != `{"hello":"world"}` {
		t.Errorf("got message %s %q, want %s", aws.ToString(m.MessageId), aws.ToString(m.Body), aws.ToString(sent.MessageId))
	}
	if aws.ToString(m.MD5OfBody) != "fbc24bcc7a1794758fc1327fcfebdaf6" {
		t.Errorf("MD5OfBody = %s, want md5 hex of the body", aws.ToString(m.MD5OfBody))
	}
}

func TestSQSEmptyLongPollWaitsAndShortPollDoesNot(t *testing.T) {
	t.Parallel()
	f := sqsTestFake(t, SQSOptions{})
	c := sqsTestClient(f)
	q := f.CreateQueue("empty", SQSQueueOptions{})
	ctx := sqsTestCtx(t, 10*time.Second)

	start := time.Now()
	out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(q), WaitTimeSeconds: 1})
	if err != nil {
		t.Fatalf("ReceiveMessage: %v", err)
	}
	if len(out.Messages) != 0 {
		t.Fatalf("got %d messages from an empty queue", len(out.Messages))
	}
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Errorf("empty long poll returned after %v, want about the 1 s wait", d)
	}

	// WaitTimeSeconds 0 is not sent by the SDK: the queue default (0) applies.
	start = time.Now()
	if _, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(q)}); err != nil {
		t.Fatalf("ReceiveMessage: %v", err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("short poll took %v", d)
	}
	// The queue attribute ReceiveMessageWaitTimeSeconds applies when the
	// request has no WaitTimeSeconds.
	q2 := f.CreateQueue("waiting", SQSQueueOptions{ReceiveWaitTime: time.Second})
	start = time.Now()
	if _, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(q2)}); err != nil {
		t.Fatalf("ReceiveMessage: %v", err)
	}
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Errorf("receive on a queue with ReceiveMessageWaitTimeSeconds=1 returned after %v", d)
	}
}

func TestSQSVisibilityTimeoutRedeliversWithNewHandle(t *testing.T) {
	t.Parallel()
	f := sqsTestFake(t, SQSOptions{})
	c := sqsTestClient(f)
	q := f.CreateQueue("vis", SQSQueueOptions{VisibilityTimeout: 300 * time.Millisecond})
	ctx := sqsTestCtx(t, 15*time.Second)
	id := f.Send(q, "body")

	in := &sqs.ReceiveMessageInput{
		QueueUrl:                    aws.String(q),
		WaitTimeSeconds:             5,
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll},
	}
	first, err := c.ReceiveMessage(ctx, in)
	if err != nil || len(first.Messages) != 1 {
		t.Fatalf("first receive: %v, %d messages", err, len(first.Messages))
	}
	second, err := c.ReceiveMessage(ctx, in) // returns once the message is visible again
	if err != nil || len(second.Messages) != 1 {
		t.Fatalf("second receive: %v, %d messages", err, len(second.Messages))
	}
	m1, m2 := first.Messages[0], second.Messages[0]
	if aws.ToString(m2.MessageId) != id {
		t.Fatalf("redelivered %s, want %s", aws.ToString(m2.MessageId), id)
	}
	if aws.ToString(m1.ReceiptHandle) == aws.ToString(m2.ReceiptHandle) {
		t.Error("redelivery reused the receipt handle")
	}
	if got := m1.Attributes["ApproximateReceiveCount"]; got != "1" {
		t.Errorf("first ApproximateReceiveCount = %q, want 1", got)
	}
	if got := m2.Attributes["ApproximateReceiveCount"]; got != "2" {
		t.Errorf("second ApproximateReceiveCount = %q, want 2", got)
	}
	if m1.Attributes["ApproximateFirstReceiveTimestamp"] != m2.Attributes["ApproximateFirstReceiveTimestamp"] {
		t.Error("ApproximateFirstReceiveTimestamp changed between receives")
	}
	if _, err := strconv.ParseInt(m2.Attributes["SentTimestamp"], 10, 64); err != nil {
		t.Errorf("SentTimestamp %q: %v", m2.Attributes["SentTimestamp"], err)
	}

	// The old handle is accepted but does not delete (deterministic rule).
	if _, err := c.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(q), ReceiptHandle: m1.ReceiptHandle}); err != nil {
		t.Fatalf("DeleteMessage with the old handle: %v", err)
	}
	if got := f.Deleted(q); len(got) != 0 {
		t.Fatalf("old handle deleted %v", got)
	}
	if _, err := c.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(q), ReceiptHandle: m2.ReceiptHandle}); err != nil {
		t.Fatalf("DeleteMessage with the latest handle: %v", err)
	}
	if err := f.WaitDeleted(ctx, q, id); err != nil {
		t.Fatal(err)
	}
	if got := f.Receives(q, id); got != 2 {
		t.Errorf("Receives = %d, want 2", got)
	}
	msgs := f.Messages(q)
	if len(msgs) != 1 || !msgs[0].Deleted || msgs[0].Visible || msgs[0].DeletedAt.IsZero() {
		t.Errorf("snapshot after delete = %+v", msgs)
	}
}

func TestSQSChangeVisibilityZeroRedeliversAtOnce(t *testing.T) {
	t.Parallel()
	f := sqsTestFake(t, SQSOptions{})
	c := sqsTestClient(f)
	q := f.CreateQueue("release", SQSQueueOptions{}) // default 30 s visibility
	ctx := sqsTestCtx(t, 10*time.Second)
	id := f.Send(q, "for another instance")

	out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(q)})
	if err != nil || len(out.Messages) != 1 {
		t.Fatalf("receive: %v, %+v", err, out)
	}
	if again, _ := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(q)}); len(again.Messages) != 0 {
		t.Fatal("message visible during its visibility timeout")
	}
	if _, err := c.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
		QueueUrl: aws.String(q), ReceiptHandle: out.Messages[0].ReceiptHandle, VisibilityTimeout: 0,
	}); err != nil {
		t.Fatalf("ChangeMessageVisibility(0): %v", err)
	}
	again, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(q)})
	if err != nil || len(again.Messages) != 1 || aws.ToString(again.Messages[0].MessageId) != id {
		t.Fatalf("receive after release: %v, %+v", err, again)
	}
	if c := f.Calls()[len(f.Calls())-2]; c.Op != "ChangeMessageVisibility" || c.Params["VisibilityTimeout"] != "0" {
		t.Errorf("recorded call %+v, want ChangeMessageVisibility with VisibilityTimeout 0", c)
	}
}

func TestSQSTypedErrors(t *testing.T) {
	t.Parallel()
	f := sqsTestFake(t, SQSOptions{})
	c := sqsTestClient(f)
	q := f.CreateQueue("errors", SQSQueueOptions{})
	ctx := sqsTestCtx(t, 10*time.Second)
	f.Send(q, "m")
	out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(q)})
	if err != nil || len(out.Messages) != 1 {
		t.Fatalf("receive: %v", err)
	}
	handle := out.Messages[0].ReceiptHandle
	// Release it: the latest handle now refers to a message not in flight.
	if _, err := c.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: aws.String(q), ReceiptHandle: handle}); err != nil {
		t.Fatal(err)
	}
	missing := strings.Replace(q, "/errors", "/nope", 1)

	tests := []struct {
		name     string
		call     func() error
		target   any
		wantCode string
	}{
		{"receive from unknown queue", func() error {
			_, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(missing)})
			return err
		}, new(*types.QueueDoesNotExist), "AWS.SimpleQueueService.NonExistentQueue"},
		{"get URL of unknown queue", func() error {
			_, err := c.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String("nope")})
			return err
		}, new(*types.QueueDoesNotExist), "AWS.SimpleQueueService.NonExistentQueue"},
		{"change visibility of a message not in flight", func() error {
			_, err := c.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: aws.String(q), ReceiptHandle: handle, VisibilityTimeout: 10})
			return err
		}, new(*types.MessageNotInflight), "AWS.SimpleQueueService.MessageNotInflight"},
		{"delete with a garbled handle", func() error {
			_, err := c.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(q), ReceiptHandle: aws.String("garbage")})
			return err
		}, new(*types.ReceiptHandleIsInvalid), "ReceiptHandleIsInvalid"},
		{"change visibility with a garbled handle", func() error {
			_, err := c.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: aws.String(q), ReceiptHandle: aws.String("garbage"), VisibilityTimeout: 5})
			return err
		}, new(*types.ReceiptHandleIsInvalid), "ReceiptHandleIsInvalid"},
		{"visibility above 12 h", func() error {
			_, err := c.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: aws.String(q), ReceiptHandle: handle, VisibilityTimeout: 43201})
			return err
		}, nil, "InvalidParameterValue"},
		{"MaxNumberOfMessages out of range", func() error {
			_, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(q), MaxNumberOfMessages: 11})
			return err
		}, nil, "InvalidParameterValue"},
		{"WaitTimeSeconds out of range", func() error {
			_, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(q), WaitTimeSeconds: 21})
			return err
		}, nil, "InvalidParameterValue"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if err == nil {
				t.Fatal("call succeeded, want an error")
			}
			if tt.target != nil && !errors.As(err, tt.target) {
				t.Errorf("error %v (%T) is not %T", err, errors.Unwrap(err), tt.target)
			}
			var apiErr smithy.APIError
			if !errors.As(err, &apiErr) {
				t.Fatalf("error %v is not a smithy.APIError", err)
			}
			if apiErr.ErrorCode() != tt.wantCode {
				t.Errorf("ErrorCode() = %q, want %q", apiErr.ErrorCode(), tt.wantCode)
			}
			if apiErr.ErrorFault() != smithy.FaultClient {
				t.Errorf("ErrorFault() = %v, want client fault", apiErr.ErrorFault())
			}
		})
	}
}

func TestSQSQueueLifecycleThroughSDK(t *testing.T) {
	t.Parallel()
	f := sqsTestFake(t, SQSOptions{Region: "eu-west-1", AccountID: "111122223333"})
	c := sqsTestClient(f)
	ctx := sqsTestCtx(t, 10*time.Second)

	dlq, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("dlq")})
	if err != nil {
		t.Fatalf("CreateQueue dlq: %v", err)
	}
	attrs := map[string]string{
		"VisibilityTimeout": "45",
		"RedrivePolicy":     `{"deadLetterTargetArn":"arn:aws:sqs:eu-west-1:111122223333:dlq","maxReceiveCount":"3"}`,
	}
	created, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("work"), Attributes: attrs})
	if err != nil {
		t.Fatalf("CreateQueue: %v", err)
	}
	if again, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("work"), Attributes: attrs}); err != nil || aws.ToString(again.QueueUrl) != aws.ToString(created.QueueUrl) {
		t.Errorf("idempotent CreateQueue: %v, %v", err, again)
	}
	_, err = c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("work"), Attributes: map[string]string{"VisibilityTimeout": "5"}})
	if qe := new(types.QueueNameExists); !errors.As(err, &qe) {
		t.Errorf("CreateQueue with other attributes: %v, want QueueNameExists", err)
	}
	got, err := c.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String("work")})
	if err != nil || aws.ToString(got.QueueUrl) != aws.ToString(created.QueueUrl) {
		t.Fatalf("GetQueueUrl: %v, %v", err, got)
	}
	q := aws.ToString(created.QueueUrl)
	for range 3 {
		if _, err := c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(q), MessageBody: aws.String("x")}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(q)}); err != nil {
		t.Fatal(err)
	}

	ga, err := c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(q), AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameAll}})
	if err != nil {
		t.Fatalf("GetQueueAttributes: %v", err)
	}
	want := map[string]string{
		"QueueArn":                              "arn:aws:sqs:eu-west-1:111122223333:work",
		"VisibilityTimeout":                     "45",
		"ApproximateNumberOfMessages":           "2",
		"ApproximateNumberOfMessagesNotVisible": "1",
		"ReceiveMessageWaitTimeSeconds":         "0",
	}
	for k, v := range want {
		if ga.Attributes[k] != v {
			t.Errorf("attribute %s = %q, want %q", k, ga.Attributes[k], v)
		}
	}
	var rp struct {
		DeadLetterTargetArn string `json:"deadLetterTargetArn"`
		MaxReceiveCount     int    `json:"maxReceiveCount"`
	}
	if err := json.Unmarshal([]byte(ga.Attributes["RedrivePolicy"]), &rp); err != nil || rp.MaxReceiveCount != 3 || rp.DeadLetterTargetArn != "arn:aws:sqs:eu-west-1:111122223333:dlq" {
		t.Errorf("RedrivePolicy = %q (%v)", ga.Attributes["RedrivePolicy"], err)
	}
	one, err := c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: dlq.QueueUrl, AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameQueueArn}})
	if err != nil || len(one.Attributes) != 1 || one.Attributes["QueueArn"] != "arn:aws:sqs:eu-west-1:111122223333:dlq" {
		t.Errorf("GetQueueAttributes(QueueArn) = %v, %v", one, err)
	}
	if _, err := c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(q), AttributeNames: []types.QueueAttributeName{"Bogus"}}); !errors.As(err, new(*types.InvalidAttributeName)) {
		t.Errorf("unknown attribute: %v, want InvalidAttributeName", err)
	}

	if _, err := c.PurgeQueue(ctx, &sqs.PurgeQueueInput{QueueUrl: aws.String(q)}); err != nil {
		t.Fatalf("PurgeQueue: %v", err)
	}
	if len(f.Deleted(q)) != 3 {
		t.Errorf("purge deleted %d messages, want 3", len(f.Deleted(q)))
	}
	if _, err := c.PurgeQueue(ctx, &sqs.PurgeQueueInput{QueueUrl: aws.String(q)}); !errors.As(err, new(*types.PurgeQueueInProgress)) {
		t.Errorf("second purge: %v, want PurgeQueueInProgress", err)
	}
}

func TestSQSRedriveMovesToDeadLetterQueue(t *testing.T) {
	t.Parallel()
	f := sqsTestFake(t, SQSOptions{})
	c := sqsTestClient(f)
	dlq := f.CreateQueue("dlq", SQSQueueOptions{})
	q := f.CreateQueue("src", SQSQueueOptions{MaxReceiveCount: 2, DeadLetterQueue: "dlq"})
	ctx := sqsTestCtx(t, 10*time.Second)
	id := f.Send(q, "poison")

	for i := range 2 {
		out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(q)})
		if err != nil || len(out.Messages) != 1 {
			t.Fatalf("receive %d: %v, %+v", i+1, err, out)
		}
		if _, err := c.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: aws.String(q), ReceiptHandle: out.Messages[0].ReceiptHandle}); err != nil {
			t.Fatal(err)
		}
	}
	out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(q)})
	if err != nil || len(out.Messages) != 0 {
		t.Fatalf("third receive: %v, %d messages, want the message redriven", err, len(out.Messages))
	}
	if msgs := f.Messages(q); len(msgs) != 1 || msgs[0].MovedTo != dlq || msgs[0].ReceiveCount != 2 {
		t.Errorf("source snapshot = %+v", msgs)
	}
	got, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(dlq)})
	if err != nil || len(got.Messages) != 1 || aws.ToString(got.Messages[0].MessageId) != id {
		t.Fatalf("DLQ receive: %v, %+v", err, got)
	}
}

func TestSQSBatchOperations(t *testing.T) {
	t.Parallel()
	f := sqsTestFake(t, SQSOptions{})
	c := sqsTestClient(f)
	q := f.CreateQueue("batch", SQSQueueOptions{})
	ctx := sqsTestCtx(t, 10*time.Second)
	for _, b := range []string{"a", "b", "c"} {
		f.Send(q, b)
	}
	out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(q), MaxNumberOfMessages: 10})
	if err != nil || len(out.Messages) != 3 {
		t.Fatalf("receive: %v, %d messages", err, len(out.Messages))
	}
	h := func(i int) *string { return out.Messages[i].ReceiptHandle }

	cv, err := c.ChangeMessageVisibilityBatch(ctx, &sqs.ChangeMessageVisibilityBatchInput{
		QueueUrl: aws.String(q),
		Entries: []types.ChangeMessageVisibilityBatchRequestEntry{
			{Id: aws.String("release"), ReceiptHandle: h(0), VisibilityTimeout: 0},
			{Id: aws.String("bad"), ReceiptHandle: aws.String("bogus"), VisibilityTimeout: 0},
		},
	})
	if err != nil || len(cv.Successful) != 1 || len(cv.Failed) != 1 {
		t.Fatalf("ChangeMessageVisibilityBatch: %v, %+v", err, cv)
	}
	if fl := cv.Failed[0]; aws.ToString(fl.Id) != "bad" || aws.ToString(fl.Code) != "ReceiptHandleIsInvalid" || !fl.SenderFault {
		t.Errorf("failed entry = %+v", fl)
	}
	del, err := c.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{
		QueueUrl: aws.String(q),
		Entries: []types.DeleteMessageBatchRequestEntry{
			{Id: aws.String("one"), ReceiptHandle: h(1)},
			{Id: aws.String("two"), ReceiptHandle: h(2)},
		},
	})
	if err != nil || len(del.Successful) != 2 || len(del.Failed) != 0 {
		t.Fatalf("DeleteMessageBatch: %v, %+v", err, del)
	}
	if got := len(f.Deleted(q)); got != 2 {
		t.Errorf("deleted %d, want 2", got)
	}
	_, err = c.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(q), Entries: []types.DeleteMessageBatchRequestEntry{
		{Id: aws.String("x"), ReceiptHandle: h(1)}, {Id: aws.String("x"), ReceiptHandle: h(2)},
	}})
	if !errors.As(err, new(*types.BatchEntryIdsNotDistinct)) {
		t.Errorf("duplicate ids: %v, want BatchEntryIdsNotDistinct", err)
	}
}

func TestSQSDeliveryOrder(t *testing.T) {
	t.Parallel()
	order := func(opts SQSOptions) []string {
		f := sqsTestFake(t, opts)
		c := sqsTestClient(f)
		q := f.CreateQueue("order", SQSQueueOptions{})
		ctx := sqsTestCtx(t, 10*time.Second)
		for i := range 8 {
			f.Send(q, strconv.Itoa(i))
		}
		var got []string
		for range 8 {
			out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(q)})
			if err != nil || len(out.Messages) != 1 {
				t.Fatalf("receive: %v", err)
			}
			got = append(got, aws.ToString(out.Messages[0].Body))
		}
		return got
	}
	a, b := order(SQSOptions{Seed: 42}), order(SQSOptions{Seed: 42})
	if strings.Join(a, ",") != strings.Join(b, ",") {
		t.Errorf("same seed, different order: %v vs %v", a, b)
	}
	if got := strings.Join(order(SQSOptions{InOrder: true}), ","); got != "0,1,2,3,4,5,6,7" {
		t.Errorf("InOrder delivered %s", got)
	}
}

func TestSQSInjectedFaultsAreRetriedBySDK(t *testing.T) {
	t.Parallel()
	f := sqsTestFake(t, SQSOptions{})
	c := sqsTestClient(f)
	q := f.CreateQueue("faults", SQSQueueOptions{})
	ctx := sqsTestCtx(t, 10*time.Second)
	f.Send(q, "m")

	f.InjectFault("ReceiveMessage", Fault{Status: 500, Code: "InternalError", Times: 1})
	out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(q), VisibilityTimeout: 1})
	if err != nil || len(out.Messages) != 1 {
		t.Fatalf("ReceiveMessage after a 500: %v", err)
	}
	if got := f.CallCount("ReceiveMessage"); got != 2 {
		t.Errorf("ReceiveMessage calls = %d, want 2 (one retry)", got)
	}
	f.InjectFault("*", Fault{Status: 503, Times: 1}) // wildcard: any op
	if _, err := c.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String("faults")}); err != nil {
		t.Fatalf("GetQueueUrl after a 503: %v", err)
	}
	if got := f.CallCount("GetQueueUrl"); got != 2 {
		t.Errorf("GetQueueUrl calls = %d, want 2", got)
	}

	f.InjectFault("DeleteMessage", Fault{Code: "RequestThrottled", Message: "Rate exceeded"}) // until cleared
	_, err = c.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(q), ReceiptHandle: out.Messages[0].ReceiptHandle})
	if !errors.As(err, new(*types.RequestThrottled)) {
		t.Fatalf("DeleteMessage under throttling: %v, want RequestThrottled", err)
	}
	if got := f.CallCount("DeleteMessage"); got != 3 {
		t.Errorf("DeleteMessage calls = %d, want 3 (default max attempts)", got)
	}
	f.ClearFaults()
	if _, err := c.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(q), ReceiptHandle: out.Messages[0].ReceiptHandle}); err != nil {
		t.Fatalf("DeleteMessage after ClearFaults: %v", err)
	}

	// A hung request ends with the caller's deadline; the call is logged.
	f.InjectFault("SendMessage", Fault{Hang: true, Times: 1})
	hctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	_, err = c.SendMessage(hctx, &sqs.SendMessageInput{QueueUrl: aws.String(q), MessageBody: aws.String("x")}, func(o *sqs.Options) { o.RetryMaxAttempts = 1 })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("hung SendMessage: %v, want deadline exceeded", err)
	}
	if got := f.CallCount("SendMessage"); got != 1 {
		t.Errorf("SendMessage calls = %d, want 1", got)
	}

	// Delay and latency add time but answer normally.
	f.SetLatency(50 * time.Millisecond)
	f.InjectFault("GetQueueUrl", Fault{Delay: 100 * time.Millisecond, Times: 1})
	start := time.Now()
	if _, err := c.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String("faults")}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("delayed call took %v, want at least 150 ms", d)
	}
}

func TestSQSWireFormat(t *testing.T) {
	t.Parallel()
	f := sqsTestFake(t, SQSOptions{})
	q := f.CreateQueue("wire", SQSQueueOptions{})
	post := func(target, body string) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, f.URL()+"/", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-amz-json-1.0")
		req.Header.Set("X-Amz-Target", target)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, string(b)
	}

	resp, body := post("AmazonSQS.ReceiveMessage", `{"QueueUrl":"`+q+`"}`)
	if resp.StatusCode != 200 || body != "{}" || resp.Header.Get("Content-Type") != "application/x-amz-json-1.0" || resp.Header.Get("X-Amzn-Requestid") == "" {
		t.Errorf("empty receive: %d %q %v", resp.StatusCode, body, resp.Header)
	}
	resp, body = post("AmazonSQS.ReceiveMessage", `{"QueueUrl":"http://x/123456789012/none"}`)
	if resp.StatusCode != 400 || resp.Header.Get("X-Amzn-Query-Error") != "AWS.SimpleQueueService.NonExistentQueue;Sender" ||
		!strings.Contains(body, `"__type":"com.amazonaws.sqs#QueueDoesNotExist"`) {
		t.Errorf("unknown queue: %d %q %v", resp.StatusCode, body, resp.Header)
	}
	resp, body = post("AmazonSQS.ReceiveMessage", `{"QueueUrl":"`+q+`","MaxNumberOfMessages":0}`)
	if resp.StatusCode != 400 || !strings.Contains(body, "Value 0 for parameter MaxNumberOfMessages is invalid") {
		t.Errorf("explicit MaxNumberOfMessages 0: %d %q", resp.StatusCode, body)
	}
	resp, _ = post("AmazonSQS.DeleteQueue", `{"QueueUrl":"`+q+`"}`)
	if resp.StatusCode != 400 {
		t.Errorf("unsupported op answered %d", resp.StatusCode)
	}
	calls := f.Calls()
	if len(calls) != 4 || calls[0].Service != "sqs" || calls[0].Params["QueueUrl"] != q || calls[3].Op != "DeleteQueue" {
		t.Errorf("calls = %+v", calls)
	}
}

func TestSQSCloseEndsPendingLongPoll(t *testing.T) {
	t.Parallel()
	f := NewSQS(SQSOptions{})
	c := sqsTestClient(f)
	q := f.CreateQueue("closing", SQSQueueOptions{})
	done := make(chan error, 1)
	go func() {
		_, err := c.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(q), WaitTimeSeconds: 20},
			func(o *sqs.Options) { o.RetryMaxAttempts = 1 })
		done <- err
	}()
	Eventually(t, 5*time.Second, "the long poll to start", func() bool { return f.CallCount("ReceiveMessage") == 1 })
	f.Close()
	f.Close() // idempotent
	select {
	case err := <-done:
		if err == nil {
			t.Error("long poll succeeded on a closed fake")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end the long poll")
	}
}

func TestEventuallyFailsWithMessage(t *testing.T) {
	t.Parallel()
	ft := &sqsFakeTB{TB: t}
	Eventually(ft, 30*time.Millisecond, "never", func() bool { return false })
	if !strings.Contains(ft.msg, "waiting for never") {
		t.Errorf("failure message %q", ft.msg)
	}
}

// sqsFakeTB captures Fatalf so Eventually's failure path can be tested.
type sqsFakeTB struct {
	testing.TB
	msg string
}

func (f *sqsFakeTB) Helper() {}

func (f *sqsFakeTB) Fatalf(format string, args ...any) { f.msg = fmt.Sprintf(format, args...) }

// The 12-hour limit on a message's visibility counts from the receive
// that issued the receipt handle, so a message received again (a 48-hour
// drain's own message, redelivered after 12 h) can be hidden again.
func TestSQSVisibilityLimitCountsFromTheLatestReceive(t *testing.T) {
	t.Parallel()
	clock := NewFakeClock(time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC))
	f := sqsTestFake(t, SQSOptions{Now: clock.Now})
	c := sqsTestClient(f)
	q := f.CreateQueue("limit", SQSQueueOptions{})
	ctx := sqsTestCtx(t, 15*time.Second)
	f.Send(q, "body")
	receive := func() *string {
		t.Helper()
		out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(q), VisibilityTimeout: 600})
		if err != nil || len(out.Messages) != 1 {
			t.Fatalf("receive: %v, %d messages", err, len(out.Messages))
		}
		return out.Messages[0].ReceiptHandle
	}
	change := func(h *string, vt int32) error {
		_, err := c.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: aws.String(q), ReceiptHandle: h, VisibilityTimeout: vt})
		return err
	}
	h := receive()
	clock.Advance(3 * time.Minute)
	if err := change(h, 43200); err == nil {
		t.Fatal("12 h more, 3 minutes after the receive: accepted, want refused (total beyond 43200 s)")
	}
	if err := change(h, 43200-180); err != nil {
		t.Fatalf("up to 12 h after the receive: %v", err)
	}
	clock.Advance(12*time.Hour - 3*time.Minute + time.Second) // visible again
	h = receive()
	clock.Advance(time.Minute)
	if err := change(h, 3600); err != nil {
		t.Fatalf("an hour more, a minute after the second receive (12 h after the first): %v", err)
	}
}
