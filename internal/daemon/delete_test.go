package daemon_test

import (
	"testing"
	"time"

	"github.com/scaledownd/scaledownd/internal/testenv"
	"github.com/scaledownd/scaledownd/internal/testpeers"
)

// A DeleteMessage that fails during an SQS outage is retried while the
// message's receipt handle is good: the message goes as soon as SQS
// recovers, not when its visibility ends and it is delivered again.
func TestFailedDeleteIsRetriedUntilSQSRecovers(t *testing.T) {
	env := world(t, testenv.Options{})
	_, logs := start(t, env.Config(env.Instance))
	env.SQS.InjectFault("DeleteMessage", testpeers.Fault{Status: 503})
	token, msg := env.Terminate(env.Instance)
	id := env.SQS.Send(env.QueueURL, msg.Direct())
	completedContinue(t, finished(t, env, token, 30*time.Second))
	// Two rounds of failed deletes (each three SDK attempts), then SQS
	// recovers.
	testpeers.Eventually(t, 20*time.Second, "two failed delete rounds", func() bool {
		return env.SQS.CallCount("DeleteMessage") >= 6
	})
	if logs.FilterMessageSnippet("could not delete the lifecycle message; retrying").Len() == 0 {
		t.Fatal("the failed delete was not logged")
	}
	env.SQS.ClearFaults()
	recovered := time.Now()
	deleted(t, env, id, 15*time.Second)
	t.Logf("message deleted %s after SQS recovered", time.Since(recovered).Round(time.Millisecond))
	if n := env.SQS.Receives(env.QueueURL, id); n != 1 {
		t.Fatalf("message received %d times: deleted only at its redelivery, want through its first receipt handle", n)
	}
}
