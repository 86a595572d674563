// Package config loads scaledownd's settings from a YAML file, SCALEDOWND_*
// environment variables and command-line flags, in that order of
// precedence (a flag beats the environment, which beats the file, which
// beats the default), and validates them in one place.
//
// Every setting has one dotted key, e.g. trino.url, that names it
// everywhere: the YAML path (trino: {url: …}), the flag (--trino.url) and
// the environment variable (SCALEDOWND_TRINO_URL).
package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"time"
)

// DefaultFile is where the config file is looked for when none is named.
const DefaultFile = "/etc/scaledownd/config.yaml"

// Config is the daemon's whole configuration.
type Config struct {
	AWS       AWS       `yaml:"aws"`
	Lifecycle Lifecycle `yaml:"lifecycle"`
	Trino     Trino     `yaml:"trino"`
	// Listen serves /metrics, /healthz and /readyz. Port 10180 lies outside
	// the exporter block 9100–9999 of Prometheus's default port allocations,
	// which is full.
	Listen   string `yaml:"listen-address" help:"Address of the HTTP listener for /metrics, /healthz, /readyz and /status." default:":10180"`
	Web      Web    `yaml:"web"`
	StateDir string `yaml:"state-dir" help:"Directory for the daemon's state: the actions in progress and the last 50 drain reports (scaledownd history)." default:"/var/lib/scaledownd"`
	Log      Log    `yaml:"log"`
	DryRun   bool   `yaml:"dry-run" help:"Log every action that would change state (Trino state, heartbeats, completion, message deletion) without doing it."`

	// credentialsDir is $CREDENTIALS_DIRECTORY (systemd credentials), read
	// by Load; not a setting.
	credentialsDir string
}

// AWS holds where to find the lifecycle notifications and the Auto Scaling
// API.
type AWS struct {
	Region            string        `yaml:"region" help:"AWS region; read from instance metadata when empty."`
	InstanceID        string        `yaml:"instance-id" help:"This instance's id; read from instance metadata (IMDSv2) when empty."`
	QueueURL          string        `yaml:"queue-url" help:"URL of the SQS queue the lifecycle hook notifies. Empty: no queue, the daemon stays idle."`
	Mode              string        `yaml:"mode" help:"Where termination signals come from: sqs (the lifecycle queue), imds (this instance's metadata: target-lifecycle-state, Spot notices), or both (first signal wins; without aws.queue-url it is imds)." default:"both"`
	IMDSPollInterval  time.Duration `yaml:"imds-poll-interval" help:"How often instance metadata is polled in imds and both modes." default:"1s"`
	SQSIdleInterval   time.Duration `yaml:"sqs-idle-interval" help:"In mode both: while instance metadata answers and shows no termination, the queue is long-polled once per this interval instead of all the time (0: all the time). The daemon polls continuously from the moment metadata shows the instance leaving service or cannot be read." default:"1m"`
	SpotNotices       bool          `yaml:"spot-notices" help:"In imds and both modes, drain at once on a Spot interruption notice (deadline: the notice's time)." default:"true"`
	DrainOnRebalance  bool          `yaml:"drain-on-rebalance" help:"In imds and both modes, drain on a Spot rebalance recommendation. Off: a drained worker whose instance is then not reclaimed is lost capacity."`
	DeleteStale       bool          `yaml:"delete-stale" help:"Delete other instances' lifecycle messages that can no longer be acted on (older than their hook's global timeout, instance gone or no longer waiting), checked at a limited rate, so they stop circulating on a shared queue." default:"true"`
	Group             string        `yaml:"asg-name" help:"Expected Auto Scaling group; messages for other groups are left to others. Empty accepts any group."`
	Hook              string        `yaml:"hook-name" help:"Expected terminating lifecycle hook; messages for other hooks are left to others. Empty accepts any hook."`
	LaunchHook        string        `yaml:"launch-hook-name" help:"Expected launching lifecycle hook (EC2_INSTANCE_LAUNCHING): completed with CONTINUE once the worker is ACTIVE. Empty accepts any launching hook."`
	WaitTime          time.Duration `yaml:"wait-time" help:"SQS long-poll wait (WaitTimeSeconds), 1s to 20s." default:"20s"`
	VisibilityTimeout time.Duration `yaml:"visibility-timeout" help:"Visibility timeout asked for on every receive; at least 30s." default:"1m"`
	CallTimeout       time.Duration `yaml:"call-timeout" help:"Deadline of every AWS call (the long poll gets wait-time on top)." default:"10s"`
	MaxAttempts       int           `yaml:"max-attempts" help:"Attempts per AWS call by the SDK's standard retryer." default:"3"`
	SQSEndpoint       string        `yaml:"sqs-endpoint" help:"Override the SQS endpoint (tests, VPC endpoints)."`
	AutoScalingEP     string        `yaml:"autoscaling-endpoint" help:"Override the Auto Scaling endpoint (tests, VPC endpoints)."`
	IMDSEndpoint      string        `yaml:"imds-endpoint" help:"Override the instance metadata endpoint (tests)."`
}

// Lifecycle holds the timing of heartbeats and completion.
type Lifecycle struct {
	HeartbeatInterval AutoDuration  `yaml:"heartbeat-interval" help:"Time between heartbeats: auto (half the hook's HeartbeatTimeout) or a duration, never above half of it."`
	MaxDrainTime      time.Duration `yaml:"max-drain-time" help:"Longest the daemon holds the instance, counted from the start of the lifecycle action; the AWS cap min(48h, 100 × HeartbeatTimeout) applies as well." default:"48h"`
	SafetyMargin      time.Duration `yaml:"safety-margin" help:"Completion happens this long before the cap (at most a tenth of it)." default:"2m"`
	LaunchTimeout     time.Duration `yaml:"launch-timeout" help:"How long a launch action waits for the worker to be ACTIVE before it is completed with ABANDON." default:"15m"`
	NotFoundWindow    time.Duration `yaml:"not-found-window" help:"How long 'No active Lifecycle Action found' is retried before it is believed." default:"2m"`
	ConfirmWindow     time.Duration `yaml:"confirm-window" help:"How long an action learned from the queue is re-checked (every 5 s, or a quarter of the window if shorter) until AWS confirms it for this instance (instance metadata's target-lifecycle-state, else DescribeAutoScalingInstances) before it is rejected: never drained, logged as an error, counted. AWS updates metadata and the queue independently and documents no latency between them. 0: checked once." default:"2m"`
}

// Trino holds how to reach and drain the local worker.
type Trino struct {
	URL                string        `yaml:"url" help:"Base URL of the local Trino worker." default:"http://127.0.0.1:8080"`
	CoordinatorURL     string        `yaml:"coordinator-url" help:"Base URL of the cluster's coordinator. When set, a launch action is completed only once the coordinator lists this worker as active (system.runtime.nodes), not just when the worker says ACTIVE, and a drain reports which queries still have tasks on this worker (GET /v1/query, at most every 10 s). Same user, password and TLS settings as the worker."`
	DeadlineWarning    time.Duration `yaml:"deadline-warning" help:"How long before the action's deadline the queries still running on the worker (they fail when the action completes) are logged at warn; needs trino.coordinator-url. 0: 10 % of the time from DRAINING to the deadline, at most 5m."`
	User               string        `yaml:"user" help:"User for the node-state API (X-Trino-User, or the Basic auth user with a password). Needs system information write access on the worker." default:"scaledownd"`
	Password           string        `yaml:"password" secret:"true" help:"Password for HTTP Basic auth (HTTPS only). Prefer password-file."`
	PasswordFile       string        `yaml:"password-file" help:"File holding the password for HTTP Basic auth (HTTPS only). With neither this nor trino.password, the systemd credential trino-password is used (the unit loads /etc/scaledownd/trino-password; README, Trino prerequisites)."`
	CAFile             string        `yaml:"ca-file" help:"PEM bundle to trust for the worker's certificate, on top of the system roots."`
	TLSVerify          bool          `yaml:"tls-verify" help:"Verify the worker's TLS certificate." default:"true"`
	Strategy           string        `yaml:"strategy" help:"Drain strategy: auto (DRAINING where supported, else SHUTTING_DOWN), drain (DRAINING only) or shutdown (SHUTTING_DOWN and wait for exit)." default:"auto"`
	QuietPeriod        time.Duration `yaml:"quiet-period" help:"Extra wait after DRAINED or the exit, on top of Trino's own second shutdown.grace-period."`
	ShutdownAfterDrain bool          `yaml:"shutdown-after-drain" help:"Send SHUTTING_DOWN once DRAINED so the idle worker exits at once." default:"true"`
	PollInterval       time.Duration `yaml:"poll-interval" help:"How often the worker's state and tasks are read during a drain." default:"500ms"`
	RequestTimeout     time.Duration `yaml:"request-timeout" help:"Deadline of every call to the worker." default:"5s"`
	NotRunningWindow   time.Duration `yaml:"not-running-window" help:"How long the worker must refuse connections before it counts as not running (nothing to drain)." default:"30s"`
}

// Web holds the listener's TLS and authentication, as Prometheus exporters
// do: the key web.config.file is the exporters' --web.config.file flag.
type Web struct {
	Config WebConfig `yaml:"config"`
}

// WebConfig names the web configuration file.
type WebConfig struct {
	File string `yaml:"file" help:"Web configuration file of the listener in the Prometheus exporter-toolkit format: TLS (tls_server_config) and basic auth with bcrypt hashes (basic_auth_users), re-read on every connection. Empty: plain HTTP without authentication."`
}

// Log holds logging settings.
type Log struct {
	Format string `yaml:"format" help:"Log format: json or console." default:"json"`
	Level  string `yaml:"level" help:"Log level: debug, info, warn or error." default:"info"`
}

// Default returns the configuration before any file, variable or flag:
// every setting's default tag.
func Default() Config {
	var c Config
	walk(reflect.TypeFor[Config](), nil, "", func(s Setting) {
		if err := s.set(&c, s.def); s.def != "" && err != nil {
			panic(fmt.Sprintf("default of %s: %v", s.Key, err))
		}
	})
	return c
}

// AutoDuration is a duration that may be "auto" (zero).
type AutoDuration time.Duration

// UnmarshalText accepts "auto", "" or a Go duration.
func (d *AutoDuration) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	if s == "" || s == "auto" {
		*d = 0
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return fmt.Errorf("want auto or a positive duration such as 30s, got %q", s)
	}
	*d = AutoDuration(v)
	return nil
}

// MarshalText renders zero as "auto".
func (d AutoDuration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

func (d AutoDuration) String() string {
	if d == 0 {
		return "auto"
	}
	return time.Duration(d).String()
}

// Validate checks every setting and reports all problems at once, each
// naming its key.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	// within reports d outside [lo, hi] as "key: rule, got d".
	within := func(key string, d, lo, hi time.Duration, rule string) {
		if d < lo || d > hi {
			bad(key, "%s, got %s", rule, d)
		}
	}
	// oneOf reports v outside allowed as "key: want a, b or c, got v".
	oneOf := func(key, v string, allowed ...string) {
		if !slices.Contains(allowed, v) {
			last := len(allowed) - 1
			bad(key, "want %s or %s, got %q", strings.Join(allowed[:last], ", "), allowed[last], v)
		}
	}
	const forever = time.Duration(math.MaxInt64)
	if u, err := url.Parse(c.AWS.QueueURL); c.AWS.QueueURL != "" && (err != nil || u.Scheme == "" || u.Host == "") {
		bad("aws.queue-url", "want a queue URL such as https://sqs.us-east-1.amazonaws.com/123456789012/name, got %q", c.AWS.QueueURL)
	}
	oneOf("aws.mode", c.AWS.Mode, "sqs", "imds", "both")
	within("aws.sqs-idle-interval", c.AWS.SQSIdleInterval, 0, time.Hour, "must be between 0 (poll all the time) and 1h")
	within("aws.imds-poll-interval", c.AWS.IMDSPollInterval, 100*time.Millisecond, forever, "must be at least 100ms")
	if c.AWS.InstanceID != "" && !strings.HasPrefix(c.AWS.InstanceID, "i-") {
		bad("aws.instance-id", "want an instance id such as i-0123456789abcdef0, got %q", c.AWS.InstanceID)
	}
	for key, ep := range map[string]string{"aws.sqs-endpoint": c.AWS.SQSEndpoint, "aws.autoscaling-endpoint": c.AWS.AutoScalingEP, "aws.imds-endpoint": c.AWS.IMDSEndpoint} {
		if _, ok := httpURL(ep); ep != "" && !ok {
			bad(key, "want an http(s) URL, got %q", ep)
		}
	}
	within("aws.wait-time", c.AWS.WaitTime, time.Second, 20*time.Second, "must be between 1s and 20s (SQS long polling)")
	within("aws.visibility-timeout", c.AWS.VisibilityTimeout, 30*time.Second, 12*time.Hour, "must be between 30s and 12h")
	within("aws.call-timeout", c.AWS.CallTimeout, 100*time.Millisecond, forever, "must be at least 100ms")
	if c.AWS.MaxAttempts < 1 || c.AWS.MaxAttempts > 10 {
		bad("aws.max-attempts", "must be between 1 and 10, got %d", c.AWS.MaxAttempts)
	}

	within("lifecycle.max-drain-time", c.Lifecycle.MaxDrainTime, 1, forever, "must be positive")
	within("lifecycle.max-drain-time", c.Lifecycle.MaxDrainTime, -forever, 48*time.Hour, "must not exceed 48h, the AWS limit")
	within("lifecycle.safety-margin", c.Lifecycle.SafetyMargin, 0, forever, "must not be negative")
	within("lifecycle.heartbeat-interval", time.Duration(c.Lifecycle.HeartbeatInterval), -forever, time.Hour, "must be at most 1h (half the largest HeartbeatTimeout)")
	within("lifecycle.launch-timeout", c.Lifecycle.LaunchTimeout, 1, forever, "must be positive")
	within("lifecycle.not-found-window", c.Lifecycle.NotFoundWindow, 0, forever, "must not be negative")
	within("lifecycle.confirm-window", c.Lifecycle.ConfirmWindow, 0, time.Hour, "must be between 0 (check once) and 1h")

	password := c.Trino.Password != "" || c.Trino.PasswordFile != ""
	if u, ok := httpURL(c.Trino.URL); !ok {
		bad("trino.url", "want http(s)://host:port, got %q", c.Trino.URL)
	} else if password && u.Scheme != "https" {
		bad("trino.url", "a password is configured but the URL is not https; Trino accepts passwords over HTTPS only and they must not travel in clear text")
	}
	if u, ok := httpURL(c.Trino.CoordinatorURL); c.Trino.CoordinatorURL != "" && !ok {
		bad("trino.coordinator-url", "want http(s)://host:port, got %q", c.Trino.CoordinatorURL)
	} else if ok && password && u.Scheme != "https" {
		bad("trino.coordinator-url", "a password is configured but the URL is not https; it must not travel in clear text")
	}
	if strings.TrimSpace(c.Trino.User) == "" {
		bad("trino.user", "must not be empty: Trino needs a user for the node-state API")
	}
	if c.Trino.Password != "" && c.Trino.PasswordFile != "" {
		bad("trino.password", "set either trino.password or trino.password-file, not both")
	}
	oneOf("trino.strategy", c.Trino.Strategy, "auto", "drain", "shutdown")
	within("trino.quiet-period", c.Trino.QuietPeriod, 0, forever, "must not be negative")
	within("trino.poll-interval", c.Trino.PollInterval, 10*time.Millisecond, forever, "must be at least 10ms")
	within("trino.request-timeout", c.Trino.RequestTimeout, 10*time.Millisecond, forever, "must be at least 10ms")
	within("trino.not-running-window", c.Trino.NotRunningWindow, 0, forever, "must not be negative")
	within("trino.deadline-warning", c.Trino.DeadlineWarning, 0, 48*time.Hour, "must be between 0 (automatic) and 48h")

	if _, _, err := net.SplitHostPort(c.Listen); c.Listen != "" && err != nil {
		bad("listen-address", "want host:port (or empty to disable), got %q", c.Listen)
	}
	if c.StateDir == "" {
		bad("state-dir", "must not be empty")
	}
	oneOf("log.format", c.Log.Format, "json", "console")
	oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	return errors.Join(errs...)
}

// httpURL parses s as an http(s) URL with a host.
func httpURL(s string) (*url.URL, bool) {
	u, err := url.Parse(s)
	return u, err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}
