package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// sqsProxy is a recording pass-through in front of the fake SQS. Every
// simulated daemon has its own endpoint, http://127.0.0.1:port/d/<n>, so
// each request — above all each DeleteMessage and each ReceiveMessage
// that hands a daemon its own message — is attributed to the daemon that
// sent it, not inferred from timing.
type sqsProxy struct {
	srv    *http.Server
	url    string
	client *http.Client
	rp     *httputil.ReverseProxy

	mu      sync.Mutex
	owners  []string // daemon index → instance id
	deletes []deleteRec
	// ownerFirst is when each message was first handed to its owner.
	ownerFirst map[string]time.Time
	byOp       map[string]int64

	requests atomic.Int64
	polling  atomic.Int64 // ReceiveMessage calls open now
}

// deleteRec is one DeleteMessage (or batch entry) a daemon sent.
type deleteRec struct {
	Daemon    string // instance id of the daemon that sent it
	MessageID string // decoded from the receipt handle
	At        time.Time
}

type ctxKey struct{}

// call is one request on its way through the pass-through.
type call struct {
	idx    int
	daemon string
	start  time.Time
}

func newSQSProxy(upstream string) (*sqsProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	up, err := url.Parse(upstream)
	if err != nil {
		return nil, err
	}
	p := &sqsProxy{url: "http://" + ln.Addr().String(), ownerFirst: map[string]time.Time{}, byOp: map[string]int64{}}
	tr := &http.Transport{MaxIdleConns: 8192, MaxIdleConnsPerHost: 8192, IdleConnTimeout: time.Minute}
	p.client = &http.Client{Transport: tr}
	p.rp = &httputil.ReverseProxy{
		Transport: tr,
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(up)
			r.Out.URL.Path = "/"
		},
		ModifyResponse: p.received,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if c, ok := r.Context().Value(ctxKey{}).(*call); ok && r.Header.Get("X-Amz-Target") == "AmazonSQS.ReceiveMessage" {
				p.pollDone(c, nil)
			}
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	p.srv = &http.Server{Handler: http.HandlerFunc(p.serve), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

// Register assigns a daemon index to an instance id.
func (p *sqsProxy) Register(id string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.owners = append(p.owners, id)
	return len(p.owners) - 1
}

// EndpointFor is the SQS endpoint of daemon n.
func (p *sqsProxy) EndpointFor(n int) string { return p.url + "/d/" + strconv.Itoa(n) }

func (p *sqsProxy) Close()          { _ = p.srv.Close() }
func (p *sqsProxy) Requests() int64 { return p.requests.Load() }
func (p *sqsProxy) Polling() int64  { return p.polling.Load() }

func (p *sqsProxy) OpCounts() map[string]int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.byOp)
}

func (p *sqsProxy) Deletes() []deleteRec {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]deleteRec(nil), p.deletes...)
}

// OwnerReceivedAt is when the message was first handed to its owner.
func (p *sqsProxy) OwnerReceivedAt(messageID string) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	at, ok := p.ownerFirst[messageID]
	return at, ok
}

// messageIDOfHandle reads the message id out of a receipt handle of the
// fake SQS (base64 of "<message id>#<random>").
func messageIDOfHandle(h string) string {
	b, _ := base64.StdEncoding.DecodeString(h)
	if id, _, ok := bytes.Cut(b, []byte("#")); ok {
		return string(id)
	}
	return ""
}

func (p *sqsProxy) serve(w http.ResponseWriter, r *http.Request) {
	rest, _ := strings.CutPrefix(r.URL.Path, "/d/")
	idx, err := strconv.Atoi(rest)
	p.mu.Lock()
	valid := err == nil && idx >= 0 && idx < len(p.owners)
	c := &call{idx: idx, start: time.Now()}
	if valid {
		c.daemon = p.owners[idx]
	}
	op := strings.TrimPrefix(r.Header.Get("X-Amz-Target"), "AmazonSQS.")
	p.byOp[op]++
	p.mu.Unlock()
	if !valid {
		http.Error(w, "unknown daemon", http.StatusNotFound)
		return
	}
	p.requests.Add(1)
	switch op {
	case "DeleteMessage", "DeleteMessageBatch":
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		var req struct {
			ReceiptHandle string
			Entries       []struct{ ReceiptHandle string }
		}
		_ = json.Unmarshal(body, &req)
		if req.ReceiptHandle != "" {
			req.Entries = append(req.Entries, struct{ ReceiptHandle string }{req.ReceiptHandle})
		}
		p.mu.Lock()
		for _, e := range req.Entries {
			p.deletes = append(p.deletes, deleteRec{Daemon: c.daemon, MessageID: messageIDOfHandle(e.ReceiptHandle), At: c.start})
		}
		p.mu.Unlock()
	case "ReceiveMessage":
		p.polling.Add(1)
	}
	p.rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, c)))
}

// received reads a receive's answer whole, to see which messages it hands
// out, before it is passed on.
func (p *sqsProxy) received(resp *http.Response) error {
	c, ok := resp.Request.Context().Value(ctxKey{}).(*call)
	if !ok || resp.Request.Header.Get("X-Amz-Target") != "AmazonSQS.ReceiveMessage" {
		return nil
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if err != nil || resp.StatusCode != http.StatusOK {
		body = nil
	}
	p.pollDone(c, body)
	return nil
}

// pollDone records a daemon's finished receive (body nil: it failed) and,
// when it handed the daemon its own message for the first time, when.
func (p *sqsProxy) pollDone(c *call, body []byte) {
	p.polling.Add(-1)
	now := time.Now()
	var own []string
	empty := body != nil && !bytes.Contains(body, []byte(`"Messages"`))
	// Cheap test first: most receives hand out other instances' messages.
	if !empty && bytes.Contains(body, []byte(c.daemon)) {
		var out struct {
			Messages []struct{ MessageId, Body string }
		}
		if json.Unmarshal(body, &out) == nil {
			for _, m := range out.Messages {
				if strings.Contains(m.Body, c.daemon) {
					own = append(own, m.MessageId)
				}
			}
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, id := range own {
		if _, seen := p.ownerFirst[id]; !seen {
			p.ownerFirst[id] = now
		}
	}
}
