package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// binProc is the real scaledownd binary running as a subprocess.
type binProc struct {
	cmd  *exec.Cmd
	addr string
	done chan error
}

// binaryEnv is the environment of a subprocess daemon: static test
// credentials, no shared AWS files, no CA bundle, the given settings.
func binaryEnv(settings map[string]string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "AWS_") || strings.HasPrefix(k, "SCALEDOWND_") {
			continue
		}
		env = append(env, kv)
	}
	env = append(env,
		"AWS_ACCESS_KEY_ID=AKIABENCHBENCHBENCH0", "AWS_SECRET_ACCESS_KEY=bench",
		"AWS_CONFIG_FILE="+os.DevNull, "AWS_SHARED_CREDENTIALS_FILE="+os.DevNull, "AWS_EC2_METADATA_DISABLED=true",
		"SCALEDOWND_CONFIG_FILE="+os.DevNull)
	for k, v := range settings {
		env = append(env, "SCALEDOWND_"+k+"="+v)
	}
	return env
}

// startBinary runs the binary with settings (keys without the SCALEDOWND_
// prefix) and waits until /readyz answers 200.
func startBinary(ctx context.Context, binary, logPath string, settings map[string]string) (*binProc, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	settings["LISTEN_ADDRESS"] = addr
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(binary)
	cmd.Env = binaryEnv(settings)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w (run make build first)", binary, err)
	}
	p := &binProc{cmd: cmd, addr: addr, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait(); logf.Close() }()
	deadline := time.Now().Add(15 * time.Second)
	client := &http.Client{Timeout: time.Second}
	for {
		resp, err := client.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		select {
		case err := <-p.done:
			return nil, fmt.Errorf("%s exited before it was ready: %v (log %s)", binary, err, logPath)
		case <-ctx.Done():
			p.stop()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("%s not ready after 15 s (log %s)", binary, logPath)
		}
	}
}

// Pid is the process id.
func (p *binProc) Pid() int { return p.cmd.Process.Pid }

// stop sends SIGTERM and waits up to 5 s, then kills.
func (p *binProc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// procStat is what /proc says about a process.
type procStat struct {
	CPUTicks  int64         // utime + stime, in clock ticks
	SchedTime time.Duration // time on a CPU, summed over the live threads' schedstat (ns)
	VmRSS     int64         // bytes
	VmHWM     int64         // bytes, peak RSS
}

// clockTicks is USER_HZ, which Linux fixes at 100 for /proc.
const clockTicks = 100

func readProc(pid int) (procStat, error) {
	var s procStat
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return s, err
	}
	// Fields after the command name, which is in parentheses.
	i := strings.LastIndexByte(string(stat), ')')
	if i < 0 {
		return s, errors.New("unexpected /proc/pid/stat")
	}
	f := strings.Fields(string(stat[i+1:]))
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	if len(f) < 13 {
		return s, errors.New("short /proc/pid/stat")
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	s.CPUTicks = ut + st
	// schedstat is per thread: sum the process's threads.
	if tasks, err := os.ReadDir(filepath.Join("/proc", strconv.Itoa(pid), "task")); err == nil {
		for _, t := range tasks {
			b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "task", t.Name(), "schedstat"))
			if err != nil {
				continue
			}
			if fs := strings.Fields(string(b)); len(fs) > 0 {
				ns, _ := strconv.ParseInt(fs[0], 10, 64)
				s.SchedTime += time.Duration(ns)
			}
		}
	}
	fh, err := os.Open(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return s, err
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			s.VmRSS = kb << 10
		case "VmHWM":
			s.VmHWM = kb << 10
		}
	}
	return s, nil
}
