package deploytest

import (
	"bytes"
	"context"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/scaledownd/scaledownd/internal/config"
	"github.com/scaledownd/scaledownd/internal/testenv"
	"github.com/scaledownd/scaledownd/internal/testpeers"
)

// passwordGate is a worker with HTTPS and password authentication: a TLS
// front for the fake Trino worker that admits only the right Basic
// credentials (as Trino's password authenticator does) and passes the
// authenticated user on.
type passwordGate struct {
	srv      *httptest.Server
	user, pw string

	mu                 sync.Mutex
	admitted, rejected int
	puts               int
}

func newPasswordGate(t *testing.T, worker *testpeers.TrinoWorker, user, pw string) *passwordGate {
	t.Helper()
	target, err := url.Parse(worker.URL())
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	g := &passwordGate{user: user, pw: pw}
	g.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		g.mu.Lock()
		if !ok || u != g.user || p != g.pw {
			g.rejected++
			g.mu.Unlock()
			w.Header().Set("WWW-Authenticate", `Basic realm="Trino"`)
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		g.admitted++
		if r.Method == http.MethodPut {
			g.puts++
		}
		g.mu.Unlock()
		r.Header.Del("Authorization")
		r.Header.Set("X-Trino-User", u)
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(g.srv.Close)
	return g
}

func (g *passwordGate) counts() (admitted, rejected, puts int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.admitted, g.rejected, g.puts
}

// caFile writes the gate's certificate as a PEM bundle for trino.ca-file.
func (g *passwordGate) caFile(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ca.pem")
	b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: g.srv.Certificate().Raw})
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// lockedBuffer collects a process's output while it runs.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// daemonEnv is the environment for the real binary: this process's,
// without settings, AWS and credential variables, plus hermetic AWS
// credentials, the settings in which cfg differs from the default (the
// packaged config file is the default: TestPackagedConfigIsTheDefault),
// and extra.
func daemonEnv(cfg config.Config, extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "SCALEDOWND_") || strings.HasPrefix(kv, "AWS_") || strings.HasPrefix(kv, "CREDENTIALS_DIRECTORY=") {
			continue
		}
		env = append(env, kv)
	}
	env = append(env,
		"AWS_ACCESS_KEY_ID=AKIADEPLOYTESTDEPLOY", "AWS_SECRET_ACCESS_KEY=deploytest-secret",
		"AWS_CONFIG_FILE="+os.DevNull, "AWS_SHARED_CREDENTIALS_FILE="+os.DevNull, "AWS_EC2_METADATA_DISABLED=true")
	got, def := cfg.Fields(), config.Default().Fields()
	for _, k := range config.Keys(got) {
		if got[k] != def[k] {
			env = append(env, config.EnvName(k)+"="+got[k])
		}
	}
	return append(env, extra...)
}

// TestTrinoPasswordNeedsNoWorldReadableFile starts from the packaged unit
// and configuration and proves that the Trino password never has to be
// readable by other users: the unit hands it over as a systemd credential,
// the package ships no secret and no world-readable place for one, and the
// real binary, given only CREDENTIALS_DIRECTORY holding a 0600 file (as
// systemd's LoadCredential= makes it), drains a worker behind HTTPS and
// password authentication and completes the action; with the unit's empty
// fallback credential it is refused.
func TestTrinoPasswordNeedsNoWorldReadableFile(t *testing.T) {
	unit := string(readRepoFile(t, "deploy/systemd/scaledownd.service"))
	d := unitDirectives(unit)
	if got, want := d["LoadCredential"], config.CredentialName+":"+config.CredentialFile; len(got) != 1 || got[0] != want {
		t.Errorf("scaledownd.service: LoadCredential=%v, want exactly LoadCredential=%s", got, want)
	}
	// Without it, a missing password file would fail the unit's start
	// (243/CREDENTIALS) on every worker that needs no password.
	if got, want := d["SetCredential"], config.CredentialName+`:\n`; len(got) != 1 || got[0] != want {
		t.Errorf("scaledownd.service: SetCredential=%v, want exactly SetCredential=%s (the fallback when the file is absent)", got, want)
	}
	if got := d["DynamicUser"]; len(got) != 1 || got[0] != "yes" {
		t.Errorf("scaledownd.service: DynamicUser=%v, want yes", got)
	}

	// The package: no password file, and the files it ships under /etc
	// (the world-readable ones) hold no password.
	var nfpm struct {
		Contents []struct {
			Src, Dst string
			Type     string
			FileInfo struct {
				Mode int `yaml:"mode"`
			} `yaml:"file_info"`
		} `yaml:"contents"`
	}
	if err := yaml.Unmarshal(readRepoFile(t, "packaging/nfpm.yaml"), &nfpm); err != nil {
		t.Fatalf("nfpm.yaml: %v", err)
	}
	for _, c := range nfpm.Contents {
		if c.Dst == config.CredentialFile || strings.Contains(c.Dst, "password") {
			t.Errorf("the package ships %s: the password is the operator's, root:root 0600", c.Dst)
		}
		if c.Type == "dir" && c.FileInfo.Mode&0o002 != 0 {
			t.Errorf("the package ships %s world-writable (mode %04o)", c.Dst, c.FileInfo.Mode)
		}
	}
	packaged := loadConfigFile(t, repoPath(t, "packaging/config.yaml"))
	if packaged.Trino.Password != "" || packaged.Trino.PasswordFile != "" {
		t.Errorf("packaging/config.yaml (mode 0644) sets trino.password or trino.password-file")
	}

	// cloud-init writes the password file, if at all, root-owned and 0600.
	var ci struct {
		WriteFiles []struct {
			Path, Owner, Permissions string
		} `yaml:"write_files"`
	}
	ciText := readRepoFile(t, "deploy/aws/cloud-init.yaml")
	if err := yaml.Unmarshal(ciText, &ci); err != nil {
		t.Fatalf("cloud-init.yaml: %v", err)
	}
	for _, f := range ci.WriteFiles {
		if f.Path == config.CredentialFile && (f.Owner != "root:root" || f.Permissions != "0600") {
			t.Errorf("cloud-init.yaml writes %s as %s %s, want root:root 0600", f.Path, f.Owner, f.Permissions)
		}
	}

	// The real binary against a worker with HTTPS and password auth.
	const secret = "s3cret-Trino-pw"
	env, err := testenv.New(testenv.Options{HeartbeatTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(env.Close)
	gate := newPasswordGate(t, env.Trino, "scaledownd", secret)
	cfg := env.Config(env.Instance)
	cfg.Trino.URL = gate.srv.URL
	cfg.Trino.CAFile = gate.caFile(t)

	creds := t.TempDir() // what LoadCredential= makes: a private directory
	credFile := filepath.Join(creds, config.CredentialName)
	writeCredential := func(content string) {
		t.Helper()
		if err := os.WriteFile(credFile, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(credFile)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Fatalf("%s has mode %04o", credFile, fi.Mode().Perm())
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && os.Geteuid() == 0 && st.Uid != 0 {
			t.Fatalf("%s is owned by uid %d, want root", credFile, st.Uid)
		}
	}
	bin := daemonBinary(t)
	configFlag := "--config.file=" + repoPath(t, "packaging/config.yaml")

	// The unit's fallback credential (a bare newline) is no password: the
	// worker refuses the drain.
	writeCredential("\n")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	drain := exec.CommandContext(ctx, bin, "drain", configFlag)
	drain.Env = daemonEnv(cfg, "CREDENTIALS_DIRECTORY="+creds)
	out, err := drain.CombinedOutput()
	if _, rejected, _ := gate.counts(); err == nil || rejected == 0 {
		t.Fatalf("scaledownd drain without a password: err=%v, %d requests rejected; want a refused drain\n%s", err, rejected, out)
	}
	if s := env.Trino.State(); s != testpeers.TrinoActive {
		t.Fatalf("worker is %s after a refused drain", s)
	}
	_, rejectedBefore, _ := gate.counts()

	// The credential as systemd hands it over: the daemon drains and
	// completes.
	writeCredential(secret + "\n")
	run := exec.Command(bin, "run", configFlag)
	run.Env = daemonEnv(cfg, "CREDENTIALS_DIRECTORY="+creds)
	var logs lockedBuffer
	run.Stdout, run.Stderr = &logs, &logs
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- run.Wait() }()
	t.Cleanup(func() {
		_ = run.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = run.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("daemon output:\n%s", logs.String())
		}
	})
	testpeers.Eventually(t, 30*time.Second, "the daemon is ready", func() bool {
		return strings.Contains(logs.String(), "scaledownd ready")
	})
	token, msg := env.Terminate(env.Instance)
	env.SQS.Send(env.QueueURL, msg.Direct())
	wctx, wcancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer wcancel()
	act, err := env.ASG.WaitAction(wctx, token)
	if err != nil {
		t.Fatalf("lifecycle action still pending: %v", err)
	}
	if act.State != testpeers.AutoScalingActionCompleted || act.Result != "CONTINUE" {
		t.Fatalf("action ended %s/%s (%s), want completed with CONTINUE", act.State, act.Result, act.ExpiryReason)
	}
	admitted, rejected, puts := gate.counts()
	if rejected != rejectedBefore || admitted == 0 || puts == 0 {
		t.Errorf("the daemon's requests: %d admitted (%d PUTs), %d rejected; want every one admitted and the state changed", admitted, puts, rejected-rejectedBefore)
	}
	drained := false
	for _, c := range env.Trino.StateHistory() {
		drained = drained || c.State == testpeers.TrinoDrained
	}
	if !drained {
		t.Errorf("the worker never reached DRAINED: %+v", env.Trino.StateHistory())
	}
	if strings.Contains(logs.String(), secret) {
		t.Error("the daemon logged the password")
	}
}
