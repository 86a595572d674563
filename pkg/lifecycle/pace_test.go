package lifecycle_test

import (
	"errors"
	"testing"
	"time"

	"github.com/scaledownd/scaledownd/pkg/lifecycle"
)

// Polling is continuous until metadata has been read, while the instance
// is leaving and its own message has not come yet, and while metadata
// fails; paced otherwise.
func TestPacerUrgency(t *testing.T) {
	p := lifecycle.NewPacer(time.Minute, nil, nil)
	steps := []struct {
		what  string
		do    func()
		paced bool
	}{
		{"before metadata was read", func() {}, false},
		{"in service", func() { p.Observe(false, nil) }, true},
		{"own message received while metadata still says in service", p.Delivered, true},
		{"metadata turns Terminated: the message is already in hand", func() { p.Observe(true, nil) }, true},
		{"back in service (warm pool)", func() { p.Observe(false, nil) }, true},
		{"leaving again, no message yet", func() { p.Observe(true, nil) }, false},
		{"own message received", p.Delivered, true},
		{"metadata fails", func() { p.Observe(true, errors.New("timeout")) }, false},
		{"metadata answers again", func() { p.Observe(true, nil) }, true},
	}
	for _, s := range steps {
		s.do()
		if got := p.Paced(); got != s.paced {
			t.Fatalf("%s: paced %v, want %v", s.what, got, s.paced)
		}
	}
}
