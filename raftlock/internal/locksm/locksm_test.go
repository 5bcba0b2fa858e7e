package locksm_test

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/loom-mesh/loom/internal/kv"
	"github.com/loom-mesh/loom/lock"
	"github.com/loom-mesh/loom/raftlock/internal/locksm"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// at is the stamped clock s seconds after t0.
func at(s float64) int64 { return t0.Add(time.Duration(s * float64(time.Second))).UnixNano() }

// written is the journals' side of a grant: the highest token written per
// key.
type written map[string]uint64

func (w written) WrittenToken(key string) (uint64, error) { return w[key], nil }

// world is a lock machine over an in-memory store, with helpers that fail
// the test on a rule violation where the case does not expect one.
type world struct {
	t        *testing.T
	mem      *kv.Mem
	counters locksm.Counters
	m        *locksm.Machine
	journals written
}

func newWorld(t *testing.T) *world {
	w := &world{t: t, mem: kv.NewMem(), journals: written{}}
	w.m = locksm.New(locksm.Buckets{Sessions: w.mem.Bucket("sessions"), Expiry: w.mem.Bucket("expiry"),
		Held: w.mem.Bucket("held"), Locks: w.mem.Bucket("locks")}, &w.counters)
	return w
}

func (w *world) session(now int64, owner string, ttl time.Duration) lock.SessionID {
	w.t.Helper()
	id, rule, err := w.m.CreateSession(now, owner, int64(ttl), "")
	if rule != nil || err != nil {
		w.t.Fatalf("CreateSession: %v, %v", rule, err)
	}
	return id
}

func (w *world) acquire(now int64, id lock.SessionID, key string) (uint64, error) {
	w.t.Helper()
	token, rule, err := w.m.Acquire(now, id, key, w.journals)
	if err != nil {
		w.t.Fatal(err)
	}
	return token, rule
}

func (w *world) mustAcquire(now int64, id lock.SessionID, key string) uint64 {
	w.t.Helper()
	token, rule := w.acquire(now, id, key)
	if rule != nil {
		w.t.Fatalf("Acquire(%s, %q): %v", id, key, rule)
	}
	return token
}

func (w *world) renew(now int64, id lock.SessionID) error {
	w.t.Helper()
	rule, err := w.m.Renew(now, id)
	if err != nil {
		w.t.Fatal(err)
	}
	return rule
}

func (w *world) release(now int64, id lock.SessionID, key string) error {
	w.t.Helper()
	rule, err := w.m.Release(now, id, key)
	if err != nil {
		w.t.Fatal(err)
	}
	return rule
}

func (w *world) holder(key string, now int64) (lock.LockInfo, bool) {
	w.t.Helper()
	info, ok, err := w.m.Holder(key, now)
	if err != nil {
		w.t.Fatal(err)
	}
	return info, ok
}

// TestRules: each case runs commands at stamped times and checks the
// value and the rule violation of the last one.
func TestRules(t *testing.T) {
	t.Parallel()
	const ttl = 10 * time.Second
	cases := []struct {
		name string
		run  func(w *world) (uint64, error)
		want uint64
		rule error // nil: no violation
	}{
		{"first grant gets token 1", func(w *world) (uint64, error) {
			return w.acquire(at(1), w.session(at(0), "a", ttl), "k")
		}, 1, nil},
		{"re-acquire keeps the token", func(w *world) (uint64, error) {
			s := w.session(at(0), "a", ttl)
			w.mustAcquire(at(0), w.session(at(0), "b", ttl), "other")
			w.mustAcquire(at(1), s, "k")
			return w.acquire(at(2), s, "k")
		}, 2, nil},
		{"held by another live session", func(w *world) (uint64, error) {
			a, b := w.session(at(0), "a", ttl), w.session(at(0), "b", ttl)
			w.mustAcquire(at(1), a, "k")
			return w.acquire(at(9), b, "k")
		}, 0, lock.ErrHeld},
		{"held until the holder's deadline, inclusive", func(w *world) (uint64, error) {
			a, b := w.session(at(0), "a", ttl), w.session(at(0), "b", 2*ttl)
			w.mustAcquire(at(0), a, "k")
			return w.acquire(at(10), b, "k")
		}, 0, lock.ErrHeld},
		{"free a nanosecond after the holder's deadline", func(w *world) (uint64, error) {
			a, b := w.session(at(0), "a", ttl), w.session(at(0), "b", 2*ttl)
			w.mustAcquire(at(0), a, "k")
			return w.acquire(at(10)+1, b, "k")
		}, 2, nil},
		{"renew at the deadline", func(w *world) (uint64, error) {
			return 0, w.renew(at(10), w.session(at(0), "a", ttl))
		}, 0, nil},
		{"renew a nanosecond after the deadline", func(w *world) (uint64, error) {
			return 0, w.renew(at(10)+1, w.session(at(0), "a", ttl))
		}, 0, lock.ErrSessionExpired},
		{"renew moves the deadline a TTL from the stamp", func(w *world) (uint64, error) {
			s := w.session(at(0), "a", ttl)
			if rule := w.renew(at(8), s); rule != nil {
				return 0, rule
			}
			return 0, w.renew(at(18), s)
		}, 0, nil},
		{"acquire by a lapsed session", func(w *world) (uint64, error) {
			return w.acquire(at(11), w.session(at(0), "a", ttl), "k")
		}, 0, lock.ErrSessionExpired},
		{"acquire by an unknown session", func(w *world) (uint64, error) {
			return w.acquire(at(0), "s9.0", "k")
		}, 0, lock.ErrSessionExpired},
		{"acquire of an empty key", func(w *world) (uint64, error) {
			return w.acquire(at(0), w.session(at(0), "a", ttl), "")
		}, 0, lock.ErrInvalid},
		{"acquire of a key too long", func(w *world) (uint64, error) {
			return w.acquire(at(0), w.session(at(0), "a", ttl), strings.Repeat("k", locksm.MaxKeyLen+1))
		}, 0, lock.ErrInvalid},
		{"tokens increase across keys and grants", func(w *world) (uint64, error) {
			s := w.session(at(0), "a", ttl)
			w.mustAcquire(at(0), s, "k1")
			w.mustAcquire(at(0), s, "k2")
			if rule := w.release(at(1), s, "k1"); rule != nil {
				return 0, rule
			}
			return w.acquire(at(2), s, "k1")
		}, 3, nil},
		{"a grant is above the journal's token", func(w *world) (uint64, error) {
			w.journals["k"] = 41
			return w.acquire(at(0), w.session(at(0), "a", ttl), "k")
		}, 42, nil},
		{"no token left", func(w *world) (uint64, error) {
			w.journals["k"] = math.MaxUint64
			return w.acquire(at(0), w.session(at(0), "a", ttl), "k")
		}, 0, lock.ErrInvalid},
		{"release by another session", func(w *world) (uint64, error) {
			a, b := w.session(at(0), "a", ttl), w.session(at(0), "b", ttl)
			w.mustAcquire(at(0), a, "k")
			return 0, w.release(at(1), b, "k")
		}, 0, lock.ErrNotHeld},
		{"release by a lapsed holder", func(w *world) (uint64, error) {
			a := w.session(at(0), "a", ttl)
			w.mustAcquire(at(0), a, "k")
			return 0, w.release(at(11), a, "k")
		}, 0, lock.ErrNotHeld},
		{"release frees the lock for another", func(w *world) (uint64, error) {
			a, b := w.session(at(0), "a", ttl), w.session(at(0), "b", ttl)
			w.mustAcquire(at(0), a, "k")
			if rule := w.release(at(1), a, "k"); rule != nil {
				return 0, rule
			}
			return w.acquire(at(2), b, "k")
		}, 2, nil},
		{"session with no owner", func(w *world) (uint64, error) {
			_, rule, err := w.m.CreateSession(at(0), "", int64(ttl), "")
			return 0, errors.Join(rule, err)
		}, 0, lock.ErrInvalid},
		{"session with an owner too long", func(w *world) (uint64, error) {
			_, rule, err := w.m.CreateSession(at(0), strings.Repeat("o", locksm.MaxOwnerLen+1), int64(ttl), "")
			return 0, errors.Join(rule, err)
		}, 0, lock.ErrInvalid},
		{"session with no TTL", func(w *world) (uint64, error) {
			_, rule, err := w.m.CreateSession(at(0), "a", 0, "")
			return 0, errors.Join(rule, err)
		}, 0, lock.ErrInvalid},
		{"session with the id it is given", func(w *world) (uint64, error) {
			id, rule, err := w.m.CreateSession(at(0), "a", int64(ttl), "s7.abc")
			if id != "s7.abc" || rule != nil || err != nil {
				return 0, fmt.Errorf("CreateSession = %q, %v, %v", id, rule, err)
			}
			return w.acquire(at(1), id, "k")
		}, 1, nil},
		{"session with an id that exists", func(w *world) (uint64, error) {
			a := w.session(at(0), "a", ttl)
			_, rule, err := w.m.CreateSession(at(0), "b", int64(ttl), a)
			return 0, errors.Join(rule, err)
		}, 0, lock.ErrInvalid},
		{"session with an id too long", func(w *world) (uint64, error) {
			_, rule, err := w.m.CreateSession(at(0), "a", int64(ttl), lock.SessionID(strings.Repeat("s", locksm.MaxSessionLen+1)))
			return 0, errors.Join(rule, err)
		}, 0, lock.ErrInvalid},
		{"the lock fence reports a held lock's token", func(w *world) (uint64, error) {
			w.mustAcquire(at(0), w.session(at(0), "a", ttl), "k0")
			w.mustAcquire(at(0), w.session(at(0), "b", ttl), "k")
			token, held, err := w.m.HeldToken(at(10), "k")
			if !held {
				return token, errors.Join(errors.New("not held"), err)
			}
			return token, err
		}, 2, nil},
		{"the lock fence frees a lapsed holder's lock", func(w *world) (uint64, error) {
			w.mustAcquire(at(0), w.session(at(0), "a", ttl), "k")
			if _, held, err := w.m.HeldToken(at(10)+1, "k"); held || err != nil {
				return 1, err
			}
			// Gone, not only judged lapsed: an earlier clock does
			// not bring it back.
			_, ok := w.holder("k", at(0))
			return map[bool]uint64{true: 1}[ok], nil
		}, 0, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			got, rule := tc.run(w)
			switch {
			case tc.rule == nil && rule != nil:
				t.Fatalf("rule violation %v", rule)
			case tc.rule != nil && !errors.Is(rule, tc.rule):
				t.Fatalf("rule violation %v, want %v", rule, tc.rule)
			case got != tc.want:
				t.Fatalf("value %d, want %d", got, tc.want)
			}
		})
	}
}

// TestHeldError: the violation names the key, the holder's owner and its
// token.
func TestHeldError(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	a, b := w.session(at(0), "node-a", time.Minute), w.session(at(0), "node-b", time.Minute)
	tok := w.mustAcquire(at(0), a, "k")
	_, rule := w.acquire(at(1), b, "k")
	var held *lock.HeldError
	if !errors.As(rule, &held) || held.Key != "k" || held.Holder != "node-a" || held.Token != tok {
		t.Fatalf("Acquire of a held lock: %#v", rule)
	}
}

// TestRuleViolationChangesNothing: a rejected command leaves the records as
// they were.
func TestRuleViolationChangesNothing(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	a, b := w.session(at(0), "a", time.Minute), w.session(at(0), "b", time.Minute)
	w.mustAcquire(at(0), a, "k")
	before, counters := w.mem.Dump(), w.counters
	for _, rule := range []error{
		func() error { _, r := w.acquire(at(1), b, "k"); return r }(),
		func() error { _, r := w.acquire(at(1), b, ""); return r }(),
		w.release(at(1), b, "k"),
		w.renew(at(1), "s9.0"),
	} {
		if rule == nil {
			t.Fatal("a violation was accepted")
		}
	}
	if w.mem.Dump() != before || w.counters != counters {
		t.Fatalf("rejected commands changed the state:\n%s\n%+v\nwas\n%s\n%+v", w.mem.Dump(), w.counters, before, counters)
	}
}

// TestLeaderStart: sessions lapsed by the previous leader's last stamp
// end; the others get a full TTL from the new leader's stamp, even one a
// minute ahead.
func TestLeaderStart(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	alive := w.session(at(0), "a", 10*time.Second)
	lapsed := w.session(at(0), "b", time.Second)
	w.mustAcquire(at(0), lapsed, "k")
	if err := w.m.LeaderStart(at(2), at(60)); err != nil {
		t.Fatal(err)
	}
	if rule := w.renew(at(65), alive); rule != nil {
		t.Fatalf("Renew 5 s after the new leader started: %v", rule)
	}
	if rule := w.renew(at(65), lapsed); !errors.Is(rule, lock.ErrSessionExpired) {
		t.Fatalf("Renew of a session lapsed before the leader change: %v", rule)
	}
	if _, ok := w.holder("k", at(0)); ok {
		t.Fatal("the lapsed session's lock survived the leader start")
	}
}

// TestReapAndEndOwner: Reap ends exactly the sessions lapsed at its clock,
// with their locks; EndOwner ends an owner's sessions but the one kept.
func TestReapAndEndOwner(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	var ids []lock.SessionID
	for i := range 3 {
		id := w.session(at(0), "o", time.Duration(i+1)*time.Second)
		w.mustAcquire(at(0), id, string(id)+"/k")
		ids = append(ids, id)
	}
	if !w.m.Lapsed(at(1.5)) || w.m.Lapsed(at(1)) {
		t.Fatal("Lapsed does not follow the first deadline")
	}
	if err := w.m.Reap(at(2.5)); err != nil {
		t.Fatal(err)
	}
	for i, id := range ids {
		if _, ok := w.holder(string(id)+"/k", at(0)); ok != (i == 2) {
			t.Errorf("after reap at 2.5 s, lock of the session with TTL %d s held = %v", i+1, ok)
		}
	}
	if w.m.Lapsed(at(2.5)) {
		t.Fatal("Lapsed after reap")
	}
	keep := w.session(at(0), "o", time.Minute)
	w.session(at(0), "o", time.Minute)
	w.session(at(0), "p", time.Minute)
	n, err := w.m.EndOwner("o", keep)
	if err != nil || n != 2 {
		t.Fatalf("EndOwner = %d, %v; want 2 (the TTL 3 s session and one new)", n, err)
	}
	if rule := w.renew(at(1), keep); rule != nil {
		t.Fatalf("the kept session: %v", rule)
	}
}
