package testpeers

// amazon-ec2-metadata-mock (AEMM) is AWS's own IMDS simulator: a real peer
// for the daemon's metadata paths, where the fake IMDS above is a
// controllable one. The unit tests, the daemon tests and `make e2e` start it
// through this file.

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// AEMMVersion is the pinned amazon-ec2-metadata-mock release (also
// AEMM_VERSION in the Makefile).
const AEMMVersion = "v1.13.0"

// AEMMInstance is the instance id amazon-ec2-metadata-mock serves by default.
const AEMMInstance = "i-1234567890abcdef0"

// AEMMSpot makes amazon-ec2-metadata-mock a Spot instance
// (meta-data/instance-life-cycle); it reports on-demand by default, and
// only Spot instances get Spot notices.
var AEMMSpot = []string{"AEMM_METADATA_VALUES_INSTANCE_LIFE_CYCLE=spot"}

// AEMMBinary returns the path of amazon-ec2-metadata-mock: $TESTPEERS_AEMM
// (what `make tools` built), else dir/ec2-metadata-mock, built there from
// the module proxy if it is not there yet.
func AEMMBinary(dir string) (string, error) {
	if p := os.Getenv("TESTPEERS_AEMM"); p != "" && fileExists(p) {
		return p, nil
	}
	p := filepath.Join(dir, "ec2-metadata-mock")
	if fileExists(p) {
		return p, nil
	}
	err := buildAside(p, "ec2-metadata-mock", func(tmp string) error {
		cmd := exec.Command("go", "install", "github.com/aws/amazon-ec2-metadata-mock/cmd/ec2-metadata-mock@"+AEMMVersion)
		cmd.Env = append(os.Environ(), "GOBIN="+tmp)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("build amazon-ec2-metadata-mock %s: %v\n%s", AEMMVersion, err, out)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	return p, nil
}

// buildAside builds a tool into a fresh directory next to final and renames
// rel below it into place as final: test packages running in parallel may
// build the same tool at the same time, and the first rename wins.
func buildAside(final, rel string, build func(tmp string) error) error {
	if err := os.MkdirAll(filepath.Dir(final), 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(final), "build-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := build(tmp); err != nil {
		return err
	}
	if err := os.Rename(filepath.Join(tmp, rel), final); err != nil && !fileExists(final) {
		return err
	}
	return nil
}

// FreePort returns a loopback TCP port nobody listens on at the moment.
func FreePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port, nil
}

// AEMMOptions start amazon-ec2-metadata-mock.
type AEMMOptions struct {
	// Binary is the mock to run; empty: AEMMBinary(Dir).
	Binary string
	// Dir holds the binary if it has to be built, and the mock's HOME (so
	// no stray aemm-config.json is read). Required.
	Dir string
	// Env adds AEMM_* settings, e.g. AEMMSpot.
	Env []string
	// Args are flags after the address, port and --imdsv2, e.g.
	// "--asg-termination-delay-sec", "0".
	Args []string
	// Log receives the mock's output (default: discarded).
	Log io.Writer
}

// AEMM is a running amazon-ec2-metadata-mock.
type AEMM struct {
	*peerProcess
	Binary string
}

// peerProcess is a peer server running as a child process on loopback.
type peerProcess struct {
	URL    string
	Pid    int
	cmd    *exec.Cmd
	exited chan struct{}
}

// startPeerProcess starts cmd, which serves on port, and waits up to
// timeout until a GET of path answers with a status ready accepts. log,
// if not nil, is what the process wrote, for the error messages.
func startPeerProcess(name string, cmd *exec.Cmd, port, path string, timeout time.Duration, log fmt.Stringer, ready func(status int) bool) (*peerProcess, error) {
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &peerProcess{URL: "http://127.0.0.1:" + port, Pid: cmd.Process.Pid, cmd: cmd, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.exited) }()
	output := func() string {
		if log == nil {
			return ""
		}
		return ":\n" + log.String()
	}
	for deadline := time.Now().Add(timeout); ; {
		if resp, err := http.Get(p.URL + path); err == nil {
			resp.Body.Close()
			if ready(resp.StatusCode) {
				return p, nil
			}
		}
		select {
		case <-p.exited:
			return nil, fmt.Errorf("%s exited before it answered%s", name, output())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.Close()
			return nil, fmt.Errorf("%s did not answer within %v%s", name, timeout, output())
		}
	}
}

// Close stops the process: an interrupt, then a kill after 5 s.
func (p *peerProcess) Close() {
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// cappedBuffer keeps the first MiB of a process's output. It is read only
// once the process has exited (exec.Cmd.Wait has then returned, and with it
// the goroutine that writes), so it needs no lock.
type cappedBuffer struct{ bytes.Buffer }

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if b.Len() < 1<<20 {
		b.Buffer.Write(p)
	}
	return len(p), nil
}

// StartAEMM runs amazon-ec2-metadata-mock with IMDSv2 required on a free
// loopback port and waits until it answers.
func StartAEMM(opts AEMMOptions) (*AEMM, error) {
	bin := opts.Binary
	if bin == "" {
		var err error
		if bin, err = AEMMBinary(opts.Dir); err != nil {
			return nil, err
		}
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	home := filepath.Join(opts.Dir, "aemm-home-"+port)
	if err := os.MkdirAll(home, 0o755); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, append([]string{"-n", "127.0.0.1", "-p", port, "--imdsv2"}, opts.Args...)...)
	cmd.Env = append(append(os.Environ(), "HOME="+home), opts.Env...)
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	cmd.Stdout, cmd.Stderr = opts.Log, opts.Log
	p, err := startPeerProcess("amazon-ec2-metadata-mock", cmd, port, "/latest/meta-data/instance-id", 20*time.Second, nil,
		func(status int) bool {
			// 401: it answers, and requires a token (IMDSv2 only).
			return status == http.StatusUnauthorized || status == http.StatusOK
		})
	if err != nil {
		return nil, err
	}
	return &AEMM{peerProcess: p, Binary: bin}, nil
}

// RunAEMM starts amazon-ec2-metadata-mock for one test and stops it when
// the test ends. Its notices come an hour out unless args say otherwise
// (by default the mock fires them at once); env adds AEMM_* settings. A
// binary built from the module proxy is kept in the system's temporary
// directory for the next test.
func RunAEMM(tb testing.TB, env []string, args ...string) string {
	tb.Helper()
	bin, err := AEMMBinary(filepath.Join(os.TempDir(), "scaledownd-aemm-"+AEMMVersion))
	if err != nil {
		tb.Fatal(err)
	}
	a, err := StartAEMM(AEMMOptions{
		Binary: bin, Dir: tb.TempDir(), Env: env,
		Args: append([]string{"--asg-termination-delay-sec", "3600", "--mock-delay-sec", "3600", "--rebalance-delay-sec", "3600"}, args...),
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(a.Close)
	return a.URL
}
