package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// sqsProxy is a recording pass-through in front of the fake SQS. Every
// simulated daemon gets its own endpoint, http://127.0.0.1:port/d/<n>, so
// each request — above all each DeleteMessage — is attributed to the
// daemon that sent it, not inferred from timing.
type sqsProxy struct {
	upstream string
	srv      *http.Server
	url      string
	client   *http.Client

	mu      sync.Mutex
	owners  []string // daemon index → instance id
	deletes []deleteRec

	requests atomic.Int64
	byOp     sync.Map // op → *atomic.Int64
}

// deleteRec is one DeleteMessage (or batch entry) a daemon sent.
type deleteRec struct {
	Daemon    string // instance id of the daemon that sent it
	MessageID string // decoded from the receipt handle
	At        time.Time
}

func newSQSProxy(upstream string) (*sqsProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &sqsProxy{
		upstream: upstream,
		url:      "http://" + ln.Addr().String(),
		client: &http.Client{Transport: &http.Transport{
			Proxy: nil, MaxIdleConns: 8192, MaxIdleConnsPerHost: 8192, IdleConnTimeout: time.Minute,
			DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		}},
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

// Close stops the pass-through.
func (p *sqsProxy) Close() { _ = p.srv.Close() }

// Requests is the number of SQS requests the daemons sent so far.
func (p *sqsProxy) Requests() int64 { return p.requests.Load() }

// OpCounts returns requests by operation.
func (p *sqsProxy) OpCounts() map[string]int64 {
	out := map[string]int64{}
	p.byOp.Range(func(k, v any) bool {
		out[k.(string)] = v.(*atomic.Int64).Load()
		return true
	})
	return out
}

// Deletes returns every DeleteMessage so far.
func (p *sqsProxy) Deletes() []deleteRec {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]deleteRec(nil), p.deletes...)
}

func (p *sqsProxy) count(op string) {
	p.requests.Add(1)
	c, ok := p.byOp.Load(op)
	if !ok {
		c, _ = p.byOp.LoadOrStore(op, new(atomic.Int64))
	}
	c.(*atomic.Int64).Add(1)
}

// messageIDOfHandle reads the message id out of a receipt handle of the
// fake SQS (base64 of "<message id>#<random>").
func messageIDOfHandle(h string) string {
	b, err := base64.StdEncoding.DecodeString(h)
	if err != nil {
		return ""
	}
	id, _, ok := bytes.Cut(b, []byte("#"))
	if !ok {
		return ""
	}
	return string(id)
}

func (p *sqsProxy) serve(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, "/d/")
	if !ok {
		http.Error(w, "no daemon prefix", http.StatusNotFound)
		return
	}
	idxText, _, _ := strings.Cut(rest, "/")
	idx, err := strconv.Atoi(idxText)
	p.mu.Lock()
	valid := err == nil && idx >= 0 && idx < len(p.owners)
	var daemon string
	if valid {
		daemon = p.owners[idx]
	}
	p.mu.Unlock()
	if !valid {
		http.Error(w, "unknown daemon", http.StatusNotFound)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	op := strings.TrimPrefix(r.Header.Get("X-Amz-Target"), "AmazonSQS.")
	p.count(op)
	switch op {
	case "DeleteMessage", "DeleteMessageBatch":
		var req struct {
			ReceiptHandle string
			Entries       []struct{ ReceiptHandle string }
		}
		_ = json.Unmarshal(body, &req)
		handles := []string{req.ReceiptHandle}
		if op == "DeleteMessageBatch" {
			handles = handles[:0]
			for _, e := range req.Entries {
				handles = append(handles, e.ReceiptHandle)
			}
		}
		now := time.Now()
		p.mu.Lock()
		for _, h := range handles {
			p.deletes = append(p.deletes, deleteRec{Daemon: daemon, MessageID: messageIDOfHandle(h), At: now})
		}
		p.mu.Unlock()
	}
	out, err := http.NewRequestWithContext(r.Context(), http.MethodPost, p.upstream+"/", bytes.NewReader(body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	out.Header = r.Header.Clone()
	resp, err := p.client.Do(out)
	if err != nil {
		if r.Context().Err() == nil {
			http.Error(w, fmt.Sprintf("upstream: %v", err), http.StatusBadGateway)
		}
		return
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}
