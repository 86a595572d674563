package main

import (
	"bufio"
	"encoding/json"
	"os"
	"strings"
	"sync"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// msgReceived starts the supervisor's log line when it takes up an action;
// its "source" field says which source (sqs or imds) delivered it first.
const msgReceived = "lifecycle action received"

// sources records, per instance, which source started its latest action.
// As a zap core it picks that one line out of the in-process daemons'
// logs, which otherwise go to a file at error level.
type sources struct {
	mu     *sync.Mutex
	seen   map[string]string
	fields []zapcore.Field
}

// Of returns the source that started the instance's latest action.
func (s *sources) Of(instance string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen[instance]
}

func (s *sources) Enabled(l zapcore.Level) bool { return l >= zapcore.InfoLevel }
func (s *sources) Sync() error                  { return nil }

func (s *sources) With(fs []zapcore.Field) zapcore.Core {
	return &sources{mu: s.mu, seen: s.seen, fields: append(append([]zapcore.Field(nil), s.fields...), fs...)}
}

func (s *sources) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if strings.HasPrefix(e.Message, msgReceived) {
		return ce.AddCore(e, s)
	}
	return ce
}

func (s *sources) Write(_ zapcore.Entry, fs []zapcore.Field) error {
	var instance, source string
	for _, f := range append(append([]zapcore.Field(nil), s.fields...), fs...) {
		switch f.Key {
		case "instance_id":
			instance = f.String
		case "source":
			source = f.String
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seen[instance] = source
	return nil
}

// fleetLogger is the in-process daemons' logger: errors as JSON to f,
// plus the capture of which source started each action.
func fleetLogger(f *os.File) (*zap.Logger, *sources) {
	enc := zap.NewProductionEncoderConfig()
	enc.EncodeTime = zapcore.ISO8601TimeEncoder
	src := &sources{mu: &sync.Mutex{}, seen: map[string]string{}}
	return zap.New(zapcore.NewTee(zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.AddSync(f), zapcore.ErrorLevel), src)), src
}

// sourceFromLog reads which source started the drain from a subprocess
// daemon's JSON log.
func sourceFromLog(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var rec struct{ Msg, Source string }
		if json.Unmarshal(sc.Bytes(), &rec) == nil && strings.HasPrefix(rec.Msg, msgReceived) {
			return rec.Source
		}
	}
	return ""
}
