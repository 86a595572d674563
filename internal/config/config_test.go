package config

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func load(t *testing.T, args []string, vars map[string]string) (Config, Source, error) {
	t.Helper()
	fs := NewFlagSet("test", io.Discard)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parse flags: %v", err)
	}
	return Load(fs, env(vars))
}

func TestLoadBadConfigs(t *testing.T) {
	tests := []struct {
		file string
		want string
	}{
		{"invalid-unknown-key.yml", "field urll not found"},
		{"invalid-strategy.yml", `trino.strategy: want auto, drain or shutdown, got "explode"`},
		{"invalid-wait-time.yml", "aws.wait-time: must be between 1s and 20s"},
		{"invalid-visibility.yml", "aws.visibility-timeout: must be between 30s and 12h"},
		{"invalid-max-drain-time.yml", "lifecycle.max-drain-time: must not exceed 48h"},
		{"invalid-heartbeat-interval.yml", `want auto or a positive duration such as 30s, got "soon"`},
		{"invalid-password-over-http.yml", "trino.url: a password is configured but the URL is not https"},
		{"invalid-queue-url.yml", "aws.queue-url: want a queue URL"},
		{"invalid-user.yml", "trino.user: must not be empty"},
		{"invalid-log-level.yml", `log.level: want debug, info, warn or error, got "loud"`},
		{"invalid-shape.yml", "cannot unmarshal"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			_, _, err := load(t, []string{"--config.file", filepath.Join("testdata", tt.file)}, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestPrecedence(t *testing.T) {
	cfg, src, err := load(t,
		[]string{"--config.file", "testdata/valid.yml", "--trino.quiet-period=45s", "--dry-run"},
		map[string]string{"SCALEDOWND_TRINO_USER": "from-env", "SCALEDOWND_TRINO_QUIET_PERIOD": "1m", "SCALEDOWND_AWS_WAIT_TIME": "5s"})
	if err != nil {
		t.Fatal(err)
	}
	if src.File != "testdata/valid.yml" {
		t.Errorf("source file = %q", src.File)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"file value", cfg.AWS.Group, "trino-workers"},
		{"file duration", cfg.Lifecycle.MaxDrainTime, 6 * time.Hour},
		{"file auto-duration", time.Duration(cfg.Lifecycle.HeartbeatInterval), 60 * time.Second},
		{"env beats file", cfg.Trino.User, "from-env"},
		{"flag beats env", cfg.Trino.QuietPeriod, 45 * time.Second},
		{"env over default", cfg.AWS.WaitTime, 5 * time.Second},
		{"bool flag without value", cfg.DryRun, true},
		{"default kept", cfg.Trino.TLSVerify, true},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestMissingFiles(t *testing.T) {
	// The default path may be absent: defaults, env and flags suffice.
	fs := NewFlagSet("test", io.Discard)
	_ = fs.Parse(nil)
	if _, _, err := Load(fs, env(nil)); err != nil && !strings.Contains(err.Error(), DefaultFile) {
		t.Fatalf("absent default file should not fail: %v", err)
	}
	// A named file must exist.
	_, _, err := load(t, []string{"--config.file", "testdata/nope.yml"}, nil)
	if err == nil || !strings.Contains(err.Error(), "nope.yml") {
		t.Fatalf("error = %v, want it to name the missing file", err)
	}
	// So must one named by the environment.
	_, _, err = load(t, nil, map[string]string{"SCALEDOWND_CONFIG_FILE": "testdata/also-nope.yml"})
	if err == nil || !strings.Contains(err.Error(), "also-nope.yml") {
		t.Fatalf("error = %v, want it to name the missing file", err)
	}
}

func TestBadEnvAndFlagValuesNameTheirSource(t *testing.T) {
	_, _, err := load(t, []string{"--trino.poll-interval=fast"}, map[string]string{"SCALEDOWND_DRY_RUN": "maybe"})
	if err == nil {
		t.Fatal("want an error")
	}
	for _, want := range []string{"trino.poll-interval (flag --trino.poll-interval)", "dry-run (env SCALEDOWND_DRY_RUN)"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestSecretsAreRedacted(t *testing.T) {
	cfg, _, err := load(t, []string{"--trino.url=https://worker:8443"}, map[string]string{"SCALEDOWND_TRINO_PASSWORD": "hunter2-secret"})
	if err != nil {
		t.Fatal(err)
	}
	out, err := cfg.YAML()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "hunter2") || !strings.Contains(string(out), "<redacted>") {
		t.Fatalf("config print leaks or loses the secret:\n%s", out)
	}
	for k, v := range cfg.Fields() {
		if strings.Contains(v, "hunter2") {
			t.Fatalf("field %s leaks the secret", k)
		}
	}
	if pw, _ := cfg.TrinoPassword(); pw != "hunter2-secret" {
		t.Fatalf("the real value must still be usable, got %q", pw)
	}
}

func TestPasswordFileAndPermissionWarning(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := load(t, []string{"--trino.url=https://w:8443", "--trino.password-file=" + pw}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := cfg.TrinoPassword(); err != nil || got != "s3cret" {
		t.Fatalf("password = %q, %v", got, err)
	}

	file := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(file, []byte("trino:\n  url: https://w:8443\n  password: inline\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, src, err := load(t, []string{"--config.file", file}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(src.Warnings) != 1 || !strings.Contains(src.Warnings[0], "readable by every user") {
		t.Fatalf("warnings = %v, want the world-readable warning", src.Warnings)
	}
}

func TestSettingsNamesAreConsistent(t *testing.T) {
	seen := map[string]bool{}
	for _, s := range Settings() {
		if seen[s.Key] {
			t.Errorf("duplicate key %s", s.Key)
		}
		seen[s.Key] = true
		if s.Help == "" {
			t.Errorf("%s has no help text", s.Key)
		}
		if s.Flag != "--"+s.Key || s.Env != EnvName(s.Key) || !strings.HasPrefix(s.Env, "SCALEDOWND_") {
			t.Errorf("%s: flag %s env %s do not follow the key", s.Key, s.Flag, s.Env)
		}
	}
	if EnvName("trino.password-file") != "SCALEDOWND_TRINO_PASSWORD_FILE" {
		t.Errorf("EnvName = %s", EnvName("trino.password-file"))
	}
}

func TestReadmeDocumentsEverySetting(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if want := MarkdownTable(); !strings.Contains(string(readme), want) {
		t.Fatalf("README.md's configuration table is out of date; replace it with:\n\n%s", want)
	}
}

// TestTrinoPasswordFromSystemdCredential: with CREDENTIALS_DIRECTORY set
// (the unit's LoadCredential=) and no password or password file
// configured, the password is the credential; an empty credential (the
// unit's SetCredential= fallback) means none; a configured password file
// wins; a credential with a plain-HTTP worker URL is refused.
func TestTrinoPasswordFromSystemdCredential(t *testing.T) {
	creds := t.TempDir()
	if err := os.WriteFile(filepath.Join(creds, CredentialName), []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{"CREDENTIALS_DIRECTORY": creds, "SCALEDOWND_TRINO_URL": "https://127.0.0.1:8443"}
	cfg, _, err := load(t, []string{"--config.file=/dev/null"}, vars)
	if err != nil {
		t.Fatal(err)
	}
	if pw, err := cfg.TrinoPassword(); err != nil || pw != "s3cret" {
		t.Fatalf("TrinoPassword = %q, %v; want the credential s3cret", pw, err)
	}
	if src, file := cfg.TrinoPasswordSource(); src != "systemd credential trino-password" || file != filepath.Join(creds, CredentialName) {
		t.Errorf("TrinoPasswordSource = %q, %q", src, file)
	}

	own := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(own, []byte("from-file"), 0o600); err != nil {
		t.Fatal(err)
	}
	withFile, _, err := load(t, []string{"--config.file=/dev/null", "--trino.password-file=" + own}, vars)
	if err != nil {
		t.Fatal(err)
	}
	if pw, err := withFile.TrinoPassword(); err != nil || pw != "from-file" {
		t.Errorf("with trino.password-file: TrinoPassword = %q, %v; want from-file", pw, err)
	}

	plain, _, err := load(t, []string{"--config.file=/dev/null", "--trino.url=http://127.0.0.1:8080"}, vars)
	if err != nil {
		t.Fatal(err)
	}
	if pw, err := plain.TrinoPassword(); err == nil || !strings.Contains(err.Error(), "not https") {
		t.Errorf("credential over plain HTTP: TrinoPassword = %q, %v; want an error", pw, err)
	}

	if err := os.WriteFile(filepath.Join(creds, CredentialName), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if pw, err := plain.TrinoPassword(); err != nil || pw != "" {
		t.Errorf("empty credential: TrinoPassword = %q, %v; want no password", pw, err)
	}

	if err := os.Remove(filepath.Join(creds, CredentialName)); err != nil {
		t.Fatal(err)
	}
	if pw, err := cfg.TrinoPassword(); err != nil || pw != "" {
		t.Errorf("no credential: TrinoPassword = %q, %v; want no password", pw, err)
	}
}

func TestCheckEnvRefusesUnknownVariables(t *testing.T) {
	env := []string{
		"PATH=/usr/bin", "SCALEDOWND_TRINO_URL=http://127.0.0.1:8080", "SCALEDOWND_CONFIG_FILE=/dev/null",
		"SCALEDOWND_NO_START=1",
	}
	if err := CheckEnv(env); err != nil {
		t.Fatalf("known variables refused: %v", err)
	}
	err := CheckEnv(append(env, "SCALEDOWND_LIFECYCLE_MAX_DRAIN_TIEM=1h", "SCALEDOWND_FROBNICATE=1"))
	if err == nil {
		t.Fatal("unknown variables accepted")
	}
	for _, want := range []string{
		"SCALEDOWND_LIFECYCLE_MAX_DRAIN_TIEM: did you mean SCALEDOWND_LIFECYCLE_MAX_DRAIN_TIME?",
		"SCALEDOWND_FROBNICATE: no setting has this name",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q lacks %q", err, want)
		}
	}
}
