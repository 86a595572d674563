package lifecycle

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

const (
	directBody = `{"LifecycleHookName":"drain-hook","AccountId":"123456789012",
 "RequestId":"63f5b5c2-58b3-0574-b7d5-b3162d0268f0",
 "LifecycleTransition":"autoscaling:EC2_INSTANCE_TERMINATING",
 "AutoScalingGroupName":"trino-workers","Service":"AWS Auto Scaling",
 "Time":"2026-11-26T02:39:14.183Z","EC2InstanceId":"i-0123456789abcdef0",
 "LifecycleActionToken":"cc34960c-1e41-4703-a665-bdb3e5b81ad3",
 "Origin":"AutoScalingGroup","Destination":"EC2"}`
	eventBridgeBody = `{"version":"0","id":"12345678-1234-1234-1234-123456789012",
 "detail-type":"EC2 Instance-terminate Lifecycle Action","source":"aws.autoscaling",
 "account":"123456789012","time":"2026-11-26T00:12:37Z","region":"us-west-2",
 "resources":["arn:aws:autoscaling:us-west-2:123456789012:autoScalingGroup:042cba90:autoScalingGroupName/trino-workers"],
 "detail":{"LifecycleActionToken":"42694b3d-4b70-6a62-8523-09a1eEXAMPLE","AutoScalingGroupName":"trino-workers",
  "LifecycleHookName":"drain-hook","EC2InstanceId":"i-0123456789abcdef0",
  "LifecycleTransition":"autoscaling:EC2_INSTANCE_TERMINATING","NotificationMetadata":"x",
  "Origin":"AutoScalingGroup","Destination":"WarmPool","SomethingNew":{"a":[1,2]}}}`
	testDirect = `{"AutoScalingGroupName":"trino-workers","Service":"AWS Auto Scaling",
 "Time":"2015-10-21T13:38:00.143Z","AccountId":"391126026396",
 "Event":"autoscaling:TEST_NOTIFICATION","RequestId":"f20fbb34-77f8-11e5-9842-63a2c2b9270f",
 "AutoScalingGroupARN":"arn:aws:autoscaling:eu-west-1:391126026396:autoScalingGroup:35f49f32:autoScalingGroupName/trino-workers"}`
)

func snsWrap(t *testing.T, inner string) string {
	t.Helper()
	b, err := json.Marshal(map[string]any{
		"Type": "Notification", "MessageId": "c87337ab-c19e-51f2-8a5d-7ab80071cc4b",
		"TopicArn": "arn:aws:sns:us-east-1:123456789012:lifecycle",
		"Subject":  "Auto Scaling:  Lifecycle action 'TERMINATING' for instance i-0123456789abcdef0 in progress.",
		"Message":  inner, "Timestamp": "2026-11-26T02:39:14.200Z", "SignatureVersion": "1",
		"Signature": "S0oU0BB3", "SigningCertURL": "https://sns.example/cert.pem", "UnsubscribeURL": "https://sns.example/unsub",
	})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestClassify(t *testing.T) {
	big := `{"LifecycleTransition":"autoscaling:EC2_INSTANCE_TERMINATING","Padding":"` + strings.Repeat("x", 256<<10) + `"}`
	tests := []struct {
		name      string
		body      string
		kind      Kind
		shape     string
		dest      string
		wantErr   string
		wantToken string
	}{
		{name: "direct", body: directBody, kind: KindLifecycle, shape: ShapeDirect, dest: "EC2", wantToken: "cc34960c-1e41-4703-a665-bdb3e5b81ad3"},
		{name: "sns envelope", body: snsWrap(t, directBody), kind: KindLifecycle, shape: ShapeSNS, dest: "EC2", wantToken: "cc34960c-1e41-4703-a665-bdb3e5b81ad3"},
		{name: "eventbridge with extra fields", body: eventBridgeBody, kind: KindLifecycle, shape: ShapeEventBridge, dest: "WarmPool", wantToken: "42694b3d-4b70-6a62-8523-09a1eEXAMPLE"},
		{name: "test notification direct", body: testDirect, kind: KindTest},
		{name: "test notification via sns", body: snsWrap(t, testDirect), kind: KindTest},
		{name: "test notification via eventbridge", body: `{"source":"aws.autoscaling","detail-type":"EC2 Instance-terminate Lifecycle Action","detail":{"LifecycleTransition":"autoscaling:TEST_NOTIFICATION"}}`, kind: KindTest},
		{name: "launching", body: strings.Replace(directBody, "TERMINATING", "LAUNCHING", 1), kind: KindLifecycle, shape: ShapeDirect, dest: "EC2", wantToken: "cc34960c-1e41-4703-a665-bdb3e5b81ad3"},
		{name: "scaling notification is not a lifecycle action", body: snsWrap(t, `{"Event":"autoscaling:EC2_INSTANCE_TERMINATE","StatusCode":"InProgress","EC2InstanceId":"i-1"}`), kind: KindMalformed, wantErr: "not a lifecycle action"},
		{name: "unknown transition", body: strings.Replace(directBody, "EC2_INSTANCE_TERMINATING", "EC2_INSTANCE_EXPLODING", 1), kind: KindMalformed, wantErr: "unknown lifecycle transition"},
		{name: "invalid json", body: `{"LifecycleTransition":`, kind: KindMalformed, wantErr: "decode body"},
		{name: "not an object", body: `["a"]`, kind: KindMalformed, wantErr: "not a JSON object"},
		{name: "empty", body: "  ", kind: KindMalformed, wantErr: "empty"},
		{name: "wrong type", body: strings.Replace(directBody, `"i-0123456789abcdef0"`, `12345`, 1), kind: KindMalformed, wantErr: "decode direct payload"},
		{name: "missing token and hook", body: `{"LifecycleTransition":"autoscaling:EC2_INSTANCE_TERMINATING","EC2InstanceId":"i-1","AutoScalingGroupName":"g"}`, kind: KindMalformed, wantErr: "LifecycleHookName, LifecycleActionToken"},
		{name: "sns message not json", body: snsWrap(t, "AutoScalingGroupName: g\nEC2InstanceId: i-1"), kind: KindMalformed, wantErr: "not a JSON object"},
		{name: "sns message wrong type", body: `{"Type":"Notification","Message":{"a":1}}`, kind: KindMalformed, wantErr: "not a string"},
		{name: "eventbridge without detail", body: `{"source":"aws.autoscaling","detail-type":"EC2 Instance-terminate Lifecycle Action"}`, kind: KindMalformed, wantErr: "without a detail"},
		{name: "256 KiB body", body: big, kind: KindMalformed, wantErr: "lacks EC2InstanceId"},
		{name: "no transition", body: `{"Hello":"world"}`, kind: KindMalformed, wantErr: "no LifecycleTransition"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, kind, err := Classify([]byte(tt.body))
			if kind != tt.kind {
				t.Fatalf("kind = %v (err %v), want %v", kind, err, tt.kind)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error %v", err)
			}
			if kind != KindLifecycle {
				return
			}
			if e.Shape != tt.shape || e.Destination != tt.dest || e.Token != tt.wantToken {
				t.Errorf("event = %+v, want shape %s destination %s token %s", e, tt.shape, tt.dest, tt.wantToken)
			}
			if e.InstanceID != "i-0123456789abcdef0" || e.Group != "trino-workers" || e.Hook != "drain-hook" {
				t.Errorf("identity fields wrong: %+v", e)
			}
			if e.Time.IsZero() {
				t.Errorf("time not parsed")
			}
		})
	}
}

func TestClassifyTimeFromEnvelope(t *testing.T) {
	e, _, err := Classify([]byte(eventBridgeBody))
	if err != nil {
		t.Fatal(err)
	}
	want := time.Date(2026, 11, 26, 0, 12, 37, 0, time.UTC)
	if !e.Time.Equal(want) {
		t.Fatalf("time = %v, want %v (from the EventBridge envelope)", e.Time, want)
	}
}

func TestEventStarted(t *testing.T) {
	recv := time.Date(2026, 11, 26, 3, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		t    time.Time
		want time.Time
	}{
		{"notification time", recv.Add(-time.Minute), recv.Add(-time.Minute)},
		{"no time", time.Time{}, recv},
		{"time in the future (clock skew) counts from receipt", recv.Add(time.Hour), recv},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := Event{Time: tt.t, ReceivedAt: recv}
			if got := e.Started(); !got.Equal(tt.want) {
				t.Fatalf("Started() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestExcerptMasksTokens(t *testing.T) {
	for _, body := range []string{directBody, snsWrap(t, directBody)} {
		got := Excerpt([]byte(body), 1000)
		if strings.Contains(got, "cc34960c-1e41") {
			t.Fatalf("excerpt leaks the token: %s", got)
		}
		if !strings.Contains(got, "cc34960c…") {
			t.Fatalf("excerpt should keep the token prefix: %s", got)
		}
		if strings.ContainsAny(got, "\n\r\t") {
			t.Fatalf("excerpt keeps control characters: %q", got)
		}
	}
	if got := Excerpt([]byte(strings.Repeat("é", 100)), 11); !strings.HasSuffix(got, "…") || len(got) > 14 {
		t.Fatalf("excerpt not cut on a rune boundary: %q", got)
	}
}

// oddBodies are bodies where decoding in one pass could differ from
// decoding envelope and payload separately: keys in other cases than the
// fields' (encoding/json folds case), keys twice, values of the wrong type
// where the shape does and does not read them.
var oddBodies = []string{
	`{"time":"2026-11-26T02:39:14Z","LifecycleTransition":"autoscaling:EC2_INSTANCE_TERMINATING","EC2InstanceId":"i-1","AutoScalingGroupName":"g","LifecycleHookName":"h","LifecycleActionToken":"t"}`,
	`{"Time":"2026-11-26T02:39:14Z","TIME":"2026-11-26T02:40:00Z","lifecycletransition":"autoscaling:EC2_INSTANCE_TERMINATING","ec2instanceid":"i-1","AutoScalingGroupName":"g","LifecycleHookName":"h","LifecycleActionToken":"t"}`,
	`{"source":"aws.autoscaling","Time":"2026-11-26T00:12:37Z","detail":{"LifecycleTransition":"autoscaling:EC2_INSTANCE_TERMINATING","EC2InstanceId":"i-1","AutoScalingGroupName":"g","LifecycleHookName":"h","LifecycleActionToken":"t"}}`,
	`{"Source":"aws.autoscaling","DETAIL":{"LifecycleTransition":"autoscaling:TEST_NOTIFICATION"}}`,
	`{"source":"aws.autoscaling","detail":{"LifecycleActionToken":"t1"},"detail":{"LifecycleTransition":"autoscaling:EC2_INSTANCE_TERMINATING"}}`,
	`{"EC2InstanceId":5,"source":"aws.autoscaling","detail-type":"x","detail":{"LifecycleTransition":"autoscaling:EC2_INSTANCE_TERMINATING","EC2InstanceId":"i-1","AutoScalingGroupName":"g","LifecycleHookName":"h","LifecycleActionToken":"t"}}`,
	`{"EC2InstanceId":5,"Type":3}`,
	`{"Origin":[],"LifecycleTransition":"autoscaling:EC2_INSTANCE_TERMINATING","EC2InstanceId":"i-1","AutoScalingGroupName":"g","LifecycleHookName":"h","LifecycleActionToken":"t"}`,
	`{"detail":"x","LifecycleTransition":"autoscaling:EC2_INSTANCE_TERMINATING","EC2InstanceId":"i-1","AutoScalingGroupName":"g","LifecycleHookName":"h","LifecycleActionToken":"t"}`,
	`{"Type":"Notification","Message":null}`,
	`{"Type":"Other","Message":{"a":1},"LifecycleTransition":"autoscaling:EC2_INSTANCE_LAUNCHING","EC2InstanceId":"i-1","AutoScalingGroupName":"g","LifecycleHookName":"h","LifecycleActionToken":"t"}`,
	`{"type":"Notification","message":"{\"Event\":\"autoscaling:TEST_NOTIFICATION\"}"}`,
	`{"time":5,"LifecycleTransition":"autoscaling:EC2_INSTANCE_TERMINATING"}`,
}

// sameVerdict fails t unless Classify and classifyTwice agree on body.
func sameVerdict(t *testing.T, body []byte) {
	t.Helper()
	e1, k1, err1 := Classify(body)
	e2, k2, err2 := classifyTwice(body)
	if k1 != k2 || fmt.Sprint(err1) != fmt.Sprint(err2) || !e1.Time.Equal(e2.Time) {
		t.Fatalf("one pass: %v %+v %v\ntwo passes: %v %+v %v\nbody %q", k1, e1, err1, k2, e2, err2, body)
	}
	e1.Time, e2.Time = time.Time{}, time.Time{}
	if e1 != e2 {
		t.Fatalf("one pass: %+v\ntwo passes: %+v\nbody %q", e1, e2, body)
	}
}

func TestClassifyInOnePassAsInTwo(t *testing.T) {
	bodies := append([]string{directBody, eventBridgeBody, testDirect, snsWrap(t, directBody), snsWrap(t, testDirect)}, oddBodies...)
	for _, body := range bodies {
		sameVerdict(t, []byte(body))
	}
}

func FuzzClassify(f *testing.F) {
	for _, s := range append([]string{directBody, eventBridgeBody, testDirect, `{"Type":"Notification","Message":"{}"}`, `{}`, `[]`, ``}, oddBodies...) {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		sameVerdict(t, body)
		e, kind, err := Classify(body)
		switch kind {
		case KindLifecycle:
			if err != nil || e.InstanceID == "" || e.Token == "" || e.Group == "" || e.Hook == "" {
				t.Fatalf("lifecycle event with missing fields: %+v err %v", e, err)
			}
			if e.Transition != TransitionTerminating && e.Transition != TransitionLaunching {
				t.Fatalf("unexpected transition %q", e.Transition)
			}
		case KindMalformed:
			if err == nil {
				t.Fatal("malformed without an error")
			}
		}
		_ = Excerpt(body, 160)
	})
}
