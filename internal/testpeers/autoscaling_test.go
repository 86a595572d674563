// Tests of the fake Auto Scaling endpoint through the real aws-sdk-go-v2
// Auto Scaling client (raw HTTP only for the protocol envelope), and of the
// lifecycle notification builders.

package testpeers

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/smithy-go"
)

// asgManualClock is a clock tests advance by hand.
type asgManualClock struct {
	mu sync.Mutex
	t  time.Time
}

// newASGManualClock starts a manual clock at a fixed instant.
func newASGManualClock() *asgManualClock {
	return &asgManualClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
}

// Now returns the clock's time.
func (c *asgManualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward.
func (c *asgManualClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// asgTestFake starts a fake Auto Scaling endpoint closed with the test.
func asgTestFake(t *testing.T, opts AutoScalingOptions) *AutoScaling {
	t.Helper()
	f := NewAutoScaling(opts)
	t.Cleanup(f.Close)
	return f
}

// asgTestClient builds a real Auto Scaling client pointed at the fake.
func asgTestClient(f *AutoScaling) *autoscaling.Client {
	return autoscaling.New(autoscaling.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(f.URL()),
		Credentials:  aws.AnonymousCredentials{},
		Retryer:      sqsTestRetryer(),
	})
}

// asgAPIError asserts err is a ValidationError with the given message.
func asgWantValidation(t *testing.T, err error, wantMsg string) {
	t.Helper()
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) {
		t.Fatalf("error %v is not a smithy.APIError", err)
	}
	if apiErr.ErrorCode() != "ValidationError" || apiErr.ErrorMessage() != wantMsg {
		t.Errorf("got %s: %q, want ValidationError: %q", apiErr.ErrorCode(), apiErr.ErrorMessage(), wantMsg)
	}
}

// asgHeartbeat sends a heartbeat by token.
func asgHeartbeat(ctx context.Context, c *autoscaling.Client, group, hook, token string) error {
	_, err := c.RecordLifecycleActionHeartbeat(ctx, &autoscaling.RecordLifecycleActionHeartbeatInput{
		AutoScalingGroupName: aws.String(group), LifecycleHookName: aws.String(hook), LifecycleActionToken: aws.String(token),
	})
	return err
}

func TestAutoScalingHeartbeatKeepsActionAlive(t *testing.T) {
	t.Parallel()
	f := asgTestFake(t, AutoScalingOptions{})
	c := asgTestClient(f)
	f.AddGroup("workers", 1, 5)
	f.AddHook(AutoScalingHook{Group: "workers", Name: "drain", HeartbeatTimeout: time.Second})
	f.AddInstance("i-0aaa", "workers", "InService")
	token := f.StartAction("workers", "drain", "i-0aaa")
	ctx := sqsTestCtx(t, 10*time.Second)

	act, _ := f.Action(token)
	ticker := time.NewTicker(250 * time.Millisecond)
	defer ticker.Stop()
	for time.Since(act.Started) < 2200*time.Millisecond { // more than twice the timeout
		if err := asgHeartbeat(ctx, c, "workers", "drain", token); err != nil {
			t.Fatalf("heartbeat after %v: %v", time.Since(act.Started), err)
		}
		<-ticker.C
	}
	if got, _ := f.Action(token); got.State != AutoScalingActionPending || len(got.Heartbeats) < 8 {
		t.Fatalf("after heartbeats: state %s with %d heartbeats, want pending", got.State, len(got.Heartbeats))
	}
	if _, err := c.CompleteLifecycleAction(ctx, &autoscaling.CompleteLifecycleActionInput{
		AutoScalingGroupName: aws.String("workers"), LifecycleHookName: aws.String("drain"),
		InstanceId: aws.String("i-0aaa"), LifecycleActionResult: aws.String("CONTINUE"),
	}); err != nil {
		t.Fatalf("CompleteLifecycleAction by instance ID: %v", err)
	}
	got, err := f.WaitAction(ctx, token)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != AutoScalingActionCompleted || got.Result != "CONTINUE" || got.CompletedAt.IsZero() {
		t.Errorf("action = %+v, want completed with CONTINUE", got)
	}
	out, err := c.DescribeAutoScalingInstances(ctx, &autoscaling.DescribeAutoScalingInstancesInput{InstanceIds: []string{"i-0aaa"}})
	if err != nil || len(out.AutoScalingInstances) != 0 {
		t.Errorf("terminated instance still described: %v, %+v", err, out)
	}
	// Completing again fails as it does in AWS.
	err = asgHeartbeat(ctx, c, "workers", "drain", token)
	asgWantValidation(t, err, "No active Lifecycle Action found with token "+token)
}

func TestAutoScalingActionExpiresWithDefaultResult(t *testing.T) {
	t.Parallel()
	f := asgTestFake(t, AutoScalingOptions{})
	c := asgTestClient(f)
	f.AddHook(AutoScalingHook{Group: "workers", Name: "drain", HeartbeatTimeout: time.Second, DefaultResult: "CONTINUE"})
	token := f.StartAction("workers", "drain", "i-0bbb")
	ctx := sqsTestCtx(t, 10*time.Second)

	got, err := f.WaitAction(ctx, token)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != AutoScalingActionExpired || got.Result != "CONTINUE" || got.ExpiryReason != AutoScalingHeartbeatTimeout {
		t.Fatalf("action = %+v, want expired by heartbeat timeout with CONTINUE", got)
	}
	if d := got.ExpiredAt.Sub(got.Started); d != time.Second {
		t.Errorf("expired %v after start, want 1 s", d)
	}
	if _, ok := f.Instance("i-0bbb"); ok {
		t.Error("instance still present after its terminate action expired")
	}
	asgWantValidation(t, asgHeartbeat(ctx, c, "workers", "drain", token), "No active Lifecycle Action found with token "+token)
	_, err = c.CompleteLifecycleAction(ctx, &autoscaling.CompleteLifecycleActionInput{
		AutoScalingGroupName: aws.String("workers"), LifecycleHookName: aws.String("drain"),
		InstanceId: aws.String("i-0bbb"), LifecycleActionResult: aws.String("ABANDON"),
	})
	asgWantValidation(t, err, "No active Lifecycle Action found with instance ID i-0bbb")
}

func TestAutoScalingGlobalTimeoutWithManualClock(t *testing.T) {
	t.Parallel()
	clock := newASGManualClock()
	f := asgTestFake(t, AutoScalingOptions{Now: clock.Now})
	c := asgTestClient(f)
	f.AddHook(AutoScalingHook{Group: "workers", Name: "drain", HeartbeatTimeout: 30 * time.Second})
	token := f.StartAction("workers", "drain", "i-0ccc")
	ctx := sqsTestCtx(t, 10*time.Second)

	// Heartbeat every 20 s: the action lives until 100 × 30 s = 3000 s.
	for elapsed := time.Duration(0); ; elapsed += 20 * time.Second {
		if err := asgHeartbeat(ctx, c, "workers", "drain", token); err != nil {
			t.Fatalf("heartbeat at %v: %v", elapsed, err)
		}
		if elapsed == 2980*time.Second {
			break
		}
		clock.Advance(20 * time.Second)
	}
	if got, _ := f.Action(token); got.State != AutoScalingActionPending {
		t.Fatalf("action ended early: %s at %v", got.State, got.ExpiredAt)
	}
	clock.Advance(20 * time.Second)
	got, err := f.WaitAction(ctx, token)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != AutoScalingActionExpired || got.ExpiryReason != AutoScalingGlobalTimeout || got.Result != "ABANDON" {
		t.Fatalf("action %s (%s, %s), want expired by global timeout with ABANDON", got.State, got.ExpiryReason, got.Result)
	}
	if d := got.ExpiredAt.Sub(got.Started); d != 3000*time.Second {
		t.Errorf("expired %v after start, want 3000 s", d)
	}
	asgWantValidation(t, asgHeartbeat(ctx, c, "workers", "drain", token), "No active Lifecycle Action found with token "+token)
}

func TestAutoScalingGlobalTimeoutOverrideRealTime(t *testing.T) {
	t.Parallel()
	f := asgTestFake(t, AutoScalingOptions{})
	c := asgTestClient(f)
	f.AddHook(AutoScalingHook{Group: "workers", Name: "drain", HeartbeatTimeout: time.Second, GlobalTimeout: 1500 * time.Millisecond})
	token := f.StartAction("workers", "drain", "i-0ddd")
	ctx := sqsTestCtx(t, 10*time.Second)

	result := make(chan AutoScalingAction, 1)
	go func() {
		a, _ := f.WaitAction(ctx, token)
		result <- a
	}()
	ticker := time.NewTicker(200 * time.Millisecond)
	defer ticker.Stop()
	for {
		select {
		case got := <-result:
			if got.State != AutoScalingActionExpired || got.ExpiryReason != AutoScalingGlobalTimeout {
				t.Fatalf("action = %+v, want global timeout", got)
			}
			return
		case <-ticker.C:
			_ = asgHeartbeat(ctx, c, "workers", "drain", token) // keeps it alive until the cap
		case <-ctx.Done():
			t.Fatal("action did not expire")
		}
	}
}

func TestAutoScalingValidationErrors(t *testing.T) {
	t.Parallel()
	f := asgTestFake(t, AutoScalingOptions{})
	c := asgTestClient(f)
	f.AddHook(AutoScalingHook{Group: "workers", Name: "drain"})
	token := f.StartAction("workers", "drain", "i-0eee")
	ctx := sqsTestCtx(t, 10*time.Second)
	const unknown = "11111111-2222-4333-8444-555555555555"

	tests := []struct {
		name string
		in   autoscaling.CompleteLifecycleActionInput
		want string
	}{
		{"unknown token", autoscaling.CompleteLifecycleActionInput{LifecycleActionToken: aws.String(unknown), LifecycleActionResult: aws.String("CONTINUE")},
			"No active Lifecycle Action found with token " + unknown},
		{"unknown token with instance ID", autoscaling.CompleteLifecycleActionInput{LifecycleActionToken: aws.String(unknown), InstanceId: aws.String("i-0eee"), LifecycleActionResult: aws.String("CONTINUE")},
			"No active Lifecycle Action found with token " + unknown},
		{"token of another instance", autoscaling.CompleteLifecycleActionInput{LifecycleActionToken: aws.String(token), InstanceId: aws.String("i-0fff"), LifecycleActionResult: aws.String("CONTINUE")},
			"No active Lifecycle Action found with token " + token},
		{"unknown instance", autoscaling.CompleteLifecycleActionInput{InstanceId: aws.String("i-0fff"), LifecycleActionResult: aws.String("CONTINUE")},
			"No active Lifecycle Action found with instance ID i-0fff"},
		{"wrong hook", autoscaling.CompleteLifecycleActionInput{LifecycleHookName: aws.String("other"), InstanceId: aws.String("i-0eee"), LifecycleActionResult: aws.String("CONTINUE")},
			"No active Lifecycle Action found with instance ID i-0eee"},
		{"bad result", autoscaling.CompleteLifecycleActionInput{LifecycleActionToken: aws.String(token), LifecycleActionResult: aws.String("MAYBE")},
			"Valid values for LifecycleActionResult are CONTINUE and ABANDON."},
		{"short token", autoscaling.CompleteLifecycleActionInput{LifecycleActionToken: aws.String("abc"), LifecycleActionResult: aws.String("CONTINUE")},
			"1 validation error detected: Value 'abc' at 'lifecycleActionToken' failed to satisfy constraint: Member must have length greater than or equal to 36"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.in
			in.AutoScalingGroupName = aws.String("workers")
			if in.LifecycleHookName == nil {
				in.LifecycleHookName = aws.String("drain")
			}
			_, err := c.CompleteLifecycleAction(ctx, &in)
			asgWantValidation(t, err, tt.want)
		})
	}
	if got, _ := f.Action(token); got.State != AutoScalingActionPending {
		t.Errorf("failed calls changed the action: %+v", got)
	}
	if got := f.CallCount("CompleteLifecycleAction"); got != len(tests) {
		t.Errorf("CompleteLifecycleAction calls = %d, want %d (ValidationError is not retried)", got, len(tests))
	}
}

func TestAutoScalingDescribeLifecycleHooks(t *testing.T) {
	t.Parallel()
	f := asgTestFake(t, AutoScalingOptions{})
	c := asgTestClient(f)
	f.AddHook(AutoScalingHook{
		Group: "workers", Name: "drain", HeartbeatTimeout: 2 * time.Second, DefaultResult: "CONTINUE",
		NotificationTargetARN: "arn:aws:sqs:us-east-1:123456789012:lifecycle",
		RoleARN:               "arn:aws:iam::123456789012:role/asg-notify",
		NotificationMetadata:  `{"cluster":"trino"}`,
	})
	f.AddHook(AutoScalingHook{Group: "workers", Name: "warmup", Transition: AutoScalingTransitionLaunching, HeartbeatTimeout: 7200 * time.Second})
	ctx := sqsTestCtx(t, 10*time.Second)

	out, err := c.DescribeLifecycleHooks(ctx, &autoscaling.DescribeLifecycleHooksInput{AutoScalingGroupName: aws.String("workers")})
	if err != nil {
		t.Fatalf("DescribeLifecycleHooks: %v", err)
	}
	if len(out.LifecycleHooks) != 2 {
		t.Fatalf("got %d hooks, want 2", len(out.LifecycleHooks))
	}
	h := out.LifecycleHooks[0]
	if aws.ToString(h.LifecycleHookName) != "drain" || aws.ToString(h.AutoScalingGroupName) != "workers" ||
		aws.ToString(h.LifecycleTransition) != AutoScalingTransitionTerminating ||
		aws.ToInt32(h.HeartbeatTimeout) != 2 || aws.ToInt32(h.GlobalTimeout) != 200 ||
		aws.ToString(h.DefaultResult) != "CONTINUE" ||
		aws.ToString(h.NotificationTargetARN) != "arn:aws:sqs:us-east-1:123456789012:lifecycle" ||
		aws.ToString(h.RoleARN) != "arn:aws:iam::123456789012:role/asg-notify" ||
		aws.ToString(h.NotificationMetadata) != `{"cluster":"trino"}` {
		t.Errorf("drain hook = %+v", h)
	}
	w := out.LifecycleHooks[1]
	if aws.ToInt32(w.GlobalTimeout) != 172800 || aws.ToString(w.DefaultResult) != "ABANDON" || aws.ToString(w.LifecycleTransition) != AutoScalingTransitionLaunching {
		t.Errorf("warmup hook: GlobalTimeout %d (want the 48 h cap), DefaultResult %s", aws.ToInt32(w.GlobalTimeout), aws.ToString(w.DefaultResult))
	}
	one, err := c.DescribeLifecycleHooks(ctx, &autoscaling.DescribeLifecycleHooksInput{AutoScalingGroupName: aws.String("workers"), LifecycleHookNames: []string{"warmup"}})
	if err != nil || len(one.LifecycleHooks) != 1 || aws.ToString(one.LifecycleHooks[0].LifecycleHookName) != "warmup" {
		t.Errorf("filtered DescribeLifecycleHooks: %v, %+v", err, one)
	}
	_, err = c.DescribeLifecycleHooks(ctx, &autoscaling.DescribeLifecycleHooksInput{AutoScalingGroupName: aws.String("nope")})
	asgWantValidation(t, err, "Group nope not found")
}

func TestAutoScalingDescribeInstancesAndGroups(t *testing.T) {
	t.Parallel()
	f := asgTestFake(t, AutoScalingOptions{Region: "eu-west-1", TerminateDelay: time.Hour})
	c := asgTestClient(f)
	f.AddGroup("workers", 2, 6)
	f.AddHook(AutoScalingHook{Group: "workers", Name: "drain"})
	for _, id := range []string{"i-01", "i-02", "i-03"} {
		f.AddInstance(id, "workers", "")
	}
	token := f.StartAction("workers", "drain", "i-02")
	ctx := sqsTestCtx(t, 10*time.Second)

	out, err := c.DescribeAutoScalingInstances(ctx, &autoscaling.DescribeAutoScalingInstancesInput{InstanceIds: []string{"i-02", "i-unknown"}})
	if err != nil {
		t.Fatalf("DescribeAutoScalingInstances: %v", err)
	}
	if len(out.AutoScalingInstances) != 1 {
		t.Fatalf("got %d instances, want 1", len(out.AutoScalingInstances))
	}
	in := out.AutoScalingInstances[0]
	if aws.ToString(in.InstanceId) != "i-02" || aws.ToString(in.AutoScalingGroupName) != "workers" ||
		aws.ToString(in.LifecycleState) != "Terminating:Wait" || aws.ToString(in.AvailabilityZone) != "eu-west-1a" ||
		aws.ToString(in.HealthStatus) != "HEALTHY" || in.LaunchTemplate == nil || aws.ToBool(in.ProtectedFromScaleIn) {
		t.Errorf("instance = %+v", in)
	}

	groups, err := c.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{"workers"}})
	if err != nil || len(groups.AutoScalingGroups) != 1 {
		t.Fatalf("DescribeAutoScalingGroups: %v, %+v", err, groups)
	}
	g := groups.AutoScalingGroups[0]
	if aws.ToInt32(g.MinSize) != 2 || aws.ToInt32(g.MaxSize) != 6 || aws.ToInt32(g.DesiredCapacity) != 2 || len(g.Instances) != 3 ||
		!strings.HasPrefix(aws.ToString(g.AutoScalingGroupARN), "arn:aws:autoscaling:eu-west-1:123456789012:autoScalingGroup:") ||
		g.CreatedTime == nil {
		t.Errorf("group = %+v", g)
	}
	if g.Instances[1].LifecycleState != types.LifecycleStateTerminatingWait {
		t.Errorf("instance i-02 in group listing: %s", g.Instances[1].LifecycleState)
	}

	if _, err := c.CompleteLifecycleAction(ctx, &autoscaling.CompleteLifecycleActionInput{
		AutoScalingGroupName: aws.String("workers"), LifecycleHookName: aws.String("drain"),
		LifecycleActionToken: aws.String(token), LifecycleActionResult: aws.String("CONTINUE"),
	}); err != nil {
		t.Fatal(err)
	}
	if inst, ok := f.Instance("i-02"); !ok || inst.LifecycleState != "Terminating:Proceed" {
		t.Errorf("after completion: %+v, %v; want Terminating:Proceed for TerminateDelay", inst, ok)
	}
}

func TestAutoScalingLaunchHook(t *testing.T) {
	t.Parallel()
	f := asgTestFake(t, AutoScalingOptions{})
	c := asgTestClient(f)
	f.AddHook(AutoScalingHook{Group: "workers", Name: "warmup", Transition: AutoScalingTransitionLaunching})
	ctx := sqsTestCtx(t, 10*time.Second)
	for _, tt := range []struct{ id, result, want string }{
		{"i-0launch1", "CONTINUE", "InService"},
		{"i-0launch2", "ABANDON", ""},
	} {
		token := f.StartAction("workers", "warmup", tt.id)
		if inst, _ := f.Instance(tt.id); inst.LifecycleState != "Pending:Wait" {
			t.Fatalf("%s: state %s, want Pending:Wait", tt.id, inst.LifecycleState)
		}
		if _, err := c.CompleteLifecycleAction(ctx, &autoscaling.CompleteLifecycleActionInput{
			AutoScalingGroupName: aws.String("workers"), LifecycleHookName: aws.String("warmup"),
			LifecycleActionToken: aws.String(token), LifecycleActionResult: aws.String(tt.result),
		}); err != nil {
			t.Fatal(err)
		}
		inst, ok := f.Instance(tt.id)
		if tt.want == "" && ok || tt.want != "" && inst.LifecycleState != tt.want {
			t.Errorf("%s after %s: %+v (present %v), want %q", tt.id, tt.result, inst, ok, tt.want)
		}
	}
}

func TestAutoScalingActivationDelay(t *testing.T) {
	t.Parallel()
	f := asgTestFake(t, AutoScalingOptions{})
	c := asgTestClient(f)
	f.AddHook(AutoScalingHook{Group: "workers", Name: "drain"})
	f.SetActivationDelay(400 * time.Millisecond)
	token := f.StartAction("workers", "drain", "i-0race")
	ctx := sqsTestCtx(t, 10*time.Second)

	out, err := c.DescribeAutoScalingInstances(ctx, &autoscaling.DescribeAutoScalingInstancesInput{InstanceIds: []string{"i-0race"}})
	if err != nil || len(out.AutoScalingInstances) != 1 || aws.ToString(out.AutoScalingInstances[0].LifecycleState) != "Terminating:Wait" {
		t.Fatalf("describe during the race: %v, %+v", err, out)
	}
	asgWantValidation(t, asgHeartbeat(ctx, c, "workers", "drain", token), "No active Lifecycle Action found with token "+token)

	var okAt time.Time
	Eventually(t, 5*time.Second, "the action to become active", func() bool {
		if asgHeartbeat(ctx, c, "workers", "drain", token) != nil {
			return false
		}
		okAt = time.Now()
		return true
	})
	act, _ := f.Action(token)
	if okAt.Sub(act.Started) < 400*time.Millisecond || len(act.Heartbeats) != 1 {
		t.Errorf("heartbeat accepted %v after start (want ≥ 400 ms), heartbeats %d", okAt.Sub(act.Started), len(act.Heartbeats))
	}
}

func TestAutoScalingInjectedFaultsAreRetriedBySDK(t *testing.T) {
	t.Parallel()
	f := asgTestFake(t, AutoScalingOptions{})
	c := asgTestClient(f)
	f.AddHook(AutoScalingHook{Group: "workers", Name: "drain"})
	token := f.StartAction("workers", "drain", "i-0flaky")
	ctx := sqsTestCtx(t, 10*time.Second)

	f.InjectFault("RecordLifecycleActionHeartbeat", Fault{Status: 503, Code: "ServiceUnavailable", Times: 2})
	if err := asgHeartbeat(ctx, c, "workers", "drain", token); err != nil {
		t.Fatalf("heartbeat after two 503s: %v", err)
	}
	if got := f.CallCount("RecordLifecycleActionHeartbeat"); got != 3 {
		t.Errorf("heartbeat calls = %d, want 3", got)
	}

	f.InjectFault("RecordLifecycleActionHeartbeat", Fault{Status: 400, Code: "Throttling", Message: "Rate exceeded", Times: 1})
	if err := asgHeartbeat(ctx, c, "workers", "drain", token); err != nil {
		t.Fatalf("heartbeat after throttling: %v", err)
	}
	if got := f.CallCount("RecordLifecycleActionHeartbeat"); got != 5 {
		t.Errorf("heartbeat calls = %d, want 5", got)
	}
	if act, _ := f.Action(token); len(act.Heartbeats) != 2 {
		t.Errorf("recorded %d heartbeats, want 2 (faulted calls change nothing)", len(act.Heartbeats))
	}

	f.InjectFault("CompleteLifecycleAction", Fault{Status: 500, Code: "ResourceContention", Message: "You already have a pending update"})
	_, err := c.CompleteLifecycleAction(ctx, &autoscaling.CompleteLifecycleActionInput{
		AutoScalingGroupName: aws.String("workers"), LifecycleHookName: aws.String("drain"),
		LifecycleActionToken: aws.String(token), LifecycleActionResult: aws.String("CONTINUE"),
	})
	if rc := new(types.ResourceContentionFault); !errors.As(err, &rc) {
		t.Fatalf("persistent ResourceContention: %v, want *types.ResourceContentionFault", err)
	}
	if got := f.CallCount("CompleteLifecycleAction"); got != 3 {
		t.Errorf("complete calls = %d, want 3", got)
	}
	f.ClearFaults()
	if got, _ := f.Action(token); got.State != AutoScalingActionPending {
		t.Errorf("faulted completion changed the action: %+v", got)
	}
}

func TestAutoScalingWireFormat(t *testing.T) {
	t.Parallel()
	f := asgTestFake(t, AutoScalingOptions{})
	f.AddHook(AutoScalingHook{Group: "workers", Name: "drain"})
	f.StartAction("workers", "drain", "i-0wire")
	post := func(form url.Values) (*http.Response, string) {
		t.Helper()
		resp, err := http.PostForm(f.URL()+"/", form)
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
	resp, body := post(url.Values{"Action": {"RecordLifecycleActionHeartbeat"}, "Version": {"2011-01-01"},
		"AutoScalingGroupName": {"workers"}, "LifecycleHookName": {"drain"}, "InstanceId": {"i-0wire"}})
	reqID := resp.Header.Get("X-Amzn-Requestid")
	want := `<RecordLifecycleActionHeartbeatResponse xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/"><RecordLifecycleActionHeartbeatResult></RecordLifecycleActionHeartbeatResult><ResponseMetadata><RequestId>` + reqID + `</RequestId></ResponseMetadata></RecordLifecycleActionHeartbeatResponse>`
	if resp.StatusCode != 200 || reqID == "" || body != want || resp.Header.Get("Content-Type") != "text/xml" {
		t.Errorf("heartbeat: %d %v\n%s\nwant\n%s", resp.StatusCode, resp.Header, body, want)
	}
	resp, body = post(url.Values{"Action": {"RecordLifecycleActionHeartbeat"}, "Version": {"2011-01-01"},
		"AutoScalingGroupName": {"workers"}, "LifecycleHookName": {"drain"}, "InstanceId": {"i-0none"}})
	if resp.StatusCode != 400 || !strings.Contains(body, `<Error><Type>Sender</Type><Code>ValidationError</Code><Message>No active Lifecycle Action found with instance ID i-0none</Message></Error><RequestId>`) {
		t.Errorf("no action: %d %s", resp.StatusCode, body)
	}
	resp, body = post(url.Values{"Action": {"DescribeAutoScalingGroups"}, "Version": {"2010-08-01"}})
	if resp.StatusCode != 400 || !strings.Contains(body, "<Code>NoSuchVersion</Code>") {
		t.Errorf("wrong version: %d %s", resp.StatusCode, body)
	}
	resp, body = post(url.Values{"Action": {"PutLifecycleHook"}, "Version": {"2011-01-01"}})
	if resp.StatusCode != 400 || !strings.Contains(body, "<Code>InvalidAction</Code>") {
		t.Errorf("unsupported action: %d %s", resp.StatusCode, body)
	}
	resp, body = post(url.Values{"Action": {"CompleteLifecycleAction"}, "Version": {"2011-01-01"}, "InstanceId": {"i-0wire"}})
	if resp.StatusCode != 400 || !strings.Contains(body, "3 validation errors detected: Value null at &#39;lifecycleHookName&#39;") {
		t.Errorf("missing members: %d %s", resp.StatusCode, body)
	}
	if c := f.Calls()[0]; c.Service != "autoscaling" || c.Op != "RecordLifecycleActionHeartbeat" || c.Params["InstanceId"] != "i-0wire" || c.Params["Version"] != "2011-01-01" {
		t.Errorf("first call = %+v", c)
	}
}

func TestLifecycleMessageShapes(t *testing.T) {
	t.Parallel()
	f := asgTestFake(t, AutoScalingOptions{AccountID: "210987654321", Region: "eu-central-1"})
	f.AddHook(AutoScalingHook{Group: "workers", Name: "drain", NotificationMetadata: `{"k":"v"}`})
	token := f.StartAction("workers", "drain", "i-0msg")
	m := f.Message(token)
	m.Time = time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)
	msPrecision := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`)

	decode := func(s string) map[string]any {
		t.Helper()
		var v map[string]any
		if err := json.Unmarshal([]byte(s), &v); err != nil {
			t.Fatalf("decode %s: %v", s, err)
		}
		return v
	}
	direct := decode(m.Direct())
	wantDirect := map[string]any{
		"LifecycleHookName": "drain", "AccountId": "210987654321", "LifecycleTransition": AutoScalingTransitionTerminating,
		"AutoScalingGroupName": "workers", "Service": "AWS Auto Scaling", "EC2InstanceId": "i-0msg",
		"LifecycleActionToken": token, "NotificationMetadata": `{"k":"v"}`, "Origin": "AutoScalingGroup", "Destination": "EC2",
		"Time": "2026-03-01T12:00:00.123Z",
	}
	for k, v := range wantDirect {
		if direct[k] != v {
			t.Errorf("direct %s = %v, want %v", k, direct[k], v)
		}
	}
	if id, _ := direct["RequestId"].(string); len(id) != 36 || !msPrecision.MatchString(direct["Time"].(string)) {
		t.Errorf("direct RequestId %q / Time %v", id, direct["Time"])
	}

	sns := decode(m.SNS())
	if sns["Type"] != "Notification" || sns["SigningCertURL"] == nil || sns["UnsubscribeURL"] == nil ||
		!strings.HasPrefix(sns["Subject"].(string), "Auto Scaling:  Lifecycle action 'TERMINATING'") {
		t.Errorf("SNS envelope = %v", sns)
	}
	inner, ok := sns["Message"].(string)
	if !ok || inner != m.Direct() {
		t.Errorf("SNS Message = %v, want the direct JSON as a string", sns["Message"])
	}

	eb := decode(m.EventBridge())
	detail, _ := eb["detail"].(map[string]any)
	if eb["detail-type"] != "EC2 Instance-terminate Lifecycle Action" || eb["source"] != "aws.autoscaling" ||
		eb["account"] != "210987654321" || eb["region"] != "eu-central-1" || eb["time"] != "2026-03-01T12:00:00Z" ||
		detail["EC2InstanceId"] != "i-0msg" || detail["LifecycleActionToken"] != token || detail["Service"] != nil || detail["Destination"] != "EC2" {
		t.Errorf("EventBridge event = %v", eb)
	}
	launch := decode(LifecycleMessage{Group: "g", Hook: "h", InstanceID: "i-1", Token: token, Transition: AutoScalingTransitionLaunching}.EventBridge())
	if launch["detail-type"] != "EC2 Instance-launch Lifecycle Action" || launch["detail"].(map[string]any)["Origin"] != "EC2" {
		t.Errorf("launch event = %v", launch)
	}
	old := decode(LifecycleMessage{Group: "g", Hook: "h", InstanceID: "i-1", Token: token, OmitOriginDestination: true}.Direct())
	if _, has := old["Origin"]; has {
		t.Error("OmitOriginDestination kept Origin")
	}

	for _, body := range []string{f.TestNotification("workers"), AutoScalingTestNotification("workers")} {
		tn := decode(body)
		if tn["Event"] != "autoscaling:TEST_NOTIFICATION" || tn["AutoScalingGroupName"] != "workers" || tn["EC2InstanceId"] != nil ||
			tn["LifecycleActionToken"] != nil || !strings.Contains(tn["AutoScalingGroupARN"].(string), ":autoScalingGroupName/workers") {
			t.Errorf("test notification = %v", tn)
		}
	}
}
