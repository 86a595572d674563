//go:build e2e

// Package e2e proves scaledownd on a real Trino 476 cluster: the real
// binary drains a real worker while a query runs on it, against the fake
// SQS and Auto Scaling peers of internal/testpeers and amazon-ec2-metadata-mock.
//
// Run it with `make e2e` (scripts/e2e.sh), which fetches Trino, starts one
// coordinator and two workers with scripts/trino/cluster.sh and sets:
//
//	E2E_CLUSTER_ENV  the cluster's cluster.env (URLs, ports, PIDs)
//	E2E_OUT_DIR      where logs, the built binary and e2e-details.txt go (build/e2e)
//	E2E_PID_FILE     every process these tests start is listed here ("pid path"),
//	                 so the script can stop it even if the tests are killed
//
// The tests run in file order and share worker 1: each scenario that needs a
// fresh ACTIVE worker 1 restarts it with `cluster.sh restart-worker`.
package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// aemmVersion is the pinned amazon-ec2-metadata-mock release (as in the Makefile).
const aemmVersion = "v1.13.0"

// aemmInstance is the instance id amazon-ec2-metadata-mock serves by default.
const aemmInstance = "i-1234567890abcdef0"

var (
	repoRoot string // the repository (parent of e2e/)
	outDir   string // build/e2e
	binary   string // the real scaledownd, built by TestMain
	aemmURL  string // amazon-ec2-metadata-mock, IMDSv2 only
	envFile  string // the cluster's cluster.env
	pidFile  string
)

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) int {
	envFile = os.Getenv("E2E_CLUSTER_ENV")
	if envFile == "" {
		fmt.Fprintln(os.Stderr, "e2e: E2E_CLUSTER_ENV is not set; run these tests with `make e2e` (scripts/e2e.sh), which starts the Trino cluster")
		return 2
	}
	var err error
	if repoRoot, err = filepath.Abs(".."); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 2
	}
	outDir = os.Getenv("E2E_OUT_DIR")
	if outDir == "" {
		outDir = filepath.Join(repoRoot, "build", "e2e")
	}
	pidFile = os.Getenv("E2E_PID_FILE")
	if err := os.MkdirAll(filepath.Join(outDir, "bin"), 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 2
	}

	// The real binary, built as the Makefile builds it.
	binary = filepath.Join(outDir, "bin", "scaledownd")
	t0 := time.Now()
	build := exec.Command("go", "build", "-trimpath", "-o", binary, "./cmd/scaledownd")
	build.Dir = repoRoot
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go build ./cmd/scaledownd: %v\n%s", err, out)
		return 1
	}
	fmt.Printf("e2e: built %s in %.1fs\n", binary, time.Since(t0).Seconds())

	stop, err := startAEMM()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer stop()
	return m.Run()
}

// registerPID lists a started process for scripts/e2e.sh's cleanup.
func registerPID(pid int, path string) {
	if pidFile == "" {
		return
	}
	pidMu.Lock()
	defer pidMu.Unlock()
	f, err := os.OpenFile(pidFile, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%d %s\n", pid, path)
}

var pidMu sync.Mutex

// aemmBinary returns amazon-ec2-metadata-mock: the one `make tools` built
// (SCALEDOWND_AEMM), or one built now from the module proxy.
func aemmBinary() (string, error) {
	if p := os.Getenv("SCALEDOWND_AEMM"); p != "" {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	dir := filepath.Join(outDir, "tools")
	p := filepath.Join(dir, "ec2-metadata-mock")
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	cmd := exec.Command("go", "install", "github.com/aws/amazon-ec2-metadata-mock/cmd/ec2-metadata-mock@"+aemmVersion)
	cmd.Env = append(os.Environ(), "GOBIN="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build amazon-ec2-metadata-mock %s: %v\n%s", aemmVersion, err, out)
	}
	return p, nil
}

// startAEMM runs amazon-ec2-metadata-mock with IMDSv2 required on a free
// loopback port and waits until it answers.
func startAEMM() (stop func(), err error) {
	bin, err := aemmBinary()
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	home, err := os.MkdirTemp("", "e2e-aemm-home") // no stray aemm-config.json
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(outDir, "aemm.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-n", "127.0.0.1", "-p", port, "--imdsv2")
	cmd.Env = append(os.Environ(), "HOME="+home)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start amazon-ec2-metadata-mock: %w", err)
	}
	registerPID(cmd.Process.Pid, bin)
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	stop = func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		logf.Close()
		os.RemoveAll(home)
	}
	aemmURL = "http://127.0.0.1:" + port
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(aemmURL + "/latest/meta-data/instance-id")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusUnauthorized { // IMDSv2: no token, no answer
				fmt.Printf("e2e: amazon-ec2-metadata-mock %s on %s (pid %d)\n", aemmVersion, aemmURL, cmd.Process.Pid)
				return stop, nil
			}
		}
		select {
		case <-exited:
			stop()
			return nil, fmt.Errorf("amazon-ec2-metadata-mock exited at start (see %s)", logf.Name())
		default:
		}
		if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("amazon-ec2-metadata-mock did not answer on %s within 30s (last error: %v)", aemmURL, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port, nil
}

// details appends "scenario: key = value" to e2e-details.txt, which
// scripts/e2e.sh copies into timings.txt.
func details(scenario, key string, value any) {
	detailsMu.Lock()
	defer detailsMu.Unlock()
	f, err := os.OpenFile(filepath.Join(outDir, "e2e-details.txt"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%s: %s = %v\n", scenario, key, value)
}

var detailsMu sync.Mutex

// copyLines copies r to w line by line, each line also to each (for
// stream parsing); it returns at EOF.
func copyLines(r io.Reader, w io.Writer, each func(string)) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if w != nil {
			fmt.Fprintln(w, line)
		}
		if each != nil {
			each(line)
		}
	}
}

// clip shortens s for messages.
func clip(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
