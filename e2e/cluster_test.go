//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// clusterEnv is what scripts/trino/cluster.sh recorded in cluster.env.
type clusterEnv struct {
	Dir      string // the cluster directory (node data dirs, logs)
	Grace    time.Duration
	CoordURL string
	CoordPID int
	Workers  map[int]trinoNode
}

// trinoNode is one worker.
type trinoNode struct {
	ID  string // node id, e.g. worker-1
	URL string
	PID int
}

// readCluster parses cluster.env (KEY=VALUE lines written with printf %q).
func readCluster(t testing.TB) clusterEnv {
	t.Helper()
	b, err := os.ReadFile(envFile)
	if err != nil {
		t.Fatalf("read the cluster's env file: %v", err)
	}
	kv := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if ok {
			kv[k] = shellUnquote(v)
		}
	}
	c := clusterEnv{Dir: filepath.Dir(envFile), CoordURL: kv["COORD_URL"], Workers: map[int]trinoNode{}}
	c.CoordPID, _ = strconv.Atoi(kv["COORD_PID"])
	if c.Grace, err = time.ParseDuration(kv["GRACE"]); err != nil {
		t.Fatalf("cluster.env: GRACE=%q: %v", kv["GRACE"], err)
	}
	n, _ := strconv.Atoi(kv["WORKERS"])
	for i := 1; i <= n; i++ {
		p := fmt.Sprintf("WORKER%d_", i)
		pid, _ := strconv.Atoi(kv[p+"PID"])
		c.Workers[i] = trinoNode{ID: kv[p+"ID"], URL: kv[p+"URL"], PID: pid}
	}
	if c.CoordURL == "" || n < 2 {
		t.Fatalf("cluster.env %s lacks COORD_URL or two workers: %v", envFile, kv)
	}
	return c
}

// shellUnquote undoes bash's printf %q for the plain values cluster.sh writes.
func shellUnquote(v string) string {
	if len(v) >= 2 && v[0] == '\'' && v[len(v)-1] == '\'' {
		return v[1 : len(v)-1]
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] == '\\' && i+1 < len(v) {
			i++
		}
		b.WriteByte(v[i])
	}
	return b.String()
}

// procAlive reports whether pid runs. A dead process its parent has not
// reaped yet counts as gone; a zombie thread-group leader whose other
// threads still run (a JVM in the middle of exiting) does not.
func procAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')') // the state follows the command name in parentheses
	if i < 0 || i+2 >= len(b) {
		return true
	}
	if b[i+2] != 'Z' && b[i+2] != 'X' {
		return true
	}
	threads, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	return err == nil && len(threads) > 1
}

// waitReaped waits until pid has left the process table altogether (the
// Trino launcher refuses to start while the old PID exists, even as a
// zombie).
func waitReaped(t *testing.T, pid int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d still in the process table %s later", pid, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// isClusterProcess reports whether pid is alive and is a Trino JVM of the
// cluster in dir (its command line names the dir), guarding against PID reuse.
func isClusterProcess(pid int, dir string) bool {
	if !procAlive(pid) {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return err == nil && bytes.Contains(b, []byte(dir+"/"))
}

// stopClusterProcess ends a Trino JVM of the cluster: SIGTERM, then SIGKILL.
func stopClusterProcess(t *testing.T, c clusterEnv, pid int, within time.Duration) {
	t.Helper()
	if !isClusterProcess(pid, c.Dir) {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(within)
	for procAlive(pid) {
		if time.Now().After(deadline) {
			t.Logf("pid %d still running %s after SIGTERM; SIGKILL", pid, within)
			_ = syscall.Kill(pid, syscall.SIGKILL)
			time.Sleep(500 * time.Millisecond)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if procAlive(pid) {
		t.Fatalf("pid %d does not exit", pid)
	}
}

// freshWorker returns the cluster with worker n running, ACTIVE and listed
// active by the coordinator, restarting the worker (cluster.sh
// restart-worker) when it is not running or was left in another state.
func freshWorker(t *testing.T, n int) clusterEnv {
	t.Helper()
	c := readCluster(t)
	w := c.Workers[n]
	if isClusterProcess(w.PID, c.Dir) {
		st := workerState(w.URL)
		if st == "ACTIVE" {
			err := waitNodeView(c, w.ID, 60*time.Second, func(state string, listed bool) bool { return state == "active" })
			if err == nil {
				t.Logf("worker %d (pid %d) is running and ACTIVE", n, w.PID)
				return c
			}
			t.Logf("worker %d is ACTIVE but the coordinator does not list it active: %v", n, err)
		}
		t.Logf("worker %d (pid %d) is %s; stopping it for a fresh start", n, w.PID, st)
		stopClusterProcess(t, c, w.PID, 60*time.Second)
	}
	waitReaped(t, w.PID, 30*time.Second)
	restartWorker(t, c, n)
	c = readCluster(t)
	w = c.Workers[n]
	if !isClusterProcess(w.PID, c.Dir) {
		t.Fatalf("worker %d (pid %d) is not running after restart-worker", n, w.PID)
	}
	if st := workerState(w.URL); st != "ACTIVE" {
		t.Fatalf("worker %d is %s after restart-worker, want ACTIVE", n, st)
	}
	return c
}

// restartWorker runs `cluster.sh restart-worker DIR n`, which waits until the
// coordinator lists the worker active (bounded by START_TIMEOUT); env adds
// variables, e.g. WORKER_PORT=P for a new address.
func restartWorker(t *testing.T, c clusterEnv, n int, env ...string) {
	t.Helper()
	t0 := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(repoRoot, "scripts", "trino", "cluster.sh"), "restart-worker", c.Dir, strconv.Itoa(n))
	cmd.Env = append(append(os.Environ(), "START_TIMEOUT=240"), env...)
	cmd.WaitDelay = 10 * time.Second
	t.Logf("restarting worker %d (cluster.sh restart-worker, at most 240 s) ...", n)
	out, err := cmd.CombinedOutput()
	took := time.Since(t0)
	if err != nil {
		t.Fatalf("cluster.sh restart-worker %d failed after %s: %v\n%s", n, took.Round(time.Millisecond), err, out)
	}
	t.Logf("worker %d restarted in %.1fs", n, took.Seconds())
	details(t.Name(), fmt.Sprintf("restart worker %d", n), fmt.Sprintf("%.1fs", took.Seconds()))
}

var stateClient = &http.Client{Timeout: 2 * time.Second}

// workerState is the worker's /v1/info/state, "GONE" when the connection is
// refused, or "error: …".
func workerState(url string) string {
	resp, err := stateClient.Get(url + "/v1/info/state")
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return "GONE"
		}
		return "error: " + err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Sprintf("error: HTTP %d %s", resp.StatusCode, clip(string(b), 80))
	}
	return strings.Trim(strings.TrimSpace(string(b)), `"`)
}

// stateChange is a state seen by a statePoller.
type stateChange struct {
	State string
	At    time.Time
}

// statePoller polls a worker's state every 100 ms and records changes
// (errors other than a refused connection are counted, not recorded).
type statePoller struct {
	url     string
	mu      sync.Mutex
	changes []stateChange
	errs    int
	lastErr string
	stop    chan struct{}
	done    chan struct{}
}

func watchState(t *testing.T, url string) *statePoller {
	p := &statePoller{url: url, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			st := workerState(url)
			now := time.Now()
			p.mu.Lock()
			if strings.HasPrefix(st, "error: ") {
				p.errs++
				p.lastErr = st
			} else if len(p.changes) == 0 || p.changes[len(p.changes)-1].State != st {
				p.changes = append(p.changes, stateChange{st, now})
			}
			p.mu.Unlock()
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(p.close)
	return p
}

func (p *statePoller) close() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	<-p.done
}

func (p *statePoller) history() []stateChange {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]stateChange(nil), p.changes...)
}

// first returns when state was first seen (zero if never).
func (p *statePoller) first(state string) time.Time {
	for _, c := range p.history() {
		if c.State == state {
			return c.At
		}
	}
	return time.Time{}
}

func (p *statePoller) current() string {
	h := p.history()
	if len(h) == 0 {
		return ""
	}
	return h[len(h)-1].State
}

// states lists the distinct states in order.
func (p *statePoller) states() []string {
	var out []string
	for _, c := range p.history() {
		out = append(out, c.State)
	}
	return out
}

func (p *statePoller) String() string {
	h := p.history()
	if len(h) == 0 {
		return "(nothing seen)"
	}
	var parts []string
	for _, c := range h {
		parts = append(parts, fmt.Sprintf("%s@%s", c.State, c.At.Format("15:04:05.000")))
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	s := strings.Join(parts, " → ")
	if p.errs > 0 {
		s += fmt.Sprintf(" (%d failed polls, last: %s)", p.errs, p.lastErr)
	}
	return s
}

// waitFor waits until state has been seen; it fails the test after timeout.
func (p *statePoller) waitFor(t *testing.T, state string, timeout time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if at := p.first(state); !at.IsZero() {
			return at
		}
		if time.Now().After(deadline) {
			t.Fatalf("worker %s never reported %s within %s; seen: %s", p.url, state, timeout, p)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pidWatch records when a process is gone (polled every 20 ms).
type pidWatch struct {
	pid    int
	mu     sync.Mutex
	goneAt time.Time
	stop   chan struct{}
	done   chan struct{}
}

func watchPID(t *testing.T, pid int) *pidWatch {
	w := &pidWatch{pid: pid, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			if !procAlive(pid) {
				w.mu.Lock()
				w.goneAt = time.Now()
				w.mu.Unlock()
				return
			}
			select {
			case <-w.stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { close(w.stop); <-w.done })
	return w
}

// gone returns when the process was first seen gone.
func (w *pidWatch) gone() (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.goneAt, !w.goneAt.IsZero()
}

// wait waits for the process to be gone; it fails the test after timeout.
func (w *pidWatch) wait(t *testing.T, timeout time.Duration) time.Time {
	t.Helper()
	select {
	case <-w.done:
	case <-time.After(timeout):
	}
	at, ok := w.gone()
	if !ok {
		t.Fatalf("process %d still running %s later", w.pid, timeout)
	}
	return at
}

// trinoLogLine is one line of a node's server.log.
type trinoLogLine struct {
	At                         time.Time
	Level, Thread, Logger, Msg string
}

// trinoLog reads a node's server.log lines logged at or after since.
func trinoLog(t *testing.T, c clusterEnv, node string, since time.Time) []trinoLogLine {
	t.Helper()
	f, err := os.Open(filepath.Join(c.Dir, node, "var", "log", "server.log"))
	if err != nil {
		t.Fatalf("read %s's log: %v", node, err)
	}
	defer f.Close()
	var out []trinoLogLine
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), "\t", 5)
		if len(parts) != 5 {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, parts[0])
		if err != nil || at.Before(since) {
			continue
		}
		out = append(out, trinoLogLine{At: at, Level: parts[1], Thread: parts[2], Logger: parts[3], Msg: parts[4]})
	}
	return out
}

// findTrinoLog returns the first line containing substr.
func findTrinoLog(lines []trinoLogLine, substr string) (trinoLogLine, bool) {
	for _, l := range lines {
		if strings.Contains(l.Msg, substr) {
			return l, true
		}
	}
	return trinoLogLine{}, false
}

// stateLines returns the node-state lines of a worker log, for messages.
func stateLines(lines []trinoLogLine) string {
	var b strings.Builder
	for _, l := range lines {
		if strings.Contains(l.Logger, "NodeStateManager") || strings.Contains(l.Logger, "ServerInfoResource") {
			fmt.Fprintf(&b, "\n  %s %s", l.At.Format("15:04:05.000"), l.Msg)
		}
	}
	return b.String()
}

// exitCode reads the exit status cluster.sh's wrapper recorded for the
// node's last run ("" while it runs).
func exitCode(c clusterEnv, node string) string {
	b, _ := os.ReadFile(filepath.Join(c.Dir, node, "var", "exit-code"))
	return strings.TrimSpace(string(b))
}

// readyPoller records when a worker first answered ACTIVE and no longer
// "starting" (GET /v1/info/state and /v1/info every 100 ms): a worker says
// ACTIVE for several seconds before it has finished starting.
type readyPoller struct {
	url     string
	mu      sync.Mutex
	readyAt time.Time
	seen    []stateChange // ACTIVE/STARTING/GONE/error changes, for messages
	stop    chan struct{}
	done    chan struct{}
}

func watchReady(t *testing.T, url string) *readyPoller {
	p := &readyPoller{url: url, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			st := workerState(url)
			if st == "ACTIVE" {
				var info struct {
					Starting *bool `json:"starting"`
				}
				resp, err := stateClient.Get(url + "/v1/info")
				if err == nil {
					_ = json.NewDecoder(resp.Body).Decode(&info)
					resp.Body.Close()
				}
				if info.Starting == nil || *info.Starting {
					st = "STARTING"
				}
			}
			now := time.Now()
			p.mu.Lock()
			if len(p.seen) == 0 || p.seen[len(p.seen)-1].State != st {
				p.seen = append(p.seen, stateChange{st, now})
			}
			if st == "ACTIVE" && p.readyAt.IsZero() {
				p.readyAt = now
			}
			p.mu.Unlock()
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() {
		select {
		case <-p.stop:
		default:
			close(p.stop)
		}
		<-p.done
	})
	return p
}

// ready returns when the worker was first seen ACTIVE and started.
func (p *readyPoller) ready() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.readyAt
}

func (p *readyPoller) String() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var parts []string
	for _, c := range p.seen {
		parts = append(parts, fmt.Sprintf("%s@%s", clip(c.State, 40), c.At.Format("15:04:05.000")))
	}
	return strings.Join(parts, " → ")
}

// nodeObservation is one look at the coordinator's system.runtime.nodes
// for a node: the query was sent at Asked and answered at Answered.
type nodeObservation struct {
	Asked, Answered time.Time
	State           string // "" when not listed
	Err             string
}

// nodeWatcher asks the coordinator about one node every 300 ms (the query
// a launch asks, sent by the test's own statement client).
type nodeWatcher struct {
	mu   sync.Mutex
	obs  []nodeObservation
	stop chan struct{}
	done chan struct{}
}

func watchNode(t *testing.T, c clusterEnv, node string) *nodeWatcher {
	w := &nodeWatcher{stop: make(chan struct{}), done: make(chan struct{})}
	sql := "SELECT state FROM system.runtime.nodes WHERE node_id = '" + strings.ReplaceAll(node, "'", "''") + "'"
	go func() {
		defer close(w.done)
		for {
			o := nodeObservation{Asked: time.Now()}
			rows, err := rowsOf(c.CoordURL, sql, 20*time.Second)
			o.Answered = time.Now()
			switch {
			case err != nil:
				o.Err = err.Error()
			case len(rows) > 0:
				o.State = rows[0][0]
			}
			w.mu.Lock()
			w.obs = append(w.obs, o)
			w.mu.Unlock()
			select {
			case <-w.stop:
				return
			case <-time.After(300 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() {
		select {
		case <-w.stop:
		default:
			close(w.stop)
		}
		<-w.done
	})
	return w
}

func (w *nodeWatcher) observations() []nodeObservation {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]nodeObservation(nil), w.obs...)
}

// firstActive returns the first observation that saw the node active and
// the last one before it that answered without seeing it active.
func (w *nodeWatcher) firstActive() (first, lastNot nodeObservation, ok bool) {
	for _, o := range w.observations() {
		if o.Err != "" {
			continue
		}
		if o.State == "active" {
			return o, lastNot, true
		}
		lastNot = o
	}
	return nodeObservation{}, lastNot, false
}

func (w *nodeWatcher) String() string {
	var parts []string
	last := "?"
	for _, o := range w.observations() {
		v := o.State
		switch {
		case o.Err != "":
			v = "error: " + clip(o.Err, 60)
		case v == "":
			v = "not listed"
		}
		if v != last {
			parts = append(parts, fmt.Sprintf("%s@%s", v, o.Asked.Format("15:04:05.000")))
			last = v
		}
	}
	return strings.Join(parts, " → ")
}
