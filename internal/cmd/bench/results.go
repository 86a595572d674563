package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/scaledownd/scaledownd/internal/config"
)

// Machine describes where the figures were taken.
type Machine struct {
	NProc     int     `json:"nproc"`
	MemGiB    float64 `json:"mem_gib"`
	CPU       string  `json:"cpu"`
	GoVersion string  `json:"go_version"`
	Kernel    string  `json:"kernel"`
}

// Results is everything the bench measured; bench/results.json holds it.
type Results struct {
	Date      string  `json:"date"`
	Machine   Machine `json:"machine"`
	Git       string  `json:"git"`
	Command   string  `json:"command"`
	Quick     bool    `json:"quick"`
	LatencyMs float64 `json:"latency_ms"`
	HBTs      float64 `json:"hook_heartbeat_timeout_s"`
	// The daemon settings measured: the default metadata poll and queue
	// pacing, the long-poll wait and Trino poll, and the old default
	// metadata poll (imds@5s).
	IMDSPollS  float64 `json:"imds_poll_interval_s"`
	SQSIdleS   float64 `json:"sqs_idle_interval_s"`
	WaitTimeS  float64 `json:"sqs_wait_time_s"`
	TrinoPollS float64 `json:"trino_poll_interval_s"`
	SlowIMDSS  float64 `json:"slow_imds_poll_interval_s"`

	P1      []P1Cell   `json:"p1"`
	P2      P2Summary  `json:"p2"`
	P3      []P3Result `json:"p3"`
	P4      []P4Result `json:"p4"`
	P5      []P5Result `json:"p5"`
	GoBench []GoBench  `json:"go_benchmarks"`
	// Idle is the policy arms' queue traffic before each mass scale-in.
	Idle []IdleResult `json:"idle"`

	// FleetStartS is how long starting each fleet size took, by mode.
	FleetStartS map[string]map[int]float64 `json:"fleet_start_s"`
	// FleetMemMiB is the bench process's live heap and stacks after a
	// collection, once each fleet size was started (daemons, their peers
	// and the shared fakes together).
	FleetMemMiB      map[string]map[int]float64 `json:"fleet_live_mem_mib"`
	DaemonErrorLines map[string]int64           `json:"daemon_error_log_lines"`
	// FleetS is how long each in-process fleet ran, seconds.
	FleetS map[string]float64 `json:"fleet_wall_s"`
	// Skipped lists what the time budget left out.
	Skipped []string `json:"skipped,omitempty"`
	ToolS   float64  `json:"tool_runtime_s"`
	// Load: the 1-minute load average at the start and the end, and the CPU
	// other processes used on average during the run (cores).
	LoadStart   float64 `json:"load_avg_start"`
	LoadEnd     float64 `json:"load_avg_end"`
	OtherCores  float64 `json:"other_processes_cores"`
	mach0, own0 time.Duration
	MakeS       float64 `json:"make_bench_runtime_s,omitempty"`

	mu sync.Mutex
}

// add changes the results under their lock (modes may run side by side).
func (r *Results) add(fn func(*Results)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fn(r)
}

// P2Summary pools the DRAINED → CompleteLifecycleAction samples.
type P2Summary struct {
	All    Dist            `json:"all"`
	Binary Dist            `json:"binary_1_node"`
	ByMode map[string]Dist `json:"by_mode"`
}

func newResults(o Options, p Plan) *Results {
	return &Results{
		Date:             time.Now().UTC().Format("2006-01-02 15:04 MST"),
		Machine:          machine(),
		Git:              gitDescribe(),
		Command:          o.Command,
		Quick:            o.Quick,
		LatencyMs:        float64(o.Latency) / float64(time.Millisecond),
		HBTs:             p.HBT.Seconds(),
		IMDSPollS:        p.IMDSInterval.Seconds(),
		SQSIdleS:         p.SQSIdle.Seconds(),
		WaitTimeS:        benchConfig{WaitTime: p.WaitTime}.longPoll().Seconds(),
		TrinoPollS:       config.Default().Trino.PollInterval.Seconds(),
		SlowIMDSS:        p.SlowIMDS.Seconds(),
		FleetStartS:      map[string]map[int]float64{},
		FleetMemMiB:      map[string]map[int]float64{},
		LoadStart:        loadAvg(),
		mach0:            machineBusy(),
		own0:             ownCPU(),
		DaemonErrorLines: map[string]int64{},
		FleetS:           map[string]float64{},
	}
}

func (r *Results) noteStartup(mode string, n int, d time.Duration, memMiB float64) {
	if r.FleetStartS[mode] == nil {
		r.FleetStartS[mode] = map[int]float64{}
		r.FleetMemMiB[mode] = map[int]float64{}
	}
	r.FleetStartS[mode][n] = d.Seconds()
	r.FleetMemMiB[mode][n] = memMiB
}

// finish pools P2 and records the runtimes.
func (r *Results) finish(started time.Time, since float64) {
	var all, bin []float64
	by := map[string][]float64{}
	for _, c := range r.P1 {
		for _, x := range c.P2Samples {
			all = append(all, x)
			by[c.Mode] = append(by[c.Mode], x)
			if c.Runner == "binary" {
				bin = append(bin, x)
			}
		}
	}
	r.P2 = P2Summary{All: Summarise(all, 0), Binary: Summarise(bin, 0), ByMode: map[string]Dist{}}
	for m, xs := range by {
		r.P2.ByMode[m] = Summarise(xs, 0)
	}
	r.ToolS = time.Since(started).Seconds()
	r.LoadEnd = loadAvg()
	r.OtherCores = otherCores(r.mach0, r.own0, time.Since(started))
	if since > 0 {
		r.MakeS = float64(time.Now().UnixNano())/1e9 - since
	}
}

// write stores the JSON, the chart and the report.
func (r *Results) write(o Options) error {
	for _, path := range []string{o.JSON, o.Chart, o.Out} {
		if dir := filepath.Dir(path); dir != "." {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
		}
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(o.JSON, append(b, '\n'), 0o644); err != nil {
		return err
	}
	if err := writeChart(o.Chart, r); err != nil {
		return fmt.Errorf("chart: %w", err)
	}
	return os.WriteFile(o.Out, []byte(r.markdown(o)), 0o644)
}

func machine() Machine {
	m := Machine{NProc: runtime.NumCPU(), GoVersion: runtime.Version()}
	if f, err := os.Open("/proc/meminfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
				kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
				m.MemGiB = kb / (1 << 20)
			}
		}
		f.Close()
	}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "model name"); ok {
				m.CPU = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = "Linux " + strings.TrimSpace(string(b))
	}
	return m
}

func gitDescribe() string {
	out, err := exec.Command("git", "describe", "--tags", "--always", "--dirty").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}
