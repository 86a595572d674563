package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/scaledownd/scaledownd/internal/config"
	"github.com/scaledownd/scaledownd/internal/testenv"
)

// binary is the daemon built once for these tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "scaledownd-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "scaledownd")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		os.Stderr.Write(out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// runBinary runs the daemon binary with args and a clean SCALEDOWND_ environment.
func runBinary(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(cleanEnv(), env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), code
}

func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, config.EnvPrefix) {
			out = append(out, kv)
		}
	}
	// AWS on loopback ports nobody listens on: the binary must never
	// reach real AWS or the link-local metadata service from a test.
	return append(out, config.EnvPrefix+"CONFIG_FILE="+os.DevNull,
		config.EnvPrefix+"AWS_IMDS_ENDPOINT="+testenv.DeadEndpoint,
		config.EnvPrefix+"AWS_AUTOSCALING_ENDPOINT="+testenv.DeadEndpoint,
		config.EnvPrefix+"AWS_SQS_ENDPOINT="+testenv.DeadEndpoint)
}

func TestVersion(t *testing.T) {
	out, _, code := runBinary(t, nil, "version")
	if code != 0 || !strings.HasPrefix(out, "scaledownd ") {
		t.Fatalf("version: code %d, output %q", code, out)
	}
}

func TestHelpListsEverySetting(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"help"}, {"run", "-h"}} {
		out, _, code := runBinary(t, nil, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d", args, code)
		}
		for _, s := range config.Settings() {
			if !strings.Contains(out, s.Flag) || !strings.Contains(out, s.Env) {
				t.Fatalf("%v: help lacks %s / %s", args, s.Flag, s.Env)
			}
		}
	}
}

func TestConfigPrintRedactsSecrets(t *testing.T) {
	out, errOut, code := runBinary(t, []string{"SCALEDOWND_TRINO_PASSWORD=correct-horse-battery"},
		"config", "print", "--trino.url=https://127.0.0.1:8443", "--trino.strategy=drain")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if strings.Contains(out+errOut, "correct-horse") {
		t.Fatal("config print leaks the password")
	}
	for _, want := range []string{"password: <redacted>", "strategy: drain", "url: https://127.0.0.1:8443"} {
		if !strings.Contains(out, want) {
			t.Fatalf("config print lacks %q:\n%s", want, out)
		}
	}
}

func TestInvalidConfigNamesTheKey(t *testing.T) {
	_, errOut, code := runBinary(t, []string{"SCALEDOWND_TRINO_STRATEGY=yolo"}, "config", "print", "--aws.wait-time=1m")
	if code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
	for _, want := range []string{"trino.strategy", "aws.wait-time"} {
		if !strings.Contains(errOut, want) {
			t.Fatalf("error output lacks %q: %s", want, errOut)
		}
	}
}

// A misspelt SCALEDOWND_ variable stops the daemon (the run command, and
// every other that reads the configuration) instead of being ignored.
func TestUnknownEnvironmentVariableStopsTheDaemon(t *testing.T) {
	for _, args := range [][]string{{}, {"run"}, {"config", "print"}, {"check"}} {
		_, errOut, code := runBinary(t, []string{"SCALEDOWND_LIFECYCLE_MAX_DRAIN_TIEM=1h"}, args...)
		if code == 0 {
			t.Fatalf("%v: exit 0 with a misspelt variable", args)
		}
		for _, want := range []string{"SCALEDOWND_LIFECYCLE_MAX_DRAIN_TIEM", "did you mean SCALEDOWND_LIFECYCLE_MAX_DRAIN_TIME?"} {
			if !strings.Contains(errOut, want) {
				t.Fatalf("%v: error output lacks %q: %s", args, want, errOut)
			}
		}
	}
	// The variables that are not settings but belong to scaledownd pass.
	if _, errOut, code := runBinary(t, []string{"SCALEDOWND_NO_START=1"}, "config", "print"); code != 0 {
		t.Fatalf("SCALEDOWND_NO_START refused: exit %d: %s", code, errOut)
	}
}

func TestUnknownCommand(t *testing.T) {
	if _, _, code := runBinary(t, nil, "frobnicate"); code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
}

// TestSIGTERMStopsWithinFiveSeconds runs the real binary in the default
// mode without a queue (polling instance metadata) and stops it with
// SIGTERM.
func TestSIGTERMStopsWithinFiveSeconds(t *testing.T) {
	cmd := exec.Command(binary, "--aws.instance-id=i-0123456789abcdef0", "--aws.region=us-east-1",
		"--listen-address=127.0.0.1:0", "--state-dir="+t.TempDir())
	cmd.Env = cleanEnv()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := make(chan map[string]any, 100)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var rec map[string]any
			if json.Unmarshal(sc.Bytes(), &rec) == nil {
				lines <- rec
			}
		}
		close(lines)
	}()
	deadline := time.After(20 * time.Second)
	for idle := false; !idle; {
		select {
		case rec, ok := <-lines:
			if !ok {
				t.Fatal("daemon exited early")
			}
			msg, _ := rec["msg"].(string)
			// Without a queue the default mode watches instance metadata.
			idle = strings.HasPrefix(msg, "scaledownd ready")
		case <-deadline:
			t.Fatal("daemon did not reach idle")
		}
	}
	sent := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
		if took := time.Since(sent); took > 5*time.Second {
			t.Fatalf("took %s to stop", took)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("still running 5 s after SIGTERM")
	}
}

// TestSecretsStayOutOfLogsAndMetrics runs the binary with a Trino password
// and reads everything it says: its log and its /metrics.
func TestSecretsStayOutOfLogsAndMetrics(t *testing.T) {
	const secret = "s3cr3t-Tr1no-pa55word"
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, env := range [][]string{
		{"SCALEDOWND_TRINO_PASSWORD=" + secret},
		{"SCALEDOWND_TRINO_PASSWORD_FILE=" + pwFile},
	} {
		cmd := exec.Command(binary, "--aws.instance-id=i-0123456789abcdef0", "--aws.region=us-east-1",
			"--listen-address=127.0.0.1:0", "--state-dir="+dir, "--trino.url=https://127.0.0.1:1", "--log.level=debug")
		cmd.Env = append(cleanEnv(), env...)
		var logs bytes.Buffer
		stderr, _ := cmd.StderrPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		addr := make(chan string, 1)
		go func() {
			sc := bufio.NewScanner(stderr)
			for sc.Scan() {
				logs.Write(sc.Bytes())
				logs.WriteByte('\n')
				var rec map[string]any
				if json.Unmarshal(sc.Bytes(), &rec) == nil && rec["msg"] == "listening" {
					addr <- rec["address"].(string)
				}
			}
		}()
		var metricsText []byte
		select {
		case a := <-addr:
			resp, err := http.Get("http://" + a + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			metricsText, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
		case <-time.After(20 * time.Second):
			t.Fatal("daemon did not start")
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		if bytes.Contains(logs.Bytes(), []byte(secret)) {
			t.Fatalf("%v: the password appears in the log", env)
		}
		if bytes.Contains(metricsText, []byte(secret)) {
			t.Fatalf("%v: the password appears in /metrics", env)
		}
		if !bytes.Contains(logs.Bytes(), []byte(`"trino.password":"<redacted>"`)) && env[0][:24] == "SCALEDOWND_TRINO_PASSWOR" && !strings.Contains(env[0], "FILE") {
			t.Fatalf("start-up log should show the password redacted:\n%s", logs.String())
		}
	}
}
