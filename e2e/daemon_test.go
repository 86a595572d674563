//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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

// world starts the fake SQS queue and Auto Scaling group (with the hook and
// amazon-ec2-metadata-mock's instance) for one scenario.
func world(t *testing.T, heartbeatTimeout time.Duration) *testenv.Env {
	t.Helper()
	env, err := testenv.New(testenv.Options{NoTrino: true, InstanceID: aemmInstance, HeartbeatTimeout: heartbeatTimeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(env.Close)
	return env
}

// daemonEnv is the process environment of the real binary: configuration
// by SCALEDOWND_* variables only, hermetic AWS credentials, identity and
// region from amazon-ec2-metadata-mock. The scenarios are about the queue:
// aws.mode is sqs, because amazon-ec2-metadata-mock serves a Spot
// interruption notice and a target lifecycle state from the start, which
// the default mode (both) would act on at once.
func daemonEnv(env *testenv.Env, trinoURL, listen, stateDir string, settings map[string]string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SCALEDOWND_") && !strings.HasPrefix(kv, "AWS_") {
			out = append(out, kv)
		}
	}
	vars := map[string]string{
		"AWS_ACCESS_KEY_ID":           "AKIAE2ETESTE2ETEST00",
		"AWS_SECRET_ACCESS_KEY":       "e2e-test-secret",
		"AWS_CONFIG_FILE":             os.DevNull,
		"AWS_SHARED_CREDENTIALS_FILE": os.DevNull,
		"AWS_EC2_METADATA_DISABLED":   "true",

		"SCALEDOWND_CONFIG_FILE":              os.DevNull,
		"SCALEDOWND_AWS_IMDS_ENDPOINT":        aemmURL,
		"SCALEDOWND_AWS_MODE":                 "sqs",
		"SCALEDOWND_AWS_QUEUE_URL":            env.QueueURL,
		"SCALEDOWND_AWS_SQS_ENDPOINT":         env.SQS.URL(),
		"SCALEDOWND_AWS_AUTOSCALING_ENDPOINT": env.ASG.URL(),
		"SCALEDOWND_AWS_ASG_NAME":             testenv.Group,
		"SCALEDOWND_AWS_HOOK_NAME":            testenv.Hook,
		"SCALEDOWND_AWS_WAIT_TIME":            "5s",
		"SCALEDOWND_LIFECYCLE_MAX_DRAIN_TIME": "10m",
		"SCALEDOWND_TRINO_URL":                trinoURL,
		"SCALEDOWND_TRINO_USER":               "scaledownd",
		"SCALEDOWND_LISTEN_ADDRESS":           listen,
		"SCALEDOWND_STATE_DIR":                stateDir,
		"SCALEDOWND_LOG_FORMAT":               "json",
		"SCALEDOWND_LOG_LEVEL":                "debug",
	}
	for k, v := range settings {
		vars[k] = v
	}
	keys := make([]string, 0, len(vars))
	for k := range vars {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		out = append(out, k+"="+vars[k])
	}
	return out
}

// logRec is one JSON log line of the daemon.
type logRec struct {
	TS     time.Time
	Level  string
	Msg    string
	Fields map[string]any
}

func (r logRec) str(k string) string {
	switch v := r.Fields[k].(type) {
	case nil:
		return ""
	case string:
		return v
	default:
		return fmt.Sprint(v)
	}
}

func (r logRec) String() string {
	b, _ := json.Marshal(r.Fields)
	return fmt.Sprintf("%s %s %q %s", r.TS.Format("15:04:05.000"), r.Level, r.Msg, clip(string(b), 300))
}

// daemonRun is the real scaledownd binary running as a child process.
type daemonRun struct {
	Listen  string
	LogPath string
	cmd     *exec.Cmd
	mu      sync.Mutex
	recs    []logRec
	other   []string // lines that are not JSON
	exited  chan struct{}
	waitErr error
	stopped bool
}

// startDaemon runs the binary for worker trinoURL with the scenario's
// settings (SCALEDOWND_* name → value), logs to <out>/<name>-scaledownd.log,
// and waits until /readyz answers 200.
func startDaemon(t *testing.T, name string, env *testenv.Env, trinoURL string, settings map[string]string) *daemonRun {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	d := &daemonRun{Listen: "127.0.0.1:" + port, LogPath: filepath.Join(outDir, name+"-scaledownd.log"), exited: make(chan struct{})}
	logf, err := os.Create(d.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	d.cmd = exec.Command(binary, "run")
	d.cmd.Env = daemonEnv(env, trinoURL, d.Listen, t.TempDir(), settings)
	d.cmd.Stdout = logf
	stderr, err := d.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	registerPID(d.cmd.Process.Pid, binary)
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		copyLines(stderr, logf, d.parse)
	}()
	go func() {
		<-copied
		d.waitErr = d.cmd.Wait()
		logf.Close()
		close(d.exited)
	}()
	t.Cleanup(func() { d.stop(t) })
	t.Logf("scaledownd (pid %d) for %s, listening on %s, log %s", d.cmd.Process.Pid, trinoURL, d.Listen, d.LogPath)

	deadline := time.Now().Add(60 * time.Second)
	for {
		code, body := d.get("/readyz")
		if code == http.StatusOK {
			return d
		}
		select {
		case <-d.exited:
			t.Fatalf("scaledownd exited before it was ready (%v); log:\n%s", d.waitErr, d.tail(30))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("scaledownd not ready after 60 s (/readyz %d %s); log:\n%s", code, clip(body, 200), d.tail(30))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

var tsLayouts = []string{"2006-01-02T15:04:05.000Z0700", time.RFC3339Nano}

func (d *daemonRun) parse(line string) {
	var m map[string]any
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		d.mu.Lock()
		d.other = append(d.other, line)
		d.mu.Unlock()
		return
	}
	r := logRec{Fields: m}
	r.Level, _ = m["level"].(string)
	r.Msg, _ = m["msg"].(string)
	ts, _ := m["ts"].(string)
	for _, l := range tsLayouts {
		if at, err := time.Parse(l, ts); err == nil {
			r.TS = at
			break
		}
	}
	d.mu.Lock()
	d.recs = append(d.recs, r)
	d.mu.Unlock()
}

// logs returns the records whose message contains msg and that match pred
// (nil: all).
func (d *daemonRun) logs(msg string, pred func(logRec) bool) []logRec {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []logRec
	for _, r := range d.recs {
		if strings.Contains(r.Msg, msg) && (pred == nil || pred(r)) {
			out = append(out, r)
		}
	}
	return out
}

// firstLog returns the first matching record, waiting up to 10 s for it
// (a line is written just after the effect it reports); it fails the test
// if none comes.
func (d *daemonRun) firstLog(t *testing.T, msg string, pred func(logRec) bool) logRec {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if recs := d.logs(msg, pred); len(recs) > 0 {
			return recs[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("scaledownd never logged %q (matching the test's condition) within 10 s; log tail:\n%s", msg, d.tail(40))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// levelLogs returns the records at level (e.g. "error").
func (d *daemonRun) levelLogs(level string) []logRec {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []logRec
	for _, r := range d.recs {
		if r.Level == level {
			out = append(out, r)
		}
	}
	return out
}

func (d *daemonRun) tail(n int) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var lines []string
	for _, r := range d.recs {
		lines = append(lines, "  "+r.String())
	}
	for _, o := range d.other {
		lines = append(lines, "  (raw) "+o)
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (d *daemonRun) get(path string) (int, string) {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + d.Listen + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

var sampleRE = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)`)
var labelRE = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)

// metric sums the samples of name on the daemon's /metrics whose labels
// include labels (name, value pairs).
func (d *daemonRun) metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	code, body := d.get("/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", code, clip(body, 200))
	}
	sum := 0.0
	for _, line := range strings.Split(body, "\n") {
		m := sampleRE.FindStringSubmatch(line)
		if m == nil || m[1] != name {
			continue
		}
		have := map[string]string{}
		for _, lm := range labelRE.FindAllStringSubmatch(m[2], -1) {
			have[lm[1]] = lm[2]
		}
		match := true
		for i := 0; i+1 < len(labels); i += 2 {
			match = match && have[labels[i]] == labels[i+1]
		}
		if !match {
			continue
		}
		v, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		sum += v
	}
	return sum
}

// stop sends SIGTERM and expects a clean exit within 10 s.
func (d *daemonRun) stop(t *testing.T) {
	d.mu.Lock()
	if d.stopped {
		d.mu.Unlock()
		return
	}
	d.stopped = true
	d.mu.Unlock()
	select {
	case <-d.exited:
		t.Errorf("scaledownd exited on its own (%v); log tail:\n%s", d.waitErr, d.tail(20))
		return
	default:
	}
	sent := time.Now()
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
		if d.waitErr != nil {
			t.Errorf("scaledownd exit after SIGTERM: %v", d.waitErr)
		}
		if took := time.Since(sent); took > 5*time.Second {
			t.Errorf("scaledownd took %s to stop after SIGTERM (promised: 5 s)", took)
		}
	case <-time.After(10 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.exited
		t.Errorf("scaledownd still running 10 s after SIGTERM; killed")
	}
	d.mu.Lock()
	other := append([]string(nil), d.other...)
	d.mu.Unlock()
	for _, l := range other {
		if strings.TrimSpace(l) != "" {
			t.Errorf("scaledownd wrote a line that is not JSON: %q", clip(l, 200))
		}
	}
}

// terminate starts a terminate lifecycle action for the AEMM instance and
// delivers its notification to the queue.
func terminate(t *testing.T, env *testenv.Env) (token, msgID string, sent time.Time) {
	t.Helper()
	token, msg := env.Terminate(aemmInstance)
	if token == "" {
		t.Fatal("the fake Auto Scaling started no action")
	}
	sent = time.Now()
	msgID = env.SQS.Send(env.QueueURL, msg.Direct())
	return token, msgID, sent
}

// waitAction waits until the action is no longer pending.
func waitAction(t *testing.T, env *testenv.Env, token string, within time.Duration) testpeers.AutoScalingAction {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	act, err := env.ASG.WaitAction(ctx, token)
	if err != nil {
		t.Fatalf("lifecycle action still pending after %s: %v", within, err)
	}
	return act
}

func completedContinue(t *testing.T, act testpeers.AutoScalingAction) {
	t.Helper()
	if act.State != testpeers.AutoScalingActionCompleted || act.Result != testpeers.AutoScalingContinue {
		t.Fatalf("action ended %s/%s (%s), want completed with CONTINUE", act.State, act.Result, act.ExpiryReason)
	}
}

func waitDeleted(t *testing.T, env *testenv.Env, id string, within time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	if err := env.SQS.WaitDeleted(ctx, env.QueueURL, id); err != nil {
		t.Fatalf("lifecycle message %s not deleted within %s: %v", id, within, err)
	}
}

// checkHeartbeats: while the drain outlasted the heartbeat interval
// (HeartbeatTimeout/2), heartbeats went out at that pace and no gap between
// the start, the heartbeats and the completion reached the timeout.
func checkHeartbeats(t *testing.T, act testpeers.AutoScalingAction, timeout time.Duration) {
	t.Helper()
	interval := timeout / 2
	held := act.CompletedAt.Sub(act.Started)
	if held <= interval {
		t.Fatalf("the action was held only %s, not longer than the %s heartbeat interval: nothing to prove", held, interval)
	}
	want := int(held / interval) // one at once, then one per interval; allow one lost to scheduling
	if len(act.Heartbeats) < want || len(act.Heartbeats) < 2 {
		t.Errorf("%d heartbeats while the action was held %s (interval %s), want at least %d", len(act.Heartbeats), held.Round(time.Millisecond), interval, max(want, 2))
	}
	prev := act.Started
	for _, hb := range append(append([]time.Time(nil), act.Heartbeats...), act.CompletedAt) {
		if gap := hb.Sub(prev); gap >= timeout {
			t.Errorf("gap of %s between heartbeats reaches the %s HeartbeatTimeout", gap, timeout)
		}
		prev = hb
	}
}
