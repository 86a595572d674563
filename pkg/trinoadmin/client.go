// Package trinoadmin talks to a Trino worker's node-state API: it reads the
// worker's version and state, asks it to drain or shut down, and watches it
// until its tasks are done; for a launch it can also ask the coordinator
// whether it schedules on the worker yet. It knows nothing about AWS.
//
// Files in reading order: client.go (HTTP calls and their errors), drain.go
// (the drain strategies and the wait for DRAINED or process exit),
// coordinator.go (the coordinator's view of the worker, for launches).
package trinoadmin

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Node states as Trino names them.
const (
	StateActive       = "ACTIVE"
	StateDraining     = "DRAINING"
	StateDrained      = "DRAINED"
	StateShuttingDown = "SHUTTING_DOWN"
)

// ErrNotRunning means nothing listens on the worker's port: the process is
// not running (never started, crashed, or exited after a shutdown).
var ErrNotRunning = errors.New("trino worker is not running (connection refused)")

// StatusError is a non-2xx answer from the worker.
type StatusError struct {
	Op   string // what was attempted, e.g. "PUT /v1/info/state DRAINING"
	Code int
	Body string // the start of the response body
}

func (e *StatusError) Error() string {
	msg := fmt.Sprintf("%s: HTTP %d", e.Op, e.Code)
	if e.Body != "" {
		msg += ": " + e.Body
	}
	return msg
}

// Forbidden reports whether the worker refused the user (401 or 403).
func (e *StatusError) Forbidden() bool {
	return e.Code == http.StatusForbidden || e.Code == http.StatusUnauthorized
}

// Options configure a Client.
type Options struct {
	URL      string // the worker's base URL, e.g. http://127.0.0.1:8080
	User     string // sent as X-Trino-User, or as the Basic auth user with Password
	Password string // HTTP Basic password; only over HTTPS
	CAFile   string // PEM bundle to trust in addition to the system roots
	// InsecureSkipVerify turns TLS verification off. It is off by default
	// and should stay so outside a lab.
	InsecureSkipVerify bool
	Timeout            time.Duration // per request
}

// Client calls one Trino worker.
type Client struct {
	base     *url.URL
	http     *http.Client
	user     string
	password string
}

// New returns a Client for opts.URL.
func New(opts Options) (*Client, error) {
	u, err := url.Parse(opts.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("trino url %q: want http(s)://host:port", opts.URL)
	}
	if opts.Password != "" && u.Scheme != "https" {
		return nil, errors.New("trino password set but the url is not https: a password must not travel in clear text, and Trino refuses it over HTTP")
	}
	opts.Timeout = positive(opts.Timeout, 5*time.Second)
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: opts.InsecureSkipVerify} //nolint:gosec // operator's explicit choice
	if opts.CAFile != "" {
		pem, err := os.ReadFile(opts.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read trino ca file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("trino ca file %s holds no PEM certificate", opts.CAFile)
		}
		tlsConf.RootCAs = pool
	}
	tr := &http.Transport{
		Proxy:               nil, // the worker is local; never route it through a proxy
		TLSClientConfig:     tlsConf,
		MaxIdleConns:        2,
		IdleConnTimeout:     30 * time.Second,
		TLSHandshakeTimeout: opts.Timeout,
	}
	return &Client{
		base:     u,
		http:     &http.Client{Transport: tr, Timeout: opts.Timeout},
		user:     opts.User,
		password: opts.Password,
	}, nil
}

// URL is the worker's base URL.
func (c *Client) URL() string { return c.base.String() }

// Info is what GET /v1/info says about the node.
type Info struct {
	Version     string // nodeVersion.version, e.g. "476" or "443-e.3"
	Coordinator bool
	Environment string
	Starting    bool
	State       string // empty on versions that do not report it
}

// Major is the leading number of the version ("476-e.1" → 476), or 0.
func (i Info) Major() int { return MajorVersion(i.Version) }

// MajorVersion returns the leading number of a Trino version string.
func MajorVersion(v string) int {
	end := 0
	for end < len(v) && v[end] >= '0' && v[end] <= '9' {
		end++
	}
	n, _ := strconv.Atoi(v[:end])
	return n
}

// Info reads GET /v1/info.
func (c *Client) Info(ctx context.Context) (Info, error) {
	var raw struct {
		NodeVersion struct {
			Version string `json:"version"`
		} `json:"nodeVersion"`
		Info // the other fields, matched by name (case-insensitively, like tags)
	}
	body, err := c.do(ctx, http.MethodGet, "/v1/info", nil, 1<<20)
	if err != nil {
		return Info{}, err
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return Info{}, fmt.Errorf("decode GET /v1/info: %w", err)
	}
	raw.Info.Version = raw.NodeVersion.Version
	return raw.Info, nil
}

// State reads GET /v1/info/state.
func (c *Client) State(ctx context.Context) (string, error) {
	body, err := c.do(ctx, http.MethodGet, "/v1/info/state", nil, 4096)
	if err != nil {
		return "", err
	}
	var s string
	if err := json.Unmarshal(body, &s); err != nil {
		return "", fmt.Errorf("decode GET /v1/info/state %q: %w", truncate(string(body), 64), err)
	}
	return s, nil
}

// NodeID reads the node's id (node.id) from GET /v1/status, the public
// endpoint that carries it on 476 (/v1/info does not).
func (c *Client) NodeID(ctx context.Context) (string, error) {
	body, err := c.do(ctx, http.MethodGet, "/v1/status", nil, 1<<20)
	if err != nil {
		return "", err
	}
	var raw struct {
		NodeID string `json:"nodeId"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return "", fmt.Errorf("decode GET /v1/status: %w", err)
	}
	if raw.NodeID == "" {
		return "", errors.New("GET /v1/status: no nodeId in the answer")
	}
	return raw.NodeID, nil
}

// SetState asks the worker to move to state (PUT /v1/info/state). Trino
// answers 200 at once and does the work asynchronously.
func (c *Client) SetState(ctx context.Context, state string) error {
	body, _ := json.Marshal(state) // a JSON string literal, quotes included
	_, err := c.do(ctx, http.MethodPut, "/v1/info/state", body, 4096)
	return err
}

// Task-count gauges a worker's /metrics may expose, by executor.
var taskGauges = []string{
	"trino_execution_executor_dedicated_name_ThreadPerDriverTaskExecutor_Tasks",
	"trino_execution_executor_timesharing_name_TimeSharingTaskExecutor_Tasks",
	"trino_execution_executor_name_TaskExecutor_Tasks",
}

// ActiveTasks reads the executor's task count from /metrics. ok is false
// when the worker exports no such gauge (older versions). The count is a
// hint: DRAINED or the process exit is the truth.
func (c *Client) ActiveTasks(ctx context.Context) (n int, ok bool, err error) {
	q := url.Values{}
	for _, g := range taskGauges {
		q.Add("name[]", g)
	}
	body, err := c.do(ctx, http.MethodGet, "/metrics?"+q.Encode(), nil, 1<<20)
	if err != nil {
		return 0, false, err
	}
	n, ok = ParseTaskCount(body)
	return n, ok, nil
}

// ParseTaskCount finds the first known task gauge in an OpenMetrics or
// Prometheus text exposition.
func ParseTaskCount(body []byte) (int, bool) {
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		for _, g := range taskGauges { // comments and blank lines start with none
			rest, ok := strings.CutPrefix(sc.Text(), g)
			if !ok {
				continue
			}
			if strings.HasPrefix(rest, "{") {
				if _, rest, ok = strings.Cut(rest, "}"); !ok {
					continue
				}
			}
			fields := strings.Fields(rest)
			if len(fields) == 0 || (rest[0] != ' ' && rest[0] != '\t') {
				continue // a longer metric name sharing the prefix
			}
			v, err := strconv.ParseFloat(fields[0], 64)
			if err != nil || !(v >= 0 && v <= 1e9) { // also refuses NaN
				continue
			}
			return int(v), true
		}
	}
	return 0, false
}

// do sends one request and returns the body of a 2xx answer.
func (c *Client) do(ctx context.Context, method, path string, body []byte, limit int64) ([]byte, error) {
	bare, _, _ := strings.Cut(path, "?")
	op := method + " " + bare
	if method == http.MethodPut {
		op += " " + strings.Trim(string(body), `"`)
	}
	ref, err := url.Parse(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base.ResolveReference(ref).String(), rd)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	authorize(req, c.user, c.password)
	resp, err := c.http.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("%s: %w", op, ErrNotRunning)
		}
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	if err != nil {
		return nil, fmt.Errorf("%s: read body: %w", op, err)
	}
	if resp.StatusCode/100 != 2 {
		return nil, statusError(op, resp.StatusCode, data)
	}
	return data, nil
}

// statusError is the error of an answer code other than the one wanted; it
// quotes the start of the answer's first line.
func statusError(op string, code int, body []byte) *StatusError {
	line, _, _ := strings.Cut(strings.TrimSpace(string(body)), "\n")
	return &StatusError{Op: op, Code: code, Body: truncate(line, 200)}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
