package daemon

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/scaledownd/scaledownd/internal/server"
)

// TestWatchdogStopsWhenALoopIsStuck reads the sd_notify datagrams on a test
// NOTIFY_SOCKET: READY=1, then WATCHDOG=1 while the loop beats, and none
// once it stops.
func TestWatchdogStopsWhenALoopIsStuck(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	t.Setenv("WATCHDOG_USEC", strconv.Itoa(int((200 * time.Millisecond).Microseconds())))
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))

	log := zaptest.NewLogger(t)
	notifyReady(log, "test")
	if got := read(t, conn, time.Second); got != "READY=1\nSTATUS=test" {
		t.Fatalf("first datagram %q, want READY=1", got)
	}

	h := server.NewHealth()
	beat := h.Watch("loop", 300*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stopBeating := make(chan struct{})
	go func() {
		for {
			select {
			case <-stopBeating:
				return
			case <-time.After(50 * time.Millisecond):
				beat()
			}
		}
	}()
	done := make(chan struct{})
	go func() { watchdog(ctx, h, log); close(done) }()

	for i := 0; i < 3; i++ {
		if got := read(t, conn, time.Second); got != "WATCHDOG=1" {
			t.Fatalf("datagram %q, want WATCHDOG=1 while the loop beats", got)
		}
	}
	close(stopBeating)
	// Drain what was already in flight, then expect silence: once the loop
	// has been silent for 300 ms, no more pets.
	deadline := time.Now().Add(3 * time.Second)
	var last time.Time
	for time.Now().Before(deadline) {
		if got := read(t, conn, 500*time.Millisecond); got == "" {
			break
		}
		last = time.Now()
	}
	if !last.IsZero() && time.Now().Sub(last) < 400*time.Millisecond {
		t.Fatal("watchdog still petted after the loop got stuck")
	}
	if got := read(t, conn, time.Second); got != "" {
		t.Fatalf("got %q after the loop got stuck", got)
	}
	cancel()
	<-done
}

// read returns the next datagram, or "" after timeout.
func read(t *testing.T, c *net.UnixConn, timeout time.Duration) string {
	t.Helper()
	buf := make([]byte, 256)
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	n, err := c.Read(buf)
	if err != nil {
		return ""
	}
	return string(buf[:n])
}
