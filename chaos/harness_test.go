//go:build chaos

// Package chaos is the fault matrix of `make chaos`: every row drives the
// real scaledownd binary (built once, without -race, as it ships) against
// the wire-level test peers of internal/testpeers, injects one fault and
// asserts the outcome the row promises. The rows and their measured results
// are listed in RELIABILITY.md at the repository root.
//
// This file is the harness: the binary build, one peer world per row, a
// handle on a daemon process (start, SIGKILL, SIGTERM, restart, its JSON log
// and its /metrics), and the table of measured results.
package chaos

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/scaledownd/scaledownd/internal/testenv"
	"github.com/scaledownd/scaledownd/internal/testpeers"
)

// Paths under the repository root (the test runs in chaos/).
var (
	outDir = filepath.Join("..", "build", "chaos") // logs, binary, results
	binary string                                  // the daemon, built by TestMain
)

func TestMain(m *testing.M) {
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	abs, err := filepath.Abs(filepath.Join(outDir, "scaledownd"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = abs
	// The binary as it ships: no -race, static, trimmed.
	build := exec.Command("go", "build", "-trimpath", "-o", binary, "github.com/scaledownd/scaledownd/cmd/scaledownd")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build scaledownd: %v\n%s", err, out)
		os.Exit(1)
	}
	started := time.Now()
	code := m.Run()
	writeResults(time.Since(started))
	os.Exit(code)
}

// ---------------------------------------------------------------------------
// measured results

type rowResult struct {
	name, fault, expected string
	measured              []string
	failed                bool
}

var (
	resultsMu sync.Mutex
	results   = map[string]*rowResult{}
)

// row registers the running subtest as a matrix row and returns a recorder
// for its measurements.
func row(t *testing.T, fault, expected string) *rowResult {
	t.Helper()
	r := &rowResult{name: t.Name(), fault: fault, expected: expected}
	resultsMu.Lock()
	results[r.name] = r
	resultsMu.Unlock()
	t.Cleanup(func() {
		resultsMu.Lock()
		r.failed = t.Failed()
		resultsMu.Unlock()
	})
	return r
}

// measure records one measured value of the row (and logs it).
func (r *rowResult) measure(t *testing.T, format string, args ...any) {
	t.Helper()
	s := fmt.Sprintf(format, args...)
	t.Log("measured: " + s)
	resultsMu.Lock()
	r.measured = append(r.measured, s)
	resultsMu.Unlock()
}

// writeResults writes build/chaos/results.md, the table RELIABILITY.md
// is made from, and prints it.
func writeResults(total time.Duration) {
	resultsMu.Lock()
	defer resultsMu.Unlock()
	names := make([]string, 0, len(results))
	for n := range results {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	fmt.Fprintf(&b, "# chaos matrix results (%s, total %s)\n\n", time.Now().Format(time.RFC3339), total.Round(time.Second))
	b.WriteString("| Test | Fault | Expected | Measured | Result |\n|---|---|---|---|---|\n")
	for _, n := range names {
		r := results[n]
		res := "pass"
		if r.failed {
			res = "FAIL"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s |\n", n, r.fault, r.expected, strings.Join(r.measured, "; "), res)
	}
	_ = os.WriteFile(filepath.Join(outDir, "results.md"), []byte(b.String()), 0o644)
	fmt.Print("\n" + b.String())
}

// ---------------------------------------------------------------------------
// peer world

// world is one row's set of peers: SQS with the lifecycle queue, Auto
// Scaling with the group, hook and instance, and (unless noTrino) a Trino
// 476 worker. Every row has its own, so rows can run in parallel.
type world struct {
	SQS      *testpeers.SQS
	ASG      *testpeers.AutoScaling
	Trino    *testpeers.TrinoWorker // nil with noTrino
	TrinoURL string
	QueueURL string
	Instance string
	HBT      time.Duration
}

type worldOpts struct {
	hbt     time.Duration // the hook's HeartbeatTimeout; default 6 s
	trino   testpeers.TrinoOptions
	noTrino bool   // nobody listens on the Trino URL
	seed    uint64 // SQS delivery order seed; 0 random
}

func newWorld(t *testing.T, o worldOpts) *world {
	t.Helper()
	if o.hbt == 0 {
		o.hbt = 6 * time.Second
	}
	w := &world{Instance: testenv.InstanceID, HBT: o.hbt}
	w.SQS = testpeers.NewSQS(testpeers.SQSOptions{Seed: o.seed})
	t.Cleanup(w.SQS.Close)
	w.QueueURL = w.SQS.CreateQueue("trino-lifecycle", testpeers.SQSQueueOptions{})
	// As in AWS, an instance whose termination was let proceed stays listed
	// (Terminating:Proceed) until EC2 has terminated it, which takes far
	// longer than a daemon restart; the fake's default drops it at once.
	w.ASG = testpeers.NewAutoScaling(testpeers.AutoScalingOptions{Region: testenv.Region, TerminateDelay: 2 * time.Minute})
	t.Cleanup(w.ASG.Close)
	w.ASG.AddGroup(testenv.Group, 1, 10)
	w.ASG.AddHook(testpeers.AutoScalingHook{Group: testenv.Group, Name: testenv.Hook, HeartbeatTimeout: o.hbt, DefaultResult: "ABANDON"})
	w.ASG.AddInstance(w.Instance, testenv.Group, "InService")
	if o.noTrino {
		w.TrinoURL = "http://127.0.0.1:" + freePort(t)
		return w
	}
	if o.trino.Version == "" {
		o.trino.Version = "476"
	}
	if o.trino.GracePeriod == 0 {
		o.trino.GracePeriod = 200 * time.Millisecond
	}
	w.Trino = testpeers.NewTrino(o.trino)
	t.Cleanup(w.Trino.Close)
	w.TrinoURL = w.Trino.URL()
	return w
}

// terminate starts a terminate lifecycle action for this instance, as a
// scale-in does, and returns its token and notification.
func (w *world) terminate() (string, testpeers.LifecycleMessage) {
	token := w.ASG.StartAction(testenv.Group, testenv.Hook, w.Instance)
	return token, w.ASG.Message(token)
}

// message returns the queue's record of a message.
func (w *world) message(id string) (testpeers.SQSMessage, bool) {
	for _, m := range w.SQS.Messages(w.QueueURL) {
		if m.ID == id {
			return m, true
		}
	}
	return testpeers.SQSMessage{}, false
}

// action returns the fake's record of an action.
func (w *world) action(token string) testpeers.AutoScalingAction {
	a, _ := w.ASG.Action(token)
	return a
}

// awaitAction waits until the action is no longer pending.
func (w *world) awaitAction(t *testing.T, token string, within time.Duration) testpeers.AutoScalingAction {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	act, err := w.ASG.WaitAction(ctx, token)
	if err != nil {
		t.Fatalf("lifecycle action %s… still %s after %s: %v", token[:8], w.action(token).State, within, err)
	}
	return act
}

// awaitDeleted waits until the message is deleted.
func (w *world) awaitDeleted(t *testing.T, id string, within time.Duration) testpeers.SQSMessage {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	if err := w.SQS.WaitDeleted(ctx, w.QueueURL, id); err != nil {
		m, _ := w.message(id)
		t.Fatalf("message %s not deleted within %s (receives %d, visible %v, visible at %s): %v",
			id, within, m.ReceiveCount, m.Visible, m.VisibleAt.Format("15:04:05.000"), err)
	}
	m, _ := w.message(id)
	return m
}

// asgCalls returns the Auto Scaling calls of op for the token.
func (w *world) asgCalls(op, token string) []testpeers.Call {
	var out []testpeers.Call
	for _, c := range w.ASG.Calls() {
		if c.Op == op && c.Params["LifecycleActionToken"] == token {
			out = append(out, c)
		}
	}
	return out
}

// sqsCalls returns the SQS calls of op that arrived in [from, to) (zero to:
// no end).
func (w *world) sqsCalls(op string, from, to time.Time) []testpeers.Call {
	var out []testpeers.Call
	for _, c := range w.SQS.Calls() {
		if c.Op == op && !c.At.Before(from) && (to.IsZero() || c.At.Before(to)) {
			out = append(out, c)
		}
	}
	return out
}

// statePuts counts PUT /v1/info/state requests to the worker whose body
// names state ("" counts all).
func (w *world) statePuts(state string) int {
	n := 0
	for _, r := range w.Trino.Requests() {
		if r.Method == http.MethodPut && r.Path == "/v1/info/state" && (state == "" || strings.Contains(r.Body, state)) {
			n++
		}
	}
	return n
}

// maxHeartbeatGap is the longest time the action went without a sign of
// life: from its start through every successful heartbeat to its
// completion (or to now while it is pending).
func maxHeartbeatGap(act testpeers.AutoScalingAction) time.Duration {
	end := act.CompletedAt
	if end.IsZero() {
		end = time.Now()
	}
	var gap time.Duration
	prev := act.Started
	for _, hb := range append(slices.Clone(act.Heartbeats), end) {
		gap = max(gap, hb.Sub(prev))
		prev = hb
	}
	return gap
}

// ---------------------------------------------------------------------------
// the daemon process

// logLine is one line of the daemon's JSON log.
type logLine struct {
	raw    string
	fields map[string]any // nil if the line is not JSON
}

func (l logLine) msg() string {
	s, _ := l.fields["msg"].(string)
	return s
}

// time is the line's timestamp (zero if it has none).
func (l logLine) time() time.Time {
	s, _ := l.fields["ts"].(string)
	for _, layout := range []string{"2006-01-02T15:04:05.000Z0700", time.RFC3339Nano} {
		if t, err := time.Parse(layout, s); err == nil {
			return t
		}
	}
	return time.Time{}
}

func (l logLine) level() string {
	s, _ := l.fields["level"].(string)
	return s
}

// daemon is the real binary running as a subprocess. Its stderr (the JSON
// log) goes to build/chaos/<test>.log and is kept in memory; each start is
// an incarnation, and the log helpers look at the current one.
type daemon struct {
	t       *testing.T
	env     []string
	logPath string
	logFile *os.File

	mu      sync.Mutex
	gen     int
	lines   []logLine // current incarnation
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error
	addr    string
}

// settings are the daemon's SCALEDOWND_* variables for a world; an empty
// override value removes the variable.
func settings(t *testing.T, w *world, overrides map[string]string) map[string]string {
	s := map[string]string{
		"SCALEDOWND_CONFIG_FILE":                os.DevNull,
		"SCALEDOWND_AWS_REGION":                 testenv.Region,
		"SCALEDOWND_AWS_INSTANCE_ID":            w.Instance,
		"SCALEDOWND_AWS_QUEUE_URL":              w.QueueURL,
		"SCALEDOWND_AWS_MODE":                   "sqs",
		"SCALEDOWND_AWS_IMDS_ENDPOINT":          testenv.DeadEndpoint,
		"SCALEDOWND_AWS_ASG_NAME":               testenv.Group,
		"SCALEDOWND_AWS_SQS_ENDPOINT":           w.SQS.URL(),
		"SCALEDOWND_AWS_AUTOSCALING_ENDPOINT":   w.ASG.URL(),
		"SCALEDOWND_AWS_WAIT_TIME":              "1s",
		"SCALEDOWND_AWS_VISIBILITY_TIMEOUT":     "30s",
		"SCALEDOWND_AWS_CALL_TIMEOUT":           "3s",
		"SCALEDOWND_AWS_MAX_ATTEMPTS":           "3",
		"SCALEDOWND_LIFECYCLE_MAX_DRAIN_TIME":   "2m",
		"SCALEDOWND_LIFECYCLE_SAFETY_MARGIN":    "0s",
		"SCALEDOWND_LIFECYCLE_NOT_FOUND_WINDOW": "5s",
		"SCALEDOWND_TRINO_URL":                  w.TrinoURL,
		"SCALEDOWND_TRINO_POLL_INTERVAL":        "100ms",
		"SCALEDOWND_TRINO_REQUEST_TIMEOUT":      "1s",
		"SCALEDOWND_TRINO_NOT_RUNNING_WINDOW":   "3s",
		// Port 0: no race for a free port between parallel rows; each
		// incarnation's address is read from its "listening" line.
		"SCALEDOWND_LISTEN_ADDRESS":               "127.0.0.1:0",
		"SCALEDOWND_STATE_DIR":                    t.TempDir(),
		"SCALEDOWND_LOG_LEVEL":                    "info",
		"SCALEDOWND_LOG_FORMAT":                   "json",
		"SCALEDOWND_TRINO_SHUTDOWN_AFTER_DRAIN":   "true",
		"SCALEDOWND_LIFECYCLE_HEARTBEAT_INTERVAL": "auto",
	}
	for k, v := range overrides {
		if v == "" {
			delete(s, k)
		} else {
			s[k] = v
		}
	}
	return s
}

// startDaemon runs the binary against the world. It returns once the
// process has started; call waitReady to wait for the poll loop.
func startDaemon(t *testing.T, w *world, overrides map[string]string) *daemon {
	t.Helper()
	env := make([]string, 0, 64)
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "SCALEDOWND_") || strings.HasPrefix(kv, "AWS_") {
			continue
		}
		env = append(env, kv)
	}
	// Hermetic AWS: static dummy credentials, no shared files, no IMDS for
	// the credential chain (the daemon asks IMDS itself only when told to).
	env = append(env,
		"AWS_ACCESS_KEY_ID=AKIACHAOSCHAOSCHAOS0", "AWS_SECRET_ACCESS_KEY=chaos-secret",
		"AWS_CONFIG_FILE="+os.DevNull, "AWS_SHARED_CREDENTIALS_FILE="+os.DevNull,
		"AWS_EC2_METADATA_DISABLED=true")
	s := settings(t, w, overrides)
	for _, k := range sortedKeys(s) {
		env = append(env, k+"="+s[k])
	}
	name := strings.ReplaceAll(t.Name(), "/", "_")
	d := &daemon{t: t, env: env, logPath: filepath.Join(outDir, name+".log")}
	f, err := os.Create(d.logPath)
	if err != nil {
		t.Fatal(err)
	}
	d.logFile = f
	t.Cleanup(func() {
		d.kill()
		if t.Failed() {
			d.dumpTail(200)
		}
		_ = d.logFile.Close()
	})
	d.start()
	return d
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// start runs a new incarnation.
func (d *daemon) start() {
	d.t.Helper()
	cmd := exec.Command(binary)
	cmd.Env = d.env
	stderr, err := cmd.StderrPipe()
	if err != nil {
		d.t.Fatal(err)
	}
	cmd.Stdout = io.Discard
	d.mu.Lock()
	d.gen++
	gen := d.gen
	d.lines = nil
	d.addr = ""
	exited := make(chan struct{})
	d.exited = exited
	d.cmd = cmd
	fmt.Fprintf(d.logFile, "=== %s start #%d\n", time.Now().Format("15:04:05.000"), gen)
	d.mu.Unlock()
	if err := cmd.Start(); err != nil {
		d.t.Fatalf("start %s: %v", binary, err)
	}
	go func() {
		r := bufio.NewReaderSize(stderr, 64<<10)
		for {
			s, err := r.ReadString('\n')
			if s != "" {
				d.record(gen, strings.TrimRight(s, "\n"))
			}
			if err != nil {
				break
			}
		}
		werr := cmd.Wait()
		d.mu.Lock()
		d.waitErr = werr
		fmt.Fprintf(d.logFile, "=== %s exit #%d: %v\n", time.Now().Format("15:04:05.000"), gen, werr)
		d.mu.Unlock()
		close(exited)
	}()
}

func (d *daemon) record(gen int, raw string) {
	l := logLine{raw: raw}
	var m map[string]any
	if json.Unmarshal([]byte(raw), &m) == nil {
		l.fields = m
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	fmt.Fprintln(d.logFile, raw)
	if gen != d.gen {
		return
	}
	d.lines = append(d.lines, l)
	if l.msg() == "listening" {
		d.addr, _ = l.fields["address"].(string)
	}
}

// pid is the current incarnation's process id.
func (d *daemon) pid() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cmd.Process.Pid
}

// alive reports whether the current incarnation still runs.
func (d *daemon) alive() bool {
	d.mu.Lock()
	ch := d.exited
	d.mu.Unlock()
	select {
	case <-ch:
		return false
	default:
		return true
	}
}

// kill sends SIGKILL and waits for the process to be gone (a no-op when it
// has exited).
func (d *daemon) kill() {
	d.mu.Lock()
	cmd, ch := d.cmd, d.exited
	d.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-ch:
		return
	default:
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		d.t.Errorf("pid %d still running 10 s after SIGKILL", cmd.Process.Pid)
	}
}

// term sends SIGTERM and returns how long the process took to exit and its
// exit code; it fails the test if it is still running after 10 s.
func (d *daemon) term() (time.Duration, int) {
	d.t.Helper()
	d.mu.Lock()
	cmd, ch := d.cmd, d.exited
	d.mu.Unlock()
	sent := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		d.t.Fatal(err)
	}
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		d.t.Fatalf("pid %d still running 10 s after SIGTERM", cmd.Process.Pid)
	}
	return time.Since(sent), cmd.ProcessState.ExitCode()
}

// restart starts a new incarnation with the same environment (state
// directory, listen address) after the previous one has exited.
func (d *daemon) restart() {
	d.t.Helper()
	if d.alive() {
		d.t.Fatal("restart while the daemon still runs")
	}
	d.start()
}

// find returns the current incarnation's first line whose message contains
// substr, if any.
func (d *daemon) find(substr string) (logLine, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, l := range d.lines {
		if strings.Contains(l.msg(), substr) {
			return l, true
		}
	}
	return logLine{}, false
}

// count returns how many of the current incarnation's lines have a message
// containing substr (and, with level, that level).
func (d *daemon) count(substr, level string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, l := range d.lines {
		if strings.Contains(l.msg(), substr) && (level == "" || l.level() == level) {
			n++
		}
	}
	return n
}

// linesWith returns the current incarnation's lines whose message contains
// substr.
func (d *daemon) linesWith(substr string) []logLine {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []logLine
	for _, l := range d.lines {
		if strings.Contains(l.msg(), substr) {
			out = append(out, l)
		}
	}
	return out
}

// waitLog waits until the current incarnation logs a message containing
// substr. It fails fast if the process exits first.
func (d *daemon) waitLog(substr string, within time.Duration) logLine {
	d.t.Helper()
	deadline := time.Now().Add(within)
	for {
		if l, ok := d.find(substr); ok {
			return l
		}
		if !d.alive() {
			if l, ok := d.find(substr); ok {
				return l
			}
			d.t.Fatalf("daemon exited (%v) before logging %q", d.waitErr, substr)
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("daemon did not log %q within %s", substr, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// address is the current incarnation's HTTP listener, once it logged it.
func (d *daemon) address() string {
	d.t.Helper()
	d.waitLog("listening", 15*time.Second)
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.addr
}

// waitReady waits for the poll loop to run and /readyz to answer 200.
func (d *daemon) waitReady() {
	d.t.Helper()
	d.waitLog("scaledownd ready: watching for lifecycle actions", 30*time.Second)
	eventually(d.t, 10*time.Second, "/readyz 200", func() bool {
		code, _ := d.get("/readyz")
		return code == http.StatusOK
	})
}

// get fetches a path of the daemon's listener: status and body (0 and the
// error when it does not answer).
func (d *daemon) get(path string) (int, string) {
	addr := d.address()
	c := http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metric sums the samples of name whose labels include the given name,
// value pairs, from the daemon's /metrics.
func (d *daemon) metric(name string, labels ...string) float64 {
	d.t.Helper()
	code, body := d.get("/metrics")
	if code != http.StatusOK {
		d.t.Fatalf("/metrics: %d %s", code, body)
	}
	return sumMetric(body, name, labels...)
}

// sumMetric sums the samples of name in a Prometheus text exposition whose
// labels include the given name, value pairs.
func sumMetric(text, name string, labels ...string) float64 {
	var sum float64
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		series, value, ok := cutLast(line, " ")
		if !ok {
			continue
		}
		metric, labelText := series, ""
		if i := strings.IndexByte(series, '{'); i >= 0 {
			metric, labelText = series[:i], strings.TrimSuffix(series[i+1:], "}")
		}
		if metric != name {
			continue
		}
		have := parseLabels(labelText)
		match := true
		for i := 0; i+1 < len(labels); i += 2 {
			if have[labels[i]] != labels[i+1] {
				match = false
				break
			}
		}
		if !match {
			continue
		}
		if v, err := strconv.ParseFloat(value, 64); err == nil {
			sum += v
		}
	}
	return sum
}

func cutLast(s, sep string) (string, string, bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}

// parseLabels parses `a="x",b="y"` (with \" and \\ escapes).
func parseLabels(s string) map[string]string {
	out := map[string]string{}
	for len(s) > 0 {
		eq := strings.IndexByte(s, '=')
		if eq < 0 || eq+1 >= len(s) || s[eq+1] != '"' {
			return out
		}
		key := strings.TrimSpace(strings.TrimPrefix(s[:eq], ","))
		var val strings.Builder
		i := eq + 2
		for ; i < len(s); i++ {
			if s[i] == '\\' && i+1 < len(s) {
				i++
				val.WriteByte(s[i])
				continue
			}
			if s[i] == '"' {
				break
			}
			val.WriteByte(s[i])
		}
		out[key] = val.String()
		s = s[min(i+1, len(s)):]
	}
	return out
}

// peakRSS reads VmHWM, the peak resident set size, of the current
// incarnation from /proc.
func (d *daemon) peakRSS() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.pid()))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(rest)
			if len(f) == 2 && f[1] == "kB" {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				return kb << 10, err
			}
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", d.pid())
}

// dumpTail prints the end of the log file (all incarnations) into the test
// output.
func (d *daemon) dumpTail(n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	_ = d.logFile.Sync()
	b, err := os.ReadFile(d.logPath)
	if err != nil {
		return
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	d.t.Logf("daemon log %s (last %d lines):\n%s", d.logPath, len(lines), bytes.Join(lines, []byte("\n")))
}

// ---------------------------------------------------------------------------
// small helpers

func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	testpeers.Eventually(t, within, what, cond)
}

func freePort(t *testing.T) string {
	t.Helper()
	port, err := testpeers.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

func ms(d time.Duration) string { return d.Round(time.Millisecond).String() }
