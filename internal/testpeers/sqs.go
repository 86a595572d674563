// This file implements a fake Amazon SQS that speaks the AWS JSON 1.0
// protocol of aws-sdk-go-v2's service/sqs (v1.27.0 and later) and models a
// standard (non-FIFO) queue: visibility timeouts, long polling, receipt
// handles, receive counts and redrive to a dead-letter queue.

package testpeers

import (
	"bytes"
	"cmp"
	"context"
	"crypto/md5"
	crand "crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// SQS limits and defaults, as documented for standard queues.
const (
	sqsDefaultVisibility = 30 * time.Second
	sqsMaxVisibility     = 12 * time.Hour // 43200 s
	sqsMaxWait           = 20             // seconds
	sqsMaxBatch          = 10
	sqsMaxBody           = 1 << 20 // 1 MiB
	sqsMaxDelay          = 900     // seconds
	sqsPurgeInterval     = 60 * time.Second
	sqsJSONContentType   = "application/x-amz-json-1.0"
	sqsTargetPrefix      = "AmazonSQS."
	sqsTypePrefix        = "com.amazonaws.sqs#"
	sqsCoralPrefix       = "com.amazon.coral.service#"
)

// SQSOptions configures a fake SQS.
type SQSOptions struct {
	// Region is used in queue ARNs. Default "us-east-1".
	Region string
	// AccountID is used in queue URLs and ARNs. Default "123456789012".
	AccountID string
	// Seed seeds the random delivery order among visible messages, making
	// it reproducible. 0 picks a random seed.
	Seed uint64
	// InOrder delivers visible messages oldest first instead of in random
	// order (real standard queues give no order guarantee).
	InOrder bool
	// Now is the fake's clock for visibility, timestamps and wait deadlines.
	// Default time.Now.
	Now func() time.Time
}

// SQSQueueOptions configures a queue created with (*SQS).CreateQueue.
type SQSQueueOptions struct {
	// VisibilityTimeout is the queue's default visibility timeout. Default
	// 30 s. Unlike the wire API it may be sub-second, to keep tests fast;
	// GetQueueAttributes reports it rounded up to whole seconds.
	VisibilityTimeout time.Duration
	// ReceiveWaitTime is the queue attribute ReceiveMessageWaitTimeSeconds,
	// the long-poll wait used when a ReceiveMessage sends no
	// WaitTimeSeconds. Default 0 (short poll).
	ReceiveWaitTime time.Duration
	// MaxReceiveCount enables redrive: a message that was received this
	// many times is moved to DeadLetterQueue instead of being delivered
	// again. 0 disables redrive.
	MaxReceiveCount int
	// DeadLetterQueue names the dead-letter queue by name, URL or ARN. It
	// is resolved when a message is moved; if it does not exist then, the
	// message stays in its queue.
	DeadLetterQueue string
}

// SQSMessage is a snapshot of one message as the fake holds it.
type SQSMessage struct {
	// ID is the MessageId.
	ID string
	// Body is the message body.
	Body string
	// SentAt is when the message was sent (SentTimestamp).
	SentAt time.Time
	// ReceiveCount is ApproximateReceiveCount (exact here).
	ReceiveCount int
	// FirstReceivedAt is ApproximateFirstReceiveTimestamp; zero if never
	// received.
	FirstReceivedAt time.Time
	// ReceiptHandle is the latest receipt handle; empty if never received.
	ReceiptHandle string
	// Visible reports whether a ReceiveMessage could return it now.
	Visible bool
	// VisibleAt is when it becomes (or became) visible; zero if it was
	// visible from the start.
	VisibleAt time.Time
	// Deleted reports whether it was deleted (DeleteMessage, a batch
	// delete or PurgeQueue).
	Deleted bool
	// DeletedAt is when it was deleted.
	DeletedAt time.Time
	// MovedTo is the URL of the dead-letter queue it was moved to, if any.
	MovedTo string
}

// SQS is a fake Amazon SQS server. Create it with NewSQS, point an SDK
// client's BaseEndpoint at URL(), and Close it when done. All methods are
// safe for concurrent use.
type SQS struct {
	*peerServer

	region, account string
	inOrder         bool

	mu      sync.Mutex
	rng     *rand.Rand
	queues  map[string]*sqsQueue   // by name
	handles map[string]*sqsMessage // receipt handle → message record
}

// sqsQueue is a standard queue.
type sqsQueue struct {
	name, url, arn  string
	created         time.Time
	modified        time.Time
	visibility      time.Duration
	receiveWait     time.Duration
	delay           int
	maxReceiveCount int
	deadLetter      string // name, URL or ARN
	attrs           map[string]string
	messages        []*sqsMessage
	lastPurge       time.Time
}

// sqsMessage is a message record in one queue: the snapshot Messages
// returns (whose Visible only Messages sets) and what the wire needs. A
// message moved to a dead-letter queue gets a new record there with the
// same ID.
type sqsMessage struct {
	SQSMessage
	queue       *sqsQueue
	md5         string
	lastReceive time.Time // the receive of the current receipt handle
}

// gone reports whether the message left its queue.
func (m *sqsMessage) gone() bool { return m.Deleted || m.MovedTo != "" }

// visible reports whether a receive may return the message at now.
func (m *sqsMessage) visible(now time.Time) bool {
	return !m.gone() && !now.Before(m.VisibleAt)
}

// NewSQS starts a fake SQS on 127.0.0.1. It panics only if no loopback port
// can be bound.
func NewSQS(opts SQSOptions) *SQS {
	s := &SQS{
		region:  cmp.Or(opts.Region, "us-east-1"),
		account: cmp.Or(opts.AccountID, "123456789012"),
		inOrder: opts.InOrder,
		queues:  make(map[string]*sqsQueue),
		handles: make(map[string]*sqsMessage),
	}
	seed := cmp.Or(opts.Seed, rand.Uint64())
	s.rng = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	s.peerServer = newPeerServer("sqs", opts.Now, http.HandlerFunc(s.serveHTTP))
	return s
}

// CreateQueue creates a queue (or updates the options of an existing one)
// and returns its URL, "<URL()>/<account>/<name>".
func (s *SQS) CreateQueue(name string, opts SQSQueueOptions) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.queues[name]
	now := s.now()
	if q == nil {
		q = s.newQueueLocked(name, now)
	}
	if opts.VisibilityTimeout > 0 {
		q.visibility = opts.VisibilityTimeout
	}
	q.receiveWait = opts.ReceiveWaitTime
	q.maxReceiveCount = opts.MaxReceiveCount
	q.deadLetter = opts.DeadLetterQueue
	q.modified = now
	return q.url
}

// Send enqueues body on the queue (named by URL, name or ARN) as a
// SendMessage would and returns the new message ID, or "" if the queue does
// not exist.
func (s *SQS) Send(queue, body string) string {
	s.mu.Lock()
	q := s.resolveLocked(queue)
	if q == nil {
		s.mu.Unlock()
		return ""
	}
	m := s.enqueueLocked(q, body, q.delay)
	s.mu.Unlock()
	s.notify()
	return m.ID
}

// Messages returns a snapshot of every message the queue (URL, name or ARN)
// ever held, oldest first, including deleted and redriven ones.
func (s *SQS) Messages(queue string) []SQSMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.resolveLocked(queue)
	if q == nil {
		return nil
	}
	now := s.now()
	out := make([]SQSMessage, len(q.messages))
	for i, m := range q.messages {
		out[i] = m.SQSMessage
		out[i].Visible = m.visible(now)
	}
	return out
}

// ExpireVisibility makes an in-flight message visible again at once, as if
// its visibility timeout had run out (say, after its consumer died). It
// reports whether such a message was found.
func (s *SQS) ExpireVisibility(queue, messageID string) bool {
	s.mu.Lock()
	m := s.findLocked(queue, messageID)
	ok := m != nil && !m.gone()
	if ok {
		m.VisibleAt = s.now()
	}
	s.mu.Unlock()
	if ok {
		s.notify()
	}
	return ok
}

// Deleted returns the IDs of the queue's deleted messages in deletion order.
func (s *SQS) Deleted(queue string) []string {
	del := slices.DeleteFunc(s.Messages(queue), func(m SQSMessage) bool { return !m.Deleted })
	slices.SortStableFunc(del, func(a, b SQSMessage) int { return a.DeletedAt.Compare(b.DeletedAt) })
	ids := make([]string, len(del))
	for i, m := range del {
		ids[i] = m.ID
	}
	return ids
}

// Receives returns how often the message was received from the queue (0 if
// unknown).
func (s *SQS) Receives(queue, messageID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m := s.findLocked(queue, messageID); m != nil {
		return m.ReceiveCount
	}
	return 0
}

// WaitDeleted blocks until the message is deleted from the queue, and
// returns an error if ctx ends or the fake closes first.
func (s *SQS) WaitDeleted(ctx context.Context, queue, messageID string) error {
	return s.waitMessage(ctx, queue, messageID, "deletion of message "+messageID,
		func(m *sqsMessage) bool { return m.Deleted })
}

// WaitReceives blocks until the message was received at least n times from
// the queue, and returns an error if ctx ends or the fake closes first.
func (s *SQS) WaitReceives(ctx context.Context, queue, messageID string, n int) error {
	return s.waitMessage(ctx, queue, messageID, fmt.Sprintf("%d receives of message %s", n, messageID),
		func(m *sqsMessage) bool { return m.ReceiveCount >= n })
}

// waitMessage blocks until the message is in the queue and done holds for
// it; what names the wait in the error.
func (s *SQS) waitMessage(ctx context.Context, queue, id, what string, done func(*sqsMessage) bool) error {
	err := s.await(ctx, func() (bool, time.Duration) {
		s.mu.Lock()
		defer s.mu.Unlock()
		m := s.findLocked(queue, id)
		return m != nil && done(m), 0
	})
	if err != nil {
		return fmt.Errorf("wait for %s: %w", what, err)
	}
	return nil
}

// newQueueLocked registers an empty queue with default attributes.
func (s *SQS) newQueueLocked(name string, now time.Time) *sqsQueue {
	q := &sqsQueue{
		name:       name,
		url:        s.url + "/" + s.account + "/" + name,
		arn:        "arn:aws:sqs:" + s.region + ":" + s.account + ":" + name,
		created:    now,
		modified:   now,
		visibility: sqsDefaultVisibility,
		attrs:      make(map[string]string),
	}
	s.queues[name] = q
	return q
}

// resolveLocked finds a queue by URL, ARN or name.
func (s *SQS) resolveLocked(ref string) *sqsQueue {
	if q := s.lookupURLLocked(ref); q != nil {
		return q
	}
	if name, ok := strings.CutPrefix(ref, "arn:aws:sqs:"+s.region+":"+s.account+":"); ok {
		return s.queues[name]
	}
	return s.queues[ref]
}

// lookupURLLocked finds a queue by its URL. As in SQS the host is not used
// for routing: the path must be "/<account>/<name>".
func (s *SQS) lookupURLLocked(raw string) *sqsQueue {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return nil
	}
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	if len(parts) != 2 || parts[0] != s.account {
		return nil
	}
	return s.queues[parts[1]]
}

// findLocked finds a message record by queue reference and ID.
func (s *SQS) findLocked(queue, id string) *sqsMessage {
	q := s.resolveLocked(queue)
	if q == nil {
		return nil
	}
	for _, m := range q.messages {
		if m.ID == id {
			return m
		}
	}
	return nil
}

// enqueueLocked appends a new message, hidden for delay seconds.
func (s *SQS) enqueueLocked(q *sqsQueue, body string, delay int) *sqsMessage {
	now := s.now()
	sum := md5.Sum([]byte(body))
	m := &sqsMessage{queue: q, md5: hex.EncodeToString(sum[:]),
		SQSMessage: SQSMessage{ID: peerUUID(), Body: body, SentAt: now}}
	if delay > 0 {
		m.VisibleAt = now.Add(time.Duration(delay) * time.Second)
	}
	q.messages = append(q.messages, m)
	return m
}

// sqsRequest holds every request member of the supported operations.
// Pointers distinguish "absent" from zero, as SQS does.
type sqsRequest struct {
	QueueURL                    *string           `json:"QueueUrl"`
	QueueName                   *string           `json:"QueueName"`
	QueueOwnerAWSAccountID      *string           `json:"QueueOwnerAWSAccountId"`
	Attributes                  map[string]string `json:"Attributes"`
	AttributeNames              []string          `json:"AttributeNames"`
	MessageSystemAttributeNames []string          `json:"MessageSystemAttributeNames"`
	MessageAttributeNames       []string          `json:"MessageAttributeNames"`
	MaxNumberOfMessages         *int              `json:"MaxNumberOfMessages"`
	VisibilityTimeout           *int              `json:"VisibilityTimeout"`
	WaitTimeSeconds             *int              `json:"WaitTimeSeconds"`
	MessageBody                 *string           `json:"MessageBody"`
	DelaySeconds                *int              `json:"DelaySeconds"`
	ReceiptHandle               *string           `json:"ReceiptHandle"`
	Entries                     []sqsBatchEntry   `json:"Entries"`
}

// sqsBatchEntry is one entry of a DeleteMessageBatch or
// ChangeMessageVisibilityBatch request.
type sqsBatchEntry struct {
	ID                string `json:"Id"`
	ReceiptHandle     string `json:"ReceiptHandle"`
	VisibilityTimeout *int   `json:"VisibilityTimeout"`
}

// sqsError is an SQS error as the JSON 1.0 protocol carries it.
type sqsError struct {
	status    int
	typ       string // __type, e.g. "com.amazonaws.sqs#QueueDoesNotExist"
	queryCode string // x-amzn-query-error code, e.g. "AWS.SimpleQueueService.NonExistentQueue"
	sender    bool
	message   string
}

// sqsErr builds a 400 Sender error for a code of the SQS model, with the
// legacy Query code the real service sends in x-amzn-query-error.
func sqsErr(code, format string, args ...any) *sqsError {
	return &sqsError{
		status:    http.StatusBadRequest,
		typ:       sqsTypePrefix + code,
		queryCode: sqsQueryCode(code),
		sender:    true,
		message:   fmt.Sprintf(format, args...),
	}
}

// sqsQueryCode maps an SQS error shape name to the legacy Query error code
// (the awsQueryError trait of the model), which the SDK reports as
// ErrorCode() when the x-amzn-query-error header is present.
func sqsQueryCode(code string) string {
	switch code {
	case "QueueDoesNotExist":
		return "AWS.SimpleQueueService.NonExistentQueue"
	case "QueueNameExists":
		return "QueueAlreadyExists"
	case "InvalidParameterValueException":
		return "InvalidParameterValue"
	case "MessageNotInflight", "PurgeQueueInProgress", "EmptyBatchRequest",
		"TooManyEntriesInBatchRequest", "BatchEntryIdsNotDistinct",
		"InvalidBatchEntryId", "UnsupportedOperation", "BatchRequestTooLong",
		"QueueDeletedRecently":
		return "AWS.SimpleQueueService." + code
	}
	return code
}

// sqsErrQueue is the error for an unknown queue URL or name.
func sqsErrQueue() *sqsError {
	return sqsErr("QueueDoesNotExist", "The specified queue does not exist.")
}

// sqsErrInvalidParam is InvalidParameterValue, which the SQS model does not
// declare: the SDK returns a generic API error whose ErrorCode() is
// "InvalidParameterValue" (from x-amzn-query-error).
func sqsErrInvalidParam(format string, args ...any) *sqsError {
	return sqsErr("InvalidParameterValueException", format, args...)
}

// sqsErrMissing is MissingParameter for an absent required member.
func sqsErrMissing(name string) *sqsError {
	return sqsErr("MissingParameter", "The request must contain the parameter %s.", name)
}

// sqsErrHandle is ReceiptHandleIsInvalid.
func sqsErrHandle(h string) *sqsError {
	return sqsErr("ReceiptHandleIsInvalid", "The input receipt handle %q is not a valid receipt handle.", h)
}

// sqsFaultError renders an injected fault as an SQS error.
func sqsFaultError(f *Fault) *sqsError {
	status := f.status()
	code := faultCode(f, "InternalError", "RequestThrottled", "InvalidParameterValueException")
	msg := cmp.Or(f.Message, "Injected fault "+code+".")
	typ := code
	if !strings.Contains(typ, "#") {
		typ = sqsTypePrefix + code
	}
	short := code[strings.LastIndex(code, "#")+1:]
	return &sqsError{status: status, typ: typ, queryCode: sqsQueryCode(short), sender: status < 500, message: msg}
}

// faultCode is an error fault's Code or, without one, the service's code
// for its status: ServiceUnavailable for 503, internal for other 5xx,
// throttled for 429 and other for the rest.
func faultCode(f *Fault, internal, throttled, other string) string {
	switch status := f.status(); {
	case f.Code != "":
		return f.Code
	case status == http.StatusServiceUnavailable:
		return "ServiceUnavailable"
	case status >= 500:
		return internal
	case status == http.StatusTooManyRequests:
		return throttled
	}
	return other
}

// serveHTTP dispatches one AWS JSON 1.0 request.
func (s *SQS) serveHTTP(w http.ResponseWriter, r *http.Request) {
	reqID := peerUUID()
	body, readErr := io.ReadAll(io.LimitReader(r.Body, 2*sqsMaxBody))
	op, isSQS := strings.CutPrefix(r.Header.Get("X-Amz-Target"), sqsTargetPrefix)
	if !isSQS {
		op = ""
	}
	params := sqsFlatten(body)
	fault, answer := s.begin(r, op, params)
	if !answer {
		return
	}
	if fault != nil {
		sqsWriteError(w, reqID, sqsFaultError(fault))
		return
	}
	if readErr != nil {
		sqsWriteError(w, reqID, &sqsError{status: http.StatusBadRequest, typ: sqsCoralPrefix + "SerializationException", message: "failed to read request body"})
		return
	}
	if r.Method != http.MethodPost || r.URL.Path != "/" || op == "" ||
		!strings.HasPrefix(r.Header.Get("Content-Type"), sqsJSONContentType) {
		sqsWriteError(w, reqID, &sqsError{status: http.StatusBadRequest, typ: sqsCoralPrefix + "UnknownOperationException",
			message: "expected POST / with Content-Type " + sqsJSONContentType + " and X-Amz-Target " + sqsTargetPrefix + "<Operation>"})
		return
	}
	var req sqsRequest
	if len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, &req); err != nil {
			sqsWriteError(w, reqID, &sqsError{status: http.StatusBadRequest, typ: sqsCoralPrefix + "SerializationException",
				message: fmt.Sprintf("cannot decode %s request: %v", op, err)})
			return
		}
	}

	fn := s.ops(r.Context())[op]
	if fn == nil {
		sqsWriteError(w, reqID, &sqsError{status: http.StatusBadRequest, typ: sqsCoralPrefix + "UnknownOperationException",
			message: "The fake SQS does not support operation " + op + "."})
		return
	}
	out, sErr := fn(&req)
	if out == nil && sErr == nil {
		return // the client went away or the fake closed mid long poll
	}
	if sErr != nil {
		sqsWriteError(w, reqID, sErr)
		return
	}
	sqsWriteJSON(w, reqID, http.StatusOK, out)
}

// ops maps the names of the operations to their implementations; ctx is
// the request's, which ends a long poll. An operation returns neither a
// result nor an error when no answer must be written.
func (s *SQS) ops(ctx context.Context) map[string]func(*sqsRequest) (any, *sqsError) {
	return map[string]func(*sqsRequest) (any, *sqsError){
		"ReceiveMessage": func(req *sqsRequest) (any, *sqsError) {
			return s.opReceiveMessage(ctx, req)
		},
		"CreateQueue":        s.opCreateQueue,
		"GetQueueUrl":        s.opGetQueueURL,
		"GetQueueAttributes": s.opGetQueueAttributes,
		"SendMessage":        s.opSendMessage,
		"PurgeQueue":         s.opPurgeQueue,
		"DeleteMessage": func(req *sqsRequest) (any, *sqsError) {
			return s.onHandle(req, s.deleteLocked)
		},
		"ChangeMessageVisibility": func(req *sqsRequest) (any, *sqsError) {
			return s.onHandle(req, func(q *sqsQueue, h string) (bool, *sqsError) {
				return s.changeVisibilityLocked(q, h, req.VisibilityTimeout)
			})
		},
		"DeleteMessageBatch": func(req *sqsRequest) (any, *sqsError) {
			return s.runBatch(req, "DeleteMessageBatch", func(q *sqsQueue, e sqsBatchEntry) (bool, *sqsError) {
				return s.deleteLocked(q, e.ReceiptHandle)
			})
		},
		"ChangeMessageVisibilityBatch": func(req *sqsRequest) (any, *sqsError) {
			return s.runBatch(req, "ChangeMessageVisibilityBatch", func(q *sqsQueue, e sqsBatchEntry) (bool, *sqsError) {
				return s.changeVisibilityLocked(q, e.ReceiptHandle, e.VisibilityTimeout)
			})
		},
	}
}

// sqsWriteJSON writes a JSON 1.0 response.
func sqsWriteJSON(w http.ResponseWriter, reqID string, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"__type":"` + sqsCoralPrefix + `InternalFailure","message":"cannot encode response"}`)
	}
	w.Header().Set("Content-Type", sqsJSONContentType)
	w.Header().Set("X-Amzn-Requestid", reqID)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// sqsWriteError writes an error the way SQS does in JSON mode: __type and
// message in the body and, for query compatibility, x-amzn-query-error.
func sqsWriteError(w http.ResponseWriter, reqID string, e *sqsError) {
	if e.queryCode != "" {
		fault := "Receiver"
		if e.sender {
			fault = "Sender"
		}
		w.Header().Set("X-Amzn-Query-Error", e.queryCode+";"+fault)
	}
	sqsWriteJSON(w, reqID, e.status, struct {
		Type    string `json:"__type"`
		Message string `json:"message"`
	}{e.typ, e.message})
}

// sqsFlatten flattens a JSON request body into Call.Params.
func sqsFlatten(body []byte) map[string]string {
	params := make(map[string]string)
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return params
	}
	var walk func(key string, v any) // key is "" or ".Name.1..."
	walk = func(key string, v any) {
		switch t := v.(type) {
		case map[string]any:
			for k, vv := range t {
				walk(key+"."+k, vv)
			}
		case []any:
			for i, vv := range t {
				walk(key+"."+strconv.Itoa(i+1), vv)
			}
		case nil:
			params[strings.TrimPrefix(key, ".")] = ""
		default: // string, json.Number or bool
			params[strings.TrimPrefix(key, ".")] = fmt.Sprint(t)
		}
	}
	walk("", v)
	return params
}

// queueLocked resolves the QueueUrl member.
func (s *SQS) queueLocked(req *sqsRequest) (*sqsQueue, *sqsError) {
	if req.QueueURL == nil {
		return nil, sqsErrMissing("QueueUrl")
	}
	q := s.lookupURLLocked(*req.QueueURL)
	if q == nil {
		return nil, sqsErrQueue()
	}
	return q, nil
}

// withQueue runs fn under the lock on the queue of the QueueUrl member and
// wakes waiters if fn reports a change. With an error, out means nothing.
func (s *SQS) withQueue(req *sqsRequest, fn func(q *sqsQueue) (out any, changed bool, e *sqsError)) (out any, e *sqsError) {
	s.mu.Lock()
	q, e := s.queueLocked(req)
	changed := false
	if e == nil {
		out, changed, e = fn(q)
	}
	s.mu.Unlock()
	if changed {
		s.notify()
	}
	return out, e
}

// sqsCheckInt checks an optional integer member against lo..hi; reason is
// the service's wording after "Reason: ".
func sqsCheckInt(name string, v *int, lo, hi int, reason string) *sqsError {
	if v == nil || (*v >= lo && *v <= hi) {
		return nil
	}
	return sqsErrInvalidParam("Value %d for parameter %s is invalid. Reason: %s", *v, name, reason)
}

// sqsCheckVisibility checks a VisibilityTimeout member.
func sqsCheckVisibility(v *int) *sqsError {
	return sqsCheckInt("VisibilityTimeout", v, 0, 43200, "Must be between 0 and 43200, if provided.")
}

// sqsQueueNameRE is the queue name rule for standard queues.
var sqsQueueNameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,80}$`)

// opCreateQueue implements CreateQueue. Re-creating a queue with the same
// attributes returns its URL; different values fail with QueueNameExists.
func (s *SQS) opCreateQueue(req *sqsRequest) (any, *sqsError) {
	if req.QueueName == nil {
		return nil, sqsErrMissing("QueueName")
	}
	name := *req.QueueName
	if strings.HasSuffix(name, ".fifo") || req.Attributes["FifoQueue"] != "" {
		return nil, sqsErr("UnsupportedOperation", "The fake SQS supports standard queues only.")
	}
	if !sqsQueueNameRE.MatchString(name) {
		return nil, sqsErrInvalidParam("Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length")
	}
	ints := make(map[string]int) // the attributes of sqsIntAttributes
	others := make(map[string]string)
	var (
		dlqARN  string
		maxRecv int
	)
	for k, v := range req.Attributes {
		if limit, ok := sqsIntAttributes[k]; ok {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || n > limit {
				return nil, sqsErr("InvalidAttributeValue", "Invalid value for the parameter %s.", k)
			}
			ints[k] = n
			continue
		}
		switch k {
		case "RedrivePolicy":
			var err error
			if dlqARN, maxRecv, err = sqsParseRedrive(v); err != nil {
				return nil, sqsErr("InvalidAttributeValue", "Invalid value for the parameter RedrivePolicy. Reason: %v.", err)
			}
		case "MessageRetentionPeriod", "MaximumMessageSize", "Policy", "KmsMasterKeyId",
			"KmsDataKeyReusePeriodSeconds", "SqsManagedSseEnabled", "RedriveAllowPolicy":
			others[k] = v
		default:
			return nil, sqsErr("InvalidAttributeName", "Unknown Attribute %s.", k)
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if q, ok := s.queues[name]; ok {
		cur := s.attributesLocked(q, now)
		for k, v := range req.Attributes {
			same := cur[k] == v
			if k == "RedrivePolicy" {
				dlq := s.resolveLocked(q.deadLetter)
				same = q.maxReceiveCount == maxRecv && dlq != nil && dlq.arn == dlqARN
			}
			if !same {
				return nil, sqsErr("QueueNameExists", "A queue already exists with the same name and a different value for attribute %s", k)
			}
		}
		return map[string]string{"QueueUrl": q.url}, nil
	}
	q := s.newQueueLocked(name, now)
	if n, ok := ints["VisibilityTimeout"]; ok {
		q.visibility = time.Duration(n) * time.Second
	}
	q.receiveWait = time.Duration(ints["ReceiveMessageWaitTimeSeconds"]) * time.Second
	q.delay = ints["DelaySeconds"]
	q.maxReceiveCount, q.deadLetter = maxRecv, dlqARN // 0 and "" without a RedrivePolicy
	q.attrs = others
	return map[string]string{"QueueUrl": q.url}, nil
}

// sqsIntAttributes are the integer queue attributes the fake applies, with
// their upper limits (the lower one is 0).
var sqsIntAttributes = map[string]int{
	"VisibilityTimeout":             43200,
	"ReceiveMessageWaitTimeSeconds": sqsMaxWait,
	"DelaySeconds":                  sqsMaxDelay,
}

// sqsParseRedrive parses a RedrivePolicy attribute into the dead-letter
// queue ARN and maxReceiveCount, which may be a JSON number or a string, as
// SQS accepts both.
func sqsParseRedrive(v string) (arn string, maxReceiveCount int, err error) {
	var raw struct {
		DeadLetterTargetArn string          `json:"deadLetterTargetArn"`
		MaxReceiveCount     json.RawMessage `json:"maxReceiveCount"`
	}
	if err := json.Unmarshal([]byte(v), &raw); err != nil {
		return "", 0, fmt.Errorf("decode RedrivePolicy: %w", err)
	}
	countText := strings.Trim(string(raw.MaxReceiveCount), `"`)
	n, err := strconv.Atoi(countText)
	if err != nil || n < 1 || n > 1000 {
		return "", 0, fmt.Errorf("maxReceiveCount %q must be between 1 and 1000", countText)
	}
	if !strings.HasPrefix(raw.DeadLetterTargetArn, "arn:aws:sqs:") {
		return "", 0, fmt.Errorf("deadLetterTargetArn %q is not an SQS queue ARN", raw.DeadLetterTargetArn)
	}
	return raw.DeadLetterTargetArn, n, nil
}

// opGetQueueURL implements GetQueueUrl.
func (s *SQS) opGetQueueURL(req *sqsRequest) (any, *sqsError) {
	if req.QueueName == nil {
		return nil, sqsErrMissing("QueueName")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if req.QueueOwnerAWSAccountID != nil && *req.QueueOwnerAWSAccountID != s.account {
		return nil, sqsErrQueue()
	}
	q, ok := s.queues[*req.QueueName]
	if !ok {
		return nil, sqsErrQueue()
	}
	return map[string]string{"QueueUrl": q.url}, nil
}

// sqsQueueAttributeNames lists the attributes GetQueueAttributes knows, in
// the order "All" returns them.
var sqsQueueAttributeNames = []string{
	"QueueArn", "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
	"ApproximateNumberOfMessagesDelayed", "CreatedTimestamp", "LastModifiedTimestamp",
	"VisibilityTimeout", "MaximumMessageSize", "MessageRetentionPeriod", "DelaySeconds",
	"ReceiveMessageWaitTimeSeconds", "RedrivePolicy", "SqsManagedSseEnabled",
	"Policy", "KmsMasterKeyId", "KmsDataKeyReusePeriodSeconds", "RedriveAllowPolicy",
}

// attributesLocked computes every queue attribute that has a value.
func (s *SQS) attributesLocked(q *sqsQueue, now time.Time) map[string]string {
	var visible, inflight, delayed int
	for _, m := range q.messages {
		switch {
		case m.gone():
		case m.visible(now):
			visible++
		case m.ReceiveCount > 0:
			inflight++
		default:
			delayed++
		}
	}
	a := map[string]string{
		"QueueArn":                              q.arn,
		"ApproximateNumberOfMessages":           strconv.Itoa(visible),
		"ApproximateNumberOfMessagesNotVisible": strconv.Itoa(inflight),
		"ApproximateNumberOfMessagesDelayed":    strconv.Itoa(delayed),
		"CreatedTimestamp":                      strconv.FormatInt(q.created.Unix(), 10),
		"LastModifiedTimestamp":                 strconv.FormatInt(q.modified.Unix(), 10),
		"VisibilityTimeout":                     strconv.FormatInt(peerDurationSeconds(q.visibility), 10),
		"MaximumMessageSize":                    strconv.Itoa(sqsMaxBody),
		"MessageRetentionPeriod":                "345600",
		"DelaySeconds":                          strconv.Itoa(q.delay),
		"ReceiveMessageWaitTimeSeconds":         strconv.FormatInt(peerDurationSeconds(q.receiveWait), 10),
		"SqsManagedSseEnabled":                  "true",
	}
	if q.maxReceiveCount > 0 {
		dlq := q.deadLetter
		if d := s.resolveLocked(dlq); d != nil {
			dlq = d.arn
		}
		b, _ := json.Marshal(struct {
			DeadLetterTargetArn string `json:"deadLetterTargetArn"`
			MaxReceiveCount     int    `json:"maxReceiveCount"`
		}{dlq, q.maxReceiveCount})
		a["RedrivePolicy"] = string(b)
	}
	for k, v := range q.attrs {
		a[k] = v
	}
	return a
}

// opGetQueueAttributes implements GetQueueAttributes. Without
// AttributeNames no attributes are returned, as in SQS.
func (s *SQS) opGetQueueAttributes(req *sqsRequest) (any, *sqsError) {
	return s.withQueue(req, func(q *sqsQueue) (any, bool, *sqsError) {
		all := s.attributesLocked(q, s.now())
		out := make(map[string]string)
		for _, name := range req.AttributeNames {
			if name == "All" {
				maps.Copy(out, all)
				continue
			}
			if !slices.Contains(sqsQueueAttributeNames, name) {
				return nil, false, sqsErr("InvalidAttributeName", "Unknown Attribute %s.", name)
			}
			if v, ok := all[name]; ok {
				out[name] = v
			}
		}
		if len(out) == 0 {
			return struct{}{}, false, nil
		}
		return map[string]any{"Attributes": out}, false, nil
	})
}

// opSendMessage implements SendMessage. Message attributes are accepted but
// not stored (the fake does not compute MD5OfMessageAttributes).
func (s *SQS) opSendMessage(req *sqsRequest) (any, *sqsError) {
	if req.MessageBody == nil {
		return nil, sqsErrMissing("MessageBody")
	}
	if *req.MessageBody == "" {
		return nil, sqsErrInvalidParam("The request must contain the parameter MessageBody.")
	}
	if len(*req.MessageBody) > sqsMaxBody {
		return nil, sqsErrInvalidParam("One or more parameters are invalid. Reason: Message must be shorter than %d bytes.", sqsMaxBody)
	}
	return s.withQueue(req, func(q *sqsQueue) (any, bool, *sqsError) {
		if e := sqsCheckInt("DelaySeconds", req.DelaySeconds, 0, sqsMaxDelay,
			fmt.Sprintf("DelaySeconds must be >= 0 and <= %d.", sqsMaxDelay)); e != nil {
			return nil, false, e
		}
		delay := q.delay
		if req.DelaySeconds != nil {
			delay = *req.DelaySeconds
		}
		m := s.enqueueLocked(q, *req.MessageBody, delay)
		return map[string]string{"MessageId": m.ID, "MD5OfMessageBody": m.md5}, true, nil
	})
}

// sqsWireMessage is a message in a ReceiveMessage response.
type sqsWireMessage struct {
	MessageID     string            `json:"MessageId"`
	ReceiptHandle string            `json:"ReceiptHandle"`
	MD5OfBody     string            `json:"MD5OfBody"`
	Body          string            `json:"Body"`
	Attributes    map[string]string `json:"Attributes,omitempty"`
}

// opReceiveMessage implements ReceiveMessage, including long polling: it
// answers as soon as at least one message is visible, or with {} once the
// wait is over. It returns (nil, nil) when no answer must be written.
func (s *SQS) opReceiveMessage(ctx context.Context, req *sqsRequest) (any, *sqsError) {
	if e := cmp.Or(
		sqsCheckInt("MaxNumberOfMessages", req.MaxNumberOfMessages, 1, sqsMaxBatch, "Must be between 1 and 10, if provided."),
		sqsCheckInt("WaitTimeSeconds", req.WaitTimeSeconds, 0, sqsMaxWait, "Must be >= 0 and <= 20, if provided."),
		sqsCheckVisibility(req.VisibilityTimeout),
	); e != nil {
		return nil, e
	}
	limit := 1
	if req.MaxNumberOfMessages != nil {
		limit = *req.MaxNumberOfMessages
	}
	want := sqsWantedAttributes(req)

	s.mu.Lock()
	q, e := s.queueLocked(req)
	if e != nil {
		s.mu.Unlock()
		return nil, e
	}
	wait := q.receiveWait
	if req.WaitTimeSeconds != nil {
		wait = time.Duration(*req.WaitTimeSeconds) * time.Second
	}
	deadline := s.now().Add(wait)
	s.mu.Unlock()

	var msgs []sqsWireMessage
	err := s.await(ctx, func() (bool, time.Duration) {
		s.mu.Lock()
		var next time.Duration
		var changed bool
		msgs, next, changed = s.receiveLocked(q, limit, req.VisibilityTimeout, want)
		now := s.now()
		s.mu.Unlock()
		if changed {
			s.notify()
		}
		if len(msgs) > 0 || !now.Before(deadline) {
			return true, 0
		}
		if rem := deadline.Sub(now); next <= 0 || rem < next {
			next = rem
		}
		return false, next
	})
	if err != nil {
		return nil, nil
	}
	if len(msgs) == 0 {
		return struct{}{}, nil
	}
	return struct {
		Messages []sqsWireMessage `json:"Messages"`
	}{msgs}, nil
}

// sqsWantedAttributes returns the message system attributes a receive asks
// for, through MessageSystemAttributeNames or the legacy AttributeNames.
func sqsWantedAttributes(req *sqsRequest) map[string]bool {
	want := make(map[string]bool)
	for _, n := range append(slices.Clone(req.AttributeNames), req.MessageSystemAttributeNames...) {
		for a := range sqsSystemAttributes {
			if n == a || n == "All" {
				want[a] = true
			}
		}
	}
	return want
}

// sqsSystemAttributes renders the message system attributes the fake
// supports.
var sqsSystemAttributes = map[string]func(s *SQS, m *sqsMessage) string{
	"SenderId":                         func(s *SQS, _ *sqsMessage) string { return "AIDA" + s.account },
	"SentTimestamp":                    func(_ *SQS, m *sqsMessage) string { return peerMillis(m.SentAt) },
	"ApproximateReceiveCount":          func(_ *SQS, m *sqsMessage) string { return strconv.Itoa(m.ReceiveCount) },
	"ApproximateFirstReceiveTimestamp": func(_ *SQS, m *sqsMessage) string { return peerMillis(m.FirstReceivedAt) },
}

// receiveLocked takes up to limit visible messages (in random order unless
// InOrder), hides them and issues new receipt handles. Messages whose
// receive count reached the redrive limit are moved to the dead-letter
// queue instead. next is the time until the next hidden message becomes
// visible (0 if none).
func (s *SQS) receiveLocked(q *sqsQueue, limit int, visParam *int, want map[string]bool) (out []sqsWireMessage, next time.Duration, changed bool) {
	now := s.now()
	var candidates []*sqsMessage
	for _, m := range q.messages {
		if m.visible(now) {
			candidates = append(candidates, m)
		} else if !m.gone() {
			if d := m.VisibleAt.Sub(now); next <= 0 || d < next {
				next = d
			}
		}
	}
	if !s.inOrder {
		s.rng.Shuffle(len(candidates), func(i, j int) { candidates[i], candidates[j] = candidates[j], candidates[i] })
	}
	vis := q.visibility
	if visParam != nil {
		vis = time.Duration(*visParam) * time.Second
	}
	for _, m := range candidates {
		if len(out) == limit {
			break
		}
		if q.maxReceiveCount > 0 && m.ReceiveCount >= q.maxReceiveCount {
			if dlq := s.resolveLocked(q.deadLetter); dlq != nil && dlq != q {
				s.moveLocked(m, dlq, now)
				changed = true
				continue
			}
		}
		m.ReceiveCount++
		if m.FirstReceivedAt.IsZero() {
			m.FirstReceivedAt = now
		}
		m.lastReceive = now
		m.VisibleAt = now.Add(vis)
		m.ReceiptHandle = s.newHandleLocked(m)
		changed = true
		wm := sqsWireMessage{MessageID: m.ID, ReceiptHandle: m.ReceiptHandle, MD5OfBody: m.md5, Body: m.Body,
			Attributes: make(map[string]string)}
		for a, render := range sqsSystemAttributes {
			if want[a] {
				wm.Attributes[a] = render(s, m)
			}
		}
		out = append(out, wm)
	}
	return out, next, changed
}

// moveLocked redrives m into dlq, keeping its ID, body, sent time and
// receive count.
func (s *SQS) moveLocked(m *sqsMessage, dlq *sqsQueue, now time.Time) {
	m.MovedTo = dlq.url
	dlq.messages = append(dlq.messages, &sqsMessage{queue: dlq, md5: m.md5, SQSMessage: SQSMessage{
		ID: m.ID, Body: m.Body, SentAt: m.SentAt, FirstReceivedAt: m.FirstReceivedAt,
		ReceiveCount: m.ReceiveCount, VisibleAt: now}})
}

// newHandleLocked issues a fresh opaque receipt handle for m.
func (s *SQS) newHandleLocked(m *sqsMessage) string {
	b := make([]byte, 48)
	_, _ = crand.Read(b) // never fails (Go 1.24+)
	h := base64.StdEncoding.EncodeToString(append([]byte(m.ID+"#"), b...))
	s.handles[h] = m
	return h
}

// deleteLocked applies one DeleteMessage: only the latest receipt handle
// deletes; an older handle of the same message succeeds without deleting
// (SQS: "the request will succeed, but the message might not be deleted").
func (s *SQS) deleteLocked(q *sqsQueue, handle string) (bool, *sqsError) {
	m, ok := s.handles[handle]
	if !ok || m.queue != q {
		return false, sqsErrHandle(handle)
	}
	if m.gone() || handle != m.ReceiptHandle {
		return false, nil
	}
	m.Deleted = true
	m.DeletedAt = s.now()
	return true, nil
}

// onHandle implements DeleteMessage or ChangeMessageVisibility: fn applies
// it to the request's receipt handle.
func (s *SQS) onHandle(req *sqsRequest, fn func(q *sqsQueue, handle string) (bool, *sqsError)) (any, *sqsError) {
	if req.ReceiptHandle == nil {
		return nil, sqsErrMissing("ReceiptHandle")
	}
	return s.withQueue(req, func(q *sqsQueue) (any, bool, *sqsError) {
		changed, e := fn(q, *req.ReceiptHandle)
		return struct{}{}, changed, e
	})
}

// changeVisibilityLocked applies one ChangeMessageVisibility.
func (s *SQS) changeVisibilityLocked(q *sqsQueue, handle string, vt *int) (bool, *sqsError) {
	if vt == nil {
		return false, sqsErrMissing("VisibilityTimeout")
	}
	if e := sqsCheckVisibility(vt); e != nil {
		return false, e
	}
	m, ok := s.handles[handle]
	if !ok || m.queue != q {
		return false, sqsErrHandle(handle)
	}
	if m.gone() || handle != m.ReceiptHandle {
		return false, sqsErrInvalidParam("Value %s for parameter ReceiptHandle is invalid. Reason: Message does not exist or is not available for visibility timeout change.", handle)
	}
	now := s.now()
	if !now.Before(m.VisibleAt) { // it holds its latest handle, so it was received
		return false, sqsErr("MessageNotInflight", "The message referred to isn't in flight.")
	}
	// The 12 hours are counted from the receive that issued this handle
	// ("after 3 minutes, you call ChangeMessageVisibility with a timeout
	// of 10 minutes … a total visibility timeout of 13 minutes … to a
	// maximum of 12 hours"): a message received again starts afresh.
	until := now.Add(time.Duration(*vt) * time.Second)
	if until.After(m.lastReceive.Add(sqsMaxVisibility)) {
		return false, sqsErrInvalidParam("Value %d for parameter VisibilityTimeout is invalid. Reason: Total VisibilityTimeout for the message is beyond the limit [43200 seconds]", *vt)
	}
	m.VisibleAt = until
	return true, nil
}

// sqsBatchIDRE is the rule for batch entry IDs.
var sqsBatchIDRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,80}$`)

// sqsCheckBatch validates the entries of a batch request.
func sqsCheckBatch(op string, entries []sqsBatchEntry) *sqsError {
	if len(entries) == 0 {
		return sqsErr("EmptyBatchRequest", "There should be at least one %sRequestEntry in the request.", op)
	}
	if len(entries) > sqsMaxBatch {
		return sqsErr("TooManyEntriesInBatchRequest", "Maximum number of entries per request are 10. You have sent %d.", len(entries))
	}
	seen := make(map[string]bool)
	for _, e := range entries {
		if !sqsBatchIDRE.MatchString(e.ID) {
			return sqsErr("InvalidBatchEntryId", "A batch entry id can only contain alphanumeric characters, hyphens and underscores. It can be at most 80 letters long.")
		}
		if seen[e.ID] {
			return sqsErr("BatchEntryIdsNotDistinct", "Id %s repeated.", e.ID)
		}
		seen[e.ID] = true
	}
	return nil
}

// sqsBatchResult is a batch response.
type sqsBatchResult struct {
	Successful []map[string]string `json:"Successful"` // {"Id": ...}
	Failed     []sqsBatchFail      `json:"Failed"`
}

// sqsBatchFail is a failed batch entry; Code is the legacy Query code.
type sqsBatchFail struct {
	ID          string `json:"Id"`
	SenderFault bool   `json:"SenderFault"`
	Code        string `json:"Code"`
	Message     string `json:"Message"`
}

// runBatch applies fn to each entry and collects the batch result.
func (s *SQS) runBatch(req *sqsRequest, op string, fn func(q *sqsQueue, e sqsBatchEntry) (bool, *sqsError)) (any, *sqsError) {
	if err := sqsCheckBatch(op, req.Entries); err != nil {
		return nil, err
	}
	return s.withQueue(req, func(q *sqsQueue) (any, bool, *sqsError) {
		res := sqsBatchResult{Successful: []map[string]string{}, Failed: []sqsBatchFail{}}
		var changed bool
		for _, entry := range req.Entries {
			c, err := fn(q, entry)
			changed = changed || c
			if err != nil {
				res.Failed = append(res.Failed, sqsBatchFail{ID: entry.ID, SenderFault: err.sender, Code: err.queryCode, Message: err.message})
			} else {
				res.Successful = append(res.Successful, map[string]string{"Id": entry.ID})
			}
		}
		return res, changed, nil
	})
}

// opPurgeQueue implements PurgeQueue: every message is deleted, and a
// second purge within 60 s fails with PurgeQueueInProgress.
func (s *SQS) opPurgeQueue(req *sqsRequest) (any, *sqsError) {
	return s.withQueue(req, func(q *sqsQueue) (any, bool, *sqsError) {
		now := s.now()
		if !q.lastPurge.IsZero() && now.Sub(q.lastPurge) < sqsPurgeInterval {
			return nil, false, sqsErr("PurgeQueueInProgress", "Only one PurgeQueue operation on %s is allowed every 60 seconds.", q.name)
		}
		q.lastPurge = now
		for _, m := range q.messages {
			if !m.gone() {
				m.Deleted = true
				m.DeletedAt = now
			}
		}
		return struct{}{}, true, nil
	})
}
