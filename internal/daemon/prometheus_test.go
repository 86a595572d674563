package daemon_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/scaledownd/scaledownd/internal/testenv"
	"github.com/scaledownd/scaledownd/internal/testpeers"
)

// tool returns the path of a Debian-packaged tool, failing with the package
// to install when it is missing (`make setup`, run by `make test`, installs it).
func tool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found: run make setup (or apt-get install %s)", name, pkg)
	}
	return p
}

func scrape(t *testing.T, addr string) []byte {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestMetricsPassPromtool scrapes the daemon after a whole drain, so every
// metric has samples, and lints the exposition with promtool.
func TestMetricsPassPromtool(t *testing.T) {
	promtool := tool(t, "promtool", "prometheus")
	env := world(t, testenv.Options{})
	d, _ := start(t, env.Config(env.Instance))
	token, msg := env.Terminate(env.Instance)
	env.SQS.Send(env.QueueURL, msg.Direct())
	completedContinue(t, finished(t, env, token, 30*time.Second))
	waitMetric(t, d, func(v float64) bool { return v == 1 }, "scaledownd_lifecycle_actions_completed_total", "reason", "drained")

	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(scrape(t, d.Addr))
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

// startPrometheus runs Debian's Prometheus with one scrape job (YAML for
// the list under scrape_configs, indented by four spaces) and returns a
// function that evaluates an instant query through its HTTP API.
func startPrometheus(t *testing.T, bin, job string) func(q string) (float64, bool) {
	t.Helper()
	dir := t.TempDir()
	conf := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(conf, []byte("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n"+job), 0o600); err != nil {
		t.Fatal(err)
	}
	web := "127.0.0.1:" + freePort(t)
	cmd := exec.Command(bin, "--config.file="+conf, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+web, "--log.level=warn")
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("prometheus output:\n%s", logs.String())
		}
	})
	return func(q string) (float64, bool) {
		resp, err := http.Get("http://" + web + "/api/v1/query?query=" + url.QueryEscape(q))
		if err != nil {
			return 0, false
		}
		defer resp.Body.Close()
		var r struct {
			Status string `json:"status"`
			Data   struct {
				Result []struct {
					Value [2]any `json:"value"`
				} `json:"result"`
			} `json:"data"`
		}
		if json.NewDecoder(resp.Body).Decode(&r) != nil || r.Status != "success" || len(r.Data.Result) == 0 {
			return 0, false
		}
		s, _ := r.Data.Result[0].Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		return v, err == nil
	}
}

// prometheusSeesADrain scales the instance in and follows the drain
// through Prometheus: phase, deadline, tasks, state, then the completion.
func prometheusSeesADrain(t *testing.T, env *testenv.Env, finish func(), query func(string) (float64, bool)) {
	t.Helper()
	testpeers.Eventually(t, 30*time.Second, "prometheus scrapes the daemon", func() bool {
		v, ok := query(`up{job="scaledownd"}`)
		return ok && v == 1
	})

	token, msg := env.Terminate(env.Instance)
	env.SQS.Send(env.QueueURL, msg.Direct())
	testpeers.Eventually(t, 20*time.Second, "prometheus sees the drain phase", func() bool {
		v, ok := query(`scaledownd_phase{phase="draining"}`)
		return ok && v == 1
	})
	testpeers.Eventually(t, 20*time.Second, "prometheus sees the deadline and the worker's tasks", func() bool {
		dl, ok1 := query(`scaledownd_lifecycle_deadline_remaining_seconds`)
		tasks, ok2 := query(`scaledownd_trino_active_tasks`)
		state, ok3 := query(`scaledownd_trino_state{state="DRAINING"}`)
		return ok1 && ok2 && ok3 && dl > 0 && tasks == 1 && state == 1
	})
	finish()
	completedContinue(t, finished(t, env, token, 30*time.Second))
	testpeers.Eventually(t, 20*time.Second, "prometheus sees the completed drain", func() bool {
		n, ok1 := query(`scaledownd_lifecycle_actions_completed_total{result="CONTINUE",reason="drained"}`)
		c, ok2 := query(`scaledownd_drain_duration_seconds_count{outcome="drained"}`)
		hb, ok3 := query(`scaledownd_lifecycle_heartbeats_total{result="ok"}`)
		return ok1 && ok2 && ok3 && n == 1 && c == 1 && hb >= 1
	})
}

// TestRealPrometheusScrapesADrain runs Debian's Prometheus against the
// daemon and reads the drain back through Prometheus's HTTP API.
func TestRealPrometheusScrapesADrain(t *testing.T) {
	bin := tool(t, "prometheus", "prometheus")
	env := world(t, testenv.Options{HeartbeatTimeout: 5 * time.Second})
	finish := env.Trino.AddBlockedTask()
	defer finish()
	d, _ := start(t, env.Config(env.Instance))
	query := startPrometheus(t, bin, fmt.Sprintf(`  - job_name: scaledownd
    static_configs:
      - targets: [%q]
`, d.Addr))
	prometheusSeesADrain(t, env, finish, query)
}
