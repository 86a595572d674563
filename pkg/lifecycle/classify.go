// Package lifecycle is scaledownd's AWS side: it turns Auto Scaling lifecycle
// notifications into Events, keeps a lifecycle action alive with heartbeats
// and completes it.
//
// A newcomer can follow one termination through these files in order:
//
//	imds.go      — the metadata poll, and how metadata paces the queue
//	sqs.go       — the SQS source: long poll, hand back foreign messages, ack
//	classify.go  — an SQS message body becomes an Event (or is refused)
//	actions.go   — Auto Scaling: AWS confirms a queue message's action, how
//	               long it may be kept waiting, heartbeats and
//	               CompleteLifecycleAction
//
// It knows nothing about Trino; the supervisor joins the two.
package lifecycle

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"
)

// Lifecycle transitions as Auto Scaling names them.
const (
	TransitionTerminating = "autoscaling:EC2_INSTANCE_TERMINATING"
	TransitionLaunching   = "autoscaling:EC2_INSTANCE_LAUNCHING"
	testNotification      = "autoscaling:TEST_NOTIFICATION"
)

// Event is one lifecycle action for an instance, whichever source reported it.
type Event struct {
	Transition  string    // TransitionTerminating or TransitionLaunching
	InstanceID  string    // the instance the action is about
	Group       string    // Auto Scaling group name
	Hook        string    // lifecycle hook name
	Token       string    // LifecycleActionToken; empty when the source has none (IMDS)
	Time        time.Time // when Auto Scaling started the action; zero if unknown
	Destination string    // "EC2", "WarmPool", … when the payload says so
	Origin      string    // "AutoScalingGroup", "WarmPool", … when the payload says so
	Deadline    time.Time // a hard end set by the signal itself (Spot: the reclaim time); zero if none
	Source      string    // which source produced it: "sqs", "imds", …
	Shape       string    // payload shape the event came in: "direct", "sns", "eventbridge"
	ReceivedAt  time.Time // when scaledownd first saw it
}

// Key identifies the action for de-duplication: the token when there is one;
// for an action learned from IMDS (no token), the instance, group and hook
// and when the change was seen, so a later cycle (warm pools) is new.
func (e Event) Key() string {
	switch {
	case e.Token != "":
		return e.Token
	case e.Transition == TransitionSpot || e.Transition == TransitionRebalance:
		return e.Transition + "/" + e.InstanceID
	default:
		return fmt.Sprintf("%s@%d", e.Tuple(), e.Time.Unix())
	}
}

// Tuple names the hook and transition an action belongs to, whichever
// source reported it: the same tuple from SQS and IMDS is the same action.
func (e Event) Tuple() string {
	return e.InstanceID + "/" + e.Group + "/" + e.Hook + "/" + e.Transition
}

// IsLifecycleAction reports whether the event is an Auto Scaling lifecycle
// action, which must be completed, rather than a Spot signal.
func (e Event) IsLifecycleAction() bool {
	return e.Transition == TransitionTerminating || e.Transition == TransitionLaunching
}

// TokenPrefix is the part of the token that is safe to log: enough to match
// log lines to an action, too little to act on it.
func (e Event) TokenPrefix() string {
	return TokenPrefix(e.Token)
}

// TokenPrefix returns the first 8 characters of a lifecycle action token.
func TokenPrefix(token string) string {
	const n = 8
	if len(token) <= n {
		return token
	}
	return token[:n]
}

// Started is when the action began: the notification's own time when it is
// plausible, otherwise when scaledownd received it. The lifecycle deadlines
// count from here.
func (e Event) Started() time.Time {
	if e.Time.IsZero() || e.Time.After(e.ReceivedAt) {
		return e.ReceivedAt
	}
	return e.Time
}

// Kind says what an SQS message body turned out to be.
type Kind int

const (
	// KindMalformed is a body that is not a lifecycle notification scaledownd
	// understands: invalid JSON, wrong types, missing fields, an unknown
	// transition or another kind of notification. It is never deleted.
	KindMalformed Kind = iota
	// KindTest is autoscaling:TEST_NOTIFICATION, sent when a hook is created.
	// It carries no action and is safe to delete.
	KindTest
	// KindLifecycle is a lifecycle action; the Event says for whom.
	KindLifecycle
)

// Shapes a lifecycle notification arrives in.
const (
	ShapeDirect      = "direct"      // hook target is the SQS queue, or SNS with raw delivery
	ShapeSNS         = "sns"         // SNS envelope with the payload as a JSON string in Message
	ShapeEventBridge = "eventbridge" // EventBridge event with the payload in detail
)

// payload is the Auto Scaling lifecycle notification. Decoding is lenient:
// AWS adds fields (Origin and Destination arrived unannounced), so unknown
// fields are ignored.
type payload struct {
	Event                string `json:"Event"`
	LifecycleTransition  string `json:"LifecycleTransition"`
	EC2InstanceID        string `json:"EC2InstanceId"`
	AutoScalingGroupName string `json:"AutoScalingGroupName"`
	LifecycleHookName    string `json:"LifecycleHookName"`
	LifecycleActionToken string `json:"LifecycleActionToken"`
	Time                 string `json:"Time"`
	Origin               string `json:"Origin"`
	Destination          string `json:"Destination"`
}

// envelope holds the keys that tell the three shapes apart.
type envelope struct {
	// EventBridge.
	Source     string          `json:"source"`
	DetailType string          `json:"detail-type"`
	Time       string          `json:"time"`
	Detail     json.RawMessage `json:"detail"`
	// SNS.
	Type    string          `json:"Type"`
	Message json.RawMessage `json:"Message"`
}

// notification is a body decoded in one pass as both envelope and direct
// payload: their fields, flat (fields of embedded structs cost the decoder
// an allocation each). encoding/json matches keys to fields regardless of
// case, so with separate fields for the payload's "Time" and the
// envelope's "time" a "time" key would no longer set the payload's Time as
// it does when the payload is decoded alone; one field stands for both,
// and every key sets the same field as it would in an envelope or a
// payload. TestClassifyInOnePassAsInTwo and FuzzClassify hold the two
// decodes to the same verdicts.
type notification struct {
	Event                string          `json:"Event"`
	LifecycleTransition  string          `json:"LifecycleTransition"`
	EC2InstanceID        string          `json:"EC2InstanceId"`
	AutoScalingGroupName string          `json:"AutoScalingGroupName"`
	LifecycleHookName    string          `json:"LifecycleHookName"`
	LifecycleActionToken string          `json:"LifecycleActionToken"`
	Origin               string          `json:"Origin"`
	Destination          string          `json:"Destination"`
	Time                 string          `json:"time"` // payload.Time and envelope.Time
	Source               string          `json:"source"`
	DetailType           string          `json:"detail-type"`
	Detail               json.RawMessage `json:"detail"`
	Type                 string          `json:"Type"`
	Message              json.RawMessage `json:"Message"`
}

// envelope returns n's envelope fields.
func (n *notification) envelope() envelope {
	return envelope{Source: n.Source, DetailType: n.DetailType, Time: n.Time, Detail: n.Detail, Type: n.Type, Message: n.Message}
}

// payload returns n's direct payload fields.
func (n *notification) payload() payload {
	return payload{
		Event: n.Event, LifecycleTransition: n.LifecycleTransition, EC2InstanceID: n.EC2InstanceID,
		AutoScalingGroupName: n.AutoScalingGroupName, LifecycleHookName: n.LifecycleHookName,
		LifecycleActionToken: n.LifecycleActionToken, Time: n.Time, Origin: n.Origin, Destination: n.Destination,
	}
}

// Classify parses an SQS message body. It recognises the direct Auto Scaling
// JSON, the SNS envelope and the EventBridge event, and reports a test
// notification as KindTest. For KindLifecycle the Event is filled in except
// for Source and ReceivedAt, which belong to the caller. For KindMalformed the
// error says what is wrong. Classify never panics, whatever the input.
//
// The body is decoded once, as envelope and direct payload together; only
// an EventBridge detail or an SNS Message is decoded again, being a
// document of its own.
func Classify(body []byte) (Event, Kind, error) {
	body, err := jsonObject(body)
	if err != nil {
		return Event{}, KindMalformed, err
	}
	var n notification
	if err := json.Unmarshal(body, &n); err != nil {
		if _, ok := err.(*json.SyntaxError); ok { // json.Unmarshal does not wrap it
			return Event{}, KindMalformed, fmt.Errorf("decode body: %w", err)
		}
		// A value of the wrong type. Whether it matters depends on the
		// shape, and the error names only the first one: decode envelope
		// and payload separately, for their verdict.
		return classifyTwice(body)
	}
	return classifyEnvelope(n.envelope(), func() (Event, Kind, error) { return verdict(ShapeDirect, n.payload(), "") })
}

// classifyTwice is Classify decoding the body twice: as an envelope, and
// then the payload of the shape it shows. Classify uses it when the body
// has a value of the wrong type; it is the reference the one-pass decode
// is tested against.
func classifyTwice(body []byte) (Event, Kind, error) {
	body, err := jsonObject(body)
	if err != nil {
		return Event{}, KindMalformed, err
	}
	var env envelope
	if err := json.Unmarshal(body, &env); err != nil {
		return Event{}, KindMalformed, fmt.Errorf("decode body: %w", err)
	}
	return classifyEnvelope(env, func() (Event, Kind, error) { return decodePayload(ShapeDirect, body, "") })
}

// jsonObject trims body and checks that it can be a JSON object.
func jsonObject(body []byte) ([]byte, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil, errors.New("empty body")
	}
	if body[0] != '{' {
		return nil, errors.New("body is not a JSON object")
	}
	return body, nil
}

// classifyEnvelope tells the shape from the envelope's keys and decodes
// the payload an EventBridge or SNS envelope carries; a body that is no
// envelope is the payload itself, judged by direct.
func classifyEnvelope(env envelope, direct func() (Event, Kind, error)) (Event, Kind, error) {
	switch {
	case env.DetailType != "" || env.Source == "aws.autoscaling":
		if len(env.Detail) == 0 || env.Detail[0] != '{' {
			return Event{}, KindMalformed, errors.New("eventbridge event without a detail object")
		}
		return decodePayload(ShapeEventBridge, env.Detail, env.Time)
	case env.Type != "Notification" || len(env.Message) == 0:
		return direct()
	}
	var msg string
	if err := json.Unmarshal(env.Message, &msg); err != nil {
		return Event{}, KindMalformed, errors.New("sns envelope whose Message is not a string")
	}
	msg = strings.TrimSpace(msg)
	if !strings.HasPrefix(msg, "{") {
		return Event{}, KindMalformed, errors.New("sns Message is not a JSON object")
	}
	return decodePayload(ShapeSNS, []byte(msg), "")
}

// decodePayload decodes the payload of a shape and judges it.
func decodePayload(shape string, data []byte, envTime string) (Event, Kind, error) {
	var p payload
	if err := json.Unmarshal(data, &p); err != nil {
		return Event{}, KindMalformed, fmt.Errorf("decode %s payload: %w", shape, err)
	}
	return verdict(shape, p, envTime)
}

// verdict judges a decoded payload; envTime is the envelope's time, used
// if the payload has none.
func verdict(shape string, p payload, envTime string) (Event, Kind, error) {
	if p.Event == testNotification || p.LifecycleTransition == testNotification {
		return Event{Shape: shape, Group: p.AutoScalingGroupName}, KindTest, nil
	}
	if p.Event != "" && p.LifecycleTransition == "" {
		return Event{}, KindMalformed, fmt.Errorf("%s notification %q is not a lifecycle action", shape, p.Event)
	}
	switch p.LifecycleTransition {
	case TransitionTerminating, TransitionLaunching:
	case "":
		return Event{}, KindMalformed, fmt.Errorf("%s payload has no LifecycleTransition", shape)
	default:
		return Event{}, KindMalformed, fmt.Errorf("unknown lifecycle transition %q", p.LifecycleTransition)
	}
	var missing []string
	for _, f := range []struct{ name, v string }{
		{"EC2InstanceId", p.EC2InstanceID},
		{"AutoScalingGroupName", p.AutoScalingGroupName},
		{"LifecycleHookName", p.LifecycleHookName},
		{"LifecycleActionToken", p.LifecycleActionToken},
	} {
		if strings.TrimSpace(f.v) == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return Event{}, KindMalformed, fmt.Errorf("%s lifecycle payload lacks %s", shape, strings.Join(missing, ", "))
	}

	return Event{
		Transition:  p.LifecycleTransition,
		InstanceID:  p.EC2InstanceID,
		Group:       p.AutoScalingGroupName,
		Hook:        p.LifecycleHookName,
		Token:       p.LifecycleActionToken,
		Time:        parseTime(cmp.Or(p.Time, envTime)),
		Origin:      p.Origin,
		Destination: p.Destination,
		Shape:       shape,
	}, KindLifecycle, nil
}

// parseTime accepts RFC 3339 with or without fractional seconds; anything
// else yields the zero time, as time.Parse returns on error (the action
// then counts from receipt).
func parseTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{} // time.Parse does not promise the zero time on error
	}
	return t
}

// tokenValue matches a LifecycleActionToken value, also inside an escaped
// SNS Message string, so excerpts can mask it.
var tokenValue = regexp.MustCompile(`(LifecycleActionToken\\?"\s*:\s*\\?")([^"\\]{0,8})[^"\\]*`)

// Excerpt returns the start of a body for a log line, with any lifecycle
// action token cut to its prefix and control characters replaced.
func Excerpt(body []byte, max int) string {
	s := tokenValue.ReplaceAllString(string(body), "${1}${2}…")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > max {
		// Cut on a rune boundary.
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}
