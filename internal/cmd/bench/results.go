package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/scaledownd/scaledownd/internal/config"
)

// Results is everything the bench measured; bench/results.json holds it.
type Results struct {
	Date       string  `json:"date"`
	Machine    string  `json:"machine"`
	Git        string  `json:"git"`
	Quick      bool    `json:"quick"`
	LatencyMs  float64 `json:"latency_ms"`
	HBTs       float64 `json:"hook_heartbeat_timeout_s"`
	IMDSPollS  float64 `json:"imds_poll_interval_s"`
	SQSIdleS   float64 `json:"sqs_idle_interval_s"`
	WaitTimeS  float64 `json:"sqs_wait_time_s"`
	TrinoPollS float64 `json:"trino_poll_interval_s"`

	P1      []P1Cell           `json:"p1"`
	P2      map[string]Dist    `json:"p2"` // pooled: all, binary, mode <m>
	P3      []P3Result         `json:"p3"`
	Pair    P3Pair             `json:"p3_lifecycled"`
	P4      []P4Result         `json:"p4"`
	P5      []P5Result         `json:"p5"`
	GoBench []string           `json:"go_benchmarks"`
	Load    map[string]float64 `json:"load"` // load average at start and end, other processes' cores
	ToolS   float64            `json:"tool_runtime_s"`
	MakeS   float64            `json:"make_bench_runtime_s,omitempty"`
}

func newResults(o Options, p Plan) *Results {
	git, _ := exec.Command("git", "describe", "--tags", "--always", "--dirty").Output()
	return &Results{
		Date: time.Now().UTC().Format("2006-01-02 15:04 MST"), Machine: machine(), Git: strings.TrimSpace(string(git)),
		Quick: o.Quick, LatencyMs: float64(o.Latency) / float64(time.Millisecond), HBTs: p.HBT.Seconds(),
		IMDSPollS: p.IMDS.Seconds(), SQSIdleS: p.SQSIdle.Seconds(), WaitTimeS: benchConfig{WaitTime: p.WaitTime}.longPoll().Seconds(),
		TrinoPollS: config.Default().Trino.PollInterval.Seconds(), Load: map[string]float64{"start": loadAvg()},
	}
}

// finish pools P2 and records the runtimes and the machine's other load.
func (r *Results) finish(started time.Time, m cpuMeter, since float64) {
	by := map[string][]float64{}
	for _, c := range r.P1 {
		by["all"] = append(by["all"], c.P2Samples...)
		by["mode "+c.Mode] = append(by["mode "+c.Mode], c.P2Samples...)
		if c.Runner == "binary" {
			by["real binary, 1 node"] = append(by["real binary, 1 node"], c.P2Samples...)
		}
	}
	r.P2 = map[string]Dist{}
	for k, xs := range by {
		r.P2[k] = Summarise(xs, 0)
	}
	r.ToolS = time.Since(started).Seconds()
	r.Load["end"] = loadAvg()
	_, r.Load["other_cores"] = m.cores()
	if since > 0 {
		r.MakeS = float64(time.Now().UnixNano())/1e9 - since
	}
}

// write stores the JSON, the chart and the report.
func (r *Results) write(o Options) error {
	for _, path := range []string{o.JSON, o.Chart, o.Out} {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
	}
	if o.JSON != "" { // "": re-rendering
		b, err := json.MarshalIndent(r, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(o.JSON, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	if err := writeChart(o.Chart, r); err != nil {
		return err
	}
	var before *Results
	if o.Before != "" {
		before = &Results{}
		if err := readJSON(o.Before, before); err != nil {
			return err
		}
	}
	return os.WriteFile(o.Out, []byte(r.markdown(before)), 0o644)
}
