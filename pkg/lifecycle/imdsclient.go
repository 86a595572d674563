package lifecycle

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// IMDSv2 protocol names.
const (
	imdsTokenPath    = "/latest/api/token"
	imdsMetadataPath = "/latest/meta-data/"
	imdsTokenHeader  = "X-aws-ec2-metadata-token"
	imdsTTLHeader    = "X-aws-ec2-metadata-token-ttl-seconds"
	// imdsEndpointEnv is the variable the SDK reads for the endpoint too.
	imdsEndpointEnv     = "AWS_EC2_METADATA_SERVICE_ENDPOINT"
	imdsDefaultEndpoint = "http://169.254.169.254"
	// imdsMaxTokenTTL is the longest session IMDS grants.
	imdsMaxTokenTTL = 6 * time.Hour
	// imdsMaxToken bounds a token body; real tokens are 56 bytes.
	imdsMaxToken = 1 << 10
	// imdsMaxDrain is how much of an unwanted body is read to keep the
	// connection; beyond it the connection is closed instead.
	imdsMaxDrain = 64 << 10
)

// IMDSClientOptions configure an IMDSClient. Zero values get defaults.
type IMDSClientOptions struct {
	// Endpoint is the metadata service's base URL; empty means
	// $AWS_EC2_METADATA_SERVICE_ENDPOINT, as for the SDK, else
	// http://169.254.169.254.
	Endpoint string
	// TokenTTL is the session token's requested lifetime (default and
	// maximum 6 h). The token is renewed shortly before it runs out.
	TokenTTL time.Duration
	// Timeout bounds each attempt of an HTTP exchange (token or metadata),
	// connecting included; default 1 s. IMDS is a link-local service that
	// answers in about a millisecond (the SDK's client allows 250 ms to
	// connect and 500 ms for the answer's headers).
	Timeout time.Duration
	// Attempts is how often an exchange is tried when the service answers
	// 5xx or 429 or the connection fails (default 3, as the SDK's
	// retryer).
	Attempts int
	// Now is the clock for token expiry (default time.Now).
	Now func() time.Time
}

// IMDSClient is the IMDSv2-only net/http client of the metadata poll loop:
// it keeps one connection to the service alive (no proxy, no compression)
// and writes requests and reads answers on it in the caller's goroutine,
// the session token is cached until shortly before it runs out, and
// bodies are read into the caller's buffer.
//
// It never falls back to IMDSv1: without a token there is no metadata
// request. A 401 means the token is no longer valid (the instance was
// stopped, or the service restarted): a new token is fetched once and the
// read retried. Redirects are answers, never followed.
//
// Why not the SDK's client (feature/ec2/imds, still used for identity and
// credentials)? Each of its calls builds a middleware stack of some twenty
// handlers: a poll costs about twice the CPU and three and a half times
// the allocations (BenchmarkIMDSPollCPU).
//
// Why not http.Transport? It runs a reader and a writer goroutine per
// connection and hands every request and answer between them and the
// caller: on a daemon that polls every second those hand-offs wake
// threads that have nothing else to do, and cost more CPU than the
// exchange itself (docs/benchmarks.md, P3). The client speaks HTTP with
// the standard library's own (*http.Request).Write and http.ReadResponse.
//
// IMDSClient implements IMDSAPI; its methods are safe for concurrent use
// (exchanges are serialised, so they share the one connection).
type IMDSClient struct {
	conn imdsConn
	opts IMDSClientOptions // with defaults
	base string            // scheme://host and the endpoint's path, without a trailing slash
	put  *http.Request     // the token request, made once
	err  error             // a bad endpoint: every call fails with it

	mu      sync.Mutex // serialises exchanges; guards the fields below
	token   []string   // the token header's value, shared by the GETs' headers
	renewAt time.Time  // wall clock
	gets    map[string]*http.Request
}

// NewIMDSClient returns a client for the metadata service at
// opts.Endpoint. It does not connect until the first call; an endpoint
// that is not an http(s) URL makes every call fail.
func NewIMDSClient(opts IMDSClientOptions) *IMDSClient {
	opts.Endpoint = cmp.Or(opts.Endpoint, os.Getenv(imdsEndpointEnv), imdsDefaultEndpoint)
	if opts.TokenTTL <= 0 || opts.TokenTTL > imdsMaxTokenTTL {
		opts.TokenTTL = imdsMaxTokenTTL
	}
	opts.TokenTTL = max(opts.TokenTTL.Truncate(time.Second), time.Second)
	opts.Timeout = positive(opts.Timeout, time.Second)
	opts.Attempts = positive(opts.Attempts, 3)
	if opts.Now == nil {
		opts.Now = time.Now
	}
	c := &IMDSClient{opts: opts, token: []string{""}, gets: make(map[string]*http.Request)}
	u, err := url.Parse(opts.Endpoint)
	switch {
	case err != nil:
		c.err = fmt.Errorf("instance metadata endpoint %q: %w", opts.Endpoint, err)
		return c
	case u.Scheme != "http" && u.Scheme != "https", u.Host == "":
		c.err = fmt.Errorf("instance metadata endpoint %q is not an http(s) URL", opts.Endpoint)
		return c
	}
	c.base = u.Scheme + "://" + u.Host + strings.TrimRight(u.EscapedPath(), "/")
	if c.put, err = http.NewRequest(http.MethodPut, c.base+imdsTokenPath, nil); err != nil {
		c.err = fmt.Errorf("instance metadata endpoint %q: %w", opts.Endpoint, err)
		return c
	}
	c.put.Header = http.Header{imdsTTLHeader: {strconv.Itoa(int(opts.TokenTTL / time.Second))}}
	c.conn.addr = u.Host
	if u.Port() == "" {
		c.conn.addr = net.JoinHostPort(u.Hostname(), map[string]string{"http": "80", "https": "443"}[u.Scheme])
	}
	if u.Scheme == "https" {
		c.conn.tls = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: u.Hostname()}
	}
	return c
}

// Close closes the connection, if any.
func (c *IMDSClient) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.conn.close()
}

// IMDSStatusError is an answer other than 200 OK. 404 means the item is not
// there.
type IMDSStatusError struct {
	Op         string // "GET <path>" or "PUT /latest/api/token"
	StatusCode int
}

func (e *IMDSStatusError) Error() string {
	return fmt.Sprintf("instance metadata %s: %d %s", e.Op, e.StatusCode, http.StatusText(e.StatusCode))
}

// HTTPStatusCode returns the status, as the SDK's errors do.
func (e *IMDSStatusError) HTTPStatusCode() int { return e.StatusCode }

// Read reads the metadata item at path (relative to /latest/meta-data/),
// appending its body to dst. An item larger than limit bytes is an error;
// an answer other than 200 is an *IMDSStatusError (404: not there).
func (c *IMDSClient) Read(ctx context.Context, path string, dst []byte, limit int) ([]byte, error) {
	if c.err != nil {
		return dst, c.err
	}
	path = strings.TrimPrefix(path, "/")
	if strings.IndexFunc(path, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '?' || r == '#' }) >= 0 {
		return dst, fmt.Errorf("read instance metadata %q: not a metadata path", path)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	req, err := c.get(path)
	if err != nil {
		return dst, fmt.Errorf("read instance metadata %s: %w", path, err)
	}
	for renewed := false; ; renewed = true {
		if err := c.sessionToken(ctx, renewed); err != nil {
			return dst, err
		}
		out, status, err := c.exchange(ctx, req, dst, limit)
		switch {
		case err != nil:
			return dst, fmt.Errorf("read instance metadata %s: %w", path, err)
		case status == http.StatusOK:
			return out, nil
		case status == http.StatusUnauthorized && !renewed:
			continue // the token lapsed: one new token, one retry
		}
		return dst, &IMDSStatusError{Op: "GET " + path, StatusCode: status}
	}
}

// get returns the GET request of a metadata path, made once per path: its
// header is c.token's, so a new token is in every request. c.mu is held.
func (c *IMDSClient) get(path string) (*http.Request, error) {
	if r := c.gets[path]; r != nil {
		return r, nil
	}
	p := imdsMetadataPath + path
	if path == "" {
		p = imdsMetadataPath[:len(imdsMetadataPath)-1] // the index, as the SDK asks for it
	}
	r, err := http.NewRequest(http.MethodGet, c.base+p, nil)
	if err != nil {
		return nil, err
	}
	r.Header = http.Header{imdsTokenHeader: c.token}
	if len(c.gets) < 16 { // the poll loop reads four paths
		c.gets[path] = r
	}
	return r, nil
}

// sessionToken makes sure c.token holds a token: the cached one, or a new
// one if there is none, it is about to run out, or renew is set. c.mu is
// held.
func (c *IMDSClient) sessionToken(ctx context.Context, renew bool) error {
	now := c.opts.Now().Round(0) // wall clock: a stopped instance's tokens lapse
	if c.token[0] != "" && !renew && now.Before(c.renewAt) {
		return nil
	}
	c.token[0] = ""
	body, status, err := c.exchange(ctx, c.put, make([]byte, 0, 64), imdsMaxToken)
	token := string(bytes.TrimSpace(body))
	switch {
	case err != nil:
	case status != http.StatusOK:
		err = &IMDSStatusError{Op: "PUT " + imdsTokenPath, StatusCode: status}
	case token == "":
		err = errors.New("empty token")
	}
	if err != nil {
		return fmt.Errorf("get an instance metadata session token (IMDSv2): %w", err)
	}
	ttl := c.opts.TokenTTL
	// Renew a tenth of the TTL early, at most a minute, counted from
	// before the request was sent.
	c.token[0], c.renewAt = token, now.Add(ttl-min(ttl/10, time.Minute))
	return nil
}

// exchange sends req, retrying 5xx, 429 and connection failures, and
// appends a 200's body to dst. Every attempt has its own timeout. c.mu is
// held.
func (c *IMDSClient) exchange(ctx context.Context, req *http.Request, dst []byte, limit int) ([]byte, int, error) {
	for attempt := 1; ; attempt++ {
		out, status, err := c.once(ctx, req, dst, limit)
		retry := status >= 500 || status == http.StatusTooManyRequests || err != nil && transient(err)
		if !retry || attempt >= c.opts.Attempts || ctx.Err() != nil {
			return out, status, err
		}
		// A short pause: IMDS is local, and the next poll retries anyway.
		if sleep(ctx, RealClock{}, time.Duration(attempt)*50*time.Millisecond) != nil {
			return dst, 0, ctx.Err()
		}
	}
}

// transient reports whether err is a failure of the connection (refused,
// reset, timed out, cut short) rather than an answer.
func transient(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.ErrUnexpectedEOF)
}

// once sends req and reads the answer: a 200's body (up to limit bytes)
// appended to dst; any other body is read and dropped so that the
// connection is kept. c.mu is held.
func (c *IMDSClient) once(ctx context.Context, req *http.Request, dst []byte, limit int) ([]byte, int, error) {
	// The attempt's timeout is the connection's deadline, not a context
	// of its own: no timer per exchange.
	deadline := time.Now().Add(c.opts.Timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	resp, err := c.conn.roundTrip(ctx, req, deadline)
	if err != nil {
		return dst, 0, err
	}
	out, keep := dst, !resp.Close
	if resp.StatusCode != http.StatusOK {
		_, err = io.CopyN(io.Discard, resp.Body, imdsMaxDrain)
		keep = keep && err == io.EOF // a longer body is not read to its end
		err = nil
	} else if out, err = readLimited(resp.Body, dst, limit); err != nil {
		keep, err = false, timeoutError(ctx, err)
	}
	_ = resp.Body.Close()
	if !keep || ctx.Err() != nil {
		c.conn.close()
	} else {
		// Clear the exchange's deadline from the kept connection: left
		// set, its timer would wake the process once more before the
		// next poll.
		_ = c.conn.conn.SetDeadline(time.Time{})
	}
	return out, resp.StatusCode, err
}

// imdsConn is the client's one connection, kept alive between exchanges.
// Requests are written with (*http.Request).Write and answers read with
// http.ReadResponse, in the caller's goroutine; the caller reads each body
// to its end (or closes the connection) before the next request.
type imdsConn struct {
	addr string      // host:port
	tls  *tls.Config // for an https endpoint, else nil
	conn net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
}

// roundTrip sends req and reads the answer's header, both by deadline
// and until ctx is cancelled. A kept-alive connection the service closed
// meanwhile fails the first exchange on it: the request is then sent
// once more on a new connection, as http.Transport does for idempotent
// requests (a GET, or the token PUT).
func (c *imdsConn) roundTrip(ctx context.Context, req *http.Request, deadline time.Time) (*http.Response, error) {
	for {
		reused := c.conn != nil
		if !reused {
			if err := c.dial(ctx, deadline); err != nil {
				return nil, err
			}
		}
		resp, err := c.exchange(ctx, req, deadline)
		if err == nil {
			return resp, nil
		}
		c.close()
		if !reused || ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, timeoutError(ctx, err) // a timeout is not a closed connection
		}
	}
}

func (c *imdsConn) exchange(ctx context.Context, req *http.Request, deadline time.Time) (*http.Response, error) {
	if err := c.conn.SetDeadline(deadline); err != nil {
		return nil, err
	}
	conn := c.conn
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) }) // cancellation unblocks I/O
	defer stop()
	if err := req.Write(c.w); err != nil {
		return nil, err
	}
	if err := c.w.Flush(); err != nil {
		return nil, err
	}
	return http.ReadResponse(c.r, req)
}

func (c *imdsConn) dial(ctx context.Context, deadline time.Time) error {
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	// No TCP keep-alive probes: they would wake the idle process.
	conn, err := (&net.Dialer{KeepAlive: -1}).DialContext(ctx, "tcp", c.addr)
	if err != nil {
		return err
	}
	if c.tls != nil {
		tc := tls.Client(conn, c.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = conn.Close()
			return err
		}
		conn = tc
	}
	if c.r == nil {
		c.r, c.w = bufio.NewReaderSize(conn, 4<<10), bufio.NewWriterSize(conn, 1<<10)
	} else {
		c.r.Reset(conn)
		c.w.Reset(conn)
	}
	c.conn = conn
	return nil
}

// timeoutError reports the connection's deadline as a context's would be:
// ctx's error if it ended (cancellation sets a past deadline), else the
// attempt's context.DeadlineExceeded.
func timeoutError(ctx context.Context, err error) error {
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("%w: %w", ctxErr, err)
	}
	return fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
}

func (c *imdsConn) close() {
	if c.conn != nil {
		_ = c.conn.Close()
		c.conn = nil
	}
}

// readLimited appends r's content to dst; more than limit bytes is an
// error.
func readLimited(r io.Reader, dst []byte, limit int) ([]byte, error) {
	start := len(dst)
	for {
		dst = slices.Grow(dst, 1)
		n, err := r.Read(dst[len(dst):cap(dst)])
		dst = dst[:len(dst)+n]
		if len(dst)-start > limit {
			return dst[:start], fmt.Errorf("body larger than %d bytes", limit)
		}
		if err == io.EOF {
			return dst, nil
		}
		if err != nil {
			return dst[:start], fmt.Errorf("read body: %w", err)
		}
	}
}
