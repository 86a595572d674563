package ops_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"golang.org/x/crypto/bcrypt"

	"github.com/scaledownd/scaledownd/internal/config"
	"github.com/scaledownd/scaledownd/internal/daemon"
	"github.com/scaledownd/scaledownd/internal/metrics"
	"github.com/scaledownd/scaledownd/internal/ops"
	"github.com/scaledownd/scaledownd/internal/testenv"
	"github.com/scaledownd/scaledownd/internal/testpeers"
	"github.com/scaledownd/scaledownd/pkg/lifecycle"
	"github.com/scaledownd/scaledownd/pkg/trinoadmin"
)

func TestMain(m *testing.M) {
	testenv.HermeticAWS()
	code := m.Run()
	testpeers.StopSharedMoto()
	os.Exit(code)
}

func deps(t *testing.T, env *testenv.Env) ops.Deps {
	t.Helper()
	return depsFor(t, env, env.Config(env.Instance))
}

func depsFor(t *testing.T, env *testenv.Env, cfg config.Config) ops.Deps {
	t.Helper()
	sq, as, err := daemon.Clients(context.Background(), cfg, cfg.AWS.Region, metrics.New("test"), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	tc, err := daemon.TrinoClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return ops.Deps{InstanceID: env.Instance, Region: cfg.AWS.Region, Actions: lifecycle.NewActions(as, time.Second), Queue: sq, Trino: tc}
}

func byName(checks []ops.Check) map[string]ops.Check {
	m := map[string]ops.Check{}
	for _, c := range checks {
		m[c.Name] = c
	}
	return m
}

func TestCheckAllGood(t *testing.T) {
	env, err := testenv.New(testenv.Options{HeartbeatTimeout: 600 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	cfg := env.Config(env.Instance)
	cfg.AWS.Hook = testenv.Hook
	checks := ops.RunChecks(context.Background(), cfg, deps(t, env))
	if ops.Failed(checks) {
		var b bytes.Buffer
		_ = ops.PrintChecks(&b, checks, false)
		t.Fatalf("checks failed:\n%s", b.String())
	}
	got := byName(checks)
	for _, name := range []string{"identity", "asg-membership", "lifecycle-hook", "queue", "trino", "trino-permission"} {
		if _, ok := got[name]; !ok {
			t.Errorf("no %s check", name)
		}
	}
	if !strings.Contains(got["trino"].Detail, "DRAINING → DRAINED") || !strings.Contains(got["trino"].Detail, "476") ||
		!strings.Contains(got["trino"].Detail, "state ACTIVE") {
		t.Errorf("trino check = %q", got["trino"].Detail)
	}
	// The permission probe must not change the worker's state.
	if env.Trino.State() != "ACTIVE" {
		t.Fatalf("worker is %s after check", env.Trino.State())
	}
	var b bytes.Buffer
	if err := ops.PrintChecks(&b, checks, true); err != nil {
		t.Fatal(err)
	}
	var parsed struct {
		OK     bool        `json:"ok"`
		Checks []ops.Check `json:"checks"`
	}
	if err := json.Unmarshal(b.Bytes(), &parsed); err != nil || !parsed.OK || len(parsed.Checks) != len(checks) {
		t.Fatalf("json output %s (%v)", b.String(), err)
	}
}

func TestCheckFindsProblems(t *testing.T) {
	env, err := testenv.New(testenv.Options{Trino: testpeers.TrinoOptions{WriteUsers: []string{"someone-else"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	cfg := env.Config(env.Instance)
	cfg.AWS.Hook = "no-such-hook"
	got := byName(ops.RunChecks(context.Background(), cfg, deps(t, env)))
	if c := got["trino-permission"]; c.OK || !strings.Contains(c.Detail, "write system information") {
		t.Errorf("permission check = %+v, want a failure naming the fix", c)
	}
	if c := got["lifecycle-hook"]; c.OK {
		t.Errorf("hook check passed for a missing hook: %+v", c)
	}
}

func TestDrainAndUndrain(t *testing.T) {
	w := testpeers.NewTrino(testpeers.TrinoOptions{GracePeriod: 50 * time.Millisecond})
	defer w.Close()
	c, err := trinoadmin.New(trinoadmin.Options{URL: w.URL(), User: "scaledownd"})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	ctx := context.Background()
	if err := ops.Drain(ctx, &out, c, ops.DrainOptions{Strategy: trinoadmin.StrategyDrain, Wait: true}, zaptest.NewLogger(t)); err != nil {
		t.Fatal(err)
	}
	if w.State() != "DRAINED" || !strings.Contains(out.String(), "drained") {
		t.Fatalf("state %s, output %q", w.State(), out.String())
	}
	if err := ops.Undrain(ctx, &out, c); err != nil {
		t.Fatal(err)
	}
	if w.State() != "ACTIVE" {
		t.Fatalf("state %s after undrain", w.State())
	}
	if err := ops.Drain(ctx, &out, c, ops.DrainOptions{Strategy: trinoadmin.StrategyAuto}, zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	if w.State() != "DRAINING" {
		t.Fatalf("state %s after drain without --wait", w.State())
	}
}

func TestStatusOfARunningDaemon(t *testing.T) {
	env, err := testenv.New(testenv.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	finish := env.Trino.AddBlockedTask()
	defer finish()
	d, err := testenv.StartDaemon(context.Background(), env.Config(env.Instance), zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop(5 * time.Second)
	token, msg := env.Terminate(env.Instance)
	env.SQS.Send(env.QueueURL, msg.Direct())
	var out bytes.Buffer
	testpeers.Eventually(t, 10*time.Second, "status shows the drain", func() bool {
		out.Reset()
		return ops.Status(context.Background(), &out, ops.StatusOptions{Listen: d.Addr}, false) == nil && strings.Contains(out.String(), "draining")
	})
	for _, want := range []string{"instance_id:  " + env.Instance, "token_prefix: " + token[:8], "asg:          " + testenv.Group} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), token) {
		t.Error("status shows the whole token")
	}
}

// The dead-letter rule reads the queue's RedrivePolicy through
// GetQueueAttributes, from the fake SQS and from moto.
func TestCheckWarnsAboutADeadLetterQueueOnASharedQueue(t *testing.T) {
	env, err := testenv.New(testenv.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	dlq := env.SQS.CreateQueue("lifecycle-dlq", testpeers.SQSQueueOptions{})
	tests := []struct {
		maxReceive int
		warn       bool
	}{
		{20, true},  // group MaxSize 10 (testenv): 20 < 5 × 10
		{50, false}, // at the bound
	}
	for _, peer := range []string{"fake", "moto"} {
		for _, tt := range tests {
			cfg := env.Config(env.Instance)
			if peer == "fake" {
				cfg.AWS.QueueURL = env.SQS.CreateQueue(fmt.Sprintf("shared-%d", tt.maxReceive), testpeers.SQSQueueOptions{MaxReceiveCount: tt.maxReceive, DeadLetterQueue: dlq})
			} else {
				moto := testpeers.SharedMoto(t)
				q, err := moto.CreateQueue(context.Background(), "shared", tt.maxReceive)
				if err != nil {
					t.Fatal(err)
				}
				cfg.AWS.SQSEndpoint, cfg.AWS.QueueURL = moto.URL, q.URL
			}
			got := byName(ops.RunChecks(context.Background(), cfg, depsFor(t, env, cfg)))["queue"]
			if !got.OK || got.Warn != tt.warn {
				t.Fatalf("%s, maxReceiveCount %d: check = %+v, want ok with warning %v", peer, tt.maxReceive, got, tt.warn)
			}
			if !strings.Contains(got.Detail, fmt.Sprintf("dead-letter queue after %d receives", tt.maxReceive)) {
				t.Fatalf("%s: the check does not name maxReceiveCount: %s", peer, got.Detail)
			}
			if tt.warn && !strings.Contains(got.Detail, "below 5 × the group's MaxSize 10 = 50") {
				t.Fatalf("%s: warning does not explain the rule: %s", peer, got.Detail)
			}
		}
	}
}

// In mode both the rule follows the growing hand-back visibility: a
// message's receives follow its age, so maxReceiveCount is held against
// lifecycle.max-drain-time, not the group's size.
func TestCheckHoldsTheDeadLetterQueueAgainstTheLongestDrainInModeBoth(t *testing.T) {
	env, err := testenv.New(testenv.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	dlq := env.SQS.CreateQueue("lifecycle-dlq", testpeers.SQSQueueOptions{})
	for _, tt := range []struct {
		maxReceive int
		maxDrain   time.Duration
		want       string // in the warning; "" for none
	}{
		{10, 8 * time.Hour, ""}, // 1+2+…+256 min = 8h31m
		{10, 48 * time.Hour, "raise maxReceiveCount to at least 14"}, // 8h31m, 17h03m, 29h03m, 41h03m, 53h03m
		{14, 48 * time.Hour, ""},
	} {
		cfg := env.Config(env.Instance)
		cfg.AWS.Mode = "both"
		cfg.Lifecycle.MaxDrainTime = tt.maxDrain
		cfg.AWS.QueueURL = env.SQS.CreateQueue(fmt.Sprintf("both-%d-%d", tt.maxReceive, int(tt.maxDrain.Hours())),
			testpeers.SQSQueueOptions{MaxReceiveCount: tt.maxReceive, DeadLetterQueue: dlq})
		got := byName(ops.RunChecks(context.Background(), cfg, depsFor(t, env, cfg)))["queue"]
		if !got.OK || got.Warn != (tt.want != "") || !strings.Contains(got.Detail, tt.want) {
			t.Errorf("maxReceiveCount %d, max-drain-time %s: check = %+v, want warning %q", tt.maxReceive, tt.maxDrain, got, tt.want)
		}
	}
}

func TestCheckAsksTheCoordinatorAboutThisWorker(t *testing.T) {
	env, err := testenv.New(testenv.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	coord := testpeers.NewTrino(testpeers.TrinoOptions{Coordinator: true})
	defer coord.Close()
	refused := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return "http://" + ln.Addr().String()
	}()

	tests := []struct {
		name     string
		url      string
		listed   string // worker-1's row in system.runtime.nodes
		ok, warn bool
		detail   string
	}{
		{"active", coord.URL(), "active", true, false, "lists node worker-1 as active"},
		{"draining", coord.URL(), "draining", true, true, "lists node worker-1 as draining; a launch waits until it is active"},
		{"not listed", coord.URL(), "", false, false, "does not list node worker-1"},
		{"unreachable", refused, "", false, false, refused + ": POST /v1/statement"},
		{"not configured", "", "active", true, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			coord.SetNode("worker-1", tt.listed)
			cfg := env.Config(env.Instance)
			cfg.Trino.CoordinatorURL = tt.url
			got, ok := byName(ops.RunChecks(context.Background(), cfg, deps(t, env)))["trino-coordinator"]
			switch {
			case tt.url == "":
				if ok {
					t.Fatalf("coordinator checked without trino.coordinator-url: %+v", got)
				}
			case !ok:
				t.Fatal("no trino-coordinator check")
			case got.OK != tt.ok || got.Warn != tt.warn || !strings.Contains(got.Detail, tt.detail):
				t.Fatalf("check = %+v, want ok %v, warning %v, detail with %q", got, tt.ok, tt.warn, tt.detail)
			}
		})
	}
	if env.Trino.State() != "ACTIVE" {
		t.Fatalf("worker %s after the checks", env.Trino.State())
	}
}

// TestCheckWarnsWhenOthersCanReadThePasswordFile: a password file with
// group or other read bits is a warning naming the mode; a 0600 one passes.
func TestCheckWarnsWhenOthersCanReadThePasswordFile(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "trino-password")
	if err := os.WriteFile(pw, []byte("s3cret"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Trino.PasswordFile = pw
	for _, tc := range []struct {
		mode os.FileMode
		warn bool
	}{{0o600, false}, {0o400, false}, {0o640, true}, {0o604, true}, {0o644, true}} {
		if err := os.Chmod(pw, tc.mode); err != nil {
			t.Fatal(err)
		}
		c, ok := byName(ops.RunChecks(context.Background(), cfg, ops.Deps{}))["trino-password"]
		if !ok || !c.OK || c.Warn != tc.warn {
			t.Errorf("mode %04o: trino-password check %+v (present %v), want ok with warning=%v", tc.mode, c, ok, tc.warn)
		}
		if tc.warn && !strings.Contains(c.Detail, fmt.Sprintf("%04o", tc.mode)) {
			t.Errorf("mode %04o: the warning does not name the mode: %s", tc.mode, c.Detail)
		}
	}
	cfg.Trino.PasswordFile = ""
	if c, ok := byName(ops.RunChecks(context.Background(), cfg, ops.Deps{}))["trino-password"]; ok {
		t.Errorf("no password configured, yet a trino-password check: %+v", c)
	}
}

// TestCheckLoadsTheWebConfig: the listener's web configuration is loaded as
// at start-up; one that would stop the daemon fails the check, basic auth
// without TLS is a warning.
func TestCheckLoadsTheWebConfig(t *testing.T) {
	dir := t.TempDir()
	cfg := config.Default()
	hash, err := bcrypt.GenerateFromPassword([]byte("scrape-secret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, yaml string
		ok, warn   bool
	}{
		{"basic auth without TLS", "basic_auth_users:\n  prometheus: " + string(hash) + "\n", true, true},
		{"a malformed hash", "basic_auth_users:\n  prometheus: not-a-bcrypt-hash\n", false, false},
		{"an unknown key", "tls_server_config:\n  certfile: x.pem\n", false, false},
		{"a missing certificate", "tls_server_config:\n  cert_file: nope.pem\n  key_file: nope-key.pem\n", false, false},
	} {
		f := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".yml")
		if err := os.WriteFile(f, []byte(tc.yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg.Web.Config.File = f
		c, ok := byName(ops.RunChecks(context.Background(), cfg, ops.Deps{}))["web-config"]
		if !ok || c.OK != tc.ok || c.Warn != tc.warn {
			t.Errorf("%s: web-config check %+v (present %v), want ok=%v warning=%v", tc.name, c, ok, tc.ok, tc.warn)
		}
	}
}
