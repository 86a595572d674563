package lifecycle

import "time"

// Clock is the time source of everything that waits on AWS deadlines, so a
// 48-hour drain can be simulated in a test.
type Clock interface {
	Now() time.Time
	// After is time.After: a channel that receives once d has passed.
	After(d time.Duration) <-chan time.Time
}

// RealClock is the wall clock.
type RealClock struct{}

// Now returns time.Now().
func (RealClock) Now() time.Time { return time.Now() }

// After returns time.After(d).
func (RealClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// positive returns v, or def when v is zero or negative: the default of
// an option left unset.
func positive[T ~int | ~int64](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// sleep waits for d on c, or returns ctx's error if ctx ends first.
func sleep(ctx interface {
	Done() <-chan struct{}
	Err() error
}, c Clock, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-c.After(d):
		return nil
	}
}
