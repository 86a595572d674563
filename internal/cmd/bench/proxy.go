package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
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
// each request — above all each DeleteMessage and each ReceiveMessage
// that hands a daemon its own message — is attributed to the daemon that
// sent it, not inferred from timing.
type sqsProxy struct {
	upstream string
	srv      *http.Server
	url      string
	client   *http.Client

	mu      sync.Mutex
	owners  []string // daemon index → instance id
	deletes []deleteRec
	// ownerFirst is when each message was first returned to the daemon
	// whose instance it names (its owner).
	ownerFirst map[string]time.Time
	lastPoll   map[int]pollRec // daemon index → its latest finished receive
	cycles     []idleCycle

	byOp     map[string]int64
	requests atomic.Int64
	polling  atomic.Int64 // ReceiveMessage calls open now
}

// pollRec is one finished ReceiveMessage of a daemon.
type pollRec struct {
	start time.Time
	dur   time.Duration
	empty bool // it returned no message
}

// idleCycle is the time from one receive of a daemon that came back empty
// to its next receive: how often an idle daemon polls the queue. PrevDur
// is how long the empty receive took (a full long poll when the queue was
// quiet).
type idleCycle struct {
	Daemon  string
	At      time.Time
	Gap     time.Duration
	PrevDur time.Duration
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
		ownerFirst: map[string]time.Time{},
		lastPoll:   map[int]pollRec{},
		byOp:       map[string]int64{},
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
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.byOp)
}

// Deletes returns every DeleteMessage so far.
func (p *sqsProxy) Deletes() []deleteRec {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]deleteRec(nil), p.deletes...)
}

// OwnerReceivedAt is when the message was first returned to its owner.
func (p *sqsProxy) OwnerReceivedAt(messageID string) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	at, ok := p.ownerFirst[messageID]
	return at, ok
}

// Polling is the number of ReceiveMessage calls open now: the daemons that
// would be handed a message that turned visible.
func (p *sqsProxy) Polling() int64 { return p.polling.Load() }

// IdleCycles returns the idle cycles that ended in [from, to).
func (p *sqsProxy) IdleCycles(from, to time.Time) []idleCycle {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []idleCycle
	for _, c := range p.cycles {
		if !c.At.Before(from) && c.At.Before(to) {
			out = append(out, c)
		}
	}
	return out
}

// pollStarted notes a daemon's new receive: if its previous one came back
// empty, the time between the two is an idle cycle.
func (p *sqsProxy) pollStarted(idx int, at time.Time) {
	p.polling.Add(1)
	p.mu.Lock()
	defer p.mu.Unlock()
	if last, ok := p.lastPoll[idx]; ok && last.empty {
		p.cycles = append(p.cycles, idleCycle{Daemon: p.owners[idx], At: at, Gap: at.Sub(last.start), PrevDur: last.dur})
	}
}

// pollDone records a daemon's finished receive (ok: it was answered) and,
// when it handed the daemon its own message for the first time, when.
func (p *sqsProxy) pollDone(idx int, daemon string, start time.Time, body []byte, ok bool) {
	p.polling.Add(-1)
	now := time.Now()
	var own []string
	empty := ok && !bytes.Contains(body, []byte(`"Messages"`))
	// Cheap test first: most receives hand out other instances' messages.
	if !empty && bytes.Contains(body, []byte(daemon)) {
		var out struct {
			Messages []struct {
				MessageID string `json:"MessageId"`
				Body      string
			}
		}
		if json.Unmarshal(body, &out) == nil {
			for _, m := range out.Messages {
				if strings.Contains(m.Body, daemon) {
					own = append(own, m.MessageID)
				}
			}
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lastPoll[idx] = pollRec{start: start, dur: now.Sub(start), empty: empty}
	for _, id := range own {
		if _, seen := p.ownerFirst[id]; !seen {
			p.ownerFirst[id] = now
		}
	}
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
	p.requests.Add(1)
	p.mu.Lock()
	p.byOp[op]++
	p.mu.Unlock()
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
	receive := op == "ReceiveMessage"
	start := time.Now()
	if receive {
		p.pollStarted(idx, start)
	}
	resp, err := p.client.Do(out)
	if err != nil {
		if receive {
			p.pollDone(idx, daemon, start, nil, false)
		}
		if r.Context().Err() == nil {
			http.Error(w, fmt.Sprintf("upstream: %v", err), http.StatusBadGateway)
		}
		return
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	if !receive {
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
		return
	}
	// A receive's answer is read whole, to see which messages it hands
	// out, before it is passed on.
	answer, err := io.ReadAll(resp.Body)
	p.pollDone(idx, daemon, start, answer, err == nil && resp.StatusCode == http.StatusOK)
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(answer)
}
