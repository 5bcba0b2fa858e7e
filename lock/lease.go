package lock

import "time"

// MaxDefaultSafetyMargin caps DefaultSafetyMargin.
const MaxDefaultSafetyMargin = time.Second

// DefaultSafetyMargin is the safety margin used by DefaultKeeperConfig and
// KeeperConfigForTTL: TTL/10, capped at MaxDefaultSafetyMargin (1s), and 0
// for a non-positive TTL.
//
// The margin covers a coordinator clock that runs faster than the node's: a
// margin of m tolerates a rate difference of about m/(TTL-m). TTL/10 allows
// 11%, far beyond the drift of real clocks (NTP slews at most 0.05%); the 1s
// cap keeps long TTLs from wasting most of a second of every lease (a 60s TTL
// still tolerates 1.7%).
func DefaultSafetyMargin(ttl time.Duration) time.Duration {
	if ttl <= 0 {
		return 0
	}
	return min(ttl/10, MaxDefaultSafetyMargin)
}

// Lease is a node's own view of how long its coordinator session certainly
// lives. It is pure arithmetic over times passed in: no clock, no goroutine.
//
// The coordinator keeps a session alive for TTL from when it receives a
// renewal. The node cannot know when that was, only that it was after the
// node sent the renewal; so the lease counts from the send time of the last
// renewal that succeeded (CreateSession counts as the first), and ends
// SafetyMargin before TTL is up, to cover clocks that run at different rates:
//
//	ValidUntil = sentAt + TTL - margin
//
// Pass times read from time.Now (or one injected clock) and do not strip
// them (Round(0), serialisation): with their monotonic readings, comparisons
// are immune to wall-clock steps.
//
// The zero Lease has never been renewed and is never valid. A Lease is a
// value; it is not safe for concurrent mutation.
type Lease struct {
	ttl     time.Duration
	margin  time.Duration
	sentAt  time.Time
	renewed bool
}

// NewLease returns a lease that has never been renewed. A negative margin is
// treated as 0 (a lease must never outlive TTL); a margin of TTL or more
// gives a lease that is never valid.
func NewLease(ttl, margin time.Duration) Lease {
	return Lease{ttl: ttl, margin: max(margin, 0)}
}

// TTL is the session time-to-live the lease was made for.
func (l Lease) TTL() time.Duration { return l.ttl }

// Margin is the safety margin subtracted from TTL.
func (l Lease) Margin() time.Duration { return l.margin }

// SentAt is the send time of the last successful renewal; ok is false if
// the lease was never renewed.
func (l Lease) SentAt() (sentAt time.Time, ok bool) { return l.sentAt, l.renewed }

// Renewed records a successful renewal (or CreateSession) that was sent at
// sentAt. The lease only moves forward: a sentAt that is not after the one
// already recorded (a late reply to an older request) is ignored. It
// reports whether the lease moved.
func (l *Lease) Renewed(sentAt time.Time) bool {
	if l.renewed && !sentAt.After(l.sentAt) {
		return false
	}
	l.sentAt, l.renewed = sentAt, true
	return true
}

// ValidUntil is the first instant at which the session may have lapsed:
// sentAt + TTL - margin. It is the zero Time if the lease was never renewed.
func (l Lease) ValidUntil() time.Time {
	if !l.renewed {
		return time.Time{}
	}
	return l.sentAt.Add(l.ttl - l.margin)
}

// Valid reports whether the session is certainly alive at now: the lease was
// renewed and now is before ValidUntil.
func (l Lease) Valid(now time.Time) bool {
	return l.renewed && l.ttl > l.margin && now.Before(l.ValidUntil())
}

// Remaining is how long the lease stays valid after now; 0 if it is not
// valid at now.
func (l Lease) Remaining(now time.Time) time.Duration {
	if !l.Valid(now) {
		return 0
	}
	return l.ValidUntil().Sub(now)
}
