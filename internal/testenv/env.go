// Package testenv assembles a whole scale-down world on loopback from the
// test peers — a fake SQS queue, a fake Auto Scaling group with a hook and
// this instance, a fake Trino worker — and runs the real daemon against it,
// in-process or as the built binary. Integration tests, `make demo`, the
// chaos matrix and the benchmarks share it.
package testenv

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/scaledownd/scaledownd/internal/config"
	"github.com/scaledownd/scaledownd/internal/daemon"
	"github.com/scaledownd/scaledownd/internal/metrics"
	"github.com/scaledownd/scaledownd/internal/supervisor"
	"github.com/scaledownd/scaledownd/internal/testpeers"
)

// Defaults of a test world.
const (
	InstanceID = "i-0123456789abcdef0"
	Group      = "trino-workers"
	Hook       = "trino-drain"
	Region     = "us-east-1"
)

// DeadEndpoint is a loopback URL where nothing listens: test
// configurations point the AWS endpoints they do not use there (instance
// metadata above all), so a forgotten setting fails fast instead of
// reaching real AWS or the link-local metadata service.
const DeadEndpoint = "http://127.0.0.1:9"

// Options shape a test world.
type Options struct {
	InstanceID string // default InstanceID
	// HeartbeatTimeout of the hook; default 2 s.
	HeartbeatTimeout time.Duration
	// GlobalTimeout of the hook; default min(100 × HeartbeatTimeout, 48 h).
	GlobalTimeout time.Duration
	// Trino configures the fake worker; Version defaults to "476" and
	// GracePeriod to 200 ms.
	Trino testpeers.TrinoOptions
	// NoTrino leaves the Trino URL pointing at a port nobody listens on.
	NoTrino bool
}

// Env is a running test world.
type Env struct {
	Dir      string // scratch directory, removed by Close
	SQS      *testpeers.SQS
	ASG      *testpeers.AutoScaling
	Trino    *testpeers.TrinoWorker // nil with NoTrino
	QueueURL string
	TrinoURL string
	Instance string
}

// New starts the peers.
func New(opts Options) (*Env, error) {
	opts.InstanceID = cmp.Or(opts.InstanceID, InstanceID)
	opts.HeartbeatTimeout = cmp.Or(opts.HeartbeatTimeout, 2*time.Second)
	dir, err := os.MkdirTemp("", "scaledownd-env-")
	if err != nil {
		return nil, fmt.Errorf("scratch directory: %w", err)
	}
	e := &Env{Instance: opts.InstanceID, Dir: dir}
	e.SQS = testpeers.NewSQS(testpeers.SQSOptions{})
	e.QueueURL = e.SQS.CreateQueue("trino-lifecycle", testpeers.SQSQueueOptions{})
	e.ASG = testpeers.NewAutoScaling(testpeers.AutoScalingOptions{Region: Region})
	e.ASG.AddGroup(Group, 1, 10)
	e.ASG.AddHook(testpeers.AutoScalingHook{
		Group: Group, Name: Hook, HeartbeatTimeout: opts.HeartbeatTimeout, GlobalTimeout: opts.GlobalTimeout,
		DefaultResult: "ABANDON",
	})
	e.ASG.AddInstance(opts.InstanceID, Group, "InService")
	if opts.NoTrino {
		port, err := testpeers.FreePort()
		if err != nil {
			e.Close()
			return nil, err
		}
		e.TrinoURL = "http://127.0.0.1:" + port
		return e, nil
	}
	opts.Trino.Version = cmp.Or(opts.Trino.Version, "476")
	opts.Trino.GracePeriod = cmp.Or(opts.Trino.GracePeriod, 200*time.Millisecond)
	e.Trino = testpeers.NewTrino(opts.Trino)
	e.TrinoURL = e.Trino.URL()
	return e, nil
}

// Close stops the peers and removes the scratch directory.
func (e *Env) Close() {
	if e.Trino != nil {
		e.Trino.Close()
	}
	e.ASG.Close()
	e.SQS.Close()
	_ = os.RemoveAll(e.Dir)
}

// StateDir is the daemon state directory for an instance of this world; a
// restarted daemon for the same instance finds its state there.
func (e *Env) StateDir(instanceID string) string {
	return filepath.Join(e.Dir, "state-"+instanceID)
}

// AddInstance puts another instance into the group.
func (e *Env) AddInstance(id string) { e.ASG.AddInstance(id, Group, "InService") }

// Terminate starts a terminate lifecycle action for the instance and
// returns its token and the notification Auto Scaling would send.
func (e *Env) Terminate(instanceID string) (string, testpeers.LifecycleMessage) {
	token := e.ASG.StartAction(Group, Hook, instanceID)
	return token, e.ASG.Message(token)
}

// Config returns a daemon configuration for instanceID pointed at the
// peers, with timings short enough for tests.
func (e *Env) Config(instanceID string) config.Config {
	c := config.Default()
	c.AWS.Region = Region
	c.AWS.InstanceID = instanceID
	// The queue alone, and instance metadata on a loopback port nobody
	// listens on: a test that wants IMDS sets the mode and points
	// aws.imds-endpoint at its fake; no test may reach 169.254.169.254.
	c.AWS.Mode = "sqs"
	c.AWS.IMDSEndpoint = DeadEndpoint
	c.AWS.QueueURL = e.QueueURL
	c.AWS.Group = Group
	c.AWS.SQSEndpoint = e.SQS.URL()
	c.AWS.AutoScalingEP = e.ASG.URL()
	c.AWS.WaitTime = time.Second
	c.AWS.VisibilityTimeout = 30 * time.Second
	c.AWS.CallTimeout = 3 * time.Second
	c.AWS.MaxAttempts = 3
	c.Lifecycle.MaxDrainTime = time.Minute
	c.Lifecycle.SafetyMargin = 0
	c.Lifecycle.NotFoundWindow = 2 * time.Second
	c.Trino.URL = e.TrinoURL
	c.Trino.PollInterval = 50 * time.Millisecond
	c.Trino.RequestTimeout = time.Second
	c.Trino.NotRunningWindow = time.Second
	c.Listen = "127.0.0.1:0"
	c.StateDir = e.StateDir(instanceID)
	return c
}

// HermeticAWS sets the process environment so the SDK's default chain uses
// static test credentials and reads no shared files. Call it from TestMain.
func HermeticAWS() {
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID":           "AKIATESTTESTTESTTEST",
		"AWS_SECRET_ACCESS_KEY":       "test-secret-key",
		"AWS_SESSION_TOKEN":           "",
		"AWS_CONFIG_FILE":             os.DevNull,
		"AWS_SHARED_CREDENTIALS_FILE": os.DevNull,
		"AWS_PROFILE":                 "",
		"AWS_EC2_METADATA_DISABLED":   "true",
	} {
		_ = os.Setenv(k, v)
	}
}

// Daemon is a daemon running in this process.
type Daemon struct {
	Addr    string // its HTTP listener
	Metrics *metrics.Metrics
	cancel  context.CancelFunc
	done    chan error
	once    sync.Once
}

// StartDaemon runs the daemon in-process with cfg and waits until it is
// ready (or has failed).
func StartDaemon(ctx context.Context, cfg config.Config, log *zap.Logger) (*Daemon, error) {
	return StartDaemonWith(ctx, cfg, log, nil)
}

// StartDaemonWith is StartDaemon with the queries holding a drain listed by
// queries (nil: none) every 100 ms.
func StartDaemonWith(ctx context.Context, cfg config.Config, log *zap.Logger, queries supervisor.QueryLister) (*Daemon, error) {
	ctx, cancel := context.WithCancel(ctx)
	d := &Daemon{Metrics: metrics.New("test"), cancel: cancel, done: make(chan error, 1)}
	ready := make(chan string, 1)
	go func() {
		d.done <- daemon.Run(ctx, cfg, daemon.Options{
			Logger: log, Metrics: d.Metrics, Queries: queries, QueryInterval: 100 * time.Millisecond,
			Ready: func(addr string) { ready <- addr },
		})
	}()
	select {
	case d.Addr = <-ready:
		return d, nil
	case err := <-d.done:
		cancel()
		return nil, fmt.Errorf("daemon stopped before it was ready: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		return nil, fmt.Errorf("daemon not ready after 30 s")
	}
}

// Stop cancels the daemon and waits for Run to return, at most timeout.
func (d *Daemon) Stop(timeout time.Duration) error {
	var err error
	d.once.Do(func() {
		d.cancel()
		select {
		case err = <-d.done:
		case <-time.After(timeout):
			err = fmt.Errorf("daemon did not stop within %s", timeout)
		}
	})
	return err
}
