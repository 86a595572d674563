package testpeers

import (
	"slices"
	"sync"
	"time"
)

// FakeClock is a manual clock for simulating long waits (a 48-hour drain)
// in moments. It satisfies the daemon's Clock (Now, After) and the fakes'
// Now option. Time moves only when the test advances it.
type FakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []clockWaiter
}

type clockWaiter struct {
	at time.Time
	ch chan time.Time
}

// NewFakeClock returns a clock standing at start.
func NewFakeClock(start time.Time) *FakeClock { return &FakeClock{now: start} }

// Now is the clock's current time.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// After returns a channel that receives the clock's time once it has
// advanced by d; at once for d ≤ 0.
func (c *FakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, clockWaiter{at: c.now.Add(d), ch: ch})
	return ch
}

// Waiters is how many After channels are pending.
func (c *FakeClock) Waiters() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.waiters)
}

// Advance moves the clock forward by d and fires every waiter now due.
func (c *FakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	c.fireLocked()
}

// AdvanceToNext jumps to the earliest pending waiter and fires it (and any
// other due at the same time). It reports false when nothing is pending.
func (c *FakeClock) AdvanceToNext() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.waiters) == 0 {
		return false
	}
	next := slices.MinFunc(c.waiters, func(a, b clockWaiter) int { return a.at.Compare(b.at) })
	if next.at.After(c.now) {
		c.now = next.at
	}
	c.fireLocked()
	return true
}

// fireLocked sends the time to every waiter now due and drops it.
func (c *FakeClock) fireLocked() {
	c.waiters = slices.DeleteFunc(c.waiters, func(w clockWaiter) bool {
		if w.at.After(c.now) {
			return false
		}
		w.ch <- c.now
		return true
	})
}
