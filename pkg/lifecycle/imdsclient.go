package lifecycle

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
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
	// imdsMaxBody bounds a metadata document read by GetMetadata.
	imdsMaxBody = 64 << 10
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

// IMDSClient is a small IMDSv2-only client for the metadata poll loop. It
// speaks HTTP/1.1 over one kept-alive connection in the calling goroutine,
// caches the session token until shortly before it runs out, and reads
// bodies into the caller's buffer.
//
// It never falls back to IMDSv1: without a token there is no metadata
// request. A 401 means the token is no longer valid (the instance was
// stopped, or the service restarted): a new token is fetched once and the
// read retried. Redirects are answers, never followed.
//
// Why not the SDK's client (feature/ec2/imds, still used for identity and
// credentials)? Each of its calls builds a middleware stack of some twenty
// handlers, and net/http's transport hands every request between three
// goroutines; in a daemon polling every second that woke the process's
// threads about 40 times a second and cost ~1.2 ms of CPU per poll.
//
// IMDSClient implements IMDSAPI; its methods are safe for concurrent use
// (exchanges are serialised on the one connection).
type IMDSClient struct {
	addr     string      // host:port to dial
	host     string      // Host header
	prefix   string      // the endpoint's path, without a trailing slash
	tls      *tls.Config // nil for http
	ttl      time.Duration
	ttlValue string // ttl in whole seconds, the PUT header's value
	timeout  time.Duration
	attempts int
	now      func() time.Time
	err      error // a bad endpoint: every call fails with it

	mu      sync.Mutex    // serialises exchanges; guards the fields below
	conn    net.Conn      // nil: dial on the next exchange
	rw      io.ReadWriter // conn's reads and writes
	br      *bufio.Reader
	req     []byte // the request being written, reused
	token   string
	renewAt time.Time // wall clock
}

// NewIMDSClient returns a client for the metadata service at
// opts.Endpoint. It does not connect until the first call; an endpoint
// that is not an http(s) URL makes every call fail.
func NewIMDSClient(opts IMDSClientOptions) *IMDSClient {
	if opts.Endpoint == "" {
		opts.Endpoint = os.Getenv(imdsEndpointEnv)
	}
	if opts.Endpoint == "" {
		opts.Endpoint = imdsDefaultEndpoint
	}
	if opts.TokenTTL <= 0 || opts.TokenTTL > imdsMaxTokenTTL {
		opts.TokenTTL = imdsMaxTokenTTL
	}
	opts.TokenTTL = max(opts.TokenTTL.Truncate(time.Second), time.Second)
	if opts.Timeout <= 0 {
		opts.Timeout = time.Second
	}
	if opts.Attempts <= 0 {
		opts.Attempts = 3
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	c := &IMDSClient{
		ttl:      opts.TokenTTL,
		ttlValue: strconv.Itoa(int(opts.TokenTTL / time.Second)),
		timeout:  opts.Timeout,
		attempts: opts.Attempts,
		now:      opts.Now,
		req:      make([]byte, 0, 256),
	}
	u, err := url.Parse(opts.Endpoint)
	switch {
	case err != nil:
		c.err = fmt.Errorf("instance metadata endpoint %q: %w", opts.Endpoint, err)
		return c
	case u.Scheme != "http" && u.Scheme != "https", u.Host == "":
		c.err = fmt.Errorf("instance metadata endpoint %q is not an http(s) URL", opts.Endpoint)
		return c
	}
	c.host, c.prefix = u.Host, strings.TrimRight(u.EscapedPath(), "/")
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	c.addr = net.JoinHostPort(u.Hostname(), port)
	if u.Scheme == "https" {
		c.tls = &tls.Config{ServerName: u.Hostname(), MinVersion: tls.VersionTLS12}
	}
	return c
}

// Close closes the connection, if any.
func (c *IMDSClient) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.drop()
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

// GetMetadata reads a metadata path (relative to /latest/meta-data/), as
// the SDK's client does. optFns are ignored.
func (c *IMDSClient) GetMetadata(ctx context.Context, in *imds.GetMetadataInput, _ ...func(*imds.Options)) (*imds.GetMetadataOutput, error) {
	path := ""
	if in != nil {
		path = in.Path
	}
	b, err := c.Read(ctx, path, nil, imdsMaxBody)
	if err != nil {
		return nil, err
	}
	return &imds.GetMetadataOutput{Content: io.NopCloser(bytes.NewReader(b))}, nil
}

// Read reads the metadata item at path (relative to /latest/meta-data/),
// appending its body to dst. An item larger than limit bytes is an error;
// an answer other than 200 is an *IMDSStatusError (404: not there).
func (c *IMDSClient) Read(ctx context.Context, path string, dst []byte, limit int) ([]byte, error) {
	if c.err != nil {
		return dst, c.err
	}
	path = strings.TrimPrefix(path, "/")
	for i := 0; i < len(path); i++ {
		if b := path[i]; b <= ' ' || b == 0x7f || b == '?' || b == '#' {
			return dst, fmt.Errorf("read instance metadata %q: not a metadata path", path)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for renewed := false; ; renewed = true {
		token, err := c.sessionToken(ctx, renewed)
		if err != nil {
			return dst, err
		}
		out, status, err := c.exchange(ctx, http.MethodGet, path, imdsTokenHeader, token, dst, limit)
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

// sessionToken returns the cached token, or a new one if there is none, it
// is about to run out, or renew is set. c.mu is held.
func (c *IMDSClient) sessionToken(ctx context.Context, renew bool) (string, error) {
	now := c.now().Round(0) // wall clock: a stopped instance's tokens lapse
	if c.token != "" && !renew && now.Before(c.renewAt) {
		return c.token, nil
	}
	c.token = ""
	body, status, err := c.exchange(ctx, http.MethodPut, "", imdsTTLHeader, c.ttlValue, make([]byte, 0, 64), imdsMaxToken)
	if err == nil && status != http.StatusOK {
		err = &IMDSStatusError{Op: "PUT " + imdsTokenPath, StatusCode: status}
	}
	if err != nil {
		return "", fmt.Errorf("get an instance metadata session token (IMDSv2): %w", err)
	}
	token := string(bytes.TrimSpace(body))
	if token == "" {
		return "", errors.New("get an instance metadata session token (IMDSv2): empty token")
	}
	// Renew a tenth of the TTL early, at most a minute, counted from
	// before the request was sent.
	c.token, c.renewAt = token, now.Add(c.ttl-min(c.ttl/10, time.Minute))
	return token, nil
}

// exchange sends one request (a PUT of the token path if method is PUT,
// else a GET of the metadata path) carrying one header, retrying 5xx, 429
// and connection failures, and appends a 200's body to dst. Every attempt
// has its own timeout. c.mu is held.
func (c *IMDSClient) exchange(ctx context.Context, method, path, header, value string, dst []byte, limit int) ([]byte, int, error) {
	for attempt := 1; ; attempt++ {
		out, status, err := c.once(ctx, method, path, header, value, dst, limit)
		retry := status >= 500 || status == http.StatusTooManyRequests || transient(err)
		if !retry || attempt >= c.attempts || ctx.Err() != nil {
			return out, status, err
		}
		// A short pause: IMDS is local, and the next poll retries anyway.
		t := time.NewTimer(time.Duration(attempt) * 50 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return dst, 0, ctx.Err()
		case <-t.C:
		}
	}
}

// once sends one request and reads the answer: a 200's body (up to limit
// bytes) appended to dst; any other body is read and dropped so the
// connection can be reused. A kept-alive connection the service has closed
// meanwhile is replaced once. c.mu is held.
func (c *IMDSClient) once(ctx context.Context, method, path, header, value string, dst []byte, limit int) ([]byte, int, error) {
	if err := ctx.Err(); err != nil {
		return dst, 0, err
	}
	for fresh := c.conn == nil; ; fresh = true {
		if c.conn == nil {
			if err := c.dial(ctx); err != nil {
				return dst, 0, err
			}
		}
		out, status, err := c.roundTrip(ctx, method, path, header, value, dst, limit)
		if err == nil {
			return out, status, nil
		}
		c.drop()
		if ctx.Err() != nil {
			return dst, 0, ctx.Err()
		}
		if fresh || !errors.Is(err, errStaleConn) {
			return dst, 0, err
		}
	}
}

// errStaleConn is a kept-alive connection that was closed before any of
// the answer arrived.
var errStaleConn = errors.New("connection closed by the metadata service")

// dial connects. c.mu is held.
func (c *IMDSClient) dial(ctx context.Context) error {
	d := net.Dialer{Timeout: c.timeout, KeepAlive: -1} // link-local: no TCP keep-alive probes
	conn, err := d.DialContext(ctx, "tcp", c.addr)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	if c.tls != nil {
		tc := tls.Client(conn, c.tls)
		hctx, cancel := context.WithTimeout(ctx, c.timeout)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			conn.Close()
			return fmt.Errorf("tls handshake: %w", err)
		}
		conn = tc
	}
	c.conn, c.rw = conn, quiet(conn)
	if c.br == nil {
		c.br = bufio.NewReaderSize(c.rw, 1024)
	} else {
		c.br.Reset(c.rw)
	}
	return nil
}

// drop closes the connection. c.mu is held.
func (c *IMDSClient) drop() {
	if c.conn != nil {
		_ = c.conn.Close()
		c.conn = nil
	}
}

// roundTrip writes one request on c.conn and reads its answer. On an error
// the connection is unusable. c.mu is held.
func (c *IMDSClient) roundTrip(ctx context.Context, method, path, header, value string, dst []byte, limit int) ([]byte, int, error) {
	conn := c.conn
	if err := conn.SetDeadline(time.Now().Add(c.timeout)); err != nil {
		return dst, 0, err
	}
	// No deadline between exchanges: its timer would wake the idle process.
	defer func() { _ = conn.SetDeadline(time.Time{}) }()
	if ctx.Done() != nil {
		// Ending ctx ends the exchange: a deadline in the past wakes the
		// blocked read.
		stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
		defer stop()
	}
	r := append(c.req[:0], method...)
	r = append(r, ' ')
	r = append(r, c.prefix...)
	if method == http.MethodPut {
		r = append(r, imdsTokenPath...)
	} else {
		if path == "" {
			r = append(r, imdsMetadataPath[:len(imdsMetadataPath)-1]...) // the index, as the SDK asks for it
		} else {
			r = append(r, imdsMetadataPath...)
			r = append(r, path...)
		}
	}
	r = append(r, " HTTP/1.1\r\nHost: "...)
	r = append(r, c.host...)
	r = append(r, "\r\n"...)
	r = append(r, header...)
	r = append(r, ": "...)
	r = append(r, value...)
	if method == http.MethodPut {
		r = append(r, "\r\nContent-Length: 0"...)
	}
	r = append(r, "\r\n\r\n"...)
	c.req = r
	if _, err := c.rw.Write(r); err != nil {
		return dst, 0, staleOr(err)
	}
	if _, err := c.br.Peek(1); err != nil {
		return dst, 0, staleOr(err)
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return dst, 0, fmt.Errorf("read the answer: %w", err)
	}
	keep := !resp.Close
	if resp.StatusCode != http.StatusOK {
		n, err := io.CopyN(io.Discard, resp.Body, imdsMaxDrain)
		if err != io.EOF || n == imdsMaxDrain {
			keep = false
		}
		if !keep {
			c.drop()
		}
		return dst, resp.StatusCode, nil
	}
	out, err := readLimited(resp.Body, dst, limit)
	if err != nil {
		return dst, 0, err
	}
	if !keep {
		c.drop()
	}
	return out, resp.StatusCode, nil
}

// transient reports whether err is a failure of the connection (refused,
// reset, timed out, cut short) rather than an answer.
func transient(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// staleOr marks the errors of a connection the peer closed as errStaleConn.
func staleOr(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return fmt.Errorf("%w: %w", errStaleConn, err)
	}
	return err
}

// readLimited appends r's content to dst; more than limit bytes is an
// error.
func readLimited(r io.Reader, dst []byte, limit int) ([]byte, error) {
	start := len(dst)
	for {
		if len(dst) == cap(dst) {
			dst = append(dst, 0)[:len(dst)]
		}
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
