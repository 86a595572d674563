package daemon_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/scaledownd/scaledownd/internal/daemon"
	"github.com/scaledownd/scaledownd/internal/metrics"
	"github.com/scaledownd/scaledownd/internal/testenv"
	"github.com/scaledownd/scaledownd/internal/testpeers"
)

// aemmVersion is the pinned amazon-ec2-metadata-mock release.
const aemmVersion = "v1.13.0"

// aemmInstance is the instance id amazon-ec2-metadata-mock serves by default.
const aemmInstance = "i-1234567890abcdef0"

// aemmBinary returns the path of amazon-ec2-metadata-mock: the one `make
// tools` built (SCALEDOWND_AEMM), or one built now from the module proxy.
func aemmBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("SCALEDOWND_AEMM"); p != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	dir := t.TempDir()
	cmd := exec.Command("go", "install", "github.com/aws/amazon-ec2-metadata-mock/cmd/ec2-metadata-mock@"+aemmVersion)
	cmd.Env = append(os.Environ(), "GOBIN="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build amazon-ec2-metadata-mock %s: %v\n%s", aemmVersion, err, out)
	}
	return filepath.Join(dir, "ec2-metadata-mock")
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// startAEMM runs amazon-ec2-metadata-mock with IMDSv2 required on loopback.
func startAEMM(t *testing.T) string {
	t.Helper()
	port := freePort(t)
	cmd := exec.Command(aemmBinary(t), "-n", "127.0.0.1", "-p", port, "--imdsv2")
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir()) // no stray aemm-config.json
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	go func() { _, _ = io.Copy(io.Discard, bufio.NewReader(stdout)) }()
	url := "http://127.0.0.1:" + port
	testpeers.Eventually(t, 20*time.Second, "amazon-ec2-metadata-mock answers", func() bool {
		resp, err := http.Get(url + "/latest/meta-data/instance-id")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusUnauthorized // IMDSv2: no token, no answer
	})
	return url
}

// TestIdentityFromRealIMDSMock resolves instance id and region through
// IMDSv2 from amazon-ec2-metadata-mock and then drains and completes an
// action for that instance.
func TestIdentityFromRealIMDSMock(t *testing.T) {
	imdsURL := startAEMM(t)
	env := world(t, testenv.Options{InstanceID: aemmInstance})
	cfg := env.Config("")
	cfg.AWS.Region = ""
	cfg.AWS.IMDSEndpoint = imdsURL
	_, logs := start(t, cfg)
	if logs.FilterMessage("identity resolved").Len() != 1 {
		t.Fatal("identity not resolved from instance metadata")
	}
	token, msg := env.Terminate(aemmInstance)
	id := env.SQS.Send(env.QueueURL, msg.Direct())
	completedContinue(t, finished(t, env, token, 30*time.Second))
	deleted(t, env, id, 10*time.Second)
}

// TestIMDSDownAtStart: the daemon retries, is not ready, does not crash,
// and becomes ready once IMDS answers.
func TestIMDSDownAtStart(t *testing.T) {
	fake := testpeers.NewIMDS(testpeers.IMDSOptions{InstanceID: testenv.InstanceID, Region: testenv.Region})
	defer fake.Close()
	fake.SetDown(true)
	env := world(t, testenv.Options{})
	cfg := env.Config("")
	cfg.AWS.Region = ""
	cfg.AWS.IMDSEndpoint = fake.URL()
	cfg.Listen = "127.0.0.1:" + freePort(t)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- daemon.Run(ctx, cfg, daemon.Options{Version: "test", Logger: zaptest.NewLogger(t), Metrics: metrics.New("test")})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("daemon: %v", err)
		}
	}()
	readyz := func() (int, string) {
		resp, err := http.Get("http://" + cfg.Listen + "/readyz")
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	testpeers.Eventually(t, 10*time.Second, "not ready while IMDS is down, naming it", func() bool {
		code, body := readyz()
		return code == http.StatusServiceUnavailable && strings.Contains(body, "instance metadata")
	})
	testpeers.Eventually(t, 5*time.Second, "IMDS was retried", func() bool { return fake.CallCount("GetToken") >= 2 })
	select {
	case err := <-done:
		t.Fatalf("daemon gave up while IMDS was down: %v", err)
	default:
	}
	fake.SetDown(false)
	testpeers.Eventually(t, 40*time.Second, "ready once IMDS answers", func() bool {
		code, body := readyz()
		return code == http.StatusOK && strings.TrimSpace(body) == "ok"
	})
}
