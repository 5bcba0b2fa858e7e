package runtime

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/loom-mesh/loom/journal"
)

// Idempotency keys. A call that carries a key (WithIdempotencyKey; the
// gateway's Idempotency-Key header; the transport carries it between
// nodes) is executed at most once per actor: its turn's journal entry
// records the key and the call's outcome (the encoded result, or the
// method's error) in the same append as the state changes, and a later
// call with the same key gets that outcome back without running. Because
// the record is in the journal, this holds across deactivation, crashes,
// handoffs and failovers: every activation rebuilds the table from the
// snapshot and the entries it replays.
//
// Each actor keeps the records of its last IdempotencyKeys keys (per type,
// PoolConfig.IdempotencyKeys, default DefaultIdempotencyKeys) for at least
// IdempotencyRetention (default DefaultIdempotencyRetention) after they ran.
// A key that is not remembered runs, unless it may have been forgotten:
// the key is older than the retention (its age is measured from when the
// caller attached it: WithIdempotencyKey's call, or the gateway's receipt
// of the request), or it was attached no later than the newest record
// evicted to keep the count (so a call queued behind a burst of keyed calls
// for longer than the count lasts is refused too, though it never ran).
// Such a call fails with ErrIdempotencyKeyExpired and is not applied.
// These comparisons use the runtime's monotonic clock, so a step of a
// node's wall clock (some virtual machines' step by milliseconds every few
// hundred milliseconds) cannot make a first attempt look older than a
// record, nor a retry younger. The journal keeps the commit's wall time;
// an activation maps it onto its own monotonic clock when it loads the
// records, so across nodes the guarantee assumes their wall clocks agree
// within idempotencyClockMargin, for which records are kept longer than
// the retention.

// Defaults for PoolConfig's idempotency fields.
const (
	DefaultIdempotencyKeys      = 1000
	DefaultIdempotencyRetention = 10 * time.Minute
	// MaxIdempotencyKeyBytes is the longest key accepted.
	MaxIdempotencyKeyBytes = 256
)

// idempotencyClockMargin is how much longer than the retention a record is
// kept, for nodes' clocks that disagree.
const idempotencyClockMargin = time.Minute

var (
	// ErrIdempotencyKeyInvalid: the key is longer than
	// MaxIdempotencyKeyBytes. Not applied.
	ErrIdempotencyKeyInvalid = errors.New("loom: invalid idempotency key")
	// ErrIdempotencyKeyReused: the actor ran a call with this key for
	// another method. Not applied.
	ErrIdempotencyKeyReused = errors.New("loom: idempotency key reused for another method")
	// ErrIdempotencyKeyExpired: the key is not remembered and may have
	// been forgotten (older than the retention, or evicted by the count),
	// so running the call could run it twice. This call was not applied;
	// an earlier one with the same key may have been (its outcome is
	// unknown).
	ErrIdempotencyKeyExpired = errors.New("loom: idempotency key outside the window")
)

// keyed is an idempotency key in a context, with when it was attached
// (this process's clock, monotonic).
type keyed struct {
	key  string
	born time.Time
}

// WithIdempotencyKey returns a context carrying a caller-chosen idempotency
// key: the call made with it runs at most once on its actor (see the
// package documentation), and its journal entry records the key. The
// key's age counts from now; send a retry with the same context (or a
// context from the same call to WithIdempotencyKey).
func WithIdempotencyKey(ctx context.Context, key string) context.Context {
	return context.WithValue(ctx, idempotencyKey, keyed{key: key, born: time.Now()})
}

// WithIdempotencyKeyAge is WithIdempotencyKey for a key attached age ago,
// elsewhere: transports use it for keys that crossed the wire.
func WithIdempotencyKeyAge(ctx context.Context, key string, age time.Duration) context.Context {
	return context.WithValue(ctx, idempotencyKey, keyed{key: key, born: time.Now().Add(-age)})
}

// IdempotencyKey returns the idempotency key carried by ctx, or "".
func IdempotencyKey(ctx context.Context) string {
	k, _ := ctx.Value(idempotencyKey).(keyed)
	return k.key
}

// IdempotencyKeyAge is how long ago ctx's idempotency key was attached
// (0 without one).
func IdempotencyKeyAge(ctx context.Context) time.Duration {
	k, _ := ctx.Value(idempotencyKey).(keyed)
	if k.key == "" {
		return 0
	}
	return time.Since(k.born)
}

// keyBorn is when ctx's idempotency key was attached, on the runtime's
// monotonic clock (monoNow). With the real clock it is exact: the key's
// birth read against the runtime's base, both monotonic readings, with no
// "now" read apart from "age" for a pause to fall between.
func (r *Runtime) keyBorn(ctx context.Context) int64 {
	k, _ := ctx.Value(idempotencyKey).(keyed)
	if r.realClock {
		return int64(k.born.Sub(r.base))
	}
	return r.monoNow() - int64(time.Since(k.born))
}

func checkIdempotencyKey(ctx context.Context) error {
	if k := IdempotencyKey(ctx); len(k) > MaxIdempotencyKeyBytes {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrIdempotencyKeyInvalid, len(k), MaxIdempotencyKeyBytes)
	}
	return nil
}

// idemRecord is one remembered outcome.
type idemRecord struct {
	key    string
	method string
	at     int64 // UnixNano of the turn's journal entry (the committing node's wall clock)
	mono   int64 // the same instant on this runtime's monotonic clock (Runtime.monoNow)
	failed bool
	result []byte // !failed: the encoded result
	// failed: the method's error, as its message and the runtime sentinel
	// it wrapped (index+1 in replayable, 0 for none)
	sentinel uint8
	message  string
}

// replayable are the sentinels a recorded method error keeps.
var replayable = []error{
	ErrInvalidArgument, ErrBadPayload, ErrCallCycle, ErrCallChainTooDeep,
	ErrUnknownType, ErrUnknownMethod, ErrFenced, ErrConflict, ErrIdempotencyKeyReused,
	ErrIdempotencyKeyExpired, ErrIdempotencyKeyInvalid,
}

// recordable reports whether a method's error is its definite outcome,
// recorded under the call's key: not one that leaves what the method's
// own calls did unknown (a deadline, a cancellation, an unavailable
// node), after which a retry should run again.
func recordable(err error) bool {
	return !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) &&
		!errors.Is(err, ErrUnavailable) && !errors.Is(err, ErrShuttingDown)
}

func failedRecord(err error) *idemRecord {
	rec := &idemRecord{failed: true, message: err.Error()}
	for i, s := range replayable {
		if errors.Is(err, s) {
			rec.sentinel = uint8(i + 1)
			break
		}
	}
	return rec
}

// replayedError is a recorded method error, given again.
type replayedError struct {
	message  string
	sentinel error
}

func (e *replayedError) Error() string { return e.message }
func (e *replayedError) Unwrap() error { return e.sentinel }

// recorded is a keyed call's outcome as a turn returns it: the encoded
// result, and the value when the method just ran (fresh).
type recorded struct {
	b     []byte
	v     any
	fresh bool
}

// idemTable is an actor's remembered keys, in commit order.
type idemTable struct {
	byKey      map[string]*idemRecord
	order      []*idemRecord // oldest first from head
	head       int
	forgot     bool  // a record was evicted by the count
	forgotMono int64 // the newest mono among records evicted by the count
}

// idemClock is a reading of a runtime's wall and monotonic clocks taken
// together, to map record times between them.
type idemClock struct{ wall, mono int64 }

func (r *Runtime) idemClock() idemClock {
	t := r.now()
	return idemClock{wall: t.UnixNano(), mono: int64(t.Sub(r.base))}
}

// toMono maps a wall time (UnixNano) to the monotonic clock, no later
// than now.
func (c idemClock) toMono(wall int64) int64 { return c.mono - max(c.wall-wall, 0) }

// toWall maps a monotonic time to the wall clock.
func (c idemClock) toWall(mono int64) int64 { return c.wall - (c.mono - mono) }

func (t *idemTable) len() int { return len(t.order) - t.head }

func (t *idemTable) get(key string) *idemRecord {
	if t.byKey == nil {
		return nil
	}
	return t.byKey[key]
}

// add remembers rec, evicting the oldest beyond max.
func (t *idemTable) add(rec *idemRecord, max int) {
	if t.byKey == nil {
		t.byKey = make(map[string]*idemRecord)
	}
	if old, ok := t.byKey[rec.key]; ok {
		old.key = "" // superseded: its slot in order is skipped
	}
	t.byKey[rec.key] = rec
	t.order = append(t.order, rec)
	for t.len() > max {
		t.pop(true)
	}
	if t.head > 64 && t.head > len(t.order)/2 {
		t.order = append([]*idemRecord(nil), t.order[t.head:]...)
		t.head = 0
	}
}

// pop drops the oldest record; counted raises forgotAt.
func (t *idemTable) pop(counted bool) {
	old := t.order[t.head]
	t.order[t.head] = nil
	t.head++
	if old.key == "" {
		return
	}
	delete(t.byKey, old.key)
	if counted {
		t.forgotMono = max(t.forgotMono, old.mono)
		if !t.forgot {
			t.forgotMono, t.forgot = old.mono, true
		}
	}
}

// expire drops records committed before cutoff (monotonic). They are
// past the retention: a retry of theirs is refused by its age.
func (t *idemTable) expire(cutoff int64) {
	for t.len() > 0 && t.order[t.head].mono < cutoff {
		t.pop(false)
	}
}

// keyedTurn decides, before a turn runs, what a call with an idempotency
// key gets: a recorded outcome (done), a refusal, or nothing (run it).
func (r *Runtime) keyedTurn(ctx context.Context, a *activation, method string) (res any, done bool, err error) {
	key := IdempotencyKey(ctx)
	cfg := a.pool.cfg
	now := r.monoNow()
	a.state.idem.expire(now - int64(cfg.IdempotencyRetention+idempotencyClockMargin))
	if rec := a.state.idem.get(key); rec != nil {
		if rec.method != method {
			return nil, true, fmt.Errorf("%w: %s ran key %q as %s, not %s", ErrIdempotencyKeyReused, a.key, key, rec.method, method)
		}
		if rec.failed {
			var s error
			if rec.sentinel > 0 && int(rec.sentinel) <= len(replayable) {
				s = replayable[rec.sentinel-1]
			}
			return nil, true, &MethodError{Actor: a.key, Method: method, Err: &replayedError{message: rec.message, sentinel: s}}
		}
		return recorded{b: rec.result}, true, nil
	}
	age := IdempotencyKeyAge(ctx)
	if age > cfg.IdempotencyRetention {
		return nil, true, fmt.Errorf("%w: key %q of %s is %v old, and keys are kept %v", ErrIdempotencyKeyExpired, key, a.key, age.Round(time.Millisecond), cfg.IdempotencyRetention)
	}
	if t := &a.state.idem; t.forgot && r.keyBorn(ctx) <= t.forgotMono {
		return nil, true, fmt.Errorf("%w: key %q of %s is older than the oldest of the last %d keys it remembers", ErrIdempotencyKeyExpired, key, a.key, cfg.IdempotencyKeys)
	}
	return nil, false, nil
}

// The record's encoding, after a change set's operations (flag 2):
//
//	uvarint len(method), method
//	byte    0: ok, then uvarint len(result), result
//	        1: failed, then byte sentinel, uvarint len(message), message
func appendRecord(b []byte, rec *idemRecord) []byte {
	b = appendBytes(b, []byte(rec.method))
	if !rec.failed {
		b = append(b, 0)
		return appendBytes(b, rec.result)
	}
	b = append(b, 1, rec.sentinel)
	return appendBytes(b, []byte(rec.message))
}

func readRecord(b []byte) (*idemRecord, []byte, error) {
	method, b, err := readBytes(b)
	if err != nil {
		return nil, nil, err
	}
	if len(b) == 0 {
		return nil, nil, errors.New("idempotency record truncated")
	}
	rec := &idemRecord{method: string(method)}
	switch b[0] {
	case 0:
		var res []byte
		if res, b, err = readBytes(b[1:]); err != nil {
			return nil, nil, err
		}
		rec.result = append([]byte(nil), res...)
	case 1:
		if len(b) < 2 {
			return nil, nil, errors.New("idempotency record truncated")
		}
		rec.failed, rec.sentinel = true, b[1]
		var msg []byte
		if msg, b, err = readBytes(b[2:]); err != nil {
			return nil, nil, err
		}
		rec.message = string(msg)
	default:
		return nil, nil, fmt.Errorf("idempotency record: unknown outcome %d", b[0])
	}
	return rec, b, nil
}

// appendTable encodes t (a snapshot's tail): the wall time of the newest
// record evicted by the count (0: none), then each record oldest first
// with its key and wall time.
func appendTable(b []byte, t *idemTable, clk idemClock) []byte {
	var forgot int64
	if t.forgot {
		forgot = clk.toWall(t.forgotMono)
	}
	b = binary.AppendVarint(b, forgot)
	b = binary.AppendUvarint(b, uint64(len(t.byKey)))
	for _, rec := range t.order[t.head:] {
		if rec.key == "" {
			continue // superseded
		}
		b = appendBytes(b, []byte(rec.key))
		b = binary.AppendVarint(b, rec.at)
		b = appendRecord(b, rec)
	}
	return b
}

func readTable(b []byte, max int, clk idemClock) (*idemTable, []byte, error) {
	t := &idemTable{}
	forgot, n := binary.Varint(b)
	if n <= 0 {
		return nil, nil, errors.New("idempotency table: bad varint")
	}
	if forgot != 0 {
		t.forgot, t.forgotMono = true, clk.toMono(forgot)
	}
	count, b, err := readUvarint(b[n:])
	if err != nil {
		return nil, nil, err
	}
	for range count {
		var key []byte
		if key, b, err = readBytes(b); err != nil {
			return nil, nil, err
		}
		at, n := binary.Varint(b)
		if n <= 0 {
			return nil, nil, errors.New("idempotency table: bad varint")
		}
		var rec *idemRecord
		if rec, b, err = readRecord(b[n:]); err != nil {
			return nil, nil, err
		}
		rec.key, rec.at, rec.mono = string(key), at, clk.toMono(at)
		t.add(rec, max)
	}
	return t, b, nil
}

// replayEntry applies a journal entry's changes (and its idempotency
// record) to the committed state, as its turn's commit did.
func (s *State) replayEntry(e journal.Entry, maxKeys int, clk idemClock) error {
	rec, err := s.replayChanges(e.Payload)
	if err != nil || rec == nil {
		return err
	}
	if e.IdempotencyKey == "" {
		return errors.New("idempotency record in an entry without a key")
	}
	rec.key, rec.at = e.IdempotencyKey, e.Time.UnixNano()
	rec.mono = clk.toMono(rec.at)
	s.idem.add(rec, maxKeys)
	return nil
}
