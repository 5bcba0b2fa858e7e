package loomtest

import (
	"strconv"
	"sync"
	"time"
)

// clock is the cluster's application clock (node.Options.Clock): the
// real clock plus what Advance added. It runs on by itself, so waits
// that are not advanced (a retry's backoff, a short delay) still end;
// Advance only ever moves it forward, so it never reads earlier than a
// time stamped by the real clock (a Raft leader's).
type clock struct {
	mu     sync.Mutex
	offset time.Duration
}

func newClock() *clock { return &clock{} }

// Now is the real time plus the offset; it keeps time.Now's monotonic
// reading, so differences of Now values are exact.
func (k *clock) Now() time.Time {
	k.mu.Lock()
	off := k.offset
	k.mu.Unlock()
	return time.Now().Add(off)
}

func (k *clock) advance(d time.Duration) {
	k.mu.Lock()
	k.offset += d
	k.mu.Unlock()
}

// Now is the cluster's application clock: the time its actors' idle
// timeouts, reminders and delayed messages are measured by (see Advance).
func (c *Cluster) Now() time.Time { return c.clock.Now() }

// Advance moves the cluster's application clock d forward, at once, on
// every node, then has each running node check it (node.Node.CheckClock):
// when Advance returns, the actors idle past their type's idleTimeout are
// deactivated, and the reminders and delayed messages now due are being
// delivered (asynchronously, as always: wait for their effect with
// WaitFor). The clock keeps running at the real rate in between.
//
// What it covers: idle timeouts, reminders (Context.Reminders,
// Method.Remind), delayed messages (runtime.After), message retries'
// backoff, idempotency keys' retention and journal entries' times. What
// it does not: in-memory actor timers (Context.SetTimer), which run on
// the real clock, and everything that decides ownership (sessions,
// leases, Raft), which a test moves with Kill, PauseLease or Partition
// instead. d must not be negative: the clock never goes back.
func (c *Cluster) Advance(d time.Duration) {
	c.t.Helper()
	if d < 0 {
		c.t.Fatalf("loomtest: Advance(%v): the clock never goes back", d)
	}
	c.clock.advance(d)
	c.mu.Lock()
	var running []*member
	for _, m := range c.members {
		if !m.down {
			running = append(running, m)
		}
	}
	c.mu.Unlock()
	for _, m := range running {
		m.n.CheckClock()
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
