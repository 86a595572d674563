// Package deploytest checks the deployment artefacts under deploy/ and
// packaging/ against the code: alert rules and the dashboard use only
// metrics the daemon exports, promtool accepts and passes the rules, the
// systemd units verify cleanly and stay hardened, and the packaged default
// configuration is the daemon's default.
//
// The external tools come from Debian packages (`make setup`, run by `make test`, installs them). A
// missing tool fails the test with the package to install: these checks
// are never skipped silently.
package deploytest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/scaledownd/scaledownd/internal/config"
	"github.com/scaledownd/scaledownd/internal/metrics"
)

// maxExposure is the highest `systemd-analyze security` exposure the
// daemon's unit may have (0 = fully locked down, 10 = unprotected).
const maxExposure = 2.0

var (
	rootOnce sync.Once
	rootDir  string
	rootErr  error
)

// repoRoot returns the module root (the directory holding go.mod).
func repoRoot(t *testing.T) string {
	t.Helper()
	rootOnce.Do(func() {
		dir, err := os.Getwd()
		if err != nil {
			rootErr = err
			return
		}
		for {
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				rootDir = dir
				return
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				rootErr = fmt.Errorf("no go.mod above the test's directory")
				return
			}
			dir = parent
		}
	})
	if rootErr != nil {
		t.Fatal(rootErr)
	}
	return rootDir
}

func repoPath(t *testing.T, rel string) string {
	return filepath.Join(repoRoot(t), filepath.FromSlash(rel))
}

func readRepoFile(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(repoPath(t, rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// tool finds an external command or fails naming the Debian package that
// provides it.
func tool(t *testing.T, name, debianPackage string, fallbacks ...string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, p := range fallbacks {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	t.Fatalf("%s not found: install the Debian package %q (apt-get install -y --no-install-recommends %s)", name, debianPackage, debianPackage)
	return ""
}

// run runs a command with a deadline and returns its combined output.
func run(t *testing.T, dir string, timeout time.Duration, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "LC_ALL=C.UTF-8", "SYSTEMD_COLORS=0", "SYSTEMD_PAGER=")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("%s timed out after %s: %w", name, timeout, ctx.Err())
	}
	return out.String(), err
}

// ---------------------------------------------------------------- metrics

// exportedMetricNames returns every series name the daemon's registry can
// expose (histogram families as _bucket, _sum and _count), mapped to its
// metric family.
func exportedMetricNames(t *testing.T) map[string]string {
	t.Helper()
	m := metrics.New("test")
	// Some vectors have no series until first used; use each once so that
	// every family shows up in Gather.
	m.DrainFinished("drained", time.Minute)
	m.ActionCompleted("CONTINUE", "drained")
	m.AWSCall("ReceiveMessage", "ok")
	m.OwnMessageReceiveCount(1)
	m.Polled(true)
	m.Polled(false)
	m.TrinoState("DRAINING")
	m.TrinoTasks(3)
	m.SetDeadline(time.Now().Add(time.Hour))

	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	names := map[string]string{}
	for _, f := range families {
		n := f.GetName()
		var suffixes []string
		switch f.GetType().String() {
		case "HISTOGRAM":
			suffixes = []string{"_bucket", "_sum", "_count"}
		case "GAUGE_HISTOGRAM":
			suffixes = []string{"_bucket", "_gsum", "_gcount"}
		case "SUMMARY":
			suffixes = []string{"", "_sum", "_count"}
		default:
			suffixes = []string{""}
		}
		for _, s := range suffixes {
			names[n+s] = n
		}
	}
	return names
}

var (
	// PromQL string literals (label values, regexes) and comments: never
	// metric names.
	promqlStrings = regexp.MustCompile("\"(?:[^\"\\\\]|\\\\.)*\"|'(?:[^'\\\\]|\\\\.)*'|`[^`]*`|#[^\n]*")
	promqlIdent   = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*`)
)

// referencedMetrics returns the scaledownd_* identifiers in a PromQL
// expression, ignoring string literals and comments.
func referencedMetrics(expr string) []string {
	clean := promqlStrings.ReplaceAllString(expr, " ")
	var out []string
	for _, id := range promqlIdent.FindAllString(clean, -1) {
		if strings.HasPrefix(id, "scaledownd_") {
			out = append(out, id)
		}
	}
	return out
}

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Record      string            `yaml:"record"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func loadAlertRules(t *testing.T) ruleFile {
	t.Helper()
	var rf ruleFile
	if err := yaml.Unmarshal(readRepoFile(t, "deploy/prometheus/alerts.yml"), &rf); err != nil {
		t.Fatalf("alerts.yml: %v", err)
	}
	if len(rf.Groups) == 0 {
		t.Fatal("alerts.yml has no rule groups")
	}
	return rf
}

// dashboardQueries returns every PromQL query in the Grafana dashboard:
// panel targets' "expr" and the template variables' queries, keyed by
// where they were found.
func dashboardQueries(t *testing.T) map[string]string {
	t.Helper()
	var dash any
	if err := json.Unmarshal(readRepoFile(t, "deploy/grafana/scaledownd.json"), &dash); err != nil {
		t.Fatalf("scaledownd.json: %v", err)
	}
	out := map[string]string{}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, c := range v {
				if s, ok := c.(string); ok && (k == "expr" || k == "query" || k == "definition") && s != "" {
					if k != "expr" && !strings.Contains(path, "templating") {
						continue
					}
					out[path+"."+k] = s
					continue
				}
				walk(path+"."+k, c)
			}
		case []any:
			for i, c := range v {
				walk(fmt.Sprintf("%s[%d]", path, i), c)
			}
		}
	}
	walk("$", dash)
	return out
}

func TestAlertsAndDashboardUseExportedMetrics(t *testing.T) {
	exported := exportedMetricNames(t)

	check := func(where, expr string) int {
		refs := referencedMetrics(expr)
		for _, r := range refs {
			if _, ok := exported[r]; !ok {
				t.Errorf("%s references %s, which the daemon does not export (internal/metrics)\n  expr: %s", where, r, expr)
			}
		}
		return len(refs)
	}

	rf := loadAlertRules(t)
	alerts := 0
	used := map[string]bool{}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			where := fmt.Sprintf("alerts.yml group %q rule %q", g.Name, r.Alert+r.Record)
			if strings.TrimSpace(r.Expr) == "" {
				t.Errorf("%s: empty expr", where)
			}
			n := check(where, r.Expr)
			if n == 0 && !strings.Contains(r.Expr, "up{") {
				t.Errorf("%s uses no scaledownd metric and no up series", where)
			}
			for _, m := range referencedMetrics(r.Expr) {
				used[m] = true
			}
			if r.Alert == "" {
				continue
			}
			alerts++
			for _, a := range []string{"summary", "description", "runbook"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("%s: annotation %q missing", where, a)
				}
			}
			if s := r.Labels["severity"]; s != "critical" && s != "warning" && s != "info" {
				t.Errorf("%s: severity label %q, want critical, warning or info", where, s)
			}
		}
	}
	if alerts == 0 {
		t.Error("alerts.yml defines no alerts")
	}

	queries := dashboardQueries(t)
	if len(queries) == 0 {
		t.Fatal("the dashboard has no queries")
	}
	keys := make([]string, 0, len(queries))
	for k := range queries {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		check("scaledownd.json "+k, queries[k])
		for _, m := range referencedMetrics(queries[k]) {
			used[m] = true
		}
	}

	// Not an error: a metric may be exported for ad-hoc queries only.
	usedFamily := map[string]bool{}
	for series := range used {
		usedFamily[exported[series]] = true
	}
	var unused []string
	for _, family := range exported {
		if strings.HasPrefix(family, "scaledownd_") && !usedFamily[family] && !slices.Contains(unused, family) {
			unused = append(unused, family)
		}
	}
	sort.Strings(unused)
	if len(unused) > 0 {
		t.Logf("exported but used by neither the alerts nor the dashboard: %s", strings.Join(unused, ", "))
	}
}

func TestReferencedMetricsTokenizer(t *testing.T) {
	got := referencedMetrics(`sum by (job) (rate(scaledownd_a_total{job="scaledownd_not_a_metric", x=~'scaledownd_b'}[5m])) / scaledownd_c_bucket # scaledownd_d`)
	want := []string{"scaledownd_a_total", "scaledownd_c_bucket"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("referencedMetrics = %v, want %v", got, want)
	}
}

// ---------------------------------------------------------------- promtool

func TestPromtool(t *testing.T) {
	promtool := tool(t, "promtool", "prometheus", "/usr/bin/promtool")
	root := repoRoot(t)

	for _, args := range [][]string{
		{"check", "rules", "deploy/prometheus/alerts.yml"},
		{"test", "rules", "deploy/prometheus/alerts_test.yml"},
		{"check", "config", "deploy/prometheus/scrape-example.yml"},
	} {
		out, err := run(t, root, 60*time.Second, promtool, args...)
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		} else {
			t.Logf("promtool %s: ok", strings.Join(args, " "))
		}
	}

	// Every alert needs a firing test case in alerts_test.yml.
	var tests struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string           `yaml:"alertname"`
				ExpAlerts []map[string]any `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	if err := yaml.Unmarshal(readRepoFile(t, "deploy/prometheus/alerts_test.yml"), &tests); err != nil {
		t.Fatalf("alerts_test.yml: %v", err)
	}
	fires, silent := map[string]bool{}, map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				silent[a.Alertname] = true
			}
		}
	}
	for _, g := range loadAlertRules(t).Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			if !fires[r.Alert] {
				t.Errorf("alerts_test.yml never expects %s to fire", r.Alert)
			}
			if !silent[r.Alert] {
				t.Errorf("alerts_test.yml never expects %s to stay silent", r.Alert)
			}
		}
	}

	// The dashboard's queries must parse: promtool checks them as
	// recording rules, with Grafana's variables replaced.
	grafanaVars := strings.NewReplacer(
		"$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h",
		"$job", ".*", "$instance", ".*", "${job}", ".*", "${instance}", ".*",
	)
	var b strings.Builder
	b.WriteString("groups:\n  - name: grafana\n    rules:\n")
	n := 0
	for where, q := range dashboardQueries(t) {
		if strings.HasPrefix(strings.TrimSpace(q), "label_values(") {
			continue // a Grafana function, not PromQL
		}
		n++
		fmt.Fprintf(&b, "      # %s\n      - record: grafana:query_%d\n        expr: %s\n", where, n, strconv.Quote(grafanaVars.Replace(q)))
	}
	rules := filepath.Join(t.TempDir(), "grafana-queries.yml")
	if err := os.WriteFile(rules, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := run(t, root, 60*time.Second, promtool, "check", "rules", rules); err != nil {
		t.Errorf("dashboard queries do not parse as PromQL: %v\n%s", err, out)
	} else {
		t.Logf("promtool check rules: %d dashboard queries parse", n)
	}
}

// ---------------------------------------------------------------- systemd

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// daemonBinary builds cmd/scaledownd once for the systemd checks.
func daemonBinary(t *testing.T) string {
	t.Helper()
	root := repoRoot(t)
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "deploytest-bin-")
		if buildErr != nil {
			return
		}
		out, err := run(t, root, 3*time.Minute, "go", "build", "-o", filepath.Join(buildDir, "scaledownd"), "./cmd/scaledownd")
		if err != nil {
			buildErr = fmt.Errorf("go build ./cmd/scaledownd: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(buildDir, "scaledownd")
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// unitCopy writes unit text to dir/name with the ExecStart binary
// replaced, and returns the path. It fails when the unit has no
// ExecStart starting with oldBinary.
func unitCopy(t *testing.T, unit, name, oldBinary, newBinary string) string {
	t.Helper()
	re := regexp.MustCompile(`(?m)^ExecStart=` + regexp.QuoteMeta(oldBinary) + `(\s|$)`)
	if !re.MatchString(unit) {
		t.Fatalf("%s: no ExecStart=%s line", name, oldBinary)
	}
	rewritten := re.ReplaceAllString(unit, "ExecStart="+newBinary+"$1")
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(rewritten), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// systemdVerify runs `systemd-analyze verify` and fails on any output:
// unknown keys and bad values only print a warning and exit 0.
func systemdVerify(t *testing.T, unitPath string) {
	t.Helper()
	sa := tool(t, "systemd-analyze", "systemd")
	out, err := run(t, filepath.Dir(unitPath), 30*time.Second, sa, "verify", unitPath)
	if err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze verify %s: err=%v, output:\n%s", filepath.Base(unitPath), err, out)
	}
}

// unitDirectives returns the unit's Key=Value lines (later ones appended).
func unitDirectives(unit string) map[string][]string {
	out := map[string][]string{}
	for _, line := range strings.Split(unit, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";") || strings.HasPrefix(line, "[") {
			continue
		}
		if k, v, ok := strings.Cut(line, "="); ok {
			out[strings.TrimSpace(k)] = append(out[strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	return out
}

func TestScaledowndUnit(t *testing.T) {
	unit := string(readRepoFile(t, "deploy/systemd/scaledownd.service"))
	d := unitDirectives(unit)
	for key, want := range map[string]string{
		"Type":            "notify",
		"Restart":         "always",
		"WatchdogSec":     "60s",
		"StateDirectory":  "scaledownd",
		"EnvironmentFile": "-/etc/default/scaledownd",
		"ExecStart":       "/usr/bin/scaledownd run --config.file=/etc/scaledownd/config.yaml",
	} {
		if got := d[key]; len(got) != 1 || got[0] != want {
			t.Errorf("scaledownd.service: %s=%v, want exactly %s=%s", key, got, key, want)
		}
	}
	if !(len(d["DynamicUser"]) == 1 && d["DynamicUser"][0] == "yes") && len(d["User"]) == 0 {
		t.Error("scaledownd.service runs as root: set DynamicUser=yes or User=")
	}

	bin := daemonBinary(t)
	path := unitCopy(t, unit, "scaledownd.service", "/usr/bin/scaledownd", bin)

	t.Run("verify", func(t *testing.T) { systemdVerify(t, path) })

	t.Run("security", func(t *testing.T) {
		sa := tool(t, "systemd-analyze", "systemd")
		out, err := run(t, filepath.Dir(path), 30*time.Second, sa, "--offline=true", "security", path)
		if err != nil {
			t.Fatalf("systemd-analyze --offline=true security: %v\n%s", err, out)
		}
		m := regexp.MustCompile(`Overall exposure level for \S+: ([0-9]+(?:\.[0-9]+)?)`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no overall exposure level in the output:\n%s", out)
		}
		score, err := strconv.ParseFloat(m[1], 64)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("systemd-analyze security: overall exposure %.1f (limit %.1f)", score, maxExposure)
		if score > maxExposure {
			var open []string
			for _, line := range strings.Split(out, "\n") {
				if strings.HasPrefix(strings.TrimSpace(line), "✗") {
					open = append(open, line)
				}
			}
			t.Errorf("exposure %.1f exceeds %.1f; unhardened settings:\n%s", score, maxExposure, strings.Join(open, "\n"))
		}
	})
}

func TestTrinoUnitExample(t *testing.T) {
	unit := string(readRepoFile(t, "deploy/systemd/trino.service.example"))
	d := unitDirectives(unit)
	if got := d["Restart"]; len(got) != 1 || got[0] != "on-failure" {
		t.Errorf("trino.service.example: Restart=%v, want exactly Restart=on-failure: Trino exits 0 after a graceful shutdown and must not come back ACTIVE", got)
	}
	start := d["ExecStart"]
	if len(start) != 1 {
		t.Fatalf("trino.service.example: want one ExecStart, got %v", start)
	}
	binary := strings.Fields(start[0])[0]
	path := unitCopy(t, unit, "trino.service", binary, "/bin/true")
	systemdVerify(t, path)
}

// ---------------------------------------------------------------- packaging

// yamlKeys returns the dotted paths of every scalar leaf in a YAML mapping.
func yamlKeys(n *yaml.Node, prefix string, out map[string]bool) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			yamlKeys(c, prefix, out)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			yamlKeys(n.Content[i+1], prefix+n.Content[i].Value+".", out)
		}
	default:
		out[strings.TrimSuffix(prefix, ".")] = true
	}
}

// loadConfigFile loads path the way the daemon does, with no environment.
func loadConfigFile(t *testing.T, path string) config.Config {
	t.Helper()
	fs := config.NewFlagSet("test", os.Stderr)
	if err := fs.Parse([]string{"--config.file=" + path}); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := config.Load(fs, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatalf("%s does not load: %v", path, err)
	}
	return cfg
}

func TestPackagedConfigIsTheDefault(t *testing.T) {
	const rel = "packaging/config.yaml"
	var doc yaml.Node
	if err := yaml.Unmarshal(readRepoFile(t, rel), &doc); err != nil {
		t.Fatal(err)
	}
	keys := map[string]bool{}
	yamlKeys(&doc, "", keys)
	for _, s := range config.Settings() {
		if !keys[s.Key] {
			t.Errorf("%s lacks the key %s (default %q)", rel, s.Key, s.Default)
		}
	}

	got := loadConfigFile(t, repoPath(t, rel)).Fields()
	want := config.Default().Fields()
	for _, k := range config.Keys(want) {
		if got[k] != want[k] {
			t.Errorf("%s: %s = %q, want the default %q", rel, k, got[k], want[k])
		}
	}
	if got["aws.queue-url"] != "" {
		t.Errorf("%s sets a queue URL; the package cannot know the operator's queue", rel)
	}
}

// TestReliabilityRowsNameTestsThatExist: every test RELIABILITY.md names
// is defined in the repository (a chaos row as a subtest of TestChaos).
func TestReliabilityRowsNameTestsThatExist(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(repoRoot(t), "RELIABILITY.md"))
	if err != nil {
		t.Fatal(err)
	}
	var sources strings.Builder
	for _, dir := range []string{"chaos", "cmd", "internal", "pkg"} {
		_ = filepath.WalkDir(filepath.Join(repoRoot(t), dir), func(p string, d os.DirEntry, err error) error {
			if err == nil && strings.HasSuffix(p, "_test.go") {
				b, _ := os.ReadFile(p)
				sources.Write(b)
			}
			return nil
		})
	}
	src := sources.String()
	names := regexp.MustCompile("`((?:Test|Fuzz)[A-Za-z0-9_]+)(?:/([a-z0-9_]+))?`").FindAllStringSubmatch(string(doc), -1)
	if len(names) < 20 {
		t.Fatalf("only %d test names found in RELIABILITY.md", len(names))
	}
	for _, m := range names {
		if !strings.Contains(src, "func "+m[1]+"(") {
			t.Errorf("RELIABILITY.md names %s, which no test defines", m[1])
		}
		if m[2] != "" && !strings.Contains(src, `"`+m[2]+`"`) {
			t.Errorf("RELIABILITY.md names the subtest %s/%s, which no test defines", m[1], m[2])
		}
	}
}

// TestReadmeListsEveryMetric: every scaledownd_ metric the daemon exports
// has a row in the README's metrics table.
func TestReadmeListsEveryMetric(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(repoRoot(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	mfs, err := metrics.New("test").Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		name := mf.GetName()
		if strings.HasPrefix(name, "scaledownd_") && !strings.Contains(string(readme), "| `"+name+"` |") {
			t.Errorf("README.md's metrics table lacks %s", name)
		}
	}
}

// TestDebPackageInstallsUpgradesAndPurges builds the .deb and runs
// scripts/package-test.sh: dpkg install, files and `scaledownd version`,
// conffile kept across a reinstall, lintian without errors, purge.
func TestDebPackageInstallsUpgradesAndPurges(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the package test installs with dpkg and must run as root (as CI does)")
	}
	for _, tool := range []string{"dpkg", "lintian"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: apt-get install %s", tool, tool)
		}
	}
	cmd := exec.Command("bash", "scripts/package-test.sh")
	cmd.Dir = repoRoot(t)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "PASS: package-test") {
		t.Fatalf("package test: %v\n%s", err, out)
	}
}
