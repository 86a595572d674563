package main

import (
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// msgReceived starts the supervisor's log line when it takes up an action;
// its "source" field says which source (sqs or imds) delivered it first.
const msgReceived = "lifecycle action received"

// sources records, per instance, which source started each action.
type sources struct {
	mu   sync.Mutex
	seen map[string]string // instance id → source of its latest action
}

func (s *sources) record(instance, source string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seen[instance] = source
}

// Of returns the source that started the instance's latest action.
func (s *sources) Of(instance string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen[instance]
}

// captureCore picks the one line it needs out of the daemons' logs. It
// adds nothing to other entries: the daemons otherwise log at error level.
type captureCore struct {
	fields []zapcore.Field
	sink   *sources
}

func (c *captureCore) Enabled(l zapcore.Level) bool { return l >= zapcore.InfoLevel }

func (c *captureCore) With(fs []zapcore.Field) zapcore.Core {
	out := &captureCore{sink: c.sink, fields: make([]zapcore.Field, 0, len(c.fields)+len(fs))}
	out.fields = append(append(out.fields, c.fields...), fs...)
	return out
}

func (c *captureCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if strings.HasPrefix(e.Message, msgReceived) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *captureCore) Write(_ zapcore.Entry, fs []zapcore.Field) error {
	var instance, source string
	for _, list := range [][]zapcore.Field{c.fields, fs} {
		for _, f := range list {
			switch f.Key {
			case "instance_id":
				instance = f.String
			case "source":
				source = f.String
			}
		}
	}
	if instance != "" {
		c.sink.record(instance, source)
	}
	return nil
}

func (c *captureCore) Sync() error { return nil }

// countingWriter counts the error lines the daemons write.
type countingWriter struct {
	f     *os.File
	lines atomic.Int64
}

func (w *countingWriter) Write(p []byte) (int, error) {
	for _, b := range p {
		if b == '\n' {
			w.lines.Add(1)
		}
	}
	return w.f.Write(p)
}

func (w *countingWriter) Sync() error { return nil }

// Close closes the log file.
func (w *countingWriter) Close() error { return w.f.Close() }

// fleetLogger is the in-process daemons' logger: error level (JSON, to
// path, counted) plus the capture of which source started each action.
func fleetLogger(path string) (*zap.Logger, *sources, *countingWriter, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, nil, nil, err
	}
	w := &countingWriter{f: f}
	enc := zap.NewProductionEncoderConfig()
	enc.EncodeTime = zapcore.ISO8601TimeEncoder
	errCore := zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.AddSync(w), zapcore.ErrorLevel)
	src := &sources{seen: map[string]string{}}
	log := zap.New(zapcore.NewTee(errCore, &captureCore{sink: src}))
	return log, src, w, nil
}
