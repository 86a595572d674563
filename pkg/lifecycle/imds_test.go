package lifecycle_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scaledownd/scaledownd/internal/testpeers"
	"github.com/scaledownd/scaledownd/pkg/lifecycle"
)

// fakeIMDS is the package's fake IMDS with the target lifecycle state set.
func fakeIMDS(t *testing.T) *testpeers.IMDS {
	t.Helper()
	fake := testpeers.NewIMDS(testpeers.IMDSOptions{InstanceID: self})
	t.Cleanup(fake.Close)
	fake.SetTargetLifecycleState("InService")
	return fake
}

// imdsClient returns a client of url, closed with the test.
func imdsClient(t *testing.T, opts lifecycle.IMDSClientOptions) *lifecycle.IMDSClient {
	t.Helper()
	c := lifecycle.NewIMDSClient(opts)
	t.Cleanup(c.Close)
	return c
}

// read reads path through c into a fresh buffer.
func read(t *testing.T, c *lifecycle.IMDSClient, path string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := c.Read(ctx, path, nil, 4096)
	return string(b), err
}

// status returns the HTTP status an error carries, 0 if none.
func status(err error) int {
	var s interface{ HTTPStatusCode() int }
	if errors.As(err, &s) {
		return s.HTTPStatusCode()
	}
	return 0
}

func TestIMDSClientReadsWithOneTokenOnOneConnection(t *testing.T) {
	fake := fakeIMDS(t)
	c := imdsClient(t, lifecycle.IMDSClientOptions{Endpoint: fake.URL()})
	for range 5 {
		got, err := read(t, c, "autoscaling/target-lifecycle-state")
		if err != nil || got != "InService" {
			t.Fatalf("read = %q, %v; want InService", got, err)
		}
	}
	if got, err := read(t, c, "/instance-id"); err != nil || got != self {
		t.Fatalf("read /instance-id = %q, %v", got, err)
	}
	calls := fake.Calls()
	if n := fake.CallCount("GetToken"); n != 1 {
		t.Fatalf("%d token requests for 6 reads, want 1", n)
	}
	for _, call := range calls {
		switch call.Op {
		case "GetToken":
			if call.Params["Method"] != http.MethodPut || call.Params["TTLSeconds"] != "21600" {
				t.Fatalf("token request %v, want PUT with a 6 h TTL", call.Params)
			}
		case "GetMetadata":
			if call.Params["Token"] == "" {
				t.Fatalf("metadata request without a token (IMDSv1): %v", call.Params)
			}
		}
	}
}

func TestIMDSClientNotPresentIs404(t *testing.T) {
	fake := fakeIMDS(t)
	c := imdsClient(t, lifecycle.IMDSClientOptions{Endpoint: fake.URL()})
	_, err := read(t, c, "spot/instance-action")
	var se *lifecycle.IMDSStatusError
	if !errors.As(err, &se) || se.StatusCode != http.StatusNotFound {
		t.Fatalf("err = %v, want a 404 IMDSStatusError", err)
	}
	// The 404's body was read: the connection still serves.
	if got, err := read(t, c, "autoscaling/target-lifecycle-state"); err != nil || got != "InService" {
		t.Fatalf("read after a 404 = %q, %v", got, err)
	}
	// The status as the SDK's errors carry it, which the source reads.
	if status(err) != http.StatusNotFound {
		t.Fatalf("HTTPStatusCode of %v, want 404", err)
	}
}

func TestIMDSClientRenewsAnExpiredTokenOnceOn401(t *testing.T) {
	fake := fakeIMDS(t)
	c := imdsClient(t, lifecycle.IMDSClientOptions{Endpoint: fake.URL()})
	if _, err := read(t, c, "autoscaling/target-lifecycle-state"); err != nil {
		t.Fatal(err)
	}
	fake.RevokeTokens()
	if got, err := read(t, c, "autoscaling/target-lifecycle-state"); err != nil || got != "InService" {
		t.Fatalf("read after the token lapsed = %q, %v", got, err)
	}
	if n := fake.CallCount("GetToken"); n != 2 {
		t.Fatalf("%d token requests, want 2", n)
	}

	// A service that rejects every token: one renewal, then the 401.
	fake.InjectFault("GetMetadata", testpeers.Fault{Status: http.StatusUnauthorized})
	tokens, gets := fake.CallCount("GetToken"), fake.CallCount("GetMetadata")
	_, err := read(t, c, "autoscaling/target-lifecycle-state")
	if status(err) != http.StatusUnauthorized {
		t.Fatalf("err = %v, want 401", err)
	}
	if n, m := fake.CallCount("GetToken")-tokens, fake.CallCount("GetMetadata")-gets; n != 1 || m != 2 {
		t.Fatalf("%d token requests and %d reads for a persistent 401, want 1 and 2", n, m)
	}
}

func TestIMDSClientRenewsTheTokenBeforeItsTTL(t *testing.T) {
	fake := fakeIMDS(t)
	var mu sync.Mutex
	now := time.Now()
	c := imdsClient(t, lifecycle.IMDSClientOptions{Endpoint: fake.URL(), TokenTTL: 10 * time.Minute, Now: func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return now
	}})
	advance := func(d time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		now = now.Add(d)
	}
	for _, step := range []struct {
		after  time.Duration
		tokens int
	}{{0, 1}, {8 * time.Minute, 1}, {1*time.Minute + 30*time.Second, 2}} {
		advance(step.after)
		if _, err := read(t, c, "instance-id"); err != nil {
			t.Fatal(err)
		}
		if n := fake.CallCount("GetToken"); n != step.tokens {
			t.Fatalf("after %s: %d token requests, want %d", step.after, n, step.tokens)
		}
	}
	if ttl := fake.Calls()[0].Params["TTLSeconds"]; ttl != "600" {
		t.Fatalf("requested TTL %s, want 600", ttl)
	}
}

func TestIMDSClientNeverFallsBackToIMDSv1(t *testing.T) {
	for _, code := range []int{http.StatusForbidden, http.StatusNotFound, http.StatusMethodNotAllowed, http.StatusServiceUnavailable} {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			fake := fakeIMDS(t)
			fake.InjectFault("GetToken", testpeers.Fault{Status: code})
			c := imdsClient(t, lifecycle.IMDSClientOptions{Endpoint: fake.URL()})
			_, err := read(t, c, "instance-id")
			if err == nil || !strings.Contains(err.Error(), "session token") || status(err) != code {
				t.Fatalf("err = %v, want the token request's %d", err, code)
			}
			if n := fake.CallCount("GetMetadata"); n != 0 {
				t.Fatalf("%d metadata requests without a token", n)
			}
		})
	}
}

func TestIMDSClientRetriesServerErrors(t *testing.T) {
	fake := fakeIMDS(t)
	c := imdsClient(t, lifecycle.IMDSClientOptions{Endpoint: fake.URL()})
	fake.InjectFault("GetMetadata", testpeers.Fault{Status: http.StatusServiceUnavailable, Times: 2})
	if got, err := read(t, c, "instance-id"); err != nil || got != self {
		t.Fatalf("read = %q, %v after two 503s", got, err)
	}
	fake.SetDown(true)
	if _, err := read(t, c, "instance-id"); status(err) != http.StatusServiceUnavailable {
		t.Fatalf("err = %v, want 503 once the attempts are spent", err)
	}
	if n := fake.CallCount("GetMetadata"); n != 6 {
		t.Fatalf("%d metadata requests, want 3 + 3", n)
	}
}

func TestIMDSClientTimesOutEachRequest(t *testing.T) {
	fake := fakeIMDS(t)
	fake.InjectFault("GetMetadata", testpeers.Fault{Hang: true})
	c := imdsClient(t, lifecycle.IMDSClientOptions{Endpoint: fake.URL(), Timeout: 100 * time.Millisecond, Attempts: 2})
	_, err := read(t, c, "instance-id")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want each attempt's timeout", err)
	}
	if n := fake.CallCount("GetMetadata"); n != 2 {
		t.Fatalf("%d attempts, want 2", n)
	}
	fake.ClearFaults()
	if got, err := read(t, c, "instance-id"); err != nil || got != self {
		t.Fatalf("read after the timeouts = %q, %v", got, err)
	}
}

func TestIMDSClientStopsWhenTheContextEnds(t *testing.T) {
	fake := fakeIMDS(t)
	fake.InjectFault("GetMetadata", testpeers.Fault{Hang: true})
	c := imdsClient(t, lifecycle.IMDSClientOptions{Endpoint: fake.URL(), Timeout: time.Minute})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.Read(ctx, "instance-id", nil, 4096)
		done <- err
	}()
	testpeers.Eventually(t, 5*time.Second, "the request reached the fake", func() bool { return fake.CallCount("GetMetadata") == 1 })
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read did not return when its context ended")
	}
}

func TestIMDSClientBoundsTheBody(t *testing.T) {
	fake := fakeIMDS(t)
	c := imdsClient(t, lifecycle.IMDSClientOptions{Endpoint: fake.URL()})
	ctx := context.Background()
	if _, err := c.Read(ctx, "instance-id", nil, 4); err == nil || !strings.Contains(err.Error(), "larger than 4 bytes") {
		t.Fatalf("err = %v, want the body limit", err)
	}
	b, err := c.Read(ctx, "instance-id", []byte("id="), len(self))
	if err != nil || string(b) != "id="+self {
		t.Fatalf("read = %q, %v; want the body appended to dst", b, err)
	}
}

// rawIMDS serves IMDSv2 on loopback with handler answering metadata GETs;
// every request is recorded as "METHOD path token?".
// Connections are counted.
type rawIMDS struct {
	*httptest.Server
	mu       sync.Mutex
	requests []string
	conns    int
}

func newRawIMDS(t *testing.T, handler func(w http.ResponseWriter, r *http.Request)) *rawIMDS {
	t.Helper()
	s := &rawIMDS{}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.requests = append(s.requests, fmt.Sprintf("%s %s %t", r.Method, r.URL.Path, r.Header.Get("X-Aws-Ec2-Metadata-Token") != ""))
		s.mu.Unlock()
		if r.URL.Path == "/latest/api/token" {
			_, _ = io.WriteString(w, "token")
			return
		}
		if r.Header.Get("X-Aws-Ec2-Metadata-Token") != "token" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		handler(w, r)
	}))
	s.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		if state == http.StateNew {
			s.mu.Lock()
			s.conns++
			s.mu.Unlock()
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s
}

func (s *rawIMDS) connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns
}

func (s *rawIMDS) seen() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.requests...)
}

// TestIMDSClientKeepsOneConnection: answers of every kind (a 200, a 404
// with a body, a 503 retried, a 401 that renews the token) leave the one
// connection in use; the token is fetched on it too.
func TestIMDSClientKeepsOneConnection(t *testing.T) {
	var mu sync.Mutex
	failures := map[string]int{"unavailable": 1, "unauthorized": 1}
	srv := newRawIMDS(t, func(w http.ResponseWriter, r *http.Request) {
		item := strings.TrimPrefix(r.URL.Path, "/latest/meta-data/")
		mu.Lock()
		fail := failures[item] > 0
		failures[item]--
		mu.Unlock()
		switch {
		case item == "unavailable" && fail:
			http.Error(w, "try again", http.StatusServiceUnavailable)
		case item == "unauthorized" && fail:
			http.Error(w, "token expired", http.StatusUnauthorized)
		case item == "missing":
			http.NotFound(w, r)
		default:
			_, _ = io.WriteString(w, item)
		}
	})
	c := imdsClient(t, lifecycle.IMDSClientOptions{Endpoint: srv.URL})
	for _, item := range []string{"instance-id", "missing", "unavailable", "unauthorized", "instance-id"} {
		got, err := read(t, c, item)
		if item == "missing" {
			if status(err) != http.StatusNotFound {
				t.Fatalf("%s: err = %v, want 404", item, err)
			}
			continue
		}
		if err != nil || got != item {
			t.Fatalf("%s: read %q, %v", item, got, err)
		}
	}
	tokens := 0
	for _, r := range srv.seen() {
		if strings.HasPrefix(r, "PUT ") {
			tokens++
		}
	}
	if tokens != 2 {
		t.Fatalf("%d token requests, want 2 (the first and the renewal after the 401)", tokens)
	}
	if n := srv.connections(); n != 1 {
		t.Fatalf("%d connections for 9 requests, want 1", n)
	}
}

func TestIMDSClientDoesNotFollowRedirects(t *testing.T) {
	srv := newRawIMDS(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/elsewhere", http.StatusMovedPermanently)
	})
	c := imdsClient(t, lifecycle.IMDSClientOptions{Endpoint: srv.URL})
	if _, err := read(t, c, "instance-id"); status(err) != http.StatusMovedPermanently {
		t.Fatalf("err = %v, want the 301 itself", err)
	}
	want := []string{"PUT /latest/api/token false", "GET /latest/meta-data/instance-id true"}
	if got := srv.seen(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("requests %q, want %q", got, want)
	}
}

func TestIMDSClientReplacesAConnectionTheServiceClosed(t *testing.T) {
	// A server that answers one request per connection and then closes it
	// without saying so (no "Connection: close").
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	var mu sync.Mutex
	conns := 0
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns++
			mu.Unlock()
			go func() {
				defer conn.Close()
				req, err := http.ReadRequest(bufio.NewReader(conn))
				if err != nil {
					return
				}
				body := "InService"
				if req.Method == http.MethodPut {
					body = "token"
				}
				_, _ = fmt.Fprintf(conn, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
			}()
		}
	}()
	c := imdsClient(t, lifecycle.IMDSClientOptions{Endpoint: "http://" + ln.Addr().String(), Attempts: 1})
	for range 3 {
		if got, err := read(t, c, "autoscaling/target-lifecycle-state"); err != nil || got != "InService" {
			t.Fatalf("read = %q, %v", got, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if conns != 4 {
		t.Fatalf("%d connections, want 4 (token and three reads)", conns)
	}
}

func TestIMDSClientRejectsABadEndpoint(t *testing.T) {
	for _, ep := range []string{"169.254.169.254", "ftp://169.254.169.254", "http://"} {
		c := lifecycle.NewIMDSClient(lifecycle.IMDSClientOptions{Endpoint: ep})
		if _, err := read(t, c, "instance-id"); err == nil || !strings.Contains(err.Error(), "endpoint") {
			t.Errorf("endpoint %q: err = %v", ep, err)
		}
	}
	c := lifecycle.NewIMDSClient(lifecycle.IMDSClientOptions{Endpoint: "http://127.0.0.1:1"})
	if _, err := read(t, c, "instance-id\r\nX-Evil: 1"); err == nil || !strings.Contains(err.Error(), "not a metadata path") {
		t.Errorf("a path with a line break: err = %v", err)
	}
}

// observed collects what an IMDS source told its Observe option.
type observed struct {
	mu   sync.Mutex
	seen []observation
}

type observation struct {
	leaving bool
	err     error
}

func (o *observed) observe(leaving bool, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.seen = append(o.seen, observation{leaving, err})
}

func (o *observed) count() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.seen)
}

func (o *observed) last() observation {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.seen[len(o.seen)-1]
}

// runIMDSSource runs an IMDS source with a 10 ms interval until the test ends
// and returns its deliveries.
func runIMDSSource(t *testing.T, api lifecycle.IMDSAPI, opts lifecycle.IMDSOptions) <-chan lifecycle.Delivery {
	t.Helper()
	opts.InstanceID, opts.Interval = self, 10*time.Millisecond
	src := lifecycle.NewIMDSSource(api, opts)
	out := make(chan lifecycle.Delivery, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, out, nil) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("source: %v", err)
		}
	})
	return out
}

// awaitPolls waits until o has seen n more target lifecycle state reads.
func awaitPolls(t *testing.T, o *observed, n int) {
	t.Helper()
	want := o.count() + n
	testpeers.Eventually(t, 10*time.Second, fmt.Sprintf("%d polls", n), func() bool { return o.count() >= want })
}

func TestIMDSSourceObservesEveryRead(t *testing.T) {
	for _, api := range []string{"client", "sdk"} {
		t.Run(api, func(t *testing.T) {
			fake := testpeers.NewIMDS(testpeers.IMDSOptions{InstanceID: self})
			t.Cleanup(fake.Close)
			var o observed
			out := runIMDSSource(t, imdsAPI(t, api, fake.URL()), lifecycle.IMDSOptions{Observe: o.observe})
			awaitPolls(t, &o, 2)
			if got := o.last(); got.leaving || got.err != nil {
				t.Fatalf("no state yet (404): observed %+v, want in service and no error", got)
			}
			fake.SetTargetLifecycleState("Terminated")
			testpeers.Eventually(t, 10*time.Second, "observed leaving", func() bool { return o.last().leaving })
			fake.SetDown(true)
			testpeers.Eventually(t, 10*time.Second, "observed the failure", func() bool { return o.last().err != nil })
			if !o.last().leaving {
				t.Fatal("a failed read should report the last state read (leaving)")
			}
			fake.SetDown(false)
			fake.SetTargetLifecycleState("")
			testpeers.Eventually(t, 10*time.Second, "observed the 404", func() bool {
				last := o.last()
				return !last.leaving && last.err == nil
			})
			select {
			case d := <-out:
				t.Fatalf("delivery %+v without a hook resolver", d.Event)
			default:
			}
		})
	}
}

// imdsAPI returns the named client of url.
func imdsAPI(t *testing.T, name, url string) lifecycle.IMDSAPI {
	for _, c := range imdsClients(url) {
		if c.name == name {
			if cl, ok := c.api.(*lifecycle.IMDSClient); ok {
				t.Cleanup(cl.Close)
			}
			return c.api
		}
	}
	t.Fatalf("no client %q", name)
	return nil
}

func TestIMDSSourceReportsATerminationOnce(t *testing.T) {
	fake := fakeIMDS(t)
	var o observed
	out := runIMDSSource(t, imdsAPI(t, "client", fake.URL()), lifecycle.IMDSOptions{
		Observe: o.observe,
		Resolve: func(context.Context) (string, []string, error) { return group, []string{hook}, nil },
	})
	fake.SetTargetLifecycleState("Warmed:Stopped")
	select {
	case d := <-out:
		e := d.Event
		if e.Transition != lifecycle.TransitionTerminating || e.InstanceID != self || e.Group != group || e.Hook != hook ||
			e.Destination != "WarmPool" || e.Source != "imds" {
			t.Fatalf("event %+v", e)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no delivery for Warmed:Stopped")
	}
	awaitPolls(t, &o, 5)
	select {
	case d := <-out:
		t.Fatalf("second delivery %+v for the same state", d.Event)
	default:
	}
}

// lifeCycleIMDS serves IMDSv2 with instance-life-cycle as given ("" for a
// 404), the target lifecycle state InService and a Spot interruption
// notice, and records every request.
func lifeCycleIMDS(t *testing.T, lifeCycle string) *rawIMDS {
	t.Helper()
	return newRawIMDS(t, func(w http.ResponseWriter, r *http.Request) {
		switch strings.TrimPrefix(r.URL.Path, "/latest/meta-data/") {
		case "instance-life-cycle":
			if lifeCycle == "" {
				http.NotFound(w, r)
				return
			}
			_, _ = io.WriteString(w, lifeCycle)
		case "autoscaling/target-lifecycle-state":
			_, _ = io.WriteString(w, "InService")
		case "spot/instance-action":
			_, _ = io.WriteString(w, `{"action":"terminate","time":"2026-11-26T04:00:00Z"}`)
		case "events/recommendations/rebalance":
			_, _ = io.WriteString(w, `{"noticeTime":"2026-11-26T03:58:00Z"}`)
		default:
			http.NotFound(w, r)
		}
	})
}

func TestIMDSSourcePollsSpotNoticesOnlyOnSpotInstances(t *testing.T) {
	for _, tc := range []struct {
		lifeCycle string
		notices   bool
	}{
		{"on-demand", false},
		{"scheduled", false},
		{"spot", true},
		{"", true}, // not served: cannot rule them out
	} {
		t.Run(tc.lifeCycle, func(t *testing.T) {
			srv := lifeCycleIMDS(t, tc.lifeCycle)
			var o observed
			out := runIMDSSource(t, imdsAPI(t, "client", srv.URL), lifecycle.IMDSOptions{Spot: true, Rebalance: true, Observe: o.observe})
			awaitPolls(t, &o, 5)
			var got []string
			for len(out) > 0 {
				got = append(got, (<-out).Event.Transition)
			}
			want := []string{lifecycle.TransitionSpot, lifecycle.TransitionRebalance}
			if !tc.notices {
				want = nil
			}
			if strings.Join(got, ",") != strings.Join(want, ",") {
				t.Fatalf("deliveries %v, want %v", got, want)
			}
			lifeCycleReads, noticeReads := 0, 0
			for _, r := range srv.seen() {
				switch {
				case strings.Contains(r, "instance-life-cycle"):
					lifeCycleReads++
				case strings.Contains(r, "spot/") || strings.Contains(r, "events/"):
					noticeReads++
				}
			}
			if lifeCycleReads != 1 {
				t.Fatalf("instance-life-cycle read %d times, want once", lifeCycleReads)
			}
			if !tc.notices && noticeReads != 0 {
				t.Fatalf("%d notice reads on a %s instance", noticeReads, tc.lifeCycle)
			}
		})
	}
}

func TestIMDSSourceAsksForTheLifeCycleAgainAfterAFailure(t *testing.T) {
	var mu sync.Mutex
	fails := 2
	srv := newRawIMDS(t, func(w http.ResponseWriter, r *http.Request) {
		switch strings.TrimPrefix(r.URL.Path, "/latest/meta-data/") {
		case "instance-life-cycle":
			mu.Lock()
			defer mu.Unlock()
			if fails > 0 {
				fails--
				w.WriteHeader(http.StatusBadRequest) // not retried by the client
				return
			}
			_, _ = io.WriteString(w, "on-demand")
		case "autoscaling/target-lifecycle-state":
			_, _ = io.WriteString(w, "InService")
		default:
			http.NotFound(w, r)
		}
	})
	var o observed
	runIMDSSource(t, imdsAPI(t, "client", srv.URL), lifecycle.IMDSOptions{Spot: true, Observe: o.observe})
	awaitPolls(t, &o, 6)
	counts := map[string]int{}
	for _, r := range srv.seen() {
		counts[r]++
	}
	if n := counts["GET /latest/meta-data/instance-life-cycle true"]; n != 3 {
		t.Fatalf("instance-life-cycle read %d times, want 3 (two failures, then on-demand)", n)
	}
	if n := counts["GET /latest/meta-data/spot/instance-action true"]; n != 2 {
		t.Fatalf("spot/instance-action read %d times, want 2 (while the life cycle was unknown)", n)
	}
}

// TestIMDSClientAgainstAEMM reads through amazon-ec2-metadata-mock what the
// SDK's client reads, byte for byte, 404s included.
func TestIMDSClientAgainstAEMM(t *testing.T) {
	url := testpeers.RunAEMM(t, nil, "--asg-termination-delay-sec", "0")
	c := imdsClient(t, lifecycle.IMDSClientOptions{Endpoint: url})
	sdk := imdsAPI(t, "sdk", url)
	for _, path := range []string{"instance-id", "instance-life-cycle", "autoscaling/target-lifecycle-state",
		"placement/region", "spot/instance-action", "no/such/item", ""} {
		b, wantErr := sdk.Read(context.Background(), path, nil, 64<<10)
		want := string(b)
		got, err := read(t, c, path)
		if got != want || status(err) != status(wantErr) || (err == nil) != (wantErr == nil) {
			t.Errorf("%q: got %q, %v; the SDK read %q, %v", path, got, err, want, wantErr)
		}
	}
}

// TestIMDSSourceSpotNoticesFromAEMM: the mock is an on-demand instance
// unless told otherwise; its notices, served either way, are read only
// when it says spot.
func TestIMDSSourceSpotNoticesFromAEMM(t *testing.T) {
	for _, tc := range []struct {
		name    string
		env     []string
		notices bool
	}{
		{"on-demand", nil, false},
		{"spot", []string{"AEMM_METADATA_VALUES_INSTANCE_LIFE_CYCLE=spot"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := testpeers.RunAEMM(t, tc.env, "--mock-delay-sec", "0", "--rebalance-delay-sec", "0")
			var o observed
			out := runIMDSSource(t, imdsAPI(t, "client", url), lifecycle.IMDSOptions{Spot: true, Rebalance: true, Observe: o.observe})
			awaitPolls(t, &o, 5)
			want := 0
			if tc.notices {
				want = 2 // the interruption notice and the rebalance recommendation
			}
			if got := len(out); got != want {
				t.Fatalf("%d deliveries, want %d", got, want)
			}
		})
	}
}
