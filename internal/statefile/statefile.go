// Package statefile persists the lifecycle actions scaledownd is working
// on, one small JSON file per action in the state directory, so that a
// restarted daemon (a crash, SIGKILL, a package upgrade) resumes an action
// instead of losing it: heartbeats continue before the AWS timeout lapses,
// the drain is joined, the action is completed exactly once and its SQS
// message deleted afterwards.
//
// Every write is atomic: write a temporary file, fsync it, rename it over
// the old one, fsync the directory. A file that cannot be read back is
// moved aside with a clear error; it never stops the daemon from starting.
package statefile

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/scaledownd/scaledownd/pkg/lifecycle"
)

// formatVersion is written into every record; a record of another version
// is set aside like a corrupt one.
const formatVersion = 1

// Phases a record can be in.
const (
	PhaseReceived   = "received"   // accepted, nothing done yet
	PhaseDraining   = "draining"   // heartbeating and draining
	PhaseCompleting = "completing" // drain done (or deadline): CompleteLifecycleAction next
	PhaseCompleted  = "completed"  // completed: delete the messages next
	PhaseAcked      = "acked"      // messages deleted: kept to recognise redeliveries
)

// MessageRef is an SQS message that carried the action.
type MessageRef struct {
	ID            string `json:"id"`
	ReceiptHandle string `json:"receipt_handle"`
	ReceiveCount  int    `json:"receive_count,omitempty"`
}

// Record is one action's persisted progress.
type Record struct {
	Version  int                   `json:"version"`
	Key      string                `json:"key"`
	Event    lifecycle.Event       `json:"event"`
	Messages []MessageRef          `json:"messages,omitempty"`
	Phase    string                `json:"phase"`
	Reason   string                `json:"reason,omitempty"` // why it may be completed
	Plan     *lifecycle.Plan       `json:"plan,omitempty"`   // once computed
	Hook     *lifecycle.HookTiming `json:"hook,omitempty"`   // as read when the action started
	// Confirmed is set once AWS confirmed the action (or its source needs
	// no confirmation): a resumed action is not confirmed again.
	Confirmed bool      `json:"confirmed,omitempty"`
	Updated   time.Time `json:"updated"`
}

// Store keeps records in a directory.
type Store struct {
	dir string
}

// Open returns a store in dir/actions, creating it (mode 0700).
func Open(dir string) (*Store, error) {
	d := filepath.Join(dir, "actions")
	if err := os.MkdirAll(d, 0o700); err != nil {
		return nil, fmt.Errorf("create state directory: %w", err)
	}
	return &Store{dir: d}, nil
}

// Dir is the directory holding the records.
func (s *Store) Dir() string { return s.dir }

func (s *Store) path(key string) string {
	return filepath.Join(s.dir, ReportID(key)+".json")
}

// ReportID names the action of key in the history, and its record file,
// without its token.
func ReportID(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:12])
}

// Save writes r atomically.
func (s *Store) Save(r Record) error {
	r.Version = formatVersion
	if err := writeJSON(s.dir, s.path(r.Key), r); err != nil {
		return fmt.Errorf("state record: %w", err)
	}
	return nil
}

// writeJSON replaces final (in dir) with v as indented JSON: a temporary
// file, fsync, rename, fsync of the directory.
func writeJSON(dir, final string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("write: %w", err)
	}
	defer os.Remove(tmp.Name()) // a no-op after the rename
	_, err = tmp.Write(append(data, '\n'))
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if err := os.Rename(tmp.Name(), final); err != nil {
		return fmt.Errorf("replace: %w", err)
	}
	return syncDir(dir)
}

// Remove deletes the record of key; a missing record is not an error.
func (s *Store) Remove(key string) error {
	if err := os.Remove(s.path(key)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove state record: %w", err)
	}
	return syncDir(s.dir)
}

// Problem is a record that could not be read; it was moved aside.
type Problem struct {
	File, MovedTo string
	Err           error
}

func (p Problem) Error() string {
	return fmt.Sprintf("state record %s is unreadable (%v); moved it to %s and carrying on without it — "+
		"the action's SQS message will be redelivered and handled again", p.File, p.Err, p.MovedTo)
}

// Load reads every record, oldest first. Unreadable records are moved to
// a .corrupt file and reported as Problems; they never fail the load.
func (s *Store) Load() ([]Record, []Problem, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, nil, fmt.Errorf("read state directory: %w", err)
	}
	var recs []Record
	var problems []Problem
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".json") {
			if strings.HasPrefix(name, ".tmp-") {
				_ = os.Remove(filepath.Join(s.dir, name)) // an interrupted write
			}
			continue
		}
		p := filepath.Join(s.dir, name)
		r, err := read(p)
		if err != nil {
			aside := p + ".corrupt"
			_ = os.Rename(p, aside)
			problems = append(problems, Problem{File: p, MovedTo: aside, Err: err})
			continue
		}
		recs = append(recs, r)
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].Updated.Before(recs[j].Updated) })
	return recs, problems, syncDir(s.dir)
}

func read(path string) (Record, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Record{}, err
	}
	var r Record
	if err := json.Unmarshal(data, &r); err != nil {
		return Record{}, fmt.Errorf("decode: %w", err)
	}
	switch {
	case r.Version != formatVersion:
		return Record{}, fmt.Errorf("format version %d, want %d", r.Version, formatVersion)
	case r.Key == "" || r.Event.InstanceID == "" || r.Event.Group == "" || r.Event.Hook == "":
		return Record{}, errors.New("record lacks its action's key, instance, group or hook")
	case !slices.Contains([]string{PhaseReceived, PhaseDraining, PhaseCompleting, PhaseCompleted, PhaseAcked}, r.Phase):
		return Record{}, fmt.Errorf("unknown phase %q", r.Phase)
	}
	return r, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err == nil {
		err = d.Sync()
		d.Close()
	}
	if err != nil {
		return fmt.Errorf("sync state directory: %w", err)
	}
	return nil
}
