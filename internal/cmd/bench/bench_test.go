package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// binary is the daemon, built once for the smoke run.
var binary string

func TestMain(m *testing.M) {
	hermetic()
	dir, err := os.MkdirTemp("", "scaledownd-bench-test-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "scaledownd")
	if out, err := exec.Command("go", "build", "-o", binary, "github.com/scaledownd/scaledownd/cmd/scaledownd").CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		panic("build scaledownd: " + err.Error() + "\n" + string(out))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// TestQuickRun runs the whole bench in its smoke configuration: every
// phase (the polling-policy comparison included), tiny fleets, and checks
// the report, the JSON and the chart.
func TestQuickRun(t *testing.T) {
	dir := t.TempDir()
	gobench := filepath.Join(dir, "gobench.txt")
	if err := os.WriteFile(gobench, []byte(`goos: linux
pkg: github.com/scaledownd/scaledownd/pkg/lifecycle
BenchmarkClassify/direct-2     	   85424	     12684 ns/op	  33.43 MB/s	     904 B/op	      19 allocs/op
BenchmarkSQSSourceMessages/stub-2       	   36186	     66835 ns/op	         1.006 handbacks/op	    2334 B/op	      33 allocs/op
PASS
`), 0o644); err != nil {
		t.Fatal(err)
	}
	o := defaultOptions()
	o.Quick = true
	o.Binary = binary
	o.Out = filepath.Join(dir, "BENCHMARKS.md")
	o.JSON = filepath.Join(dir, "bench", "results.json")
	o.Chart = filepath.Join(dir, "bench", "p1.png")
	o.GoBench = gobench
	o.WorkDir = filepath.Join(dir, "work")
	o.Progress = t.Logf
	if err := os.MkdirAll(o.WorkDir, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := run(ctx, o, os.Stdout); err != nil {
		t.Fatal(err)
	}

	var res Results
	b, err := os.ReadFile(o.JSON)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"sqs/1": false, "imds/1": false, "imds@500ms/1": false, "both/1": false, "both-always/1": false,
		"sqs/5": false, "imds/5": false, "both/5": false, "both-always/5": false}
	for _, c := range res.P1 {
		key := c.Config + "/" + itoa(c.N)
		if _, ok := want[key]; ok {
			want[key] = true
		}
		if c.P1.N == 0 || c.P1.Censored > 0 {
			t.Errorf("P1 %s: %d trials, %d censored", key, c.P1.N, c.P1.Censored)
		}
		for _, tr := range c.Trials {
			if tr.Source != "" && tr.Source != "sqs" && tr.Source != "imds" {
				t.Errorf("P1 %s: source %q", key, tr.Source)
			}
		}
		if c.Mode == "both" && c.Runner == "in-process" {
			// Each termination followed until its message was deleted.
			if e := c.Events; e == nil || e.Events != c.P1.N || e.Undeleted != 0 || e.NonOwnerLive != 0 || e.SQSRequests == 0 {
				t.Errorf("P1 %s: events %+v", key, e)
			}
		}
	}
	for k, seen := range want {
		if !seen {
			t.Errorf("no P1 cell %s", k)
		}
	}
	if res.P2.All.N == 0 {
		t.Error("no P2 samples")
	}
	if len(res.P3) != 5 || res.P3[0].PeakRSSMiB <= 0 {
		t.Errorf("P3 = %+v", res.P3)
	}
	for _, p := range res.P4 {
		if p.Lapses != 0 || p.Heartbeats == 0 {
			t.Errorf("P4 %+v", p)
		}
	}
	if len(res.P5) != 3 {
		t.Errorf("%d P5 runs, want 3", len(res.P5))
	}
	for _, p := range res.P5 {
		if p.Reacted != p.K || p.NonOwnerLive != 0 || p.Unattributed != 0 {
			t.Errorf("P5 %s: %d of %d reacted, %d non-owner deletes of live actions, %d unattributed", p.Config, p.Reacted, p.K, p.NonOwnerLive, p.Unattributed)
		}
		if p.Mode != "imds" && p.OwnerDeletes+p.StaleCleaned+p.Undeleted != p.K {
			t.Errorf("P5 %s: %d messages deleted by owners, %d as stale and %d not deleted of %d", p.Config, p.OwnerDeletes, p.StaleCleaned, p.Undeleted, p.K)
		}
		if p.Mode != "imds" && (p.Messages != p.K || p.OwnerWait.N != p.OwnerReceived || p.SQSRequests == 0) {
			t.Errorf("P5 %s: %d messages, %d owner waits for %d owners who received theirs, %d SQS requests", p.Config, p.Messages, p.OwnerWait.N, p.OwnerReceived, p.SQSRequests)
		}
	}
	// The polling policy: both arms idle before their scale-in.
	for _, cfg := range []string{cfgBoth, cfgAlways} {
		i, ok := res.idleAt(cfg, 5)
		if !ok || i.WindowS <= 0 || i.Cycles == 0 || i.SteadyPerMin <= 0 {
			t.Errorf("idle %s: %+v", cfg, i)
		}
	}
	if b, a := res.armTotals(cfgBoth, []int{5}), res.armTotals(cfgAlways, []int{5}); b.idle >= a.idle {
		t.Errorf("paced daemons poll %.1f/min idle, all-the-time ones %.1f/min", b.idle, a.idle)
	}

	if len(res.GoBench) != 2 || res.GoBench[1].Extra["handbacks/op"] == 0 {
		t.Errorf("go benchmarks = %+v", res.GoBench)
	}

	md, err := os.ReadFile(o.Out)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"## Verdict", "**Default: `aws.mode=both`", "## P1", "## P2", "## P3", "## P4", "## P5", "## Polling policy (issue 8)", "Chosen default", "-phases policy", "Smoke run", "BenchmarkClassify/direct-2"} {
		if !strings.Contains(string(md), s) {
			t.Errorf("report lacks %q", s)
		}
	}
	f, err := os.Open(o.Chart)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if img.Bounds().Dx() < 400 {
		t.Errorf("chart is %v", img.Bounds())
	}
}

func TestNearestRank(t *testing.T) {
	xs := make([]float64, 20)
	for i := range xs {
		xs[i] = float64(20 - i)
	}
	d := Summarise(xs, 0)
	if d.P50 != 10 || d.P95 != 19 || d.P99 != 20 || d.Min != 1 || d.Max != 20 {
		t.Fatalf("%+v", d)
	}
	if q := geometricQuantile(1000, 0.99); q < 4590 || q > 4610 {
		t.Fatalf("geometric p99 at 1000 = %v", q)
	}
}

func TestMessageIDOfHandle(t *testing.T) {
	h := base64.StdEncoding.EncodeToString([]byte("4d2f0f4e-1c1a-4c2e-9a47-7d1b2f1e3c5a#\x01\x02\x03"))
	if got := messageIDOfHandle(h); got != "4d2f0f4e-1c1a-4c2e-9a47-7d1b2f1e3c5a" {
		t.Fatalf("got %q", got)
	}
	if got := messageIDOfHandle("not base64!"); got != "" {
		t.Fatalf("got %q", got)
	}
}

func TestReadProc(t *testing.T) {
	s, err := readProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if s.VmRSS <= 0 || s.VmHWM < s.VmRSS || s.CPUTicks < 0 {
		t.Fatalf("%+v", s)
	}
}
