package pgjournal_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/loom-mesh/loom/adapters/postgres"
	"github.com/loom-mesh/loom/adapters/postgres/pgjournal"
	"github.com/loom-mesh/loom/internal/pgtest"
	"github.com/loom-mesh/loom/journal"
)

// blocked is a journal with one committer, stuck: its batch appends to
// the actor "blocker", whose head row another transaction holds locked.
// Requests queued meanwhile go out together in the next batch, once
// release is called.
type blocked struct {
	j       *pgjournal.Journal
	meter   *postgres.Meter
	release func()
	blocker chan error // the blocker's append's result
}

func newBlocked(t *testing.T, s *pgtest.Server, db, schema string, ctx context.Context) *blocked {
	t.Helper()
	b := &blocked{meter: &postgres.Meter{}, blocker: make(chan error, 1)}
	b.j = open(t, s, db, schema, func(o *pgjournal.Options) { o.Committers, o.Meter = 1, b.meter })
	mustAppendAt(t, b.j, "blocker", 0)
	admin := s.Conn(t, db)
	tx, err := admin.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(t.Context(), postgres.Expand("SELECT 1 FROM {s}.journal_heads WHERE actor = $1 FOR UPDATE", schema), []byte("blocker")); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	b.release = func() { once.Do(func() { _ = tx.Rollback(context.Background()) }) }
	t.Cleanup(b.release)
	go func() {
		_, err := b.j.Append(ctx, "blocker", 1, 1, entriesAt("blocker", 1, 1))
		b.blocker <- err
	}()
	waitFor(t, admin, "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND strpos(query, $1) > 0",
		postgres.Expand("{s}.journal_append", schema))
	return b
}

// waitQueued waits until n requests wait for the committer.
func (b *blocked) waitQueued(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for b.j.Queued() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d requests queued after 10 s, want %d", b.j.Queued(), n)
		}
		time.Sleep(time.Millisecond) // polling interval for a condition with a deadline
	}
}

// waitFor polls the query (a count) until it is positive, with a deadline.
func waitFor(t *testing.T, conn *pgx.Conn, query string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int
		if err := conn.QueryRow(t.Context(), query, args...).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no row of %q after 10 s", query)
		}
		time.Sleep(5 * time.Millisecond) // polling interval for a condition with a deadline
	}
}

// TestGroupCommit: appends, snapshots and truncations of many actors
// queued while the committer is busy go out as one batch, one round trip
// and one transaction; each gets its own answer, refusals included, and
// requests to one actor apply in the order they were queued.
func TestGroupCommit(t *testing.T) {
	t.Parallel()
	s, db := sharedDB(t)
	b := newBlocked(t, s, db, uniqueSchema(), t.Context())
	ctx := t.Context()
	const actors = 40
	type call struct {
		name string
		f    func() error
		want error
	}
	var calls []call
	for i := range actors {
		a := fmt.Sprintf("a%02d", i)
		calls = append(calls, call{a + " append", func() error { _, err := b.j.Append(ctx, a, 2, 0, entriesAt(a, 0, 2)); return err }, nil})
	}
	calls = append(calls,
		call{"a00 fenced", func() error { _, err := b.j.Append(ctx, "a00", 1, 2, entriesAt("a00", 2, 1)); return err }, journal.ErrFenced},
		call{"a01 conflict", func() error { _, err := b.j.Append(ctx, "a01", 2, 0, entriesAt("a01", 0, 1)); return err }, journal.ErrConflict},
		call{"a02 snapshot", func() error { return b.j.SaveSnapshot(ctx, "a02", 3, journal.Snapshot{Seq: 2, Data: []byte("s")}) }, nil},
		call{"a02 truncate", func() error { return b.j.Truncate(ctx, "a02", 3, 2) }, nil},
		call{"a03 truncate beyond", func() error { return b.j.Truncate(ctx, "a03", 3, 1) }, journal.ErrInvalid},
	)
	before := b.meter.Snapshot()
	errs := make([]error, len(calls))
	var wg sync.WaitGroup
	for i, c := range calls {
		b.waitQueued(t, i) // queued in this order
		wg.Go(func() { errs[i] = c.f() })
	}
	b.waitQueued(t, len(calls))
	b.release()
	wg.Wait()
	if err := <-b.blocker; err != nil {
		t.Fatalf("the blocker's append: %v", err)
	}
	for i, c := range calls {
		if c.want == nil && errs[i] != nil || c.want != nil && !errors.Is(errs[i], c.want) {
			t.Errorf("%s: %v, want %v", c.name, errs[i], c.want)
		}
	}
	after := b.meter.Snapshot()
	// The blocker's batch was counted as sent before, as done after.
	if rt, bt, st := after.RoundTrips-before.RoundTrips, after.Batches-before.Batches, after.Statements-before.Statements; rt != 2 || bt != 2 || st != uint64(len(calls)) {
		t.Errorf("%d round trips, %d batches, %d statements for the blocker's batch and %d requests; want 2, 2, %d", rt, bt, st, len(calls), len(calls))
	}
	for i := range actors {
		a := fmt.Sprintf("a%02d", i)
		want := journal.Tail{Seq: 2, Token: 2}
		if i == 2 || i == 3 {
			want.Token = 3
		}
		if i == 3 {
			want = journal.Tail{Seq: 2, Token: 2} // the refused truncation raised nothing
		}
		if tl, err := b.j.Tail(ctx, a); err != nil || tl != want {
			t.Errorf("Tail(%s) = %+v, %v; want %+v", a, tl, err, want)
		}
	}
	if es, err := b.j.Read(ctx, "a02", 0); err != nil || len(es) != 0 {
		t.Errorf("a02 after truncating through its snapshot: %d entries, %v", len(es), err)
	}
}

// TestBatchFailureIsolated: a request the server answers with an error
// rolls back the batch it was in; the others are sent again alone and
// succeed, and only it fails, as not applied.
func TestBatchFailureIsolated(t *testing.T) {
	t.Parallel()
	s, db := sharedDB(t)
	schema := uniqueSchema()
	b := newBlocked(t, s, db, schema, t.Context())
	// The server refuses any entry of the actor "poison".
	if _, err := s.Conn(t, db).Exec(t.Context(), postgres.Expand(`
		CREATE FUNCTION {s}.poison() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF NEW.actor = 'poison'::bytea THEN RAISE EXCEPTION 'poisoned'; END IF;
			RETURN NEW;
		END $$;
		CREATE TRIGGER poison BEFORE INSERT ON {s}.journal_entries FOR EACH ROW EXECUTE FUNCTION {s}.poison()`, schema)); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	actors := []string{"a", "b", "poison", "c", "d"}
	errs := make([]error, len(actors))
	var wg sync.WaitGroup
	for i, a := range actors {
		wg.Go(func() { _, errs[i] = b.j.Append(ctx, a, 1, 0, entriesAt(a, 0, 1)) })
	}
	b.waitQueued(t, len(actors))
	b.release()
	wg.Wait()
	for i, a := range actors {
		if a == "poison" {
			if !errors.Is(errs[i], pgjournal.ErrUnavailable) || !errors.Is(errs[i], journal.ErrUnavailable) || !postgres.NotApplied(errs[i]) {
				t.Errorf("poison: %v; want ErrUnavailable (not applied)", errs[i])
			}
			if tl, err := b.j.Tail(ctx, a); err != nil || tl != (journal.Tail{}) {
				t.Errorf("poison: Tail = %+v, %v; want nothing written", tl, err)
			}
			continue
		}
		if errs[i] != nil {
			t.Errorf("%s: %v; one request's failure failed another", a, errs[i])
		}
		checkLog(t, b.j, a, 1)
	}
}

// TestContextWhileQueued: a caller whose context ends while its request is
// queued gets the context's error and the request has no effect; one
// whose context ends after the request was sent gets ErrUnknownOutcome
// (wrapping the context's error), and the request is applied regardless.
func TestContextWhileQueued(t *testing.T) {
	t.Parallel()
	s, db := sharedDB(t)
	sent, cancelSent := context.WithCancel(t.Context())
	b := newBlocked(t, s, db, uniqueSchema(), sent) // the blocker's append is in the server
	queued, cancelQueued := context.WithCancel(t.Context())
	res := make(chan error, 1)
	go func() { _, err := b.j.Append(queued, "q", 1, 0, entriesAt("q", 0, 1)); res <- err }()
	b.waitQueued(t, 1)
	cancelQueued()
	if err := <-res; !errors.Is(err, context.Canceled) || errors.Is(err, journal.ErrUnknownOutcome) {
		t.Fatalf("context ended while queued: %v; want context.Canceled alone", err)
	}
	cancelSent()
	if err := <-b.blocker; !errors.Is(err, pgjournal.ErrUnknownOutcome) || !errors.Is(err, context.Canceled) {
		t.Fatalf("context ended while sent: %v; want ErrUnknownOutcome and context.Canceled", err)
	}
	b.release()
	ctx := t.Context()
	// The sent append was applied once the lock was released; the
	// withdrawn one never was.
	deadline := time.Now().Add(10 * time.Second)
	for {
		tl, err := b.j.Tail(ctx, "blocker")
		if err != nil {
			t.Fatal(err)
		}
		if tl.Seq == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sent append was not applied: tail %+v", tl)
		}
		time.Sleep(5 * time.Millisecond) // polling interval for a condition with a deadline
	}
	if tl, err := b.j.Tail(ctx, "q"); err != nil || tl != (journal.Tail{}) {
		t.Fatalf("the withdrawn append: Tail = %+v, %v; want nothing", tl, err)
	}
}
