package task

import (
	"math"
	"time"
)

// Backoff is the wait between attempts: exponential, capped, with jitter.
// The zero value means DefaultBackoff(); a field left zero takes its
// default.
type Backoff struct {
	// Initial is the wait before the first retry. Default 100 ms.
	Initial time.Duration
	// Max caps every wait. Default 10 s.
	Max time.Duration
	// Multiplier grows the wait after each retry. Default 2; below 1 is
	// taken as 1 (a constant wait).
	Multiplier float64
	// Jitter spreads each wait uniformly over [w·(1−Jitter), w·(1+Jitter)]
	// (still capped by Max) so that callers failing together do not retry
	// together. Between 0 and 1; default 0.2. NoJitter (a negative value)
	// turns it off.
	Jitter float64
}

// NoJitter is the Backoff.Jitter that turns jitter off.
const NoJitter = -1

// DefaultBackoff is 100 ms, 200 ms, 400 ms, … up to 10 s, ±20%.
func DefaultBackoff() Backoff {
	return Backoff{Initial: 100 * time.Millisecond, Max: 10 * time.Second, Multiplier: 2, Jitter: 0.2}
}

// withDefaults fills the zero fields.
func (b Backoff) withDefaults() Backoff {
	d := DefaultBackoff()
	if b.Initial <= 0 {
		b.Initial = d.Initial
	}
	if b.Max <= 0 {
		b.Max = d.Max
	}
	if b.Max < b.Initial {
		b.Max = b.Initial
	}
	if b.Multiplier == 0 {
		b.Multiplier = d.Multiplier
	}
	if b.Multiplier < 1 {
		b.Multiplier = 1
	}
	switch {
	case b.Jitter == 0:
		b.Jitter = d.Jitter
	case b.Jitter < 0:
		b.Jitter = NoJitter // stays off when defaults are applied again
	case b.Jitter > 1:
		b.Jitter = 1
	}
	return b
}

// Delay is the wait before retry number retry (1 for the wait after the
// first failed attempt), given u drawn uniformly from [0, 1): a pure
// function, so the schedule can be checked without waiting.
func (b Backoff) Delay(retry int, u float64) time.Duration {
	b = b.withDefaults()
	if retry < 1 {
		retry = 1
	}
	w := float64(b.Initial) * math.Pow(b.Multiplier, float64(retry-1))
	if w > float64(b.Max) || math.IsInf(w, 0) || math.IsNaN(w) {
		w = float64(b.Max)
	}
	j := max(b.Jitter, 0)
	w *= 1 - j + 2*j*u
	if w > float64(b.Max) {
		w = float64(b.Max)
	}
	if w < 0 {
		w = 0
	}
	return time.Duration(w)
}
