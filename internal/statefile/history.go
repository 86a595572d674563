package statefile

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/scaledownd/scaledownd/internal/drainreport"
	"github.com/scaledownd/scaledownd/pkg/lifecycle"
)

// HistorySize is how many drain reports the history keeps.
const HistorySize = 50

// Entry is one report in the history. ID names the action without its
// token (a hash of its key), so a report written twice replaces itself.
type Entry struct {
	ID     string             `json:"id"`
	Report drainreport.Report `json:"report"`
}

// History keeps the last HistorySize drain reports in dir/reports, and the
// report of each action in progress, so that a restarted daemon finishes
// the report its predecessor began. Every write is atomic, like the
// records'.
type History struct {
	dir string
	mu  sync.Mutex
}

// OpenHistory returns the history in dir/reports, creating it (mode 0700).
func OpenHistory(dir string) (*History, error) {
	d := filepath.Join(dir, "reports")
	inflight := filepath.Join(d, "inflight")
	if err := os.MkdirAll(inflight, 0o700); err != nil {
		return nil, fmt.Errorf("create report directory: %w", err)
	}
	// Drop the reports of actions that cannot be in progress any more:
	// untouched for longer than an action can last.
	entries, _ := os.ReadDir(inflight)
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > lifecycle.MaxGlobalTimeout {
			_ = os.Remove(filepath.Join(inflight, e.Name()))
		}
	}
	return &History{dir: d}, nil
}

// ReadHistory reads the history of a state directory without creating
// anything (for `scaledownd history`): no directory is an empty history.
func ReadHistory(dir string) ([]Entry, error) {
	return (&History{dir: filepath.Join(dir, "reports")}).List()
}

func (h *History) file() string { return filepath.Join(h.dir, "history.json") }

func (h *History) inflight(id string) string {
	return filepath.Join(h.dir, "inflight", id+".json")
}

// Append adds a finished report (replacing one with the same id) and drops
// the oldest beyond HistorySize; the action's in-progress report is
// removed. Other processes (`scaledownd drain --wait` next to the daemon)
// are kept out by a lock on the directory.
func (h *History) Append(id string, r drainreport.Report) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	unlock, err := h.lock()
	if err != nil {
		return err
	}
	defer unlock()
	entries, err := h.read()
	if err != nil {
		if !errors.Is(err, errCorruptHistory) {
			return err
		}
		// Set aside; the new history starts with this report.
		_ = os.Rename(h.file(), h.file()+".corrupt") // read returned no entries
	}
	entries = slices.DeleteFunc(entries, func(e Entry) bool { return e.ID == id })
	entries = append(entries, Entry{ID: id, Report: r})
	entries = entries[max(0, len(entries)-HistorySize):]
	if err := writeJSON(h.dir, h.file(), entries); err != nil {
		return fmt.Errorf("write report history: %w", err)
	}
	if err := os.Remove(h.inflight(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove the finished action's report: %w", err)
	}
	return nil
}

// List returns the history, newest first.
func (h *History) List() ([]Entry, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	entries, err := h.read()
	if err != nil {
		return nil, err
	}
	slices.Reverse(entries)
	return entries, nil
}

// SaveInflight writes the report of an action in progress.
func (h *History) SaveInflight(id string, r drainreport.Report) error {
	if err := writeJSON(filepath.Join(h.dir, "inflight"), h.inflight(id), r); err != nil {
		return fmt.Errorf("write report in progress: %w", err)
	}
	return nil
}

// LoadInflight reads the report a previous run began for the action; ok is
// false when there is none (or it is unreadable, then it is removed).
func (h *History) LoadInflight(id string) (r drainreport.Report, ok bool) {
	data, err := os.ReadFile(h.inflight(id))
	if err != nil {
		return r, false
	}
	if err := json.Unmarshal(data, &r); err != nil {
		_ = os.Remove(h.inflight(id))
		return drainreport.Report{}, false
	}
	return r, true
}

// Finished reports whether the history holds the report of id.
func (h *History) Finished(id string) bool {
	entries, err := h.List()
	return err == nil && slices.ContainsFunc(entries, func(e Entry) bool { return e.ID == id })
}

// errCorruptHistory marks a history file that cannot be decoded.
var errCorruptHistory = errors.New("report history is unreadable")

// read returns the entries, oldest first.
func (h *History) read() ([]Entry, error) {
	data, err := os.ReadFile(h.file())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read report history: %w", err)
	}
	var entries []Entry
	if err := json.Unmarshal(data, &entries); err != nil {
		return nil, fmt.Errorf("%w: %v", errCorruptHistory, err)
	}
	return entries, nil
}

// lock takes an exclusive lock on the report directory.
func (h *History) lock() (func(), error) {
	f, err := os.OpenFile(filepath.Join(h.dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock report history: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock report history: %w", err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
