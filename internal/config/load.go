package config

import (
	"bytes"
	"cmp"
	"encoding"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// EnvPrefix starts every environment variable the daemon reads.
const EnvPrefix = "SCALEDOWND_"

// Setting describes one configuration key.
type Setting struct {
	Key     string // dotted YAML path, e.g. trino.url
	Env     string // SCALEDOWND_TRINO_URL
	Flag    string // --trino.url
	Help    string
	Default string // the default rendered as text
	Secret  bool   // never printed or logged

	def    string // the default tag
	index  []int
	isBool bool // a flag without a value means true
}

// Settings lists every key with its default, in declaration order.
func Settings() []Setting {
	var out []Setting
	def := reflect.ValueOf(Default())
	walk(def.Type(), nil, "", func(s Setting) {
		s.Default = fmt.Sprint(def.FieldByIndex(s.index).Interface()) // String where a type has it (durations)
		out = append(out, s)
	})
	return out
}

func walk(t reflect.Type, index []int, prefix string, fn func(Setting)) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if name == "" || name == "-" {
			continue
		}
		key := prefix + name
		idx := append(append([]int(nil), index...), i)
		if f.Type.Kind() == reflect.Struct {
			walk(f.Type, idx, key+".", fn)
			continue
		}
		fn(Setting{
			Key:    key,
			Env:    EnvName(key),
			Flag:   "--" + key,
			Help:   f.Tag.Get("help"),
			Secret: f.Tag.Get("secret") == "true",
			def:    f.Tag.Get("default"),
			index:  idx,
			isBool: f.Type.Kind() == reflect.Bool,
		})
	}
}

// EnvName is the environment variable for a key.
func EnvName(key string) string {
	return EnvPrefix + strings.NewReplacer(".", "_", "-", "_").Replace(strings.ToUpper(key))
}

// set parses text into the field of c that s names.
func (s Setting) set(c *Config, text string) error {
	trimmed := strings.TrimSpace(text)
	switch p := reflect.ValueOf(c).Elem().FieldByIndex(s.index).Addr().Interface().(type) {
	case *time.Duration:
		d, err := time.ParseDuration(trimmed)
		if err != nil {
			return fmt.Errorf("want a duration such as 30s or 5m, got %q", text)
		}
		*p = d
	case encoding.TextUnmarshaler: // AutoDuration
		return p.UnmarshalText([]byte(text))
	case *bool:
		b, err := strconv.ParseBool(trimmed)
		if err != nil {
			return fmt.Errorf("want true or false, got %q", text)
		}
		*p = b
	case *int:
		n, err := strconv.Atoi(trimmed)
		if err != nil {
			return fmt.Errorf("want a whole number, got %q", text)
		}
		*p = n
	case *string:
		*p = text
	}
	return nil
}

// Source tells where the configuration came from.
type Source struct {
	File     string   // the file read, or "" when none was
	Warnings []string // things worth a log line, e.g. a world-readable file holding a secret
}

// FlagSet returns a flag set with --config.file and one flag per key. Values
// are collected, not applied: call Load with the parsed set.
type FlagSet struct {
	*flag.FlagSet
	file   string
	values map[string]string
}

// NewFlagSet registers all flags on a new set named name.
func NewFlagSet(name string, output io.Writer) *FlagSet {
	fs := &FlagSet{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError), values: map[string]string{}}
	fs.SetOutput(output)
	fs.StringVar(&fs.file, "config.file", "", "Path of the YAML config file (env "+EnvPrefix+"CONFIG_FILE; default "+DefaultFile+", skipped when absent).")
	for _, s := range Settings() {
		help := s.Help + " (env " + s.Env + ")"
		if s.Secret {
			help += " Secret: never printed."
		}
		fs.Var(&collect{s: s, values: fs.values}, s.Key, help)
	}
	return fs
}

// collect records a flag's raw text for later.
type collect struct {
	s      Setting
	values map[string]string
}

func (c *collect) String() string {
	if c == nil || c.values == nil {
		return ""
	}
	if v, ok := c.values[c.s.Key]; ok {
		return v
	}
	return c.s.Default
}
func (c *collect) Set(s string) error { c.values[c.s.Key] = s; return nil }
func (c *collect) IsBoolFlag() bool   { return c.s.isBool }

// Load builds the configuration: defaults, then the file, then environment
// variables (looked up with getenv), then the flags already parsed in fs.
// It validates the result.
func Load(fs *FlagSet, getenv func(string) (string, bool)) (Config, Source, error) {
	cfg := Default()
	var src Source
	cfg.credentialsDir, _ = getenv("CREDENTIALS_DIRECTORY")

	envFile, _ := getenv(EnvPrefix + "CONFIG_FILE") // the flag beats it
	path, explicit := cmp.Or(fs.file, envFile, DefaultFile), fs.file != "" || envFile != ""
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		src.File = path
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true) // an unknown key is an error naming it
		if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
			return cfg, src, fmt.Errorf("config file %s: %w", path, err)
		}
		// A file that holds a secret should not be readable by everyone.
		if fi, err := os.Stat(path); err == nil && cfg.Trino.Password != "" && fi.Mode().Perm()&0o004 != 0 {
			src.Warnings = append(src.Warnings, fmt.Sprintf("config file %s holds trino.password and is readable by every user (mode %s); chmod 0640 it or use trino.password-file",
				path, fi.Mode().Perm()))
		}
	case errors.Is(err, os.ErrNotExist) && !explicit:
		// No file is fine: environment and flags may say it all.
	default:
		return cfg, src, fmt.Errorf("read config file: %w", err)
	}

	var errs []error
	apply := func(s Setting, text, from string) {
		if err := s.set(&cfg, text); err != nil {
			errs = append(errs, fmt.Errorf("%s (%s): %w", s.Key, from, err))
		}
	}
	for _, s := range Settings() { // a flag beats the environment
		if v, ok := getenv(s.Env); ok {
			apply(s, v, "env "+s.Env)
		}
		if v, ok := fs.values[s.Key]; ok {
			apply(s, v, "flag "+s.Flag)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return cfg, src, err
	}
	return cfg, src, cfg.Validate()
}

// Redacted returns a copy with every secret replaced by "<redacted>".
func (c Config) Redacted() Config {
	v := reflect.ValueOf(&c).Elem()
	for _, s := range Settings() {
		f := v.FieldByIndex(s.index)
		if s.Secret && f.Kind() == reflect.String && f.String() != "" {
			f.SetString("<redacted>")
		}
	}
	return c
}

// YAML renders the configuration, secrets redacted, as a config file.
func (c Config) YAML() ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(c.Redacted()); err != nil {
		return nil, fmt.Errorf("render config: %w", err)
	}
	return buf.Bytes(), enc.Close()
}

// Fields returns the effective settings as key/value pairs, secrets
// redacted, sorted by key — for one log line at start-up.
func (c Config) Fields() map[string]string {
	r := reflect.ValueOf(c.Redacted())
	out := map[string]string{}
	for _, s := range Settings() {
		out[s.Key] = fmt.Sprint(r.FieldByIndex(s.index).Interface())
	}
	return out
}

// Keys returns the keys of m sorted.
func Keys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }

// CredentialName is the systemd credential holding the Trino password:
// the shipped unit loads CredentialFile into $CREDENTIALS_DIRECTORY under
// this name (LoadCredential=), so the file stays root-owned and 0600 while
// the daemon runs as a dynamic user.
const CredentialName = "trino-password"

// CredentialFile is the file the shipped unit passes as the credential, and
// what operator commands run from a root shell (no CREDENTIALS_DIRECTORY)
// read instead.
const CredentialFile = "/etc/scaledownd/trino-password"

// TrinoPassword returns the Trino password, from the first of these that
// is set (an empty result means no password):
//
//  1. trino.password;
//  2. trino.password-file;
//  3. the systemd credential $CREDENTIALS_DIRECTORY/trino-password, when
//     CREDENTIALS_DIRECTORY is set (the shipped unit's LoadCredential=);
//  4. without CREDENTIALS_DIRECTORY, CredentialFile if it exists.
//
// A trailing newline is dropped. A password from 3 or 4 with a trino.url or
// trino.coordinator-url that is not https is an error: it would travel in
// clear text.
func (c Config) TrinoPassword() (string, error) {
	src, file := c.TrinoPasswordSource()
	if file == "" {
		return c.Trino.Password, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		if src == "trino.password-file" {
			return "", fmt.Errorf("trino.password-file: %w", err)
		}
		return "", fmt.Errorf("trino password (%s): %w", src, err)
	}
	pw := strings.TrimRight(string(b), "\r\n")
	if pw == "" || src == "trino.password-file" {
		return pw, nil
	}
	for key, u := range map[string]string{"trino.url": c.Trino.URL, "trino.coordinator-url": c.Trino.CoordinatorURL} {
		if u != "" && !strings.HasPrefix(strings.ToLower(u), "https://") {
			return "", fmt.Errorf("%s: a password is set (%s) but the URL is not https; Trino accepts passwords over HTTPS only and they must not travel in clear text", key, src)
		}
	}
	return pw, nil
}

// TrinoPasswordSource names where TrinoPassword reads the password from
// (a key, or a file), and "" when no password is configured anywhere.
func (c Config) TrinoPasswordSource() (key, file string) {
	switch {
	case c.Trino.Password != "":
		return "trino.password", ""
	case c.Trino.PasswordFile != "":
		return "trino.password-file", c.Trino.PasswordFile
	case c.credentialsDir != "":
		f := filepath.Join(c.credentialsDir, CredentialName)
		if _, err := os.Stat(f); err == nil {
			return "systemd credential " + CredentialName, f
		}
	default:
		if _, err := os.Stat(CredentialFile); err == nil {
			return CredentialFile, CredentialFile
		}
	}
	return "", ""
}

// OtherEnv lists the SCALEDOWND_ variables that are not settings and are
// accepted all the same, with what reads them. Every other SCALEDOWND_
// variable is refused by CheckEnv: the prefix is reserved for settings, so
// a misspelt one stops the daemon instead of being ignored.
var OtherEnv = map[string]string{
	EnvPrefix + "CONFIG_FILE": "the configuration file (--config.file), read by scaledownd",
	EnvPrefix + "NO_START":    "read by the package's install script: 1 enables the unit without starting it (AMI bakes)",
}

// CheckEnv returns an error naming every SCALEDOWND_ variable of environ
// ("NAME=value" entries, as os.Environ) that is neither a setting nor in
// OtherEnv, with the nearest known name when one is close.
func CheckEnv(environ []string) error {
	known := map[string]bool{}
	for _, s := range Settings() {
		known[s.Env] = true
	}
	for k := range OtherEnv {
		known[k] = true
	}
	var errs []error
	seen := map[string]bool{}
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, EnvPrefix) || known[name] || seen[name] {
			continue
		}
		seen[name] = true
		err := fmt.Errorf("unknown environment variable %s: no setting has this name", name)
		if near := nearest(name, known); near != "" {
			err = fmt.Errorf("unknown environment variable %s: did you mean %s?", name, near)
		}
		errs = append(errs, err)
	}
	sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
	return errors.Join(errs...)
}

// nearest returns the known name closest to name, if it is within a few
// edits (a transposition counts as one), else "".
func nearest(name string, known map[string]bool) string {
	best, bestD := "", 4
	for k := range known {
		if d := editDistance(name, k); d < bestD || d == bestD && best != "" && k < best {
			best, bestD = k, d
		}
	}
	return best
}

// editDistance is the optimal string alignment distance: insertions,
// deletions, substitutions and transpositions of neighbours.
func editDistance(a, b string) int {
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
