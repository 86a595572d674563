package server

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestHealthAndReadiness(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	h := NewHealth()
	h.now = clock.now
	beat := h.Watch("sqs-poll", time.Minute)
	h.SetReady("identity", "resolving instance identity")

	srv, err := New(Options{Addr: "127.0.0.1:0"}, prometheus.NewRegistry(), h, func() any { return map[string]string{"phase": "idle"} })
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	defer srv.Shutdown(context.Background())
	base := "http://" + srv.Addr()

	if code, body := get(t, base+"/healthz"); code != 200 {
		t.Fatalf("/healthz = %d %s, want 200 for a fresh loop", code, body)
	}
	if code, body := get(t, base+"/readyz"); code != 503 || !strings.Contains(body, "identity: resolving") {
		t.Fatalf("/readyz = %d %q, want 503 naming the identity", code, body)
	}
	h.SetReady("identity", "")
	if code, _ := get(t, base+"/readyz"); code != 200 {
		t.Fatalf("/readyz = %d once ready", code)
	}

	// A loop that stops beating trips /healthz; a beat heals it.
	clock.add(2 * time.Minute)
	if code, body := get(t, base+"/healthz"); code != 503 || !strings.Contains(body, "sqs-poll: no progress for 2m0s") {
		t.Fatalf("/healthz = %d %q, want 503 naming the stuck loop", code, body)
	}
	beat()
	if code, _ := get(t, base+"/healthz"); code != 200 {
		t.Fatalf("/healthz = %d after a beat", code)
	}
	if code, body := get(t, base+"/status"); code != 200 || !strings.Contains(body, `"phase":"idle"`) {
		t.Fatalf("/status = %d %s", code, body)
	}
	if code, _ := get(t, base+"/metrics"); code != 200 {
		t.Fatalf("/metrics = %d", code)
	}
	// Read-only: anything but GET is refused.
	resp, err := http.Post(base+"/status", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST /status = %d, want 405", resp.StatusCode)
	}
}
