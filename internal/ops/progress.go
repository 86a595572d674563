package ops

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/scaledownd/scaledownd/internal/drainreport"
)

// progress shows one line that changes as a drain goes: rewritten in place
// on a terminal (carriage return, clear line), printed as a new line
// otherwise, then only when its content (not a countdown) changes.
type progress struct {
	w    io.Writer
	tty  bool
	last string // key of the last line printed (plain output)
	open bool   // a line is on the terminal without its newline
}

func newProgress(w io.Writer) *progress {
	return &progress{w: w, tty: isTerminal(w)}
}

// every calls f at once and then every interval until f returns false or
// ctx ends.
func every(ctx context.Context, interval time.Duration, f func() bool) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for f() {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// show displays line; key is what must change for plain output to print
// a new line.
func (p *progress) show(key, line string) {
	if p.tty {
		fmt.Fprint(p.w, "\r\x1b[K"+line)
		p.open = true
		return
	}
	if key == p.last {
		return
	}
	p.last = key
	fmt.Fprintln(p.w, line)
}

// end finishes the line on a terminal.
func (p *progress) end() {
	if p.open {
		fmt.Fprintln(p.w)
		p.open = false
	}
}

// liveLine is the line of a drain in progress; key leaves out the times.
func liveLine(l live) (key, line string) {
	parts := []string{l.Phase}
	if l.TrinoState != "" {
		parts = append(parts, "trino "+l.TrinoState)
	}
	if l.TasksLeft != nil {
		parts = append(parts, fmt.Sprintf("tasks %d", *l.TasksLeft))
	}
	keyParts := slices.Clone(parts)
	if l.BlockingQueries != nil {
		q := fmt.Sprintf("queries %d", *l.BlockingQueries)
		keyParts = append(keyParts, q)
		if len(l.Queries) > 0 {
			t := l.Queries[0]
			keyParts = append(keyParts, t.QueryID)
			q += fmt.Sprintf(" (longest %s (%s) %.0fs)", t.QueryID, cmp.Or(t.User, "-"), t.ElapsedS)
		}
		parts = append(parts, q)
	}
	key = strings.Join(keyParts, " · ")
	switch {
	case l.DeadlineIn != nil && *l.DeadlineIn >= 0:
		parts = append(parts, "deadline in "+time.Duration(*l.DeadlineIn*float64(time.Second)).Round(time.Second).String())
	case l.DeadlineIn != nil:
		parts = append(parts, "deadline passed")
	case l.elapsed > 0:
		parts = append(parts, "elapsed "+l.elapsed.Round(time.Second).String())
	}
	return key, strings.Join(parts, " · ")
}

// live is what a progress line shows; its JSON is that of the daemon's
// /status.
type live struct {
	Phase           string              `json:"phase"`
	TrinoState      string              `json:"trino_state"`
	TasksLeft       *int                `json:"tasks_left"`
	BlockingQueries *int                `json:"blocking_queries"`
	Queries         []drainreport.Query `json:"queries"`       // longest-running first
	DeadlineIn      *float64            `json:"deadline_in_s"` // seconds; nil without a deadline
	elapsed         time.Duration
}
