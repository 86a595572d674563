// This file implements a fake EC2 Auto Scaling endpoint that speaks the AWS
// Query protocol (form-encoded POST, XML responses, API version 2011-01-01)
// of aws-sdk-go-v2's service/autoscaling, and models groups, instances,
// lifecycle hooks and lifecycle actions with heartbeat and global timeouts.
// It also builds the lifecycle notification bodies that Auto Scaling sends
// to SQS directly, through SNS, or through EventBridge.

package testpeers

import (
	"cmp"
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Lifecycle transitions, as in LifecycleHook.LifecycleTransition.
const (
	AutoScalingTransitionTerminating = "autoscaling:EC2_INSTANCE_TERMINATING"
	AutoScalingTransitionLaunching   = "autoscaling:EC2_INSTANCE_LAUNCHING"
)

// Lifecycle action results.
const (
	AutoScalingContinue = "CONTINUE"
	AutoScalingAbandon  = "ABANDON"
)

// States of an AutoScalingAction.
const (
	AutoScalingActionPending   = "pending"
	AutoScalingActionCompleted = "completed"
	AutoScalingActionExpired   = "expired"
)

// Expiry reasons of an AutoScalingAction.
const (
	AutoScalingHeartbeatTimeout = "heartbeat-timeout"
	AutoScalingGlobalTimeout    = "global-timeout"
)

// Auto Scaling protocol constants and documented limits.
const (
	asgXMLNS          = "http://autoscaling.amazonaws.com/doc/2011-01-01/"
	asgAPIVersion     = "2011-01-01"
	asgDefaultHB      = time.Hour
	asgMaxGlobal      = 48 * time.Hour
	asgGlobalFactor   = 100
	asgTokenLength    = 36
	asgDefaultAccount = "123456789012"
	asgDefaultRegion  = "us-east-1"
)

// AutoScalingOptions configures a fake Auto Scaling endpoint.
type AutoScalingOptions struct {
	// Region is used in ARNs and availability zones. Default "us-east-1".
	Region string
	// AccountID is used in ARNs. Default "123456789012".
	AccountID string
	// TerminateDelay is how long a terminated instance stays in
	// Terminating:Proceed before it disappears from the Describe calls.
	// Default 0: it disappears as soon as its lifecycle action ends.
	TerminateDelay time.Duration
	// Now is the fake's clock for heartbeat and global timeouts. Default
	// time.Now.
	Now func() time.Time
}

// AutoScalingHook is a lifecycle hook.
type AutoScalingHook struct {
	// Group is the Auto Scaling group name.
	Group string
	// Name is the LifecycleHookName.
	Name string
	// Transition is AutoScalingTransitionTerminating (the default) or
	// AutoScalingTransitionLaunching.
	Transition string
	// HeartbeatTimeout is how long an action waits for a heartbeat or
	// completion. Default 1 h. Unlike the API (30–7200 s) any positive
	// value is accepted so tests can use e.g. 1 s; DescribeLifecycleHooks
	// reports it rounded up to whole seconds.
	HeartbeatTimeout time.Duration
	// GlobalTimeout caps an action regardless of heartbeats. Default
	// min(100 × HeartbeatTimeout, 48 h), as documented; set it to test the
	// global timeout quickly.
	GlobalTimeout time.Duration
	// DefaultResult is applied on timeout: AutoScalingAbandon (the
	// default) or AutoScalingContinue.
	DefaultResult string
	// NotificationTargetARN, RoleARN and NotificationMetadata are reported
	// by DescribeLifecycleHooks; NotificationMetadata is also copied into
	// lifecycle messages built by (*AutoScaling).Message.
	NotificationTargetARN, RoleARN, NotificationMetadata string
}

// AutoScalingAction is a snapshot of a lifecycle action.
type AutoScalingAction struct {
	// Token is the LifecycleActionToken.
	Token string
	// Group, Hook and InstanceID identify the action.
	Group, Hook, InstanceID string
	// Transition is the hook's lifecycle transition.
	Transition string
	// Started is when StartAction ran.
	Started time.Time
	// ActiveAt is when the action starts accepting heartbeats and
	// completion (Started plus the activation delay in effect).
	ActiveAt time.Time
	// Heartbeats are the times of successful heartbeats.
	Heartbeats []time.Time
	// HeartbeatDeadline is when the action times out without a heartbeat.
	HeartbeatDeadline time.Time
	// GlobalDeadline is when the action times out regardless of heartbeats.
	GlobalDeadline time.Time
	// State is AutoScalingActionPending, AutoScalingActionCompleted or
	// AutoScalingActionExpired.
	State string
	// Result is the LifecycleActionResult that ended the action (the
	// hook's DefaultResult when it expired).
	Result string
	// CompletedAt is when CompleteLifecycleAction succeeded.
	CompletedAt time.Time
	// ExpiredAt is the deadline at which the action timed out.
	ExpiredAt time.Time
	// ExpiryReason is AutoScalingHeartbeatTimeout or
	// AutoScalingGlobalTimeout.
	ExpiryReason string
}

// AutoScalingInstance is a snapshot of an instance of a group.
type AutoScalingInstance struct {
	// ID is the EC2 instance ID.
	ID string
	// Group is the Auto Scaling group name.
	Group string
	// LifecycleState is e.g. "InService", "Terminating:Wait",
	// "Terminating:Proceed", "Pending:Wait".
	LifecycleState string
	// AvailabilityZone is the instance's zone.
	AvailabilityZone string
	// ProtectedFromScaleIn is the scale-in protection flag.
	ProtectedFromScaleIn bool
}

// AutoScaling is a fake EC2 Auto Scaling endpoint. Create it with
// NewAutoScaling, point an SDK client's BaseEndpoint at URL(), and Close it
// when done. All methods are safe for concurrent use.
type AutoScaling struct {
	*peerServer

	region, account string
	terminateDelay  time.Duration

	mu              sync.Mutex
	groups          map[string]*asgGroup
	hooks           map[[2]string]*AutoScalingHook // by group and name
	instances       map[string]*asgInstance
	actions         map[string]*asgAction // by token
	order           []string              // tokens in start order
	activationDelay time.Duration
}

// asgGroup is an Auto Scaling group.
type asgGroup struct {
	name, arn string
	min, max  int
	created   time.Time
}

// asgInstance is an instance of a group.
type asgInstance struct {
	id, group, state, az string
	protected            bool
	waitSince            time.Time // when the current wait state began
	goneAt               time.Time // set in Terminating:Proceed
}

// asgAction is a lifecycle action.
type asgAction struct {
	AutoScalingAction
	hook *AutoScalingHook
}

// NewAutoScaling starts a fake Auto Scaling endpoint on 127.0.0.1. It panics
// only if no loopback port can be bound.
func NewAutoScaling(opts AutoScalingOptions) *AutoScaling {
	a := &AutoScaling{
		region:         cmp.Or(opts.Region, asgDefaultRegion),
		account:        cmp.Or(opts.AccountID, asgDefaultAccount),
		terminateDelay: opts.TerminateDelay,
		groups:         make(map[string]*asgGroup),
		hooks:          make(map[[2]string]*AutoScalingHook),
		instances:      make(map[string]*asgInstance),
		actions:        make(map[string]*asgAction),
	}
	a.peerServer = newPeerServer("autoscaling", opts.Now, http.HandlerFunc(a.serveHTTP))
	a.goBackground(a.sweepLoop)
	return a
}

// AddGroup adds (or resizes) an Auto Scaling group.
func (a *AutoScaling) AddGroup(name string, minSize, maxSize int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.addGroupLocked(name, minSize, maxSize)
}

// addGroupLocked adds or resizes a group.
func (a *AutoScaling) addGroupLocked(name string, minSize, maxSize int) *asgGroup {
	g := a.groups[name]
	if g == nil {
		g = &asgGroup{
			name:    name,
			arn:     asgGroupARN(a.region, a.account, name),
			created: a.now(),
		}
		a.groups[name] = g
	}
	g.min, g.max = minSize, maxSize
	return g
}

// AddHook adds (or replaces) a lifecycle hook, applying the defaults
// documented on AutoScalingHook. The group is created if needed.
func (a *AutoScaling) AddHook(h AutoScalingHook) {
	h.Transition = cmp.Or(h.Transition, AutoScalingTransitionTerminating)
	h.DefaultResult = cmp.Or(h.DefaultResult, AutoScalingAbandon)
	if h.HeartbeatTimeout <= 0 {
		h.HeartbeatTimeout = asgDefaultHB
	}
	if h.GlobalTimeout <= 0 {
		h.GlobalTimeout = min(asgGlobalFactor*h.HeartbeatTimeout, asgMaxGlobal)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.groups[h.Group] == nil {
		a.addGroupLocked(h.Group, 0, 10)
	}
	a.hooks[[2]string{h.Group, h.Name}] = &h
}

// AddInstance adds (or moves) an instance to a group in the given lifecycle
// state ("" means "InService"). The group is created if needed.
func (a *AutoScaling) AddInstance(id, group, state string) {
	a.mu.Lock()
	if a.groups[group] == nil {
		a.addGroupLocked(group, 0, 10)
	}
	a.instances[id] = &asgInstance{id: id, group: group, state: cmp.Or(state, "InService"), az: a.region + "a"}
	a.mu.Unlock()
	a.notify()
}

// SetInstanceState sets an instance's lifecycle state; false if the
// instance is unknown.
func (a *AutoScaling) SetInstanceState(id, state string) bool {
	a.mu.Lock()
	inst, ok := a.instances[id]
	if ok {
		inst.state = state
		inst.goneAt = time.Time{}
	}
	a.mu.Unlock()
	a.notify()
	return ok
}

// Instance returns a snapshot of an instance; false once it is gone.
func (a *AutoScaling) Instance(id string) (snap AutoScalingInstance, ok bool) {
	a.swept(func(time.Time) bool {
		var inst *asgInstance
		if inst, ok = a.instances[id]; ok {
			snap = AutoScalingInstance{ID: inst.id, Group: inst.group, LifecycleState: inst.state,
				AvailabilityZone: inst.az, ProtectedFromScaleIn: inst.protected}
		}
		return false
	})
	return snap, ok
}

// swept runs fn under the lock after expiring what is due at now, and
// wakes waiters if that or fn (by returning true) changed anything.
func (a *AutoScaling) swept(fn func(now time.Time) bool) {
	a.mu.Lock()
	now := a.now()
	changed, _ := a.sweepLocked(now)
	changed = fn(now) || changed
	a.mu.Unlock()
	if changed {
		a.notify()
	}
}

// SetActivationDelay simulates the propagation race seen in production:
// for d after StartAction, heartbeats and completion of the new action fail
// with "No active Lifecycle Action found ..." although
// DescribeAutoScalingInstances already shows the wait state. It applies to
// actions started afterwards.
func (a *AutoScaling) SetActivationDelay(d time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.activationDelay = d
}

// StartAction starts a lifecycle action of the hook for the instance, as
// Auto Scaling does when it scales in (or out): the instance goes to
// Terminating:Wait (Pending:Wait for a launching hook) and a fresh token is
// returned. The instance is added to the group if unknown. It returns ""
// if the hook does not exist.
func (a *AutoScaling) StartAction(group, hook, instanceID string) string {
	a.mu.Lock()
	h := a.hooks[[2]string{group, hook}]
	if h == nil {
		a.mu.Unlock()
		return ""
	}
	now := a.now()
	inst := a.instances[instanceID]
	if inst == nil {
		inst = &asgInstance{id: instanceID, group: group, az: a.region + "a"}
		a.instances[instanceID] = inst
	}
	inst.goneAt = time.Time{}
	wait := "Terminating:Wait"
	if h.Transition == AutoScalingTransitionLaunching {
		wait = "Pending:Wait"
	}
	if inst.state != wait {
		inst.state = wait
		inst.waitSince = now
	}
	act := &asgAction{hook: h, AutoScalingAction: AutoScalingAction{
		Token:             peerUUID(),
		Group:             group,
		Hook:              hook,
		InstanceID:        instanceID,
		Transition:        h.Transition,
		Started:           now,
		ActiveAt:          now.Add(a.activationDelay),
		HeartbeatDeadline: now.Add(h.HeartbeatTimeout),
		GlobalDeadline:    now.Add(h.GlobalTimeout),
		State:             AutoScalingActionPending,
	}}
	a.actions[act.Token] = act
	a.order = append(a.order, act.Token)
	a.mu.Unlock()
	a.notify()
	return act.Token
}

// Action returns a snapshot of the action with the given token.
func (a *AutoScaling) Action(token string) (snap AutoScalingAction, ok bool) {
	a.swept(func(time.Time) bool {
		var act *asgAction
		if act, ok = a.actions[token]; ok {
			snap = act.snapshot()
		}
		return false
	})
	return snap, ok
}

// Actions returns snapshots of every action in start order.
func (a *AutoScaling) Actions() (out []AutoScalingAction) {
	a.swept(func(time.Time) bool {
		for _, tok := range a.order {
			out = append(out, a.actions[tok].snapshot())
		}
		return false
	})
	return out
}

// WaitAction blocks until the action is no longer pending (completed or
// expired) and returns its snapshot, or an error if the token is unknown or
// ctx ends or the fake closes first.
func (a *AutoScaling) WaitAction(ctx context.Context, token string) (AutoScalingAction, error) {
	return a.WaitActionUntil(ctx, token, func(act AutoScalingAction) bool { return act.State != AutoScalingActionPending })
}

// WaitActionUntil waits until the action of token satisfies done (or is
// no longer known) and returns its last snapshot.
func (a *AutoScaling) WaitActionUntil(ctx context.Context, token string, done func(AutoScalingAction) bool) (AutoScalingAction, error) {
	var (
		snap  AutoScalingAction
		known bool
	)
	err := a.await(ctx, func() (bool, time.Duration) {
		var next time.Duration
		a.swept(func(now time.Time) bool {
			var act *asgAction
			if act, known = a.actions[token]; known {
				snap = act.snapshot()
				next = act.deadline().Sub(now)
			}
			return false
		})
		return !known || done(snap), next
	})
	if err != nil {
		return snap, fmt.Errorf("wait for lifecycle action %s: %w", token, err)
	}
	if !known {
		return snap, fmt.Errorf("wait for lifecycle action %s: unknown token", token)
	}
	return snap, nil
}

// Message returns the lifecycle notification Auto Scaling would send for
// the action (zero value if the token is unknown); render it with Direct,
// SNS or EventBridge.
func (a *AutoScaling) Message(token string) LifecycleMessage {
	a.mu.Lock()
	defer a.mu.Unlock()
	act, ok := a.actions[token]
	if !ok {
		return LifecycleMessage{}
	}
	return LifecycleMessage{
		Group:      act.Group,
		Hook:       act.Hook,
		InstanceID: act.InstanceID,
		Token:      act.Token,
		Transition: act.Transition,
		Time:       act.Started,
		Metadata:   act.hook.NotificationMetadata,
		AccountID:  a.account,
		Region:     a.region,
	}
}

// TestNotification returns the autoscaling:TEST_NOTIFICATION body Auto
// Scaling sends to a hook's target when the hook is created, for this
// fake's account and region.
func (a *AutoScaling) TestNotification(group string) string {
	return asgTestNotification(group, a.account, a.region, a.now())
}

// AutoScalingTestNotification returns an autoscaling:TEST_NOTIFICATION body
// (as sent directly to SQS) for the default account and region.
func AutoScalingTestNotification(group string) string {
	return asgTestNotification(group, asgDefaultAccount, asgDefaultRegion, time.Now())
}

// snapshot copies an action for callers.
func (act *asgAction) snapshot() AutoScalingAction {
	s := act.AutoScalingAction
	s.Heartbeats = slices.Clone(act.Heartbeats)
	return s
}

// deadline is when a pending action times out.
func (act *asgAction) deadline() time.Time {
	if act.GlobalDeadline.Before(act.HeartbeatDeadline) {
		return act.GlobalDeadline
	}
	return act.HeartbeatDeadline
}

// sweepLoop expires actions and removes terminated instances in the
// background, so that state moves on even when nobody asks.
// It ends when the fake closes.
func (a *AutoScaling) sweepLoop() {
	_ = a.await(context.Background(), func() (bool, time.Duration) {
		a.mu.Lock()
		changed, next := a.sweepLocked(a.now())
		a.mu.Unlock()
		if changed {
			a.notify()
		}
		return false, next
	})
}

// sweepLocked expires pending actions whose deadline passed and removes
// instances whose termination finished. It reports whether anything
// changed, and the time until the next of the deadlines still ahead (0 if
// none).
func (a *AutoScaling) sweepLocked(now time.Time) (changed bool, next time.Duration) {
	consider := func(t time.Time) {
		if d := t.Sub(now); next == 0 || d < next {
			next = d
		}
	}
	for _, tok := range a.order {
		act := a.actions[tok]
		if act.State != AutoScalingActionPending {
			continue
		}
		dl := act.deadline()
		if now.Before(dl) {
			consider(dl)
			continue
		}
		act.State = AutoScalingActionExpired
		act.Result = act.hook.DefaultResult
		act.ExpiredAt = dl
		act.ExpiryReason = AutoScalingHeartbeatTimeout
		if !act.GlobalDeadline.After(act.HeartbeatDeadline) {
			act.ExpiryReason = AutoScalingGlobalTimeout
		}
		a.advanceLocked(act, now)
		changed = true
	}
	for id, inst := range a.instances {
		switch {
		case inst.goneAt.IsZero():
		case now.Before(inst.goneAt):
			consider(inst.goneAt)
		default:
			delete(a.instances, id)
			changed = true
		}
	}
	return changed, next
}

// advanceLocked moves the instance on after one of its actions ended. An
// instance waits for every hook of its transition: only when no action of
// the current wait is pending does it move, to InService for a launch
// that was continued, otherwise to Terminating:Proceed and then out of the
// group. If any action of the wait ended with ABANDON, the result is
// ABANDON.
func (a *AutoScaling) advanceLocked(ended *asgAction, now time.Time) {
	inst := a.instances[ended.InstanceID]
	if inst == nil {
		return
	}
	result := ended.Result
	for _, act := range a.actions {
		if act.InstanceID != inst.id || act.Transition != ended.Transition || act.Started.Before(inst.waitSince) {
			continue
		}
		if act.State == AutoScalingActionPending {
			return
		}
		if act.Result == AutoScalingAbandon {
			result = AutoScalingAbandon
		}
	}
	if ended.Transition == AutoScalingTransitionLaunching && result == AutoScalingContinue {
		inst.state = "InService"
		return
	}
	inst.state = "Terminating:Proceed"
	inst.goneAt = now.Add(a.terminateDelay)
	if a.terminateDelay <= 0 {
		delete(a.instances, inst.id)
	}
}

// asgError is an Auto Scaling error as the Query protocol carries it.
type asgError struct {
	status  int
	typ     string // "Sender" or "Receiver"
	code    string
	message string
}

// asgSender is a 400 Sender error.
func asgSender(code, format string, args ...any) *asgError {
	return &asgError{status: http.StatusBadRequest, typ: "Sender", code: code, message: fmt.Sprintf(format, args...)}
}

// asgValidation is a 400 ValidationError.
func asgValidation(format string, args ...any) *asgError {
	return asgSender("ValidationError", format, args...)
}

// asgRequired checks required members in the service's validation wording.
func asgRequired(form url.Values, names ...string) *asgError {
	var problems []string
	for _, n := range names {
		if form.Get(n) == "" {
			problems = append(problems, fmt.Sprintf("Value null at '%s' failed to satisfy constraint: Member must not be null",
				strings.ToLower(n[:1])+n[1:]))
		}
	}
	switch len(problems) {
	case 0:
		return nil
	case 1:
		return asgValidation("1 validation error detected: %s", problems[0])
	}
	return asgValidation("%d validation errors detected: %s", len(problems), strings.Join(problems, "; "))
}

// asgFaultError renders an injected fault as an Auto Scaling error.
func asgFaultError(f *Fault) *asgError {
	status := f.status()
	code := faultCode(f, "InternalFailure", "Throttling", "Throttling")
	msg := cmp.Or(f.Message, "Injected fault "+code+".")
	if f.Message == "" && code == "Throttling" {
		msg = "Rate exceeded"
	}
	typ := "Sender"
	if status >= 500 {
		typ = "Receiver"
	}
	return &asgError{status: status, typ: typ, code: code, message: msg}
}

// XML documents of the Query protocol.
type (
	asgResponse struct {
		XMLName xml.Name
		Xmlns   string `xml:"xmlns,attr"`
		Result  struct {
			XMLName xml.Name // <op>Result
			List    any      // an asgList named for the member, or nil
		}
		Metadata struct {
			RequestID string `xml:"RequestId"`
		} `xml:"ResponseMetadata"`
	}
	asgErrorResponse struct {
		XMLName xml.Name `xml:"ErrorResponse"`
		Xmlns   string   `xml:"xmlns,attr"`
		Error   struct {
			Type    string `xml:"Type"`
			Code    string `xml:"Code"`
			Message string `xml:"Message"`
		} `xml:"Error"`
		RequestID string `xml:"RequestId"`
	}
	// asgList is a Query list; as a field it is named by the field's tag,
	// as a result's List by XMLName.
	asgList[T any] struct {
		XMLName xml.Name
		Member  []T `xml:"member"`
	}
	asgWireHook struct {
		LifecycleHookName     string `xml:"LifecycleHookName"`
		AutoScalingGroupName  string `xml:"AutoScalingGroupName"`
		LifecycleTransition   string `xml:"LifecycleTransition"`
		NotificationTargetARN string `xml:"NotificationTargetARN,omitempty"`
		RoleARN               string `xml:"RoleARN,omitempty"`
		NotificationMetadata  string `xml:"NotificationMetadata,omitempty"`
		HeartbeatTimeout      int64  `xml:"HeartbeatTimeout"`
		GlobalTimeout         int64  `xml:"GlobalTimeout"`
		DefaultResult         string `xml:"DefaultResult"`
	}
	asgWireLaunchTemplate struct {
		LaunchTemplateID   string `xml:"LaunchTemplateId"`
		LaunchTemplateName string `xml:"LaunchTemplateName"`
		Version            string `xml:"Version"`
	}
	asgWireInstanceDetails struct {
		asgWireInstance
		AutoScalingGroupName string `xml:"AutoScalingGroupName"`
	}
	asgWireInstance struct {
		InstanceID           string                `xml:"InstanceId"`
		InstanceType         string                `xml:"InstanceType"`
		AvailabilityZone     string                `xml:"AvailabilityZone"`
		LifecycleState       string                `xml:"LifecycleState"`
		HealthStatus         string                `xml:"HealthStatus"`
		LaunchTemplate       asgWireLaunchTemplate `xml:"LaunchTemplate"`
		ProtectedFromScaleIn bool                  `xml:"ProtectedFromScaleIn"`
	}
	asgWireGroup struct {
		AutoScalingGroupName             string                   `xml:"AutoScalingGroupName"`
		AutoScalingGroupARN              string                   `xml:"AutoScalingGroupARN"`
		LaunchTemplate                   asgWireLaunchTemplate    `xml:"LaunchTemplate"`
		MinSize                          int                      `xml:"MinSize"`
		MaxSize                          int                      `xml:"MaxSize"`
		DesiredCapacity                  int                      `xml:"DesiredCapacity"`
		DefaultCooldown                  int                      `xml:"DefaultCooldown"`
		AvailabilityZones                asgList[string]          `xml:"AvailabilityZones"`
		LoadBalancerNames                asgList[string]          `xml:"LoadBalancerNames"`
		TargetGroupARNs                  asgList[string]          `xml:"TargetGroupARNs"`
		HealthCheckType                  string                   `xml:"HealthCheckType"`
		HealthCheckGracePeriod           int                      `xml:"HealthCheckGracePeriod"`
		Instances                        asgList[asgWireInstance] `xml:"Instances"`
		CreatedTime                      string                   `xml:"CreatedTime"`
		SuspendedProcesses               asgList[string]          `xml:"SuspendedProcesses"`
		VPCZoneIdentifier                string                   `xml:"VPCZoneIdentifier"`
		EnabledMetrics                   asgList[string]          `xml:"EnabledMetrics"`
		TerminationPolicies              asgList[string]          `xml:"TerminationPolicies"`
		NewInstancesProtectedFromScaleIn bool                     `xml:"NewInstancesProtectedFromScaleIn"`
		ServiceLinkedRoleARN             string                   `xml:"ServiceLinkedRoleARN"`
		CapacityRebalance                bool                     `xml:"CapacityRebalance"`
	}
)

// serveHTTP dispatches one Query request.
func (a *AutoScaling) serveHTTP(w http.ResponseWriter, r *http.Request) {
	reqID := peerUUID()
	parseErr := r.ParseForm()
	op := r.Form.Get("Action")
	params := make(map[string]string, len(r.Form))
	for k, v := range r.Form {
		params[k] = v[0]
	}
	fault, answer := a.begin(r, op, params)
	if !answer {
		return
	}
	if fault != nil {
		asgWriteError(w, reqID, asgFaultError(fault))
		return
	}
	var (
		result any
		aErr   *asgError
	)
	switch {
	case parseErr != nil:
		aErr = asgSender("MalformedQueryString", "%s", parseErr)
	case op == "":
		aErr = asgSender("MissingAction", "Could not find operation to perform: no Action parameter.")
	case r.Form.Get("Version") != asgAPIVersion:
		aErr = asgSender("NoSuchVersion", "The requested version (%s) of service AutoScaling does not exist", r.Form.Get("Version"))
	default:
		result, aErr = a.dispatch(op, r.Form)
	}
	if aErr != nil {
		asgWriteError(w, reqID, aErr)
		return
	}
	resp := asgResponse{XMLName: xml.Name{Local: op + "Response"}, Xmlns: asgXMLNS}
	resp.Result.XMLName, resp.Result.List = xml.Name{Local: op + "Result"}, result
	resp.Metadata.RequestID = reqID
	asgWriteXML(w, reqID, http.StatusOK, resp)
}

// dispatch runs one operation.
func (a *AutoScaling) dispatch(op string, form url.Values) (result any, aErr *asgError) {
	a.swept(func(now time.Time) (mut bool) {
		switch op {
		case "RecordLifecycleActionHeartbeat":
			mut, aErr = a.opHeartbeatLocked(form, now)
		case "CompleteLifecycleAction":
			mut, aErr = a.opCompleteLocked(form, now)
		case "DescribeLifecycleHooks":
			result, aErr = a.opDescribeHooksLocked(form)
		case "DescribeAutoScalingInstances":
			result = a.opDescribeInstancesLocked(form)
		case "DescribeAutoScalingGroups":
			result = a.opDescribeGroupsLocked(form)
		default:
			aErr = asgSender("InvalidAction", "The action %s is not valid for this web service.", op)
		}
		return mut
	})
	return result, aErr
}

// asgWriteXML writes an XML document with the request id header the SDK
// reads (v1.81.0 reads it only from X-Amzn-Requestid).
func asgWriteXML(w http.ResponseWriter, reqID string, status int, v any) {
	b, err := xml.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`<ErrorResponse xmlns="` + asgXMLNS + `"><Error><Type>Receiver</Type><Code>InternalFailure</Code><Message>cannot encode response</Message></Error><RequestId>` + reqID + `</RequestId></ErrorResponse>`)
	}
	w.Header().Set("Content-Type", "text/xml")
	w.Header().Set("X-Amzn-Requestid", reqID)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// asgWriteError writes an ErrorResponse document.
func asgWriteError(w http.ResponseWriter, reqID string, e *asgError) {
	doc := asgErrorResponse{Xmlns: asgXMLNS, RequestID: reqID}
	doc.Error.Type, doc.Error.Code, doc.Error.Message = e.typ, e.code, e.message
	asgWriteXML(w, reqID, e.status, doc)
}

// asgMembers returns the values of a Query list parameter: Name.member.N
// for N = 1, 2, ... as long as they are present.
func asgMembers(form url.Values, name string) []string {
	var out []string
	for n := 1; form.Has(name + ".member." + strconv.Itoa(n)); n++ {
		out = append(out, form.Get(name+".member."+strconv.Itoa(n)))
	}
	return out
}

// findActionLocked finds the active action a heartbeat or completion
// addresses: by token if one was sent, else by instance ID; group and hook
// must match. The error carries the service's exact wording.
func (a *AutoScaling) findActionLocked(form url.Values, now time.Time) (*asgAction, *asgError) {
	if e := asgRequired(form, "LifecycleHookName", "AutoScalingGroupName"); e != nil {
		return nil, e
	}
	group, hook, token, instanceID := form.Get("AutoScalingGroupName"), form.Get("LifecycleHookName"), form.Get("LifecycleActionToken"), form.Get("InstanceId")
	active := func(act *asgAction) bool {
		return act.State == AutoScalingActionPending && act.Group == group && act.Hook == hook && !now.Before(act.ActiveAt)
	}
	switch {
	case token != "":
		if len(token) != asgTokenLength {
			bound := "greater than or equal to"
			if len(token) > asgTokenLength {
				bound = "less than or equal to"
			}
			return nil, asgValidation("1 validation error detected: Value '%s' at 'lifecycleActionToken' failed to satisfy constraint: Member must have length %s %d", token, bound, asgTokenLength)
		}
		act := a.actions[token]
		if act == nil || !active(act) || (instanceID != "" && act.InstanceID != instanceID) {
			return nil, asgValidation("No active Lifecycle Action found with token %s", token)
		}
		return act, nil
	case instanceID != "":
		for _, tok := range a.order {
			if act := a.actions[tok]; act.InstanceID == instanceID && active(act) {
				return act, nil
			}
		}
		return nil, asgValidation("No active Lifecycle Action found with instance ID %s", instanceID)
	default:
		return nil, asgValidation("Either LifecycleActionToken or InstanceId must be specified.")
	}
}

// opHeartbeatLocked implements RecordLifecycleActionHeartbeat: the
// heartbeat deadline restarts from now (it cannot pass the global one).
func (a *AutoScaling) opHeartbeatLocked(form url.Values, now time.Time) (bool, *asgError) {
	act, e := a.findActionLocked(form, now)
	if e != nil {
		return false, e
	}
	act.Heartbeats = append(act.Heartbeats, now)
	act.HeartbeatDeadline = now.Add(act.hook.HeartbeatTimeout)
	return true, nil
}

// opCompleteLocked implements CompleteLifecycleAction.
func (a *AutoScaling) opCompleteLocked(form url.Values, now time.Time) (bool, *asgError) {
	if e := asgRequired(form, "LifecycleHookName", "AutoScalingGroupName", "LifecycleActionResult"); e != nil {
		return false, e
	}
	result := form.Get("LifecycleActionResult")
	if result != AutoScalingContinue && result != AutoScalingAbandon {
		return false, asgValidation("Valid values for LifecycleActionResult are CONTINUE and ABANDON.")
	}
	act, e := a.findActionLocked(form, now)
	if e != nil {
		return false, e
	}
	act.State = AutoScalingActionCompleted
	act.Result = result
	act.CompletedAt = now
	a.advanceLocked(act, now)
	return true, nil
}

// opDescribeHooksLocked implements DescribeLifecycleHooks.
func (a *AutoScaling) opDescribeHooksLocked(form url.Values) (any, *asgError) {
	if e := asgRequired(form, "AutoScalingGroupName"); e != nil {
		return nil, e
	}
	group := form.Get("AutoScalingGroupName")
	if a.groups[group] == nil {
		return nil, asgValidation("Group %s not found", group)
	}
	names := asgMembers(form, "LifecycleHookNames")
	res := asgList[asgWireHook]{XMLName: xml.Name{Local: "LifecycleHooks"}, Member: []asgWireHook{}}
	for _, h := range a.hooks {
		if h.Group != group || (len(names) > 0 && !slices.Contains(names, h.Name)) {
			continue
		}
		res.Member = append(res.Member, asgWireHook{
			LifecycleHookName:     h.Name,
			AutoScalingGroupName:  h.Group,
			LifecycleTransition:   h.Transition,
			NotificationTargetARN: h.NotificationTargetARN,
			RoleARN:               h.RoleARN,
			NotificationMetadata:  h.NotificationMetadata,
			HeartbeatTimeout:      peerDurationSeconds(h.HeartbeatTimeout),
			GlobalTimeout:         peerDurationSeconds(h.GlobalTimeout),
			DefaultResult:         h.DefaultResult,
		})
	}
	slices.SortFunc(res.Member, func(x, y asgWireHook) int { return strings.Compare(x.LifecycleHookName, y.LifecycleHookName) })
	return res, nil
}

// launchTemplate is the launch template every instance of group reports.
func (a *AutoScaling) launchTemplate(group string) asgWireLaunchTemplate {
	sum := md5.Sum([]byte(group))
	return asgWireLaunchTemplate{
		LaunchTemplateID:   "lt-" + hex.EncodeToString(sum[:])[:17],
		LaunchTemplateName: group,
		Version:            "$Default",
	}
}

// wireInstance is an instance as the Describe calls report it, with the
// health status in the letter case of the call.
func (a *AutoScaling) wireInstance(inst *asgInstance, health string) asgWireInstance {
	return asgWireInstance{
		InstanceID:           inst.id,
		InstanceType:         "m5.large",
		AvailabilityZone:     inst.az,
		LifecycleState:       inst.state,
		HealthStatus:         health,
		LaunchTemplate:       a.launchTemplate(inst.group),
		ProtectedFromScaleIn: inst.protected,
	}
}

// sortedInstancesLocked returns instances ordered by ID.
func (a *AutoScaling) sortedInstancesLocked() []*asgInstance {
	return slices.SortedFunc(maps.Values(a.instances), func(x, y *asgInstance) int { return strings.Compare(x.id, y.id) })
}

// opDescribeInstancesLocked implements DescribeAutoScalingInstances
// (without pagination). Unknown IDs are left out, as in the service.
func (a *AutoScaling) opDescribeInstancesLocked(form url.Values) any {
	ids := asgMembers(form, "InstanceIds")
	res := asgList[asgWireInstanceDetails]{XMLName: xml.Name{Local: "AutoScalingInstances"}, Member: []asgWireInstanceDetails{}}
	for _, inst := range a.sortedInstancesLocked() {
		if len(ids) > 0 && !slices.Contains(ids, inst.id) {
			continue
		}
		res.Member = append(res.Member, asgWireInstanceDetails{
			asgWireInstance:      a.wireInstance(inst, "HEALTHY"), // this API reports upper case
			AutoScalingGroupName: inst.group,
		})
	}
	return res
}

// opDescribeGroupsLocked implements DescribeAutoScalingGroups (without
// pagination). Unknown names are left out, as in the service.
func (a *AutoScaling) opDescribeGroupsLocked(form url.Values) any {
	names := asgMembers(form, "AutoScalingGroupNames")
	instances := a.sortedInstancesLocked()
	res := asgList[asgWireGroup]{XMLName: xml.Name{Local: "AutoScalingGroups"}, Member: []asgWireGroup{}}
	for _, g := range slices.SortedFunc(maps.Values(a.groups), func(x, y *asgGroup) int { return strings.Compare(x.name, y.name) }) {
		if len(names) > 0 && !slices.Contains(names, g.name) {
			continue
		}
		wg := asgWireGroup{
			AutoScalingGroupName:   g.name,
			AutoScalingGroupARN:    g.arn,
			LaunchTemplate:         a.launchTemplate(g.name),
			MinSize:                g.min,
			MaxSize:                g.max,
			DefaultCooldown:        300,
			AvailabilityZones:      asgList[string]{Member: []string{a.region + "a"}},
			HealthCheckType:        "EC2",
			HealthCheckGracePeriod: 300,
			Instances:              asgList[asgWireInstance]{Member: []asgWireInstance{}},
			CreatedTime:            g.created.UTC().Format("2006-01-02T15:04:05.000Z"),
			TerminationPolicies:    asgList[string]{Member: []string{"Default"}},
			ServiceLinkedRoleARN:   "arn:aws:iam::" + a.account + ":role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling",
		}
		counted := 0
		for _, inst := range instances {
			if inst.group != g.name {
				continue
			}
			if !strings.HasPrefix(inst.state, "Terminating") && inst.state != "Standby" && !strings.HasPrefix(inst.state, "Detach") {
				counted++
			}
			wg.Instances.Member = append(wg.Instances.Member, a.wireInstance(inst, "Healthy")) // this API reports title case
		}
		wg.DesiredCapacity = min(max(counted, g.min), g.max)
		res.Member = append(res.Member, wg)
	}
	return res
}

// asgGroupARN returns a group ARN with a UUID derived from the name (real
// ARNs carry a random UUID that changes when a group is recreated).
func asgGroupARN(region, account, group string) string {
	return "arn:aws:autoscaling:" + region + ":" + account + ":autoScalingGroup:" +
		asgHashUUID("group", group) + ":autoScalingGroupName/" + group
}

// asgHashUUID derives a stable UUID-shaped ID from parts, so message
// builders are deterministic.
func asgHashUUID(parts ...string) string {
	return peerFormatUUID(md5.Sum([]byte(strings.Join(parts, "\x00"))))
}

// asgTime formats t as Auto Scaling does in notifications (milliseconds).
func asgTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// LifecycleMessage describes one lifecycle notification and renders it in
// the three shapes that reach an SQS queue: Direct (hook target is the
// queue), SNS (hook target is a topic with an SQS subscription) and
// EventBridge (a rule forwards the event to the queue).
type LifecycleMessage struct {
	// Group, Hook, InstanceID and Token are AutoScalingGroupName,
	// LifecycleHookName, EC2InstanceId and LifecycleActionToken.
	Group, Hook, InstanceID, Token string
	// Transition defaults to AutoScalingTransitionTerminating.
	Transition string
	// Time is when the action started; zero means now.
	Time time.Time
	// Origin and Destination default by transition: a termination goes
	// from "AutoScalingGroup" to "EC2", a launch from "EC2" to
	// "AutoScalingGroup". Use "WarmPool" to model warm-pool moves.
	Origin, Destination string
	// OmitOriginDestination renders the older payload without Origin and
	// Destination.
	OmitOriginDestination bool
	// Metadata is NotificationMetadata; omitted when empty.
	Metadata string
	// AccountID defaults to "123456789012"; Region to "us-east-1".
	AccountID, Region string
	// RequestID defaults to an ID derived from Token.
	RequestID string
	// TopicARN is the SNS topic for SNS; default
	// "arn:aws:sns:<region>:<account>:<group>-lifecycle".
	TopicARN string
}

// withDefaults fills in the documented defaults.
func (m LifecycleMessage) withDefaults() LifecycleMessage {
	m.Transition = cmp.Or(m.Transition, AutoScalingTransitionTerminating)
	if m.Time.IsZero() {
		m.Time = time.Now()
	}
	from, to := "AutoScalingGroup", "EC2"
	if m.Transition == AutoScalingTransitionLaunching {
		from, to = to, from
	}
	m.Origin, m.Destination = cmp.Or(m.Origin, from), cmp.Or(m.Destination, to)
	if m.OmitOriginDestination {
		m.Origin, m.Destination = "", ""
	}
	m.AccountID = cmp.Or(m.AccountID, asgDefaultAccount)
	m.Region = cmp.Or(m.Region, asgDefaultRegion)
	m.RequestID = cmp.Or(m.RequestID, asgHashUUID("request", m.Token, m.InstanceID))
	m.TopicARN = cmp.Or(m.TopicARN, "arn:aws:sns:"+m.Region+":"+m.AccountID+":"+m.Group+"-lifecycle")
	return m
}

// Direct renders the body Auto Scaling sends straight to an SQS queue: a
// flat JSON object with Service "AWS Auto Scaling", Time with millisecond
// precision, AccountId, RequestId and (by default) Origin/Destination.
func (m LifecycleMessage) Direct() string {
	m = m.withDefaults()
	return asgObject(false,
		"Origin,omitempty", m.Origin,
		"Destination,omitempty", m.Destination,
		"LifecycleHookName", m.Hook,
		"AccountId", m.AccountID,
		"RequestId", m.RequestID,
		"LifecycleTransition", m.Transition,
		"AutoScalingGroupName", m.Group,
		"Service", "AWS Auto Scaling",
		"Time", asgTime(m.Time),
		"EC2InstanceId", m.InstanceID,
		"LifecycleActionToken", m.Token,
		"NotificationMetadata,omitempty", m.Metadata)
}

// SNS renders the body an SQS subscription of an SNS topic receives
// without raw message delivery: the SNS envelope, in SNS's own layout, with
// the Direct JSON as the string Message.
func (m LifecycleMessage) SNS() string {
	m = m.withDefaults()
	verb := "TERMINATING"
	if m.Transition == AutoScalingTransitionLaunching {
		verb = "LAUNCHING"
	}
	subject := fmt.Sprintf("Auto Scaling:  Lifecycle action '%s' for instance %s in progress.", verb, m.InstanceID)
	return asgSNSEnvelope(m.Region, m.TopicARN, subject, m.Direct(), m.Time.Add(31*time.Millisecond), m.Token)
}

// EventBridge renders the event an EventBridge rule delivers to an SQS
// target: detail-type "EC2 Instance-terminate Lifecycle Action" (or
// "EC2 Instance-launch Lifecycle Action"), source "aws.autoscaling", time
// with second precision, the group ARN in resources, and a detail without
// Service, Time, RequestId or AccountId.
func (m LifecycleMessage) EventBridge() string {
	m = m.withDefaults()
	detailType := "EC2 Instance-terminate Lifecycle Action"
	if m.Transition == AutoScalingTransitionLaunching {
		detailType = "EC2 Instance-launch Lifecycle Action"
	}
	return asgObject(false,
		"version", "0",
		"id", asgHashUUID("event", m.Token, m.InstanceID),
		"detail-type", detailType,
		"source", "aws.autoscaling",
		"account", m.AccountID,
		"time", m.Time.UTC().Format("2006-01-02T15:04:05Z"),
		"region", m.Region,
		"resources", []string{asgGroupARN(m.Region, m.AccountID, m.Group)},
		"detail", json.RawMessage(asgObject(false,
			"LifecycleActionToken", m.Token,
			"AutoScalingGroupName", m.Group,
			"LifecycleHookName", m.Hook,
			"EC2InstanceId", m.InstanceID,
			"LifecycleTransition", m.Transition,
			"NotificationMetadata,omitempty", m.Metadata,
			"Origin,omitempty", m.Origin,
			"Destination,omitempty", m.Destination)))
}

// asgTestNotification renders the autoscaling:TEST_NOTIFICATION body for a
// group.
func asgTestNotification(group, account, region string, t time.Time) string {
	return asgObject(false,
		"AutoScalingGroupName", group,
		"Service", "AWS Auto Scaling",
		"Time", asgTime(t),
		"AccountId", account,
		"Event", "autoscaling:TEST_NOTIFICATION",
		"RequestId", asgHashUUID("test", group, asgTime(t)),
		"AutoScalingGroupARN", asgGroupARN(region, account, group))
}

// asgSNSEnvelope renders an SNS notification as delivered to SQS, in the
// `"Key" : "value"` layout SNS uses.
func asgSNSEnvelope(region, topicARN, subject, message string, ts time.Time, seed string) string {
	sig := md5.Sum([]byte("signature\x00" + seed))
	cert := md5.Sum([]byte("cert\x00" + region))
	return asgObject(true,
		"Type", "Notification",
		"MessageId", asgHashUUID("sns", seed, subject),
		"TopicArn", topicARN,
		"Subject", subject,
		"Message", message,
		"Timestamp", asgTime(ts),
		"SignatureVersion", "1",
		"Signature", base64.StdEncoding.EncodeToString(append(sig[:], sig[:]...)),
		"SigningCertURL", "https://sns."+region+".amazonaws.com/SimpleNotificationService-"+hex.EncodeToString(cert[:])+".pem",
		"UnsubscribeURL", "https://sns."+region+".amazonaws.com/?Action=Unsubscribe&SubscriptionArn="+topicARN+":"+asgHashUUID("subscription", topicARN))
}

// asgObject renders alternating keys and values as a JSON object with the
// keys in that order, as AWS lays its notifications out. A key ending in
// ",omitempty" is left out when its value is "". The object is compact,
// or with sns in SNS's layout: one `"Key" : value` per line.
func asgObject(sns bool, kv ...any) string {
	open, sep, comma, end := "{", ":", ",", "}"
	if sns {
		open, sep, comma, end = "{\n  ", " : ", ",\n  ", "\n}"
	}
	var fields []string
	for i := 0; i+1 < len(kv); i += 2 {
		key, omitEmpty := strings.CutSuffix(kv[i].(string), ",omitempty")
		if !omitEmpty || kv[i+1] != "" {
			fields = append(fields, asgJSON(key)+sep+asgJSON(kv[i+1]))
		}
	}
	return open + strings.Join(fields, comma) + end
}

// asgJSON marshals v without HTML escaping (AWS does not escape <, >, &).
func asgJSON(v any) string {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return ""
	}
	return strings.TrimSuffix(b.String(), "\n")
}
