package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/scaledownd/scaledownd/internal/testpeers"
)

// proc is a subprocess under measurement: the real scaledownd binary, or
// lifecycled.
type proc struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

// cleanEnv is the environment of a subprocess: static test credentials,
// no shared AWS files, no CA bundle (not set on a worker AMI; it adds a
// parsed CA pool), no SDK metadata lookups, plus extra.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") && !strings.HasPrefix(kv, "SCALEDOWND_") {
			env = append(env, kv)
		}
	}
	return append(append(env, "AWS_ACCESS_KEY_ID=AKIABENCHBENCHBENCH0", "AWS_SECRET_ACCESS_KEY=bench",
		"AWS_CONFIG_FILE="+os.DevNull, "AWS_SHARED_CREDENTIALS_FILE="+os.DevNull), extra...)
}

// startProc runs a command with env, its output to logPath.
func startProc(logPath string, env []string, name string, args ...string) (*proc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(name, args...)
	cmd.Env, cmd.Stdout, cmd.Stderr = env, logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{cmd: cmd, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); logf.Close(); close(p.exited) }()
	return p, nil
}

// startDaemon runs the scaledownd binary with settings (keys without the
// SCALEDOWND_ prefix) and waits until /readyz answers 200.
func startDaemon(ctx context.Context, binary, logPath string, settings map[string]string) (*proc, error) {
	port, err := testpeers.FreePort()
	if err != nil {
		return nil, err
	}
	settings["LISTEN_ADDRESS"] = "127.0.0.1:" + port
	env := cleanEnv("AWS_EC2_METADATA_DISABLED=true", "SCALEDOWND_CONFIG_FILE="+os.DevNull)
	for k, v := range settings {
		env = append(env, "SCALEDOWND_"+k+"="+v)
	}
	p, err := startProc(logPath, env, binary)
	if err != nil {
		return nil, fmt.Errorf("%w (run make build first)", err)
	}
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline) && ctx.Err() == nil; time.Sleep(20 * time.Millisecond) {
		if resp, err := http.Get("http://127.0.0.1:" + port + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		select {
		case <-p.exited:
			return nil, fmt.Errorf("%s exited before it was ready (log %s)", binary, logPath)
		default:
		}
	}
	p.stop()
	return nil, fmt.Errorf("%s not ready within 15 s (log %s)", binary, logPath)
}

// stop sends SIGTERM and waits up to 5 s, then kills.
func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// procStat is what /proc says about a process.
type procStat struct {
	CPU   time.Duration // on a CPU: the first field of every thread's schedstat, summed
	RSS   int64         // VmRSS, bytes: Anon + File
	Anon  int64         // RssAnon: heap, stacks, runtime
	File  int64         // RssFile: the binary's (and libraries') mapped pages
	VmHWM int64         // peak RSS, bytes
}

func readProc(pid int) (procStat, error) {
	var s procStat
	dir := filepath.Join("/proc", strconv.Itoa(pid))
	status, err := os.ReadFile(filepath.Join(dir, "status"))
	if err != nil {
		return s, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		k, v, _ := strings.Cut(line, ":")
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if f := map[string]*int64{"VmRSS": &s.RSS, "RssAnon": &s.Anon, "RssFile": &s.File, "VmHWM": &s.VmHWM}[k]; f != nil {
			*f = kb << 10
		}
	}
	tasks, _ := filepath.Glob(filepath.Join(dir, "task", "*", "schedstat"))
	for _, t := range tasks {
		var ns int64
		if b, err := os.ReadFile(t); err == nil {
			_, _ = fmt.Sscan(string(b), &ns)
			s.CPU += time.Duration(ns)
		}
	}
	return s, nil
}

// cpuTime is this process's user + system CPU time so far; with children,
// its waited-for subprocesses' too.
func cpuTime(children bool) time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	d := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	if children {
		_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru)
		d += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	return d
}

// machineBusy is the machine's busy CPU time so far, all processes: the
// non-idle fields of /proc/stat's cpu line (guest time is in user).
func machineBusy() time.Duration {
	b, _ := os.ReadFile("/proc/stat")
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	var busy, n int64
	for i := 1; i < len(f) && i <= 8; i++ {
		if _, _ = fmt.Sscan(f[i], &n); i != 4 && i != 5 { // not idle, iowait
			busy += n
		}
	}
	return time.Duration(busy) * time.Second / 100 // USER_HZ
}

// cpuMeter measures the bench's CPU and other processes' over a span.
type cpuMeter struct {
	start           time.Time
	self, own, busy time.Duration
}

func newCPUMeter() cpuMeter {
	return cpuMeter{start: time.Now(), self: cpuTime(false), own: cpuTime(true), busy: machineBusy()}
}

// cores returns the bench's cores and other processes' over the span.
func (m cpuMeter) cores() (self, other float64) {
	wall := time.Since(m.start).Seconds()
	other = ((machineBusy() - m.busy) - (cpuTime(true) - m.own)).Seconds() / wall
	return (cpuTime(false) - m.self).Seconds() / wall, max(0, other)
}

// loadAvg is the 1-minute load average.
func loadAvg() (v float64) {
	b, _ := os.ReadFile("/proc/loadavg")
	fmt.Sscan(string(b), &v)
	return v
}
