package lifecycle_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/scaledownd/scaledownd/pkg/lifecycle"
)

// jumpClock lets every wait pass at once, moving time by the wait.
type jumpClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *jumpClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *jumpClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	ch := make(chan time.Time, 1)
	ch <- c.now
	return ch
}

// failingCompleter fails the first n completions with err.
type failingCompleter struct {
	n, calls int
	err      error
}

func (f *failingCompleter) Complete(context.Context, lifecycle.Action, string) error {
	f.calls++
	if f.calls <= f.n {
		return f.err
	}
	return nil
}

// Every failed completion attempt reaches the log with the AWS error: the
// first at once, then at most one line per 30 s carrying the count.
func TestFinishLogsFailedAttempts(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	clock := &jumpClock{now: time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)}
	c := &failingCompleter{n: 10, err: errors.New("complete lifecycle action: api error ServiceUnavailable: try later")}
	act := lifecycle.Action{InstanceID: self, Group: group, Hook: hook, Token: "0ae3784f-1111-2222-3333-444455556666"}
	already, err := lifecycle.Finish(context.Background(), c, act, lifecycle.ResultContinue, true, clock.Now().Add(time.Hour),
		lifecycle.RetryPolicy{Backoff: time.Second, MaxBackoff: 30 * time.Second, Clock: clock, Log: zap.New(core)})
	if err != nil || already {
		t.Fatalf("Finish = already %v, err %v", already, err)
	}
	// Attempts at +0, 1, 3, 7, 15, 31, 61, 91, 121, 151 s fail: lines at
	// +0 (the first) and at +31, 61, 91, 121, 151 s (30 s apart or more).
	warns := logs.FilterMessage("CompleteLifecycleAction failed; retrying").All()
	if len(warns) != 6 {
		t.Fatalf("%d warnings for 10 failed attempts, want 6: %v", len(warns), warns)
	}
	wantAttempts := []int64{1, 6, 7, 8, 9, 10}
	for i, w := range warns {
		f := w.ContextMap()
		if !strings.Contains(f["error"].(string), "ServiceUnavailable") {
			t.Fatalf("warning %d lacks the AWS error: %v", i, f)
		}
		if f["failed_attempts"] != wantAttempts[i] || f["instance_id"] != self || f["token"] != "0ae3784f" {
			t.Fatalf("warning %d = %v, want failed_attempts %d, instance and token prefix", i, f, wantAttempts[i])
		}
	}
	if logs.FilterMessage("lifecycle action completed after failed attempts").Len() != 1 {
		t.Fatal("the success after failures is not logged")
	}
}
