package trinoadmin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// A worker that reports ACTIVE is not yet in service: the coordinator
// schedules only on the workers it lists as active, and it notices a new
// worker some seconds after the worker has started (on 476: the worker's
// announcement, then the coordinator's 5-second poll of its state). A launch
// is therefore continued only once system.runtime.nodes says "active".

// NodeActive is the state system.runtime.nodes gives a node the coordinator
// schedules on (its states are lowercase: active, inactive, draining,
// drained, shutting_down).
const NodeActive = "active"

// Coordinator runs queries on a Trino coordinator through the client
// statement protocol: POST /v1/statement with the SQL, then GET nextUri
// until an answer carries none. It is made from a worker's Client and shares
// its HTTP settings (TLS, per-request timeout, no proxy) and credentials.
type Coordinator struct {
	base    *url.URL
	baseErr error // an unusable URL: every query fails with it
	http    *http.Client
	user    string
	pass    string
	// queryTimeout bounds one query from the POST to its last answer; a
	// query still queued then (a coordinator without active workers holds
	// queries for up to query-manager.required-workers-max-wait) is
	// cancelled and reported.
	queryTimeout time.Duration
	// backoff is the first pause before repeating a nextUri GET that met
	// 429, 502, 503, 504 or a network error; it grows by itself per attempt.
	backoff time.Duration
	now     func() time.Time
}

// Coordinator returns a Coordinator for the coordinator at rawURL, with the
// same credentials and HTTP settings as c. An unusable URL (configuration
// validation rejects it first) makes every query fail with that error, so a
// launch waiting for the coordinator is abandoned rather than continued.
func (c *Client) Coordinator(rawURL string) *Coordinator {
	co := &Coordinator{http: c.http, user: c.user, pass: c.password, queryTimeout: 30 * time.Second, backoff: 100 * time.Millisecond, now: time.Now}
	u, err := url.Parse(rawURL)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		co.baseErr = fmt.Errorf("coordinator url %q: want http(s)://host:port", rawURL)
	case c.password != "" && u.Scheme != "https":
		co.baseErr = fmt.Errorf("coordinator url %q: a password is configured, so it must be https", rawURL)
	default:
		u.Path = strings.TrimRight(u.Path, "/")
		co.base = u
	}
	return co
}

// URL is the coordinator's base URL.
func (co *Coordinator) URL() string {
	if co.base == nil {
		return ""
	}
	return co.base.String()
}

// QuoteString renders s as a SQL string literal: in single quotes, each
// single quote doubled. Trino has no backslash escapes in plain literals.
func QuoteString(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// NodeStateQuery is the query NodeState runs for nodeID.
func NodeStateQuery(nodeID string) string {
	return "SELECT state FROM system.runtime.nodes WHERE node_id = " + QuoteString(nodeID)
}

// NodeState asks the coordinator how it sees the node: its state in
// system.runtime.nodes (NodeActive once it schedules on it), or "" when it
// does not list the node at all.
func (co *Coordinator) NodeState(ctx context.Context, nodeID string) (string, error) {
	if nodeID == "" {
		return "", errors.New("node state: empty node id")
	}
	res, err := co.Query(ctx, NodeStateQuery(nodeID))
	if err != nil {
		return "", err
	}
	if len(res.Rows) == 0 {
		return "", nil
	}
	if len(res.Rows[0]) != 1 {
		return "", fmt.Errorf("system.runtime.nodes: row with %d values, want the state only", len(res.Rows[0]))
	}
	state, ok := res.Rows[0][0].(string)
	if !ok {
		return "", fmt.Errorf("system.runtime.nodes: state %v is not a string", res.Rows[0][0])
	}
	return state, nil
}

// QueryResult is a finished query's answer.
type QueryResult struct {
	ID      string   // the query id, e.g. 20261126_035918_00002_5nqn7
	Columns []string // column names
	Rows    [][]any  // values as encoding/json decodes them (numbers as json.Number)
}

// QueryError is a query the coordinator accepted and ended with an error
// (the statement protocol's error object).
type QueryError struct {
	Name    string // errorName, e.g. SYNTAX_ERROR, GENERIC_INSUFFICIENT_RESOURCES
	Type    string // errorType: USER_ERROR, INTERNAL_ERROR, INSUFFICIENT_RESOURCES, EXTERNAL
	Code    int
	Message string
}

func (e *QueryError) Error() string {
	return fmt.Sprintf("query failed: %s (%s): %s", e.Name, e.Type, truncate(e.Message, 300))
}

// statementDoc is one answer of the statement protocol.
type statementDoc struct {
	ID      string `json:"id"`
	NextURI string `json:"nextUri"`
	Columns []struct {
		Name string `json:"name"`
	} `json:"columns"`
	Data  []json.RawMessage `json:"data"`
	Stats struct {
		State string `json:"state"`
	} `json:"stats"`
	Error *struct {
		Message   string `json:"message"`
		ErrorCode int    `json:"errorCode"`
		ErrorName string `json:"errorName"`
		ErrorType string `json:"errorType"`
	} `json:"error"`
}

// Query runs sql and returns every row. Within the query's time budget it
// repeats the nextUri GETs the coordinator answers with 429, 502, 503 or
// 504, or that fail in the network; when it gives up on a query that is
// still running it cancels it (DELETE nextUri).
func (co *Coordinator) Query(ctx context.Context, sql string) (QueryResult, error) {
	if co.baseErr != nil {
		return QueryResult{}, co.baseErr
	}
	ctx, cancel := context.WithTimeout(ctx, co.queryTimeout)
	defer cancel()

	doc, err := co.fetch(ctx, http.MethodPost, co.base.String()+"/v1/statement", "POST /v1/statement", []byte(sql))
	if err != nil {
		return QueryResult{}, err
	}
	res := QueryResult{ID: doc.ID}
	for {
		if len(res.Columns) == 0 {
			for _, c := range doc.Columns {
				res.Columns = append(res.Columns, c.Name)
			}
		}
		for _, raw := range doc.Data {
			dec := json.NewDecoder(bytes.NewReader(raw))
			dec.UseNumber()
			var row []any
			if err := dec.Decode(&row); err != nil {
				co.cancel(ctx, doc.NextURI)
				return res, fmt.Errorf("decode a row of the answer %s: %w", truncate(string(raw), 80), err)
			}
			res.Rows = append(res.Rows, row)
		}
		if e := doc.Error; e != nil {
			return res, &QueryError{Name: e.ErrorName, Type: e.ErrorType, Code: e.ErrorCode, Message: e.Message}
		}
		if doc.NextURI == "" {
			return res, nil
		}
		next, err := co.base.Parse(doc.NextURI)
		if err != nil {
			return res, fmt.Errorf("unusable nextUri in the answer: %w", err)
		}
		state := doc.Stats.State
		asked := time.Now()
		if doc, err = co.fetch(ctx, http.MethodGet, next.String(), "GET nextUri", nil); err != nil {
			co.cancel(ctx, next.String())
			if ctx.Err() != nil {
				return res, fmt.Errorf("query not finished in time (last state %s): %w", state, err)
			}
			return res, err
		}
		// Trino holds each answer until it has news (up to a second); a
		// server that answers at once with nothing new is not spun on.
		if len(doc.Data) == 0 && doc.NextURI != "" && time.Since(asked) < 10*time.Millisecond {
			if err := sleepCtx(ctx, 10*time.Millisecond); err != nil {
				co.cancel(ctx, doc.NextURI)
				return res, fmt.Errorf("query not finished in time (last state %s): %w", doc.Stats.State, err)
			}
		}
	}
}

// fetch sends one request of the protocol and decodes its answer. A GET of
// nextUri is repeated, like Trino's own client does, on 502, 503 and 504,
// also on 429 (honouring Retry-After), and after a network error (at most
// maxNetworkRetries times): giving up would lose the query. The POST is
// sent once: nothing is lost yet, and the caller's poll repeats it. op names
// the request in errors without the query id, so the same failure reads the
// same on every poll.
func (co *Coordinator) fetch(ctx context.Context, method, target, op string, body []byte) (*statementDoc, error) {
	network := 0
	for attempt := 1; ; attempt++ {
		doc, retryAfter, err := co.once(ctx, method, target, op, body)
		if err == nil || retryAfter < 0 || method != http.MethodGet {
			return doc, err
		}
		var se *StatusError
		if !errors.As(err, &se) {
			if network++; network > maxNetworkRetries {
				return nil, err
			}
		}
		pause := max(retryAfter, min(time.Duration(attempt)*co.backoff, 2*time.Second))
		if serr := sleepCtx(ctx, pause); serr != nil {
			return nil, fmt.Errorf("%s: %w (last answer: %v)", op, serr, err)
		}
	}
}

// maxNetworkRetries bounds the repeats of a nextUri GET that failed in the
// network (a coordinator that went away refuses at once).
const maxNetworkRetries = 3

// once sends a request of the statement protocol. retryAfter ≥ 0 marks an
// error worth repeating (and the pause the server asked for); -1 a final one.
func (co *Coordinator) once(ctx context.Context, method, target, op string, body []byte) (*statementDoc, time.Duration, error) {
	var doc statementDoc
	data, retryAfter, err := co.exchange(ctx, method, target, op, body, 4<<20, &doc)
	if err != nil {
		return nil, retryAfter, err
	}
	if doc.ID == "" {
		return nil, -1, fmt.Errorf("%s: answer %q carries no query id", op, truncate(string(data), 80))
	}
	return &doc, -1, nil
}

// exchange sends one request to the coordinator with the credentials and
// decodes a 200 answer (at most limit bytes) into v; v nil reads the answer
// and ignores it. The statement protocol's requests (v a *statementDoc)
// name scaledownd as their source. Errors are wrapped with op, a network
// error without the URL (whose text repeats the query id). retryAfter ≥ 0
// marks an error worth repeating (and the pause the server asked for): a
// network error or broken read while ctx lasts, or an answer 429, 502, 503
// or 504; -1 a final one.
func (co *Coordinator) exchange(ctx context.Context, method, target, op string, body []byte, limit int64, v any) (data []byte, retryAfter time.Duration, err error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return nil, -1, fmt.Errorf("%s: %w", op, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	}
	authorize(req, co.user, co.pass)
	if _, ok := v.(*statementDoc); ok {
		req.Header.Set("X-Trino-Source", "scaledownd")
	}
	resp, err := co.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		if ctx.Err() != nil {
			return nil, -1, fmt.Errorf("%s: %w", op, ctx.Err())
		}
		return nil, 0, fmt.Errorf("%s: %w", op, err)
	}
	defer resp.Body.Close()
	if data, err = io.ReadAll(io.LimitReader(resp.Body, limit)); err != nil {
		return nil, 0, fmt.Errorf("%s: read answer: %w", op, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return nil, retryAfterOf(resp.Header.Get("Retry-After")), statusError(op, resp.StatusCode, data)
	default:
		return nil, -1, statusError(op, resp.StatusCode, data)
	}
	if v == nil {
		return data, -1, nil
	}
	if err := json.Unmarshal(data, v); err != nil {
		return nil, -1, fmt.Errorf("%s: decode answer %q: %w", op, truncate(string(data), 80), err)
	}
	return data, -1, nil
}

// authorize sends user's credentials: HTTP Basic with a password, else
// X-Trino-User.
func authorize(req *http.Request, user, password string) {
	if password != "" {
		req.SetBasicAuth(user, password)
	} else if user != "" {
		req.Header.Set("X-Trino-User", user)
	}
}

// cancel asks the coordinator to drop a query the caller gives up on, so it
// does not wait for a client that is gone. Best effort, bounded, and done
// even when ctx has ended.
func (co *Coordinator) cancel(ctx context.Context, nextURI string) {
	if nextURI == "" {
		return
	}
	ctx, stop := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer stop()
	_, _, _ = co.exchange(ctx, http.MethodDelete, nextURI, "DELETE nextUri", nil, 4096, nil)
}

// retryAfterOf reads a Retry-After header given in seconds (capped at
// 10 s); anything else means no particular pause.
func retryAfterOf(h string) time.Duration {
	n, err := strconv.Atoi(strings.TrimSpace(h))
	if err != nil || n <= 0 {
		return 0
	}
	return min(time.Duration(n)*time.Second, 10*time.Second)
}
