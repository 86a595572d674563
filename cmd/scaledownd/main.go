// Command scaledownd drains the local Trino worker before its EC2 Auto
// Scaling group terminates the instance, and completes the lifecycle action
// only once no query depends on the worker any more.
//
// This file only parses the command line, builds the logger and metrics and
// hands over to internal/daemon.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/scaledownd/scaledownd/internal/config"
	"github.com/scaledownd/scaledownd/internal/daemon"
	"github.com/scaledownd/scaledownd/internal/metrics"
	"github.com/scaledownd/scaledownd/internal/ops"
	"github.com/scaledownd/scaledownd/pkg/lifecycle"
	"github.com/scaledownd/scaledownd/pkg/trinoadmin"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "0.1.0-dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, os.Environ()))
}

const usageHead = `scaledownd — graceful scale-down of Trino workers in EC2 Auto Scaling groups.

Usage:
  scaledownd [run] [flags]           run the daemon (the default)
  scaledownd check [--json]          preflight: IMDS, group, hook, queue, Trino, permission
  scaledownd status [--json] [--watch] [--user U --password-file F]
                                     what the running daemon is doing (--watch: follow it)
  scaledownd history [--json]        the last drain reports, newest first
  scaledownd drain [--wait] [--shutdown]
                                     take the local worker out of service (maintenance)
  scaledownd undrain                 return a DRAINING or DRAINED worker to ACTIVE
  scaledownd config print            print the effective configuration (secrets redacted)
  scaledownd version                 print the version
  scaledownd help                    show this help

Every flag can also be set in the config file (the dotted key as a YAML path)
and in the environment (SCALEDOWND_ and the key in upper case, dots and
dashes as underscores). Precedence: flag, environment, file, default.

Flags:
`

// run executes one command line in the environment environ ("NAME=value"
// entries, as os.Environ) and returns the exit code.
func run(args []string, stdout, stderr io.Writer, environ []string) int {
	env := environment(environ)
	cmd := "run"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "version":
		fmt.Fprintf(stdout, "scaledownd %s (%s %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return 0
	case "help":
		usage(config.NewFlagSet("scaledownd", stdout))
		return 0
	case "config":
		if len(args) == 0 || args[0] != "print" {
			fmt.Fprintln(stderr, "usage: scaledownd config print [flags]")
			return 2
		}
		cfg, code := load(args[1:], stdout, stderr, env, nil)
		if code != 0 {
			return max(code, 0)
		}
		out, err := cfg.YAML()
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		_, _ = stdout.Write(out)
		return 0
	case "run":
		cfg, code := load(args, stdout, stderr, env, nil)
		if code != 0 {
			return max(code, 0)
		}
		return serve(cfg, stderr)
	case "check", "status", "drain", "undrain", "history":
		return operate(cmd, args, stdout, stderr, env)
	default:
		fmt.Fprintf(stderr, "unknown command %q; see scaledownd help\n", cmd)
		return 2
	}
}

func usage(fs *config.FlagSet) {
	w := fs.Output()
	fmt.Fprint(w, usageHead)
	fs.VisitAll(func(f *flag.Flag) {
		fmt.Fprintf(w, "  --%s", f.Name)
		if f.DefValue != "" {
			fmt.Fprintf(w, " (default %q)", f.DefValue)
		}
		fmt.Fprintf(w, "\n      %s\n", f.Usage)
	})
}

// exitDone is load's code for "done, exit 0" (help was shown).
const exitDone = -1

// load parses flags and loads the configuration; a non-zero code means stop.
// extra registers a command's own flags.
func load(args []string, stdout, stderr io.Writer, env environment, extra func(*flag.FlagSet)) (config.Config, int) {
	fs := config.NewFlagSet("scaledownd", stderr)
	if extra != nil {
		extra(fs.FlagSet)
	}
	for _, a := range args {
		if a == "-h" || a == "-help" || a == "--help" {
			fs.SetOutput(stdout)
			usage(fs)
			return config.Config{}, exitDone
		}
		if a == "--" {
			break
		}
	}
	fs.Usage = func() { fmt.Fprintln(stderr, "see scaledownd --help") }
	if err := fs.Parse(args); err != nil {
		return config.Config{}, 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "unexpected arguments: %s\n", strings.Join(fs.Args(), " "))
		return config.Config{}, 2
	}
	if err := config.CheckEnv(env); err != nil {
		return config.Config{}, invalid(stderr, err)
	}
	cfg, src, err := config.Load(fs, env.lookup)
	if err != nil {
		return cfg, invalid(stderr, err)
	}
	for _, w := range src.Warnings {
		fmt.Fprintln(stderr, "warning:", w)
	}
	return cfg, 0
}

// environment is the process environment, "NAME=value" entries.
type environment []string

// lookup is os.LookupEnv over the entries (the first one of a name wins,
// as in Go's os package).
func (e environment) lookup(name string) (string, bool) {
	for _, kv := range e {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			return v, true
		}
	}
	return "", false
}

// invalid prints a configuration error, indented, and returns exit code 2.
func invalid(stderr io.Writer, err error) int {
	fmt.Fprintf(stderr, "invalid configuration:\n  %s\n", strings.ReplaceAll(err.Error(), "\n", "\n  "))
	return 2
}

// serve runs the daemon until SIGTERM or SIGINT.
func serve(cfg config.Config, stderr io.Writer) int {
	log := newLogger(cfg.Log, stderr)
	defer func() { _ = log.Sync() }()

	fields := cfg.Fields()
	zf := []zap.Field{zap.String("version", version)}
	for _, k := range config.Keys(fields) {
		zf = append(zf, zap.String(k, fields[k]))
	}
	log.Info("scaledownd starting", zf...)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := daemon.Run(ctx, cfg, daemon.Options{Logger: log, Metrics: metrics.New(version)}); err != nil {
		log.Error("scaledownd stopped with an error", zap.Error(err))
		return 1
	}
	log.Info("scaledownd stopped")
	return 0
}

// newLogger builds the zap logger: JSON by default, console on request.
// The configuration has been validated: its level is one zap knows.
func newLogger(c config.Log, w io.Writer) *zap.Logger {
	level, _ := zapcore.ParseLevel(c.Level)
	ec := zap.NewProductionEncoderConfig()
	ec.TimeKey = "ts"
	ec.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder
	if c.Format == "console" {
		ec.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(ec)
	} else {
		enc = zapcore.NewJSONEncoder(ec)
	}
	core := zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(w)), level)
	return zap.New(core, zap.AddCaller())
}

// operate runs an operator command.
func operate(cmd string, args []string, stdout, stderr io.Writer, env environment) int {
	var asJSON, wait, shutdown, watch bool
	var webUser, webPasswordFile string
	cfg, code := load(args, stdout, stderr, env, func(fs *flag.FlagSet) {
		if cmd == "check" || cmd == "status" || cmd == "history" {
			fs.BoolVar(&asJSON, "json", false, "Print JSON for machines.")
		}
		switch cmd {
		case "status":
			fs.BoolVar(&watch, "watch", false, "Follow the action in progress until it finishes (phase, tasks left, blocking queries, time to the deadline).")
			fs.StringVar(&webUser, "user", "", "Basic auth user for the listener, when its web.config.file asks for one.")
			fs.StringVar(&webPasswordFile, "password-file", "", "File holding that user's password.")
		case "drain":
			fs.BoolVar(&wait, "wait", false, "Wait until the worker is DRAINED or has exited.")
			fs.BoolVar(&shutdown, "shutdown", false, "Use SHUTTING_DOWN (the worker exits) instead of DRAINING.")
		}
	})
	if code != 0 {
		return max(code, 0)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	log := newLogger(cfg.Log, stderr)
	var err error
	switch cmd {
	case "status":
		o := ops.StatusOptions{Listen: cfg.Listen, WebConfigFile: cfg.Web.Config.File, User: webUser, PasswordFile: webPasswordFile}
		if watch {
			err = ops.Watch(ctx, stdout, o, time.Second)
		} else {
			err = ops.Status(ctx, stdout, o, asJSON)
		}
	case "history":
		err = ops.History(stdout, cfg.StateDir, asJSON)
	case "check":
		checks := ops.RunChecks(ctx, cfg, checkDeps(ctx, cfg, log))
		if err = ops.PrintChecks(stdout, checks, asJSON); err == nil && ops.Failed(checks) {
			return 1
		}
	case "undrain", "drain":
		var tc *trinoadmin.Client
		if tc, err = daemon.TrinoClient(cfg); err != nil {
			fmt.Fprintln(stderr, err)
			return 2
		}
		if cmd == "undrain" {
			err = ops.Undrain(ctx, stdout, tc)
			break
		}
		strategy := trinoadmin.Strategy(cfg.Trino.Strategy)
		if shutdown {
			strategy = trinoadmin.StrategyShutdown
		}
		o := ops.DrainOptions{Strategy: strategy, Wait: wait, PollInterval: cfg.Trino.PollInterval, StateDir: cfg.StateDir,
			InstanceID: cfg.AWS.InstanceID}
		if cfg.Trino.CoordinatorURL != "" {
			o.Queries = daemon.QueryWatcher(cfg, tc, log, nil)
		}
		err = ops.Drain(ctx, stdout, tc, o, log)
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	return 0
}

// checkDeps builds what the preflight checks talk to, keeping failures as
// check results rather than aborting.
func checkDeps(ctx context.Context, cfg config.Config, log *zap.Logger) ops.Deps {
	id, err := daemon.Identify(ctx, cfg)
	d := ops.Deps{InstanceID: id.InstanceID, Region: id.Region, IdentityErr: err}
	if tc, err := daemon.TrinoClient(cfg); err == nil {
		d.Trino = tc
	}
	if d.Region == "" {
		return d
	}
	if sq, as, err := daemon.Clients(ctx, cfg, d.Region, metrics.New(version), log); err == nil {
		d.Queue = sq
		d.Actions = lifecycle.NewActions(as, cfg.AWS.CallTimeout)
	}
	return d
}
