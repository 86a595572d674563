package lifecycle_test

import (
	"strings"
	"testing"
	"time"

	"github.com/scaledownd/scaledownd/internal/testpeers"
	"github.com/scaledownd/scaledownd/pkg/lifecycle"
)

// benchBodies are the message shapes a daemon classifies, rendered by the
// fake Auto Scaling's own notification builders.
func benchBodies() []struct{ name, body string } {
	m := testpeers.LifecycleMessage{
		Group: "trino-workers", Hook: "trino-drain", InstanceID: "i-0fedcba9876543210",
		Token: "cc34960c-1e41-4703-a665-bdb3e5b81ad3", Time: time.Date(2026, 11, 26, 2, 39, 14, 183e6, time.UTC),
	}
	return []struct{ name, body string }{
		{"direct", m.Direct()},
		{"sns", m.SNS()},
		{"eventbridge", m.EventBridge()},
		{"test-notification", testpeers.AutoScalingTestNotification("trino-workers")},
		{"malformed-json", `{"LifecycleTransition":"autoscaling:EC2_INSTANCE_TERMINATING","EC2InstanceId":`},
		{"not-lifecycle", `{"Event":"autoscaling:EC2_INSTANCE_TERMINATE","StatusCode":"InProgress","EC2InstanceId":"i-1"}`},
		{"large-256KiB", `{"LifecycleTransition":"autoscaling:EC2_INSTANCE_TERMINATING","Padding":"` + strings.Repeat("x", 256<<10) + `"}`},
	}
}

// BenchmarkClassify is the cost of classifying one SQS message body, by
// shape: every message on a shared queue is classified by every daemon
// that receives it.
func BenchmarkClassify(b *testing.B) {
	for _, tc := range benchBodies() {
		body := []byte(tc.body)
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				_, _, _ = lifecycle.Classify(body)
			}
		})
	}
}
