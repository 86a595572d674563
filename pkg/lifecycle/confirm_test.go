package lifecycle_test

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/scaledownd/scaledownd/internal/testpeers"
	"github.com/scaledownd/scaledownd/pkg/lifecycle"
)

// TestConfirmer asks the fakes through the SDK's own IMDSv2 and Auto
// Scaling clients. In modes both and imds a termination is confirmed by
// instance metadata alone (no Auto Scaling call); metadata that cannot be
// read, mode sqs and every launch ask DescribeAutoScalingInstances.
func TestConfirmer(t *testing.T) {
	const token = "0ae3784f-1111-4111-8111-111111111111"
	terminating := lifecycle.Event{Transition: lifecycle.TransitionTerminating, InstanceID: self, Group: group, Hook: hook,
		Token: token, Source: "sqs"}
	launching := terminating
	launching.Transition = lifecycle.TransitionLaunching
	tests := []struct {
		name        string
		metadata    bool
		target      string // "" serves 404; "down" answers 503
		asgState    string // "": the event names an instance in no group
		asgGroup    string // default group
		event       lifecycle.Event
		want        bool
		wantBy      string
		wantDescrib bool // DescribeAutoScalingInstances asked
		last        bool // the last check of the window
	}{
		{name: "metadata Terminated", metadata: true, target: "Terminated", asgState: "InService", event: terminating,
			want: true, wantBy: "metadata"},
		{name: "metadata Warmed:Stopped (back to the warm pool)", metadata: true, target: "Warmed:Stopped", asgState: "InService",
			event: terminating, want: true, wantBy: "metadata"},
		{name: "metadata InService is the answer, Auto Scaling not asked", metadata: true, target: "InService",
			asgState: "Terminating:Wait", event: terminating},
		{name: "last check: metadata InService, Auto Scaling Terminating:Wait", metadata: true, target: "InService",
			asgState: "Terminating:Wait", event: terminating, last: true, want: true, wantBy: "autoscaling", wantDescrib: true},
		{name: "last check: metadata InService, Auto Scaling InService", metadata: true, target: "InService",
			asgState: "InService", event: terminating, last: true, wantDescrib: true},
		{name: "last check: metadata Terminated needs no Auto Scaling", metadata: true, target: "Terminated",
			asgState: "InService", event: terminating, last: true, want: true, wantBy: "metadata"},
		{name: "metadata 404 asks Auto Scaling", metadata: true, asgState: "Terminating:Wait", event: terminating,
			want: true, wantBy: "autoscaling", wantDescrib: true},
		{name: "metadata down asks Auto Scaling", metadata: true, target: "down", asgState: "InService", event: terminating,
			wantDescrib: true},
		{name: "sqs: Terminating:Wait", asgState: "Terminating:Wait", event: terminating, want: true, wantBy: "autoscaling", wantDescrib: true},
		{name: "sqs: Warmed:Pending:Wait", asgState: "Warmed:Pending:Wait", event: terminating, want: true, wantBy: "autoscaling", wantDescrib: true},
		{name: "sqs: InService", asgState: "InService", event: terminating, wantDescrib: true},
		{name: "sqs: Terminating:Proceed (the action ended)", asgState: "Terminating:Proceed", event: terminating, wantDescrib: true},
		{name: "sqs: waiting in another group", asgState: "Terminating:Wait", asgGroup: "other-workers", event: terminating, wantDescrib: true},
		{name: "sqs: in no group", event: terminating, wantDescrib: true},
		{name: "launch: metadata InService cannot confirm, Pending:Wait does", metadata: true, target: "InService",
			asgState: "Pending:Wait", event: launching, want: true, wantBy: "autoscaling", wantDescrib: true},
		{name: "launch: InService", metadata: true, target: "InService", asgState: "InService", event: launching, wantDescrib: true},
		{name: "launch: Pending:Proceed (the action ended)", asgState: "Pending:Proceed", event: launching, wantDescrib: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			asgFake, actions := asgWorld(t, time.Minute)
			if tt.asgGroup != "" {
				asgFake.AddGroup(tt.asgGroup, 1, 4)
				asgFake.AddInstance(self, tt.asgGroup, tt.asgState)
			} else if tt.asgState != "" {
				asgFake.SetInstanceState(self, tt.asgState)
			} else {
				tt.event.InstanceID = "i-0000000000000dead"
			}
			opts := lifecycle.ConfirmerOptions{AutoScaling: actions, CallTimeout: 3 * time.Second}
			if tt.metadata {
				fake := testpeers.NewIMDS(testpeers.IMDSOptions{InstanceID: self})
				t.Cleanup(fake.Close)
				switch tt.target {
				case "":
				case "down":
					fake.SetDown(true)
				default:
					fake.SetTargetLifecycleState(tt.target)
				}
				opts.Metadata = lifecycle.NewIMDSClient(lifecycle.IMDSClientOptions{Endpoint: fake.URL()})
			}
			conf, err := lifecycle.NewConfirmer(opts).Confirm(context.Background(), tt.event, tt.last)
			if err != nil {
				t.Fatal(err)
			}
			if conf.Confirmed != tt.want || conf.By != tt.wantBy {
				t.Fatalf("confirmed %v by %q (%s), want %v by %q", conf.Confirmed, conf.By, conf.Said(), tt.want, tt.wantBy)
			}
			if n := asgFake.CallCount("DescribeAutoScalingInstances"); (n > 0) != tt.wantDescrib || n > 1 {
				t.Fatalf("%d DescribeAutoScalingInstances calls, want %v (at most one)", n, tt.wantDescrib)
			}
			if conf.Said() == "" {
				t.Fatal("the confirmation says nothing about what AWS answered")
			}
			t.Logf("AWS said: %s", conf.Said())
		})
	}
}

// An unconfirmed message of this instance is settled like a stale one:
// deleted when Auto Scaling shows nothing to act on; handed back, hidden
// for 30 s on its first receive, when the instance may still be waiting or
// when stale deletion is off.
func TestSettleUnconfirmed(t *testing.T) {
	tests := []struct {
		name        string
		state       string
		stale       bool
		wantDeleted bool
	}{
		{"in service: nothing to act on", "InService", true, true},
		{"still waiting: handed back", "Terminating:Wait", true, false},
		{"stale deletion off: handed back", "InService", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := testpeers.NewSQS(testpeers.SQSOptions{})
			t.Cleanup(q.Close)
			url := q.CreateQueue("lifecycle", testpeers.SQSQueueOptions{})
			asgFake, actions := asgWorld(t, time.Minute)
			asgFake.SetInstanceState(self, tt.state)
			client := sqs.New(sqs.Options{Region: "us-east-1", BaseEndpoint: aws.String(q.URL()), Credentials: aws.AnonymousCredentials{}, Retryer: retryer()})
			opts := lifecycle.SQSOptions{QueueURL: url, Filter: lifecycle.Filter{InstanceID: self}, WaitTime: time.Second}
			if tt.stale {
				opts.Stale = actions
			}
			src := lifecycle.NewSQSSource(client, opts)
			id := q.Send(url, testpeers.LifecycleMessage{Group: group, Hook: hook, InstanceID: self,
				Token: "0f0f0f0f-dead-4bad-8bad-0f0f0f0f0f0f"}.Direct())
			ctx, cancel := context.WithCancel(context.Background())
			out := make(chan lifecycle.Delivery, 1)
			done := make(chan struct{})
			go func() { _ = src.Run(ctx, out, nil); close(done) }()
			var d lifecycle.Delivery
			select {
			case d = <-out:
			case <-time.After(10 * time.Second):
				t.Fatal("own message not delivered")
			}
			cancel()
			<-done

			reason, deleted, err := d.Msg.SettleUnconfirmed(context.Background(), d.Event)
			if err != nil {
				t.Fatal(err)
			}
			if deleted != tt.wantDeleted {
				t.Fatalf("deleted %v (reason %q), want %v", deleted, reason, tt.wantDeleted)
			}
			for _, m := range q.Messages(url) {
				if m.ID != id {
					continue
				}
				if m.Deleted != tt.wantDeleted {
					t.Fatalf("queue: deleted %v, want %v", m.Deleted, tt.wantDeleted)
				}
			}
			if !tt.wantDeleted {
				calls := q.Calls()
				last := calls[len(calls)-1]
				if last.Op != "ChangeMessageVisibility" || last.Params["VisibilityTimeout"] != "30" {
					t.Fatalf("last SQS call %s %v, want ChangeMessageVisibility to 30 s (first receive)", last.Op, last.Params)
				}
			}
		})
	}
}
