package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/scaledownd/scaledownd/internal/testenv"
)

// TestQuickRun runs the whole bench in its smoke configuration: every
// phase, tiny fleets; it checks the results, the report and the chart.
func TestQuickRun(t *testing.T) {
	testenv.HermeticAWS()
	dir := t.TempDir()
	binary := filepath.Join(dir, "scaledownd")
	if out, err := exec.Command("go", "build", "-o", binary, "github.com/scaledownd/scaledownd/cmd/scaledownd").CombinedOutput(); err != nil {
		t.Fatalf("build scaledownd: %v\n%s", err, out)
	}
	gobench := filepath.Join(dir, "gobench.txt")
	if err := os.WriteFile(gobench, []byte("pkg: x\nBenchmarkClassify/direct-2   85424   12684 ns/op   904 B/op   19 allocs/op\nPASS\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	o := defaultOptions()
	o.Quick, o.Binary, o.GoBench, o.Progress = true, binary, gobench, t.Logf
	o.Out, o.JSON, o.Chart = filepath.Join(dir, "BENCHMARKS.md"), filepath.Join(dir, "bench", "results.json"), filepath.Join(dir, "bench", "p1.png")
	o.WorkDir = filepath.Join(dir, "work")
	// lifecycled is an external peer (make bench builds it); without it
	// the report must say so instead of printing a ratio.
	o.Lifecycled = os.Getenv("LIFECYCLED")
	if err := os.MkdirAll(o.WorkDir, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := run(ctx, o); err != nil {
		t.Fatal(err)
	}
	var res Results
	if err := readJSON(o.JSON, &res); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, k := range []string{"sqs/1", "imds/1", "imds@500ms/1", "both/1", "both-always/1", "sqs/5", "imds/5", "both/5", "both-always/5"} {
		want[k] = false
	}
	for _, c := range res.P1 {
		key := fmt.Sprintf("%s/%d", c.Config, c.N)
		want[key] = true
		if c.P1.N == 0 || c.P1.Censored > 0 {
			t.Errorf("P1 %s: %d trials, %d censored", key, c.P1.N, c.P1.Censored)
		}
		if c.Mode == "sqs" && c.N > 1 && c.OwnerWait.N != c.P1.N {
			t.Errorf("P1 %s: %d owner waits for %d trials", key, c.OwnerWait.N, c.P1.N)
		}
	}
	for k, seen := range want {
		if !seen {
			t.Errorf("no P1 cell %s", k)
		}
	}
	if res.P2["all"].N == 0 {
		t.Error("no P2 samples")
	}
	if len(res.P3) != 5 || res.P3[0].PeakRSSMiB <= 0 || res.P3[0].CPUPercent <= 0 {
		t.Errorf("P3 = %+v", res.P3)
	}
	if o.Lifecycled == "" && res.Pair.Missing == "" {
		t.Error("no lifecycled binary, but the pair does not say so")
	}
	if o.Lifecycled != "" && (res.Pair.CPURatio <= 0 || res.Pair.RSSRatio <= 0) {
		t.Errorf("pair = %+v", res.Pair)
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
		if p.Reacted != p.K || p.NonOwnerLive != 0 {
			t.Errorf("P5 %s: %d of %d reacted, %d non-owner deletes of live actions", p.Config, p.Reacted, p.K, p.NonOwnerLive)
		}
		if p.Mode == "both" && (p.MaxReceiveCount != maxReceiveCount || p.Messages != p.K || p.SQSRequests == 0) {
			t.Errorf("P5 %s: redrive %d, %d messages, %d SQS requests", p.Config, p.MaxReceiveCount, p.Messages, p.SQSRequests)
		}
	}
	md, err := os.ReadFile(o.Out)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"docs/benchmarks.md", "## Targets", "## P1", "## P2", "## P3", "Beside lifecycled", "## P4", "## P5", "Dead-lettered", "Smoke run", "BenchmarkClassify/direct-2"} {
		if !strings.Contains(string(md), s) {
			t.Errorf("report lacks %q", s)
		}
	}
	// The report names nothing outside the repository: no absolute path
	// (this run's temporary directory included), no parent directory.
	if p := absPath.FindString(string(md)); p != "" || strings.Contains(string(md), dir) || strings.Contains(string(md), "../") {
		t.Errorf("report names a path outside the repository: %q", p)
	}
	f, err := os.Open(o.Chart)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if img, err := png.Decode(f); err != nil || img.Bounds().Dx() < 400 {
		t.Errorf("chart: %v", err)
	}

	// Re-rendered with itself as "before", the report shows both.
	o.Before = o.JSON
	if err := res.write(o); err != nil {
		t.Fatal(err)
	}
	if md, _ := os.ReadFile(o.Out); !strings.Contains(string(md), "## Before and after") || !strings.Contains(string(md), "Owner's message wait") {
		t.Error("no before/after section")
	}
}

func TestSummarise(t *testing.T) {
	xs := make([]float64, 20)
	for i := range xs {
		xs[i] = float64(20 - i)
	}
	if d := Summarise(xs, 0); d.P50 != 10 || d.P95 != 19 || d.P99 != 20 || d.Max != 20 || d.Mean != 10.5 {
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
	if s.RSS <= 0 || s.VmHWM < s.RSS || s.CPU <= 0 {
		t.Fatalf("%+v", s)
	}
}

// absPath matches an absolute file path of two or more components.
var absPath = regexp.MustCompile("(^|[\\s(`])/[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)+")
