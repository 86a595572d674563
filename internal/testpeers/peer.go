// This file holds what the AWS fakes (SQS, Auto Scaling, IMDS) share: the
// call log, fault injection, per-call latency, the loopback HTTP server and
// its shutdown, change notification for waiters, and the Eventually helper.

package testpeers

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Call is one request a fake received, recorded before latency and faults
// are applied, so failed and abandoned requests are logged as well.
type Call struct {
	// Service names the fake: "sqs", "autoscaling" or "imds".
	Service string
	// Op is the operation, e.g. "ReceiveMessage", "CompleteLifecycleAction",
	// "GetToken" or "GetMetadata".
	Op string
	// At is the fake's clock (its Now option) when the request arrived.
	At time.Time
	// Params holds the flattened request fields: top-level names as sent on
	// the wire (QueueUrl, ReceiptHandle, InstanceId, LifecycleActionToken,
	// ...); nested values as "Attributes.VisibilityTimeout" or
	// "Entries.1.Id" (lists are numbered from 1).
	Params map[string]string
}

// Fault makes a fake misbehave on an operation. A fault with a Status or a
// Code is answered in the service's real error wire format, so the SDK
// yields the same typed or generic API error as in production and its
// retryer reacts to it as it would in production (500, 503 and throttling
// codes are retried; other 4xx are not). A fault with neither only adds
// Delay (or hangs) and then the request is served normally.
type Fault struct {
	// Status is the HTTP status. Zero with a Code means 400.
	Status int
	// Code is the error code, e.g. "InternalError", "ServiceUnavailable",
	// "Throttling", "RequestThrottled", "ValidationError". Zero with a
	// Status picks a code that fits the status.
	Code string
	// Message is the error message. Empty picks a generic one.
	Message string
	// Times is how many requests the fault affects; 0 means until
	// ClearFaults.
	Times int
	// Delay is latency added before answering.
	Delay time.Duration
	// Hang makes the fake never answer; the request ends when the client
	// gives up (its context ends) or the fake is closed.
	Hang bool
}

// status returns the HTTP status of an error fault.
func (f Fault) status() int { return cmp.Or(f.Status, http.StatusBadRequest) }

// Eventually polls cond every 10 ms until it returns true and fails the test
// with what if that does not happen within timeout. Call it from the test's
// goroutine only (it may call tb.Fatalf).
func Eventually(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	for deadline := time.Now().Add(timeout); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", timeout, what)
			return
		}
	}
}

// peerPollInterval bounds every wait of a fake, so state that changes only
// because the clock moved (visibility timeouts, heartbeat deadlines) is
// noticed even when Now is a fake clock that is not wall time.
const peerPollInterval = 50 * time.Millisecond

// errPeerClosed is returned by waits that end because the fake was closed.
var errPeerClosed = errors.New("testpeers: fake closed")

// peerAnyOp is the InjectFault key that matches every operation.
const peerAnyOp = "*"

// peerServer is the loopback HTTP server, call log, fault table and change
// signal shared by the fakes. The fakes embed it; its exported methods are
// part of every fake's API.
type peerServer struct {
	service string
	now     func() time.Time

	mu      sync.Mutex
	calls   []Call
	faults  map[string]*Fault
	latency time.Duration
	closed  bool
	changed chan struct{} // closed and replaced by notify

	srv       *http.Server
	url       string
	done      chan struct{}
	closeOnce sync.Once
	active    sync.WaitGroup
}

// newPeerServer starts serving h on 127.0.0.1 with an ephemeral port. Like
// httptest.NewServer it panics when no loopback port can be bound: that is
// an environment failure, not a test outcome.
func newPeerServer(service string, now func() time.Time, h http.Handler) *peerServer {
	if now == nil {
		now = time.Now
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(fmt.Sprintf("testpeers: %s fake: listen on 127.0.0.1:0: %v", service, err))
	}
	p := &peerServer{
		service: service,
		now:     now,
		faults:  make(map[string]*Fault),
		changed: make(chan struct{}),
		url:     "http://" + ln.Addr().String(),
		done:    make(chan struct{}),
	}
	p.srv = &http.Server{Handler: p.track(h), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = p.srv.Serve(ln) }()
	return p
}

// URL returns the base URL of the fake, e.g. "http://127.0.0.1:41234", for
// an SDK client's BaseEndpoint (or imds.Options.Endpoint).
func (p *peerServer) URL() string { return p.url }

// Close stops the fake: it closes the listener and every connection (pending
// long polls and hung requests end), then waits for its handlers and
// background goroutines to return. Close is idempotent.
func (p *peerServer) Close() {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		p.mu.Unlock()
		_ = p.srv.Close()
		close(p.done)
		p.active.Wait()
	})
}

// Calls returns a copy of every request received so far, oldest first.
func (p *peerServer) Calls() []Call {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := slices.Clone(p.calls)
	for i := range out {
		out[i].Params = maps.Clone(out[i].Params)
	}
	return out
}

// CallCount returns how many requests for op were received.
func (p *peerServer) CallCount(op string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, c := range p.calls {
		if c.Op == op {
			n++
		}
	}
	return n
}

// InjectFault makes the next requests for op (f.Times of them, or all until
// ClearFaults when Times is 0) misbehave as f describes. op "*" matches every
// operation; a fault for the exact op takes precedence. Injecting again for
// the same op replaces the previous fault.
func (p *peerServer) InjectFault(op string, f Fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults[op] = &f
}

// ClearFaults removes every injected fault.
func (p *peerServer) ClearFaults() {
	p.mu.Lock()
	defer p.mu.Unlock()
	clear(p.faults)
}

// SetLatency adds d of latency to every following request (0 removes it).
func (p *peerServer) SetLatency(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.latency = d
}

// track counts running handlers so that Close can wait for them, and
// refuses requests that arrive while the fake is closing.
func (p *peerServer) track(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			http.Error(w, "fake closed", http.StatusServiceUnavailable)
			return
		}
		p.active.Add(1)
		p.mu.Unlock()
		defer p.active.Done()
		h.ServeHTTP(w, r)
	})
}

// goBackground runs fn on a goroutine that Close waits for; fn must return
// once p.done is closed. It reports false if the fake is already closed.
func (p *peerServer) goBackground(fn func()) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.active.Add(1)
	go func() {
		defer p.active.Done()
		fn()
	}()
	return true
}

// begin records a call, then applies the configured latency and any
// injected fault for op. It returns the error fault to answer with (nil:
// serve normally) and false when the request must not be answered at all
// (the client went away, the fake closed, or the fault hangs).
func (p *peerServer) begin(r *http.Request, op string, params map[string]string) (*Fault, bool) {
	p.mu.Lock()
	p.calls = append(p.calls, Call{Service: p.service, Op: op, At: p.now(), Params: params})
	latency := p.latency
	key := op
	if p.faults[key] == nil {
		key = peerAnyOp
	}
	fault := Fault{}
	if f := p.faults[key]; f != nil {
		fault = *f
		if f.Times--; f.Times == 0 {
			delete(p.faults, key)
		}
		f.Times = max(f.Times, 0) // 0 stays "until ClearFaults"
	}
	p.mu.Unlock()
	p.notify()

	ctx := r.Context()
	if !p.sleep(ctx, latency) || !p.sleep(ctx, fault.Delay) {
		return nil, false
	}
	if fault.Hang {
		select {
		case <-ctx.Done():
		case <-p.done:
		}
		return nil, false
	}
	if fault.Status != 0 || fault.Code != "" { // an error answer
		return &fault, true
	}
	return nil, true
}

// sleep waits d of wall time; false means the request context ended or the
// fake closed first.
func (p *peerServer) sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	select {
	case <-time.After(d):
		return true
	case <-ctx.Done():
		return false
	case <-p.done:
		return false
	}
}

// notify wakes every waiter blocked in await.
func (p *peerServer) notify() {
	p.mu.Lock()
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
}

// await calls check until it reports done. It re-checks after every state
// change, after the delay check returns as a hint (time until the next
// clock-driven change; 0 means none known), and at least every
// peerPollInterval. It returns ctx's error or errPeerClosed if those end
// the wait first.
func (p *peerServer) await(ctx context.Context, check func() (done bool, next time.Duration)) error {
	for {
		p.mu.Lock()
		ch := p.changed
		p.mu.Unlock()
		done, next := check()
		if done {
			return nil
		}
		d := peerPollInterval
		if next > 0 {
			d = min(d, next)
		}
		select {
		case <-ch:
		case <-time.After(d):
		case <-ctx.Done():
			return ctx.Err()
		case <-p.done:
			return errPeerClosed
		}
	}
}

// peerUUID returns a random RFC 4122 version 4 UUID string.
func peerUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return peerFormatUUID(b)
}

// peerFormatUUID formats 16 bytes as a version 4 UUID.
func peerFormatUUID(b [16]byte) string {
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// peerMillis formats t as epoch milliseconds, the SQS timestamp format.
func peerMillis(t time.Time) string {
	return strconv.FormatInt(t.UnixMilli(), 10)
}

// peerDurationSeconds rounds d up to whole seconds, the unit of the AWS
// APIs, so a sub-second test value is reported as 1.
func peerDurationSeconds(d time.Duration) int64 {
	return int64((max(d, 0) + time.Second - 1) / time.Second)
}
