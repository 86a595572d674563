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
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scaledownd/scaledownd/internal/testpeers"
)

// aemmInstance is the instance id amazon-ec2-metadata-mock serves by default.
const aemmInstance = testpeers.AEMMInstance

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

// startAEMM runs amazon-ec2-metadata-mock with IMDSv2 required on a free
// loopback port, its log in the output directory, listed for the script's
// cleanup.
func startAEMM() (stop func(), err error) {
	logf, err := os.Create(filepath.Join(outDir, "aemm.log"))
	if err != nil {
		return nil, err
	}
	a, err := testpeers.StartAEMM(testpeers.AEMMOptions{Dir: filepath.Join(outDir, "tools"), Log: logf})
	if err != nil {
		logf.Close()
		return nil, fmt.Errorf("%w (see %s)", err, logf.Name())
	}
	registerPID(a.Pid, a.Binary)
	aemmURL = a.URL
	fmt.Printf("e2e: amazon-ec2-metadata-mock %s on %s (pid %d)\n", testpeers.AEMMVersion, aemmURL, a.Pid)
	return func() { a.Close(); logf.Close() }, nil
}

func freePort() (string, error) { return testpeers.FreePort() }

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
