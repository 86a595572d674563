package testpeers

// Fake Trino node (worker or coordinator) that speaks the node-state HTTP API
// exactly as a real Trino 476 server was observed to (docs/trino-476-api.md),
// with version switches for the older behaviours read from the released jars:
//
//   - 476+        NodeStateManager with versioned state (PR #25693 fix):
//     SHUTTING_DOWN waits for tasks; coordinator checks before any change.
//   - 474, 475    versioned state with the regression of issue #25690:
//     SHUTTING_DOWN does not wait for tasks; the node exits one grace period
//     after the PUT and the running tasks fail.
//   - 468 … 473   NodeStateManager without versions: DRAINING/DRAINED exist
//     (first shipped in 468, not 474); a PUT "DRAINING" on a coordinator
//     changes its state before it answers 500; a stale drain can complete a
//     newer drain early.
//   - < 468       GracefulShutdownHandler: only ACTIVE/INACTIVE/SHUTTING_DOWN;
//     DRAINING is an unknown enum value (400); PUT "ACTIVE" is always 400.
//
// A coordinator (TrinoOptions.Coordinator) also answers the client statement
// protocol (POST /v1/statement, then nextUri) for one query shape, the one
// scaledownd asks before it continues a launch:
//
//	SELECT state FROM system.runtime.nodes WHERE node_id = '<id>'
//
// Its system.runtime.nodes holds itself and the nodes set with SetNode or
// followed with WatchWorker (which lists a worker only some time after it
// started, as a real coordinator does).
//
// Every package-level identifier here starts with Trino/trino so that the
// other fakes of this package can never collide with it.

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"maps"
	"mime"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
)

// Trino node states as they appear on the wire (JSON strings without quotes).
const (
	TrinoActive       = "ACTIVE"
	TrinoInactive     = "INACTIVE"
	TrinoDraining     = "DRAINING"
	TrinoDrained      = "DRAINED"
	TrinoShuttingDown = "SHUTTING_DOWN"
	// TrinoExited is a pseudo state recorded in StateHistory when the
	// process ends (graceful exit or Crash). Trino never sends it.
	TrinoExited = "EXITED"
)

// Wire texts observed on Trino 476 (see docs/trino-476-api.md).
const (
	TrinoMsgNoIdentity          = "Basic authentication or X-Trino-Original-User or X-Trino-User must be sent"
	TrinoMsgPassword            = "Password not allowed for insecure authentication"
	TrinoMsgForbidden           = "Error 403 Forbidden: Management only resource"
	TrinoMsgStarting            = "Error 503 Service Unavailable: Trino server is still initializing"
	TrinoMsgNotFound            = "Error 404 Not Found: HTTP 404 Not Found"
	TrinoMetricTasks            = "trino_execution_executor_dedicated_name_ThreadPerDriverTaskExecutor_Tasks"
	TrinoMetricFailedTasks      = "trino_execution_name_SqlTaskManager_FailedTasks"
	TrinoContentTypeOpenMetrics = "application/openmetrics-text;charset=utf-8;version=1.0.0"
	TrinoMsgEmptyStatement      = "Error 400 Bad Request: SQL statement is empty"
	TrinoMsgQueryNotFound       = "Error 404 Not Found: Query not found"
)

// TrinoDefaultGracePeriod is Trino's default shutdown.grace-period.
const TrinoDefaultGracePeriod = 2 * time.Minute

// TrinoOptions configures a fake Trino node. The zero value is a Trino 476
// worker with the default 2 minute grace period: set GracePeriod in tests.
type TrinoOptions struct {
	// Version is nodeVersion.version, e.g. "476" (default), "475", "470",
	// "443-e.3" (Starburst style). The leading number selects the behaviour.
	Version string
	// Coordinator makes the node a coordinator: PUT DRAINING/SHUTTING_DOWN
	// answer 500 and /v1/info/coordinator answers 200.
	Coordinator bool
	// Environment is node.environment (default "test").
	Environment string
	// NodeID is node.id (default "worker-1", or "coordinator").
	NodeID string
	// GracePeriod is shutdown.grace-period; zero means Trino's default (2m).
	GracePeriod time.Duration
	// WriteUsers may PUT /v1/info/state (system information write);
	// default {"scaledownd"}. Everybody authenticated may read (/metrics).
	WriteUsers []string
	// StartupDelay keeps the node "starting" after (re)start: /v1/info says
	// "starting":true and management endpoints (PUT state, /metrics) answer
	// 503 "Trino server is still initializing"; public GETs answer normally.
	StartupDelay time.Duration
	// Addr is the listen address (default "127.0.0.1:0").
	Addr string
	// QueryViewDenied are users a file-based "queries" rule gives no
	// "view": on a coordinator they see only their own queries in
	// GET /v1/query and get 403 for the others' GET /v1/query/{id}.
	// Everybody else may view every query (476 with no "queries" rules).
	QueryViewDenied []string
	// QueryExecuteDenied are users a "queries" rule gives no "execute":
	// their statements fail with PERMISSION_DENIED ("Access Denied: Cannot
	// execute query") at the first GET, as on 476.
	QueryExecuteDenied []string
	// Now is the clock for StateHistory, Requests and uptime (default time.Now).
	// Timers (grace periods, tasks) always run on real time.
	Now func() time.Time
}

// TrinoRequest is one HTTP request the fake received.
type TrinoRequest struct {
	At          time.Time
	Method      string
	Path        string
	RawQuery    string
	ContentType string
	// User is the identity the request carried (X-Trino-User, or the Basic
	// user name), empty if none.
	User string
	Body string
	// Status is the answer; 0 if none was sent (hung request or node died).
	Status int
}

// TrinoStateChange is one entry of the node's state history.
type TrinoStateChange struct {
	State string
	At    time.Time
}

// trinoGen is the behaviour generation selected by the version.
type trinoGen int

const (
	trinoGenLegacy      trinoGen = iota // < 468: GracefulShutdownHandler
	trinoGenUnversioned                 // 468 … 473: NodeStateManager, no versions
	trinoGenRegression                  // 474, 475: versioned, SHUTTING_DOWN does not wait
	trinoGenCurrent                     // 476+
)

func trinoGenFor(version string) (trinoGen, int) {
	n, _ := strconv.Atoi(version[:len(version)-len(strings.TrimLeft(version, "0123456789"))])
	switch {
	case n == 0 || n >= 476: // 0: unparsable, behave like the newest known
		return trinoGenCurrent, n
	case n < 468:
		return trinoGenLegacy, n
	case n < 474:
		return trinoGenUnversioned, n
	}
	return trinoGenRegression, n
}

type trinoTaskState int

const (
	trinoTaskRunning trinoTaskState = iota
	trinoTaskFinished
	trinoTaskFailed
)

type trinoTask struct {
	id    string // {queryId}.{stage}.{partition}.{attempt}
	state trinoTaskState
}

// trinoProc is one incarnation of the Trino process.
type trinoProc struct {
	srv       *http.Server
	exited    chan struct{}
	dead      bool
	startedAt time.Time // real time, for StartupDelay
	bootAt    time.Time // Now(), for uptime

	state string // < 468: only ACTIVE, then SHUTTING_DOWN
	ver   int64  // version of the current VersionedState (474+)

	created, failed int // per-process counters (/metrics)

	// single-threaded executors of NodeStateManager: drain-handler and
	// shutdown-handler. Jobs run one at a time per executor.
	drainExec, shutdownExec sync.Mutex
}

// TrinoWorker is a fake Trino node. Safe for concurrent use.
type TrinoWorker struct {
	opts  TrinoOptions
	gen   trinoGen
	major int
	grace time.Duration
	now   func() time.Time
	addr  string

	mu       sync.Mutex
	proc     *trinoProc
	verSeq   int64
	tasks    map[string]*trinoTask
	taskSeq  int
	failed   int // cumulative over all incarnations
	changed  chan struct{}
	unhang   chan struct{} // non-nil while hanging; closed by Hang(false)
	requests []TrinoRequest
	history  []TrinoStateChange
	closed   bool

	// coordinator: system.runtime.nodes and the statement protocol
	nodes    map[string]string // node id → state (lowercase), besides itself
	nodeHist []TrinoNodeChange
	queries  map[string]*trinoQuery // statement-protocol and StartQuery queries
	querySeq int
}

// NewTrino starts a fake Trino node on loopback. It panics if it cannot listen.
func NewTrino(opts TrinoOptions) *TrinoWorker {
	opts.Version = cmp.Or(opts.Version, "476")
	opts.Environment = cmp.Or(opts.Environment, "test")
	if opts.NodeID == "" {
		opts.NodeID = "worker-1"
		if opts.Coordinator {
			opts.NodeID = "coordinator"
		}
	}
	if opts.WriteUsers == nil {
		opts.WriteUsers = []string{"scaledownd"}
	}
	opts.Addr = cmp.Or(opts.Addr, "127.0.0.1:0")
	if opts.Now == nil {
		opts.Now = time.Now
	}
	w := &TrinoWorker{
		opts:    opts,
		grace:   cmp.Or(max(opts.GracePeriod, 0), TrinoDefaultGracePeriod),
		now:     opts.Now,
		tasks:   map[string]*trinoTask{},
		nodes:   map[string]string{},
		queries: map[string]*trinoQuery{},
		changed: make(chan struct{}),
	}
	w.gen, w.major = trinoGenFor(opts.Version)
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		panic(fmt.Sprintf("testpeers: trino: listen %s: %v", opts.Addr, err))
	}
	w.addr = ln.Addr().String()
	w.mu.Lock()
	w.startLocked(ln)
	w.mu.Unlock()
	return w
}

func (w *TrinoWorker) startLocked(ln net.Listener) {
	p := &trinoProc{
		exited:    make(chan struct{}),
		startedAt: time.Now(),
		bootAt:    w.now(),
		state:     TrinoActive,
	}
	w.verSeq++
	p.ver = w.verSeq
	p.srv = &http.Server{
		Handler:           http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) { w.serve(p, rw, r) }),
		ReadHeaderTimeout: 10 * time.Second,
	}
	w.proc = p
	w.history = append(w.history, TrinoStateChange{State: TrinoActive, At: p.bootAt})
	w.broadcastLocked()
	go func() { _ = p.srv.Serve(ln) }()
}

// URL is the node's base URL, e.g. http://127.0.0.1:41234.
func (w *TrinoWorker) URL() string { return "http://" + w.addr }

// Addr is the node's host:port.
func (w *TrinoWorker) Addr() string { return w.addr }

// Close stops the node for good (like Crash, without recording history).
func (w *TrinoWorker) Close() {
	w.mu.Lock()
	w.closed = true
	p := w.proc
	w.mu.Unlock()
	w.kill(p, false, "")
	w.Hang(false)
}

// State is the node's current state (what GET /v1/info/state would say),
// or TrinoExited if the process has ended.
func (w *TrinoWorker) State() string { return trinoLocked(w, w.stateLocked) }

func (w *TrinoWorker) stateLocked() string {
	if w.proc.dead {
		return TrinoExited
	}
	return w.proc.state
}

// Exited is closed when the current process ends (graceful exit, Crash or
// Close): from then on connections are refused. After Restart it returns
// the new process's channel.
func (w *TrinoWorker) Exited() <-chan struct{} {
	return trinoLocked(w, func() <-chan struct{} { return w.proc.exited })
}

// AddTask adds a task that runs on the node and finishes after d. On a node
// whose process has ended the task fails at once.
func (w *TrinoWorker) AddTask(d time.Duration) {
	time.AfterFunc(d, w.AddBlockedTask())
}

// AddBlockedTask adds a task that runs until finish is called (idempotent).
func (w *TrinoWorker) AddBlockedTask() (finish func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.taskSeq++
	qid := fmt.Sprintf("%s_%05d_fake%d", w.now().UTC().Format("20060102_150405"), w.taskSeq, w.major%100)
	_, finish = w.addTaskLocked(qid + ".1.0.0")
	return finish
}

// addTaskLocked adds a running task (failed at once on a dead process).
func (w *TrinoWorker) addTaskLocked(taskID string) (*trinoTask, func()) {
	t := &trinoTask{id: taskID, state: trinoTaskRunning}
	w.tasks[t.id] = t
	if w.proc.dead {
		t.state = trinoTaskFailed
		w.failed++
	} else {
		w.proc.created++
	}
	w.broadcastLocked()
	return t, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if t.state == trinoTaskRunning {
			t.state = trinoTaskFinished
			w.broadcastLocked()
		}
	}
}

// ActiveTasks is the number of running tasks.
func (w *TrinoWorker) ActiveTasks() int { return trinoLocked(w, w.runningLocked) }

// FailedTasks is the number of tasks failed because the process ended
// (graceful exit with tasks left, Crash, Close), over all incarnations.
func (w *TrinoWorker) FailedTasks() int { return trinoLocked(w, func() int { return w.failed }) }

// Crash kills the process abruptly: the listener and every connection are
// closed at once and running tasks fail.
func (w *TrinoWorker) Crash() {
	w.kill(trinoLocked(w, func() *trinoProc { return w.proc }), false, TrinoExited)
}

// Restart starts a new process on the same address (after Crash or a
// graceful exit; a running process is crashed first). It comes back ACTIVE,
// starting for StartupDelay.
func (w *TrinoWorker) Restart() {
	w.Crash()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	ln, err := net.Listen("tcp", w.addr)
	for i := 1; err != nil && i < 100; i++ {
		time.Sleep(20 * time.Millisecond)
		ln, err = net.Listen("tcp", w.addr)
	}
	if err != nil {
		panic(fmt.Sprintf("testpeers: trino: relisten %s: %v", w.addr, err))
	}
	w.startLocked(ln)
}

// Hang makes the node accept connections and requests but never answer
// until the request's context ends (client gave up), or until Hang(false),
// when the pending requests are served normally.
func (w *TrinoWorker) Hang(on bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case on && w.unhang == nil:
		w.unhang = make(chan struct{})
	case !on && w.unhang != nil:
		close(w.unhang)
		w.unhang = nil
	}
}

// Requests returns a copy of the requests received so far.
func (w *TrinoWorker) Requests() []TrinoRequest {
	return trinoLocked(w, func() []TrinoRequest { return slices.Clone(w.requests) })
}

// StateHistory returns the states the node went through, starting with
// ACTIVE at (re)start; TrinoExited marks the end of a process.
func (w *TrinoWorker) StateHistory() []TrinoStateChange {
	return trinoLocked(w, func() []TrinoStateChange { return slices.Clone(w.history) })
}

// WaitState blocks until the node reaches state (or TrinoExited) or ctx ends.
func (w *TrinoWorker) WaitState(ctx context.Context, state string) error {
	for {
		w.mu.Lock()
		cur, ch := w.stateLocked(), w.changed
		w.mu.Unlock()
		if cur == state {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("trino fake: state %s, waiting for %s: %w", cur, state, ctx.Err())
		}
	}
}

// ---------------------------------------------------------------------------
// state machine

// trinoLocked returns get() read under w.mu.
func trinoLocked[T any](w *TrinoWorker, get func() T) T {
	w.mu.Lock()
	defer w.mu.Unlock()
	return get()
}

func (w *TrinoWorker) broadcastLocked() {
	close(w.changed)
	w.changed = make(chan struct{})
}

func (w *TrinoWorker) runningLocked() int {
	n := 0
	for _, t := range w.tasks {
		if t.state == trinoTaskRunning {
			n++
		}
	}
	return n
}

func (w *TrinoWorker) setStateLocked(p *trinoProc, state string) {
	w.verSeq++
	p.ver = w.verSeq
	if p.state != state {
		w.history = append(w.history, TrinoStateChange{State: state, At: w.now()})
	}
	p.state = state
	w.broadcastLocked()
}

// stillLocked reports whether the job's expected VersionedState (version
// ver) is still current: by version from 474 on, by state name before.
func (w *TrinoWorker) stillLocked(p *trinoProc, ver int64) bool {
	if p.dead {
		return false
	}
	switch w.gen {
	case trinoGenUnversioned:
		return p.state == TrinoShuttingDown || p.state == TrinoDraining // isShuttingDownOrDraining
	case trinoGenLegacy:
		return true
	}
	return p.ver == ver
}

// trinoTransitionError is an outcome of a PUT other than 200.
type trinoTransitionError struct {
	status int
	body   string
}

// transitionLocked mirrors NodeStateManager.transitionState (or the legacy
// ServerInfoResource.updateState) for the node's generation.
func (w *TrinoWorker) transitionLocked(p *trinoProc, state string) *trinoTransitionError {
	invalid := &trinoTransitionError{400, "Error 400 Bad Request: Invalid state transition to " + state}
	if w.gen == trinoGenLegacy {
		switch {
		case state != TrinoShuttingDown: // ACTIVE, INACTIVE: always 400, even when ACTIVE
			return invalid
		case w.opts.Coordinator:
			return trinoUnsupported("Cannot shutdown coordinator", "GracefulShutdownHandler.requestShutdown(GracefulShutdownHandler.java:89)")
		case p.state != TrinoShuttingDown:
			w.setStateLocked(p, TrinoShuttingDown)
			w.schedule(p, &p.shutdownExec, w.grace, func() {
				w.waitTasks(p, 0)
				w.kill(p, true, TrinoExited)
			})
		}
		return nil
	}
	if p.state == state {
		return nil
	}
	switch state {
	case TrinoActive:
		if p.state != TrinoDraining && p.state != TrinoDrained {
			return invalid
		}
		w.setStateLocked(p, TrinoActive)
	case TrinoShuttingDown:
		switch {
		case w.gen == trinoGenCurrent && w.opts.Coordinator:
			return trinoUnsupported("Cannot shutdown coordinator", "NodeStateManager.transitionState(NodeStateManager.java:220)")
		case w.opts.Coordinator && p.state == TrinoDrained: // requestTerminate check (< 476)
			return trinoUnsupported("Cannot shutdown coordinator", "NodeStateManager.requestTerminate(NodeStateManager.java)")
		case w.opts.Coordinator: // requestGracefulShutdown check before set (< 476)
			return trinoUnsupported("Cannot shutdown coordinator", "NodeStateManager.requestGracefulShutdown(NodeStateManager.java)")
		case p.state == TrinoDrained:
			w.setStateLocked(p, TrinoShuttingDown)
			w.schedule(p, &p.shutdownExec, 0, func() { w.kill(p, true, TrinoExited) })
		default:
			// 474/475 capture the expected version before the transition
			// (issue #25690), so the shutdown job never waits for tasks.
			expect := p.ver
			w.setStateLocked(p, TrinoShuttingDown)
			if w.gen != trinoGenRegression {
				expect = p.ver
			}
			w.schedule(p, &p.shutdownExec, w.grace, func() {
				w.waitTasks(p, expect)
				w.kill(p, true, TrinoExited)
			})
		}
	case TrinoDraining:
		switch {
		case w.gen == trinoGenCurrent && w.opts.Coordinator:
			return trinoUnsupported("Cannot drain coordinator", "NodeStateManager.transitionState(NodeStateManager.java:233)")
		case p.state != TrinoActive:
			return invalid
		}
		w.setStateLocked(p, TrinoDraining)
		if w.opts.Coordinator { // requestDrain checks after the CAS (< 476): state stays DRAINING
			return trinoUnsupported("Cannot drain coordinator", "NodeStateManager.requestDrain(NodeStateManager.java)")
		}
		expect := p.ver
		w.schedule(p, &p.drainExec, w.grace, func() { w.drain(p, expect) })
	default:
		return invalid // DRAINED, INACTIVE
	}
	return nil
}

func trinoUnsupported(msg, frame string) *trinoTransitionError {
	return &trinoTransitionError{500, "java.lang.UnsupportedOperationException: " + msg +
		"\n\tat io.trino.server." + frame +
		"\n\tat io.trino.server.ServerInfoResource.updateState(ServerInfoResource.java:83)" + trinoStackTail}
}

// schedule runs job after delay on a single-threaded executor of process p.
func (w *TrinoWorker) schedule(p *trinoProc, exec *sync.Mutex, delay time.Duration, job func()) {
	go func() {
		if !w.sleep(p, delay) {
			return
		}
		exec.Lock()
		defer exec.Unlock()
		if !trinoLocked(w, func() bool { return p.dead }) {
			job()
		}
	}()
}

// sleep waits d (uninterruptibly, like Trino) unless the process dies.
func (w *TrinoWorker) sleep(p *trinoProc, d time.Duration) bool {
	select {
	case <-time.After(d):
		return true
	case <-p.exited:
		return false
	}
}

// waitTasks mirrors waitActiveTasksToFinish: while the expected state is
// current, wait until no task is running (re-checked after every change, so
// tasks added meanwhile are waited for too), then sleep one grace period if
// the state is still the expected one.
func (w *TrinoWorker) waitTasks(p *trinoProc, ver int64) {
	for {
		w.mu.Lock()
		still, ch := w.stillLocked(p, ver), w.changed
		busy := still && w.runningLocked() > 0
		w.mu.Unlock()
		if !busy {
			if still {
				w.sleep(p, w.grace)
			}
			return
		}
		select {
		case <-ch:
		case <-p.exited:
			return
		}
	}
}

// drain waits for the tasks, then moves DRAINING to DRAINED if the drain is
// still current (otherwise it "will not transition to DRAINED").
func (w *TrinoWorker) drain(p *trinoProc, ver int64) {
	current := func() bool {
		return !p.dead && p.state == TrinoDraining && (w.gen == trinoGenUnversioned || p.ver == ver)
	}
	if trinoLocked(w, current) {
		w.waitTasks(p, ver)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if current() {
		w.setStateLocked(p, TrinoDrained)
	}
}

// kill ends process p, recording record in the history unless it is "".
// graceful is the end of a graceful shutdown: the lifecycle stop closes the
// HTTP server and fails the tasks still running, then the JVM exits 0.
// (The real JVM lingers ~5 s more after failing tasks; the port is closed
// from the start of the stop, which is what clients observe.)
func (w *TrinoWorker) kill(p *trinoProc, graceful bool, record string) {
	w.mu.Lock()
	if p.dead {
		w.mu.Unlock()
		return
	}
	p.dead = true
	for _, t := range w.tasks {
		if t.state == trinoTaskRunning {
			t.state = trinoTaskFailed
			w.failed++
			p.failed++
		}
	}
	if record != "" {
		w.history = append(w.history, TrinoStateChange{State: record, At: w.now()})
	}
	w.broadcastLocked()
	w.mu.Unlock()
	if graceful {
		// Let in-flight answers (e.g. the 200 to the PUT that triggered an
		// immediate terminate) go out; new connections are refused at once.
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		_ = p.srv.Shutdown(ctx)
		cancel()
	}
	_ = p.srv.Close()
	close(p.exited)
	w.mu.Lock()
	w.broadcastLocked()
	w.mu.Unlock()
}

// ---------------------------------------------------------------------------
// HTTP

type trinoRecorder struct {
	http.ResponseWriter
	status int
}

func (r *trinoRecorder) WriteHeader(code int) {
	r.status = cmp.Or(r.status, code)
	r.ResponseWriter.WriteHeader(code)
}

func (r *trinoRecorder) Write(b []byte) (int, error) {
	r.status = cmp.Or(r.status, http.StatusOK)
	return r.ResponseWriter.Write(b)
}

func (w *TrinoWorker) serve(p *trinoProc, rw http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	rec := TrinoRequest{
		At:          w.now(),
		Method:      r.Method,
		Path:        r.URL.Path,
		RawQuery:    r.URL.RawQuery,
		ContentType: r.Header.Get("Content-Type"),
		User:        trinoRequestUser(r),
		Body:        string(body),
	}
	out := &trinoRecorder{ResponseWriter: rw}
	defer func() {
		rec.Status = out.status
		w.mu.Lock()
		w.requests = append(w.requests, rec)
		w.mu.Unlock()
	}()

	if unhang := trinoLocked(w, func() chan struct{} { return w.unhang }); unhang != nil {
		select {
		case <-r.Context().Done():
			return
		case <-p.exited:
			return
		case <-unhang:
		}
	}
	w.route(p, out, r, body)
}

// trinoAllow is the Allow header of each node endpoint's 405.
var trinoAllow = map[string]string{"/v1/info": "GET,OPTIONS", "/v1/info/state": "GET,OPTIONS,PUT",
	"/v1/info/coordinator": "GET,OPTIONS", "/v1/status": "GET,HEAD,OPTIONS", "/metrics": "GET,OPTIONS"}

func (w *TrinoWorker) route(p *trinoProc, rw http.ResponseWriter, r *http.Request, body []byte) {
	path := r.URL.Path
	switch allow, known := trinoAllow[path]; {
	case w.opts.Coordinator && strings.HasPrefix(path+"/", "/v1/statement/"):
		w.statement(rw, r, body)
	case w.opts.Coordinator && strings.HasPrefix(path+"/", "/v1/query/"):
		w.queryResource(rw, r)
	case !known:
		trinoText(rw, http.StatusNotFound, "text/plain", TrinoMsgNotFound)
	case path == "/v1/info/state" && r.Method == http.MethodPut:
		w.putState(p, rw, r, body)
	case r.Method != http.MethodGet && r.Method != http.MethodHead:
		trinoMethodNotAllowed(rw, allow)
	case path == "/v1/info":
		trinoJSON(rw, trinoInfo{NodeVersion: trinoNodeVersion{w.opts.Version}, Environment: w.opts.Environment,
			Coordinator: w.opts.Coordinator, Starting: w.starting(p), Uptime: w.uptime(p)})
	case path == "/v1/info/state":
		trinoJSON(rw, trinoLocked(w, func() string { return p.state }))
	case path == "/v1/info/coordinator" && w.opts.Coordinator:
		rw.WriteHeader(http.StatusOK)
	case path == "/v1/info/coordinator":
		trinoText(rw, http.StatusNotFound, "text/plain", TrinoMsgNotFound)
	case path == "/v1/status":
		trinoJSON(rw, w.status(p))
	default: // /metrics
		if _, ok := w.authenticate(rw, r); !ok {
			return
		}
		if w.starting(p) {
			trinoText(rw, http.StatusServiceUnavailable, "text/plain", TrinoMsgStarting)
			return
		}
		// MANAGEMENT_READ: every authenticated user may read.
		rw.Header().Set("Content-Type", TrinoContentTypeOpenMetrics)
		_, _ = io.WriteString(rw, w.metrics(p, r.URL.Query()["name[]"]))
	}
}

// starting and uptime need no lock: they read only what is fixed when p starts.
func (w *TrinoWorker) starting(p *trinoProc) bool {
	return w.opts.StartupDelay > 0 && time.Since(p.startedAt) < w.opts.StartupDelay
}

func (w *TrinoWorker) uptime(p *trinoProc) string {
	return TrinoDuration(w.now().Sub(p.bootAt))
}

// putState handles PUT /v1/info/state in the order observed on Trino 476:
// media type (a present but unusable Content-Type: 400 or 415) →
// authentication (401) → starting (503) → authorization (403) → body
// (415 without Content-Type, 400/500 for bad JSON) → transition (200/400/500).
func (w *TrinoWorker) putState(p *trinoProc, rw http.ResponseWriter, r *http.Request, body []byte) {
	// Without Content-Type JAX-RS matches and the body reader fails later;
	// */* is read as text by a String-constructor reader.
	cts, hasCT := r.Header["Content-Type"]
	wildcard := false
	if hasCT {
		mt, _, err := mime.ParseMediaType(cts[0])
		switch wildcard = mt == "*/*"; {
		case err != nil || !strings.Contains(mt, "/"): // "", "garbage": unparsable
			rw.WriteHeader(http.StatusBadRequest)
			return
		case !wildcard && mt != "application/json":
			rw.WriteHeader(http.StatusUnsupportedMediaType)
			return
		}
	}
	user, ok := w.authenticate(rw, r)
	if !ok {
		return
	}
	if w.starting(p) {
		trinoText(rw, http.StatusServiceUnavailable, "text/plain", TrinoMsgStarting)
		return
	}
	if !slices.Contains(w.opts.WriteUsers, user) {
		trinoText(rw, http.StatusForbidden, "text/plain", TrinoMsgForbidden)
		return
	}
	if empty := len(bytes.TrimSpace(body)) == 0; !hasCT && !empty {
		rw.WriteHeader(http.StatusUnsupportedMediaType)
		return
	} else if wildcard && !empty {
		trinoText(rw, http.StatusInternalServerError, "text/plain", "java.lang.IllegalArgumentException: No enum constant io.trino.metadata.NodeState."+string(body)+
			"\n\tat java.base/java.lang.Enum.valueOf(Enum.java:293)"+trinoStackTail)
		return
	}
	state, err := w.parseState(body)
	if err == nil {
		err = trinoLocked(w, func() *trinoTransitionError {
			if p.dead { // the process went away under us
				panic(http.ErrAbortHandler)
			}
			return w.transitionLocked(p, state)
		})
	}
	if err != nil {
		trinoText(rw, err.status, "text/plain", err.body)
		return
	}
	rw.WriteHeader(http.StatusOK)
}

// authenticate is Trino's insecure authenticator plus the impersonation
// check: X-Trino-User / X-Trino-Original-User or Basic with an empty
// password, the identity trinoRequestUser reads. It writes the error
// answer itself.
func (w *TrinoWorker) authenticate(rw http.ResponseWriter, r *http.Request) (string, bool) {
	u, pw, basic := trinoBasic(r)
	header, user := r.Header.Get("X-Trino-User"), trinoRequestUser(r)
	if basic && pw == "" && u != "" && header != "" && header != u { // impersonation is denied
		trinoText(rw, http.StatusForbidden, "text/plain", TrinoMsgForbidden)
		return "", false
	}
	if user == "" || basic && pw != "" {
		msg := TrinoMsgNoIdentity
		if basic && pw != "" {
			msg = TrinoMsgPassword
		}
		rw.Header().Set("WWW-Authenticate", `Basic realm="Trino"`)
		trinoText(rw, http.StatusUnauthorized, "text/plain;charset=utf-8", msg)
		return "", false
	}
	return user, true
}

func trinoBasic(r *http.Request) (user, password string, ok bool) {
	scheme, cred, found := strings.Cut(r.Header.Get("Authorization"), " ")
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
	if !found || !strings.EqualFold(scheme, "basic") || err != nil {
		return "", "", false
	}
	return strings.Cut(string(raw), ":")
}

func trinoRequestUser(r *http.Request) string {
	if u, _, ok := trinoBasic(r); ok && u != "" {
		return u
	}
	if u := r.Header.Get("X-Trino-User"); u != "" {
		return u
	}
	return r.Header.Get("X-Trino-Original-User")
}

// enumValues are the NodeState names in the order Jackson lists them in
// its "not one of the values accepted" message (observed on 470 and 476;
// computed for the 3-value enum), and in declaration (ordinal) order.
func (w *TrinoWorker) enumValues() (listed, ordinal []string) {
	if w.gen == trinoGenLegacy {
		return []string{TrinoInactive, TrinoActive, TrinoShuttingDown},
			[]string{TrinoActive, TrinoInactive, TrinoShuttingDown}
	}
	return []string{TrinoDraining, TrinoInactive, TrinoActive, TrinoShuttingDown, TrinoDrained},
		[]string{TrinoActive, TrinoInactive, TrinoDraining, TrinoDrained, TrinoShuttingDown}
}

const trinoJacksonSource = "\n at [Source: (org.glassfish.jersey.message.internal.ReaderInterceptorExecutor$UnCloseableInputStream); line: 1, column: %d]" +
	"\n\tat io.airlift.jaxrs.JsonMapper.readFrom(JsonMapper.java:55)" +
	"\n\tat org.glassfish.jersey.message.internal.ReaderInterceptorExecutor$TerminalReaderInterceptor.invokeReadFrom(ReaderInterceptorExecutor.java:236)" +
	"\n\tat org.glassfish.jersey.message.internal.ReaderInterceptorExecutor$TerminalReaderInterceptor.aroundReadFrom(ReaderInterceptorExecutor.java:215)" +
	"\n\tat org.glassfish.jersey.message.internal.ReaderInterceptorExecutor.proceed(ReaderInterceptorExecutor.java:135)\n"

const trinoStackTail = "\n\tat java.base/jdk.internal.reflect.DirectMethodHandleAccessor.invoke(DirectMethodHandleAccessor.java:104)" +
	"\n\tat java.base/java.lang.reflect.Method.invoke(Method.java:565)" +
	"\n\tat org.glassfish.jersey.server.model.internal.ResourceMethodInvocationHandlerFactory.lambda$static$0(ResourceMethodInvocationHandlerFactory.java:52)\n"

// parseState mimics Jackson reading a NodeState from the body.
func (w *TrinoWorker) parseState(body []byte) (string, *trinoTransitionError) {
	// jsonErr is Jackson's error for the token at (a tail of body) plus end.
	jsonErr := func(kind string, at []byte, end int, msg string) *trinoTransitionError {
		return &trinoTransitionError{400, "io.airlift.jaxrs.JsonParsingException: com.fasterxml.jackson." + kind + ": " + msg +
			fmt.Sprintf(trinoJacksonSource, len(body)-len(at)+1+end)}
	}
	s := bytes.TrimLeftFunc(body, unicode.IsSpace)
	cannot := func(kind, from string) *trinoTransitionError {
		return jsonErr("databind.exc."+kind, s, 0, "Cannot deserialize value of type `io.trino.metadata.NodeState` from "+from)
	}
	unrecognized := func(tok []byte) *trinoTransitionError {
		end := max(trinoTokenEnd(tok), 1)
		return jsonErr("core.JsonParseException", tok, end, fmt.Sprintf("Unrecognized token '%s': was expecting (JSON String, Number, Array, Object or token 'null', 'true' or 'false')", tok[:end]))
	}
	listed, ordinal := w.enumValues()
	if len(s) == 0 || bytes.HasPrefix(s, []byte("null")) && trinoTokenEnd(s) == 4 {
		return "", &trinoTransitionError{500, "java.lang.NullPointerException: state is null" +
			"\n\tat java.base/java.util.Objects.requireNonNull(Objects.java:246)" +
			"\n\tat io.trino.server.ServerInfoResource.updateState(ServerInfoResource.java:80)" + trinoStackTail}
	}
	var state string
	var rest []byte
	switch c, end := s[0], trinoTokenEnd(s); {
	case c == '"':
		dec := json.NewDecoder(bytes.NewReader(s))
		if err := dec.Decode(&state); err != nil {
			return "", jsonErr("core.JsonParseException", s, len(s), "Unexpected end-of-input: was expecting closing quote for a string value")
		}
		rest = s[dec.InputOffset():]
		if !slices.Contains(ordinal, state) {
			return "", cannot("InvalidFormatException", fmt.Sprintf("String %q: not one of the values accepted for Enum class: [%s]", state, strings.Join(listed, ", ")))
		}
	case c == '[':
		return "", cannot("MismatchedInputException", "Array value (token `JsonToken.START_ARRAY`)")
	case c == '{':
		return "", cannot("MismatchedInputException", "Object value (token `JsonToken.START_OBJECT`)")
	case c == '-' || c >= '0' && c <= '9':
		n, err := strconv.Atoi(string(s[:end]))
		if err != nil || n < 0 || n >= len(ordinal) {
			return "", cannot("InvalidFormatException", fmt.Sprintf("number %s: index value outside legal index range [0..%d]", s[:end], len(ordinal)-1))
		}
		state, rest = ordinal[n], s[end:]
	case string(s[:end]) == "true" || string(s[:end]) == "false":
		return "", cannot("MismatchedInputException", "Boolean value (token `JsonToken.VALUE_"+strings.ToUpper(string(s[:end]))+"`)")
	default:
		return "", unrecognized(s)
	}
	if trailing := bytes.TrimLeftFunc(rest, unicode.IsSpace); len(trailing) > 0 {
		return "", unrecognized(trailing)
	}
	return state, nil
}

func trinoTokenEnd(s []byte) int {
	for i, c := range s {
		if !(c == '_' || c == '-' || c == '.' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return i
		}
	}
	return len(s)
}

type trinoNodeVersion struct {
	Version string `json:"version"`
}

// trinoInfo is GET /v1/info.
type trinoInfo struct {
	NodeVersion trinoNodeVersion `json:"nodeVersion"`
	Environment string           `json:"environment"`
	Coordinator bool             `json:"coordinator"`
	Starting    bool             `json:"starting"`
	Uptime      string           `json:"uptime"`
}

type trinoMemoryPool struct {
	MaxBytes                         int64            `json:"maxBytes"`
	ReservedBytes                    int64            `json:"reservedBytes"`
	ReservedRevocableBytes           int64            `json:"reservedRevocableBytes"`
	QueryMemoryReservations          map[string]int64 `json:"queryMemoryReservations"`
	QueryMemoryAllocations           map[string][]any `json:"queryMemoryAllocations"`
	QueryMemoryRevocableReservations map[string]int64 `json:"queryMemoryRevocableReservations"`
	TaskMemoryReservations           map[string]int64 `json:"taskMemoryReservations"`
	TaskMemoryRevocableReservations  map[string]int64 `json:"taskMemoryRevocableReservations"`
	FreeBytes                        int64            `json:"freeBytes"`
}

// trinoStatus is GET /v1/status.
type trinoStatus struct {
	NodeID          string           `json:"nodeId"`
	NodeVersion     trinoNodeVersion `json:"nodeVersion"`
	Environment     string           `json:"environment"`
	Coordinator     bool             `json:"coordinator"`
	Uptime          string           `json:"uptime"`
	ExternalAddress string           `json:"externalAddress"`
	InternalAddress string           `json:"internalAddress"`
	MemoryInfo      struct {
		AvailableProcessors int             `json:"availableProcessors"`
		Pool                trinoMemoryPool `json:"pool"`
	} `json:"memoryInfo"`
	Processors     int     `json:"processors"`
	ProcessCPULoad float64 `json:"processCpuLoad"`
	SystemCPULoad  float64 `json:"systemCpuLoad"`
	HeapUsed       int64   `json:"heapUsed"`
	HeapAvailable  int64   `json:"heapAvailable"`
	NonHeapUsed    int64   `json:"nonHeapUsed"`
}

// status is GET /v1/status: each running task holds 1 MiB of the pool.
func (w *TrinoWorker) status(p *trinoProc) trinoStatus {
	const maxBytes, perTask = 751619277, 1 << 20
	w.mu.Lock()
	defer w.mu.Unlock()
	st := trinoStatus{NodeID: w.opts.NodeID, NodeVersion: trinoNodeVersion{w.opts.Version}, Environment: w.opts.Environment,
		Coordinator: w.opts.Coordinator, Uptime: w.uptime(p), ExternalAddress: "127.0.0.1", InternalAddress: "127.0.0.1",
		Processors: 2, HeapUsed: 153419776, HeapAvailable: 1073741824, NonHeapUsed: 127089896}
	st.MemoryInfo.AvailableProcessors = 2
	pool := &st.MemoryInfo.Pool
	*pool = trinoMemoryPool{MaxBytes: maxBytes, QueryMemoryReservations: map[string]int64{}, QueryMemoryAllocations: map[string][]any{},
		QueryMemoryRevocableReservations: map[string]int64{}, TaskMemoryReservations: map[string]int64{}, TaskMemoryRevocableReservations: map[string]int64{}}
	for _, t := range w.tasks {
		if t.state == trinoTaskRunning {
			pool.ReservedBytes += perTask
			pool.TaskMemoryReservations[t.id] = perTask
			qid, _, _ := strings.Cut(t.id, ".")
			pool.QueryMemoryReservations[qid] += perTask
		}
	}
	pool.FreeBytes = maxBytes - pool.ReservedBytes
	return st
}

// metrics renders the OpenMetrics subset that matters for draining, in the
// format airlift's /metrics uses (gauges as doubles, counters as integers).
func (w *TrinoWorker) metrics(p *trinoProc, names []string) string {
	w.mu.Lock()
	running, tracked := w.runningLocked(), len(w.tasks)
	created, failed := p.created, p.failed
	w.mu.Unlock()
	type metric struct{ name, typ, help, value string }
	gauge := func(n int) string { return strconv.Itoa(n) + ".0" }
	var ms []metric
	if w.major == 0 || w.major >= 467 { // ThreadPerDriverTaskExecutor exports Tasks since 467
		ms = append(ms,
			metric{TrinoMetricTasks, "gauge", "", gauge(running)},
			metric{"trino_execution_executor_dedicated_name_ThreadPerDriverTaskExecutor_TotalRunningSplits", "gauge", "", gauge(running)},
		)
	}
	ms = append(ms,
		metric{"trino_execution_name_SqlTaskManager_TrackedTasksCount", "gauge", "Tracked tasks count", gauge(tracked)},
		metric{TrinoMetricFailedTasks, "counter", "Failed tasks counter", strconv.Itoa(failed)},
		metric{"trino_execution_name_SqlTaskManager_CreatedTasks", "counter", "Created tasks counter", strconv.Itoa(created)},
	)
	var b strings.Builder
	for _, m := range ms {
		if len(names) > 0 && !slices.Contains(names, m.name) {
			continue
		}
		fmt.Fprintf(&b, "# TYPE %s %s\n", m.name, m.typ)
		if m.help != "" {
			fmt.Fprintf(&b, "# HELP %s %s\n", m.name, m.help)
		}
		fmt.Fprintf(&b, "%s %s\n", m.name, m.value)
	}
	b.WriteString("# EOF\n")
	return b.String()
}

func trinoJSON(rw http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	rw.Header().Set("X-Content-Type-Options", "nosniff")
	trinoText(rw, http.StatusOK, "application/json", string(b))
}

func trinoText(rw http.ResponseWriter, status int, contentType, body string) {
	rw.Header().Set("Content-Type", contentType)
	rw.Header().Set("Content-Length", strconv.Itoa(len(body)))
	rw.WriteHeader(status)
	_, _ = io.WriteString(rw, body)
}

func trinoMethodNotAllowed(rw http.ResponseWriter, allow string) {
	rw.Header().Set("Allow", allow)
	rw.WriteHeader(http.StatusMethodNotAllowed)
}

// TrinoDuration formats d like airlift's Duration.toString(): the largest
// unit whose value is at least 1, two decimals ("41.17s", "5.87m").
func TrinoDuration(d time.Duration) string {
	units := []struct {
		name string
		size time.Duration
	}{{"ns", 1}, {"us", time.Microsecond}, {"ms", time.Millisecond}, {"s", time.Second}, {"m", time.Minute}, {"h", time.Hour}, {"d", 24 * time.Hour}}
	u := units[0]
	for _, c := range units[1:] {
		if float64(d)/float64(c.size) <= 0.9999 {
			break
		}
		u = c
	}
	return fmt.Sprintf("%.2f%s", float64(d)/float64(u.size), u.name)
}

// ---------------------------------------------------------------------------
// coordinator: system.runtime.nodes and the client statement protocol

// TrinoNodeChange is a change of the coordinator's system.runtime.nodes:
// State is the node's new state (lowercase, as the table spells it), ""
// when the coordinator no longer lists it.
type TrinoNodeChange struct {
	NodeID string
	State  string
	At     time.Time
}

// SetNode lists nodeID in the coordinator's system.runtime.nodes with state
// ("active", "inactive", "draining", "drained", "shutting_down"), or drops
// it with "". The coordinator itself is always listed, with its own state.
func (w *TrinoWorker) SetNode(nodeID, state string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.setNodeLocked(nodeID, state)
}

func (w *TrinoWorker) setNodeLocked(nodeID, state string) {
	if cur, ok := w.nodes[nodeID]; (ok && cur == state) || (!ok && state == "") {
		return
	}
	if state == "" {
		delete(w.nodes, nodeID)
	} else {
		w.nodes[nodeID] = state
	}
	w.nodeHist = append(w.nodeHist, TrinoNodeChange{NodeID: nodeID, State: state, At: w.now()})
	w.broadcastLocked()
}

// NodeHistory returns the changes of system.runtime.nodes (other than the
// coordinator's own row) in order.
func (w *TrinoWorker) NodeHistory() []TrinoNodeChange {
	return trinoLocked(w, func() []TrinoNodeChange { return slices.Clone(w.nodeHist) })
}

// NodeListedAt returns when the coordinator first listed nodeID with state,
// or the zero time.
func (w *TrinoWorker) NodeListedAt(nodeID, state string) time.Time {
	h := w.NodeHistory()
	if i := slices.IndexFunc(h, func(c TrinoNodeChange) bool { return c.NodeID == nodeID && c.State == state }); i >= 0 {
		return h[i].At
	}
	return time.Time{}
}

// WatchWorker makes the coordinator follow a fake worker as a real one
// does: it lists the worker's node id only delay after each start of the
// worker's process (476: the worker announces itself, then the coordinator
// polls its /v1/info/state every 5 s; a launch observed 10–15 s), then with
// the worker's state in lowercase (a starting worker says ACTIVE, so it may
// be listed active before it has finished starting), and drops it when the
// process ends. It follows until the coordinator or the worker is closed.
func (w *TrinoWorker) WatchWorker(worker *TrinoWorker, delay time.Duration) {
	id := worker.opts.NodeID
	go func() {
		for {
			worker.mu.Lock()
			p, closed, workerChanged := worker.proc, worker.closed, worker.changed
			want, due := "", (<-chan time.Time)(nil) // nil: wait for changes only
			switch since := time.Since(p.startedAt); {
			case p.dead:
			case since < delay:
				due = time.After(delay - since)
			default:
				want = strings.ToLower(p.state)
			}
			worker.mu.Unlock()
			w.mu.Lock()
			if w.closed {
				w.mu.Unlock()
				return
			}
			w.setNodeLocked(id, want)
			coordChanged := w.changed
			w.mu.Unlock()
			if closed {
				return
			}
			select {
			case <-workerChanged:
			case <-coordChanged:
			case <-due:
			}
		}
	}()
}

// trinoQuery is a query submitted to the fake coordinator, or one started
// with StartQuery: that one has no slug (no statement page answers for it),
// is never forgotten, and runs one task on each of its workers until
// finished or cancelled.
type trinoQuery struct {
	id, slug string
	sql      string
	nodeID   string // the node id the SQL asks for
	user     string
	source   string
	created  time.Time
	failure  *trinoQueryError // parse or support error: FAILED at the first GET
	ran      bool             // rows are read at the first executing page
	rows     [][]any
	canceled bool
	ended    time.Time      // a statement-protocol query: when it was created
	workers  []*TrinoWorker // StartQuery's
	tasks    []*trinoTask   // tasks[i] runs on workers[i]
}

// trinoQueryError is the statement protocol's error object.
type trinoQueryError struct {
	Message       string             `json:"message"`
	ErrorCode     int                `json:"errorCode"`
	ErrorName     string             `json:"errorName"`
	ErrorType     string             `json:"errorType"`
	ErrorLocation *trinoErrorAt      `json:"errorLocation,omitempty"`
	FailureInfo   trinoFailureDetail `json:"failureInfo"`
}

type trinoErrorAt struct {
	LineNumber   int `json:"lineNumber"`
	ColumnNumber int `json:"columnNumber"`
}

type trinoFailureDetail struct {
	Type          string        `json:"type"`
	Message       string        `json:"message"`
	Suppressed    []string      `json:"suppressed"`
	Stack         []string      `json:"stack"`
	ErrorLocation *trinoErrorAt `json:"errorLocation,omitempty"`
}

// trinoStatementStats is QueryResults.stats in the order 476 writes it.
type trinoStatementStats struct {
	State                     string `json:"state"`
	Queued                    bool   `json:"queued"`
	Scheduled                 bool   `json:"scheduled"`
	Nodes                     int    `json:"nodes"`
	TotalSplits               int    `json:"totalSplits"`
	QueuedSplits              int    `json:"queuedSplits"`
	RunningSplits             int    `json:"runningSplits"`
	CompletedSplits           int    `json:"completedSplits"`
	PlanningTimeMillis        int64  `json:"planningTimeMillis"`
	AnalysisTimeMillis        int64  `json:"analysisTimeMillis"`
	CPUTimeMillis             int64  `json:"cpuTimeMillis"`
	WallTimeMillis            int64  `json:"wallTimeMillis"`
	QueuedTimeMillis          int64  `json:"queuedTimeMillis"`
	ElapsedTimeMillis         int64  `json:"elapsedTimeMillis"`
	FinishingTimeMillis       int64  `json:"finishingTimeMillis"`
	PhysicalInputTimeMillis   int64  `json:"physicalInputTimeMillis"`
	ProcessedRows             int64  `json:"processedRows"`
	ProcessedBytes            int64  `json:"processedBytes"`
	PhysicalInputBytes        int64  `json:"physicalInputBytes"`
	PhysicalWrittenBytes      int64  `json:"physicalWrittenBytes"`
	InternalNetworkInputBytes int64  `json:"internalNetworkInputBytes"`
	PeakMemoryBytes           int64  `json:"peakMemoryBytes"`
	SpilledBytes              int64  `json:"spilledBytes"`
}

// trinoStateColumns is QueryResults.columns of the node-state query.
const trinoStateColumns = `[{"name":"state","type":"varchar","typeSignature":{"rawType":"varchar","arguments":[{"kind":"LONG","value":2147483647}]}}]`

// trinoQueryResults is one answer of the statement protocol (QueryResults),
// fields in the order 476 writes them.
type trinoQueryResults struct {
	ID               string              `json:"id"`
	InfoURI          string              `json:"infoUri"`
	PartialCancelURI string              `json:"partialCancelUri,omitempty"`
	NextURI          string              `json:"nextUri,omitempty"`
	Columns          json.RawMessage     `json:"columns,omitempty"`
	Data             [][]any             `json:"data,omitempty"`
	Stats            trinoStatementStats `json:"stats"`
	Error            *trinoQueryError    `json:"error,omitempty"`
	Warnings         []any               `json:"warnings"`
}

// trinoNodeStateSQL is the one query shape the fake runs, up to the opening
// quote of the node id literal.
var trinoNodeStateSQL = regexp.MustCompile(`(?is)^\s*SELECT\s+state\s+FROM\s+system\.runtime\.nodes\s+WHERE\s+node_id\s*=\s*'`)

// Expected tokens after a complete WHERE comparison, as 476's parser lists them.
const trinoExpectingAfterPredicate = "'%', '*', '+', '-', '.', '/', 'AND', 'AT', 'EXCEPT', 'FETCH', 'GROUP', 'HAVING', 'INTERSECT', 'LIMIT', 'OFFSET', 'OR', 'ORDER', 'UNION', 'WINDOW', '[', '||', <EOF>"

// trinoStringLiteral is the rest of a SQL string literal after its opening
// quote (” is a quote inside it), and the character after it if any.
var trinoStringLiteral = regexp.MustCompile(`^((?:[^']|'')*)'(?:[^']|$)`)

// trinoWord is a word token (identifier, keyword, number) at the start.
var trinoWord = regexp.MustCompile(`^\w+`)

// parseNodeStateSQL returns the node id the query asks for, or the error
// 476 gives for it: a syntax error where its parser would stop, or
// NOT_SUPPORTED for any other statement (the fake runs nothing else).
func parseNodeStateSQL(sql string) (string, *trinoQueryError) {
	loc := trinoNodeStateSQL.FindStringIndex(sql)
	if loc == nil {
		return "", trinoFailure(13, "NOT_SUPPORTED", "USER_ERROR", "io.trino.spi.TrinoException",
			"testpeers: the fake coordinator runs only SELECT state FROM system.runtime.nodes WHERE node_id = '<id>'", nil)
	}
	lit := trinoStringLiteral.FindStringSubmatch(sql[loc[1]:])
	if lit == nil { // unterminated literal: the parser stops at its quote
		return "", trinoSyntaxError(sql, loc[1]-1, "'''", "'ALL', 'ANY', 'SOME', <expression>")
	}
	i := loc[1] + len(lit[1]) + 1
	for i < len(sql) && unicode.IsSpace(rune(sql[i])) {
		i++
	}
	if i < len(sql) { // the next token: a word, or a single character
		tok := cmp.Or(trinoWord.FindString(sql[i:]), sql[i:i+1])
		return "", trinoSyntaxError(sql, i, "'"+tok+"'", trinoExpectingAfterPredicate)
	}
	return strings.ReplaceAll(lit[1], "''", "'"), nil
}

func trinoSyntaxError(sql string, at int, token, expecting string) *trinoQueryError {
	line, col := 1+strings.Count(sql[:at], "\n"), at-strings.LastIndexByte(sql[:at], '\n')
	msg := fmt.Sprintf("line %d:%d: mismatched input %s. Expecting: %s", line, col, token, expecting)
	return trinoFailure(1, "SYNTAX_ERROR", "USER_ERROR", "io.trino.sql.parser.ParsingException", msg, &trinoErrorAt{line, col})
}

func trinoFailure(code int, name, typ, class, msg string, at *trinoErrorAt) *trinoQueryError {
	return &trinoQueryError{Message: msg, ErrorCode: code, ErrorName: name, ErrorType: typ, ErrorLocation: at,
		FailureInfo: trinoFailureDetail{Type: class, Message: msg, Suppressed: []string{}, ErrorLocation: at,
			Stack: []string{"io.trino.dispatcher.DispatchManager.createQueryInternal(DispatchManager.java:225)"}}}
}

// statement serves /v1/statement and its nextUri paths:
//
//	POST /v1/statement                        → QUEUED,   next queued/…/1
//	GET  queued/{id}/{slug}/1                 → QUEUED,   next executing/…/0 (FAILED if the SQL is not runnable)
//	GET  executing/{id}/{slug}/0              → RUNNING with the rows (read now), next …/1
//	GET  executing/{id}/{slug}/1              → FINISHED, next …/2
//	GET  executing/{id}/{slug}/2              → FINISHED, no nextUri
//	DELETE any of them                        → 204; the query then answers FAILED USER_CANCELED
//
// A page may be fetched again (a client's retry). Answers are computed from
// the page alone, like Trino's, whose token scheme they imitate.
func (w *TrinoWorker) statement(rw http.ResponseWriter, r *http.Request, body []byte) {
	base := "http://" + r.Host
	if r.URL.Path == "/v1/statement" {
		if r.Method != http.MethodPost {
			trinoMethodNotAllowed(rw, "HEAD,POST,OPTIONS")
			return
		}
		user, ok := w.authenticate(rw, r)
		if !ok {
			return
		}
		if len(bytes.TrimSpace(body)) == 0 {
			trinoText(rw, http.StatusBadRequest, "text/plain", TrinoMsgEmptyStatement)
			return
		}
		w.mu.Lock()
		q := w.newQueryLocked(string(body))
		q.user, q.source = user, r.Header.Get("X-Trino-Source")
		if slices.Contains(w.opts.QueryExecuteDenied, user) {
			q.failure = trinoFailure(4, "PERMISSION_DENIED", "USER_ERROR", "io.trino.spi.security.AccessDeniedException",
				"Access Denied: Cannot execute query", nil)
		}
		doc := w.queryPageLocked(base, q, "queued", 0)
		w.mu.Unlock()
		trinoJSON(rw, doc)
		return
	}
	// /v1/statement/{queued|executing}/{id}/{slug}/{token}
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/v1/statement/"), "/")
	kind := parts[0]
	if kind == "executing" && len(parts) > 1 && parts[1] == "partialCancel" {
		rw.WriteHeader(http.StatusNoContent)
		return
	}
	w.mu.Lock() // held while answering: the answers are small and buffered
	defer w.mu.Unlock()
	q, token := (*trinoQuery)(nil), -1
	if len(parts) == 4 {
		if q = w.queries[parts[1]]; q != nil && q.slug != "" && q.slug == parts[2] {
			token, _ = strconv.Atoi(parts[3])
		}
	}
	switch {
	case !(kind == "queued" && token == 1 || kind == "executing" && token >= 0 && token <= 2):
		trinoText(rw, http.StatusNotFound, "text/plain", TrinoMsgQueryNotFound)
	case r.Method == http.MethodDelete:
		q.canceled = true
		rw.WriteHeader(http.StatusNoContent)
	case r.Method == http.MethodGet:
		trinoJSON(rw, w.queryPageLocked(base, q, kind, token))
	default:
		trinoMethodNotAllowed(rw, "DELETE,GET,OPTIONS")
	}
}

// queryIDLocked numbers a new query as Trino does: creation time, sequence
// and the coordinator's five-character instance part, the same for every
// query of the process (here: of the address).
func (w *TrinoWorker) queryIDLocked(now time.Time) string {
	w.querySeq++
	h := fnv.New64a()
	_, _ = io.WriteString(h, w.addr)
	instance := strconv.FormatUint(h.Sum64()%60466176, 36) // 36^5: five characters at most
	return fmt.Sprintf("%s_%05d_%05s", now.UTC().Format("20060102_150405"), w.querySeq, instance)
}

func (w *TrinoWorker) newQueryLocked(sql string) *trinoQuery {
	now := w.now()
	var slug [20]byte
	_, _ = rand.Read(slug[:])
	q := &trinoQuery{id: w.queryIDLocked(now), slug: fmt.Sprintf("y%x", slug), sql: sql, created: now, ended: now}
	q.nodeID, q.failure = parseNodeStateSQL(sql)
	if len(w.queries) >= 1000 { // a daemon polling for hours: forget old queries
		maps.DeleteFunc(w.queries, func(_ string, old *trinoQuery) bool {
			return old.slug != "" && now.Sub(old.created) > time.Minute
		})
	}
	w.queries[q.id] = q
	return q
}

// queryPageLocked renders the answer for the page kind/token (POST: queued/0).
func (w *TrinoWorker) queryPageLocked(base string, q *trinoQuery, kind string, token int) trinoQueryResults {
	doc := trinoQueryResults{ID: q.id, InfoURI: base + "/ui/query.html?" + q.id, Warnings: []any{}}
	elapsed := w.now().Sub(q.created).Milliseconds()
	doc.Stats = trinoStatementStats{State: "QUEUED", Queued: true, ElapsedTimeMillis: elapsed}
	page := func(k string, n int) string {
		return fmt.Sprintf("%s/v1/statement/%s/%s/%s/%d", base, k, q.id, q.slug, n)
	}
	fail := func(e *trinoQueryError) trinoQueryResults {
		doc.Stats = trinoStatementStats{State: "FAILED", ElapsedTimeMillis: elapsed}
		doc.Error = e
		return doc
	}
	switch {
	case q.canceled:
		return fail(trinoFailure(3, "USER_CANCELED", "USER_ERROR", "io.trino.spi.TrinoException", "Query was canceled", nil))
	case kind == "queued" && token == 0:
		doc.NextURI = page("queued", 1)
		return doc
	case q.failure != nil:
		return fail(q.failure)
	case kind == "queued":
		doc.NextURI = page("executing", 0)
		return doc
	}
	if !q.ran {
		q.ran = true
		state := w.nodes[q.nodeID]
		if q.nodeID == w.opts.NodeID && !w.proc.dead {
			state = strings.ToLower(w.proc.state)
		}
		if state != "" {
			q.rows = [][]any{{state}}
		}
	}
	doc.Columns = json.RawMessage(trinoStateColumns)
	scanned := int64(1 + len(w.nodes))
	doc.Stats = trinoStatementStats{State: "FINISHED", Scheduled: true, Nodes: 1, TotalSplits: 1, CompletedSplits: 1,
		ElapsedTimeMillis: elapsed, ProcessedRows: scanned, ProcessedBytes: 40 * scanned, PhysicalInputBytes: 40 * scanned}
	switch token {
	case 0:
		doc.Stats.State = "RUNNING"
		doc.PartialCancelURI = fmt.Sprintf("%s/v1/statement/executing/partialCancel/%s/0/%s/1", base, q.id, q.slug)
		doc.NextURI = page("executing", 1)
		doc.Data = q.rows
	case 1:
		doc.NextURI = page("executing", 2)
	}
	return doc
}
