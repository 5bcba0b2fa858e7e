package lock_test

import (
	"testing"
	"time"

	"github.com/loom-mesh/loom/lock"
)

func TestDefaultSafetyMargin(t *testing.T) {
	for _, tc := range []struct {
		ttl, want time.Duration
	}{
		{-time.Second, 0},
		{0, 0},
		{100 * time.Millisecond, 10 * time.Millisecond},
		{5 * time.Second, 500 * time.Millisecond},
		{10 * time.Second, time.Second},
		{time.Minute, time.Second}, // capped
	} {
		if got := lock.DefaultSafetyMargin(tc.ttl); got != tc.want {
			t.Errorf("DefaultSafetyMargin(%v) = %v; want %v", tc.ttl, got, tc.want)
		}
	}
}

func TestLease(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	const ttl, margin = 10 * time.Second, time.Second
	for _, tc := range []struct {
		name          string
		ttl, margin   time.Duration
		renewals      []time.Duration // send times, in order of the replies
		now           time.Duration
		wantValid     bool
		wantRemaining time.Duration
		wantUntil     time.Duration // ignored if never renewed
	}{
		{name: "never renewed", ttl: ttl, margin: margin, now: 0, wantValid: false},
		{name: "just sent", ttl: ttl, margin: margin, renewals: []time.Duration{0}, now: 0,
			wantValid: true, wantRemaining: 9 * time.Second, wantUntil: 9 * time.Second},
		{name: "mid lease", ttl: ttl, margin: margin, renewals: []time.Duration{0}, now: 4 * time.Second,
			wantValid: true, wantRemaining: 5 * time.Second, wantUntil: 9 * time.Second},
		{name: "last instant", ttl: ttl, margin: margin, renewals: []time.Duration{0}, now: 9*time.Second - 1,
			wantValid: true, wantRemaining: 1, wantUntil: 9 * time.Second},
		{name: "at TTL-margin it may have lapsed", ttl: ttl, margin: margin, renewals: []time.Duration{0}, now: 9 * time.Second,
			wantValid: false, wantUntil: 9 * time.Second},
		{name: "past TTL", ttl: ttl, margin: margin, renewals: []time.Duration{0}, now: 11 * time.Second,
			wantValid: false, wantUntil: 9 * time.Second},
		{name: "renewal moves it", ttl: ttl, margin: margin, renewals: []time.Duration{0, 3 * time.Second}, now: 11 * time.Second,
			wantValid: true, wantRemaining: time.Second, wantUntil: 12 * time.Second},
		{name: "late reply to an older send does not move it back", ttl: ttl, margin: margin,
			renewals: []time.Duration{6 * time.Second, 3 * time.Second}, now: 14 * time.Second,
			wantValid: true, wantRemaining: time.Second, wantUntil: 15 * time.Second},
		{name: "counted from the send, not the reply", ttl: ttl, margin: margin,
			renewals: []time.Duration{2 * time.Second}, now: 11 * time.Second, // reply at, say, 4s changes nothing
			wantValid: false, wantUntil: 11 * time.Second},
		{name: "zero margin", ttl: ttl, margin: 0, renewals: []time.Duration{0}, now: 9 * time.Second,
			wantValid: true, wantRemaining: time.Second, wantUntil: 10 * time.Second},
		{name: "negative margin counts as zero", ttl: ttl, margin: -time.Second, renewals: []time.Duration{0}, now: 10 * time.Second,
			wantValid: false, wantUntil: 10 * time.Second},
		{name: "margin as large as TTL: never valid", ttl: ttl, margin: ttl, renewals: []time.Duration{0}, now: -time.Second,
			wantValid: false, wantUntil: 0},
		{name: "zero TTL: never valid", ttl: 0, margin: 0, renewals: []time.Duration{0}, now: 0,
			wantValid: false, wantUntil: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := lock.NewLease(tc.ttl, tc.margin)
			for _, r := range tc.renewals {
				l.Renewed(at(r))
			}
			now := at(tc.now)
			if got := l.Valid(now); got != tc.wantValid {
				t.Errorf("Valid(%v) = %v; want %v", tc.now, got, tc.wantValid)
			}
			if got := l.Remaining(now); got != tc.wantRemaining {
				t.Errorf("Remaining(%v) = %v; want %v", tc.now, got, tc.wantRemaining)
			}
			if len(tc.renewals) == 0 {
				if !l.ValidUntil().IsZero() {
					t.Errorf("ValidUntil of a lease never renewed = %v; want zero", l.ValidUntil())
				}
				if _, ok := l.SentAt(); ok {
					t.Errorf("SentAt of a lease never renewed reports ok")
				}
				return
			}
			if got, want := l.ValidUntil(), at(tc.wantUntil); !got.Equal(want) {
				t.Errorf("ValidUntil = %v; want %v", got.Sub(t0), tc.wantUntil)
			}
		})
	}
}

func TestLeaseRenewedOnlyMovesForward(t *testing.T) {
	t0 := time.Now() // with a monotonic reading, as a Keeper uses
	l := lock.NewLease(10*time.Second, time.Second)
	for _, tc := range []struct {
		sent      time.Duration
		wantMoved bool
		wantSent  time.Duration
	}{
		{0, true, 0},
		{0, false, 0}, // same instant: no move
		{2 * time.Second, true, 2 * time.Second},
		{time.Second, false, 2 * time.Second},
		{3 * time.Second, true, 3 * time.Second},
	} {
		if moved := l.Renewed(t0.Add(tc.sent)); moved != tc.wantMoved {
			t.Errorf("Renewed(+%v) = %v; want %v", tc.sent, moved, tc.wantMoved)
		}
		if sent, ok := l.SentAt(); !ok || sent.Sub(t0) != tc.wantSent {
			t.Errorf("after Renewed(+%v): SentAt = +%v, %v; want +%v", tc.sent, sent.Sub(t0), ok, tc.wantSent)
		}
	}
	if l.TTL() != 10*time.Second || l.Margin() != time.Second {
		t.Errorf("TTL, Margin = %v, %v", l.TTL(), l.Margin())
	}
}
