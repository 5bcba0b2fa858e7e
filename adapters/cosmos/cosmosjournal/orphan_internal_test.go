package cosmosjournal

import (
	"encoding/json"
	"errors"
	"os"
	"testing"

	"github.com/loom-mesh/loom/adapters/cosmos"
	"github.com/loom-mesh/loom/internal/cosmostest"
	"github.com/loom-mesh/loom/journal"
)

func openInternal(t *testing.T, s *cosmostest.Server) *Journal {
	t.Helper()
	j, err := Open(t.Context(), Options{Cosmos: cosmos.Options{Endpoint: s.Endpoint, Key: s.Key, Database: cosmostest.Database(t), InsecureSkipVerify: true}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = j.Close() })
	return j
}

// TestOrphansInvisible: the entry documents of an append that crashed
// before its head was written (here made by hand, with a nonce no head
// names) are never read, the next append takes their seqs, and Truncate
// deletes them.
func TestOrphansInvisible(t *testing.T) {
	j := openInternal(t, cosmostest.Shared(t))
	ctx := t.Context()
	const actor = "acct/1"
	if _, err := j.Append(ctx, actor, 1, 0, []journal.Entry{{Payload: []byte("one")}, {Payload: []byte("two")}}); err != nil {
		t.Fatal(err)
	}
	for _, seq := range []uint64{2, 3} {
		e := journal.Entry{Seq: seq, Actor: actor, Token: 9, Payload: []byte("orphan")}
		body, _ := json.Marshal(entryDoc{ID: entryID(seq, "dead"), PK: pkOf(actor), Type: "entry", Seq: padded(seq), N: "dead", D: journal.MarshalEntry(e)})
		if _, err := j.c.CreateItem(ctx, partitionKey(actor), body, nil); err != nil {
			t.Fatal(err)
		}
	}
	want := func(payloads ...string) {
		t.Helper()
		got, err := j.Read(ctx, actor, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(payloads) {
			t.Fatalf("Read = %d entries; want %d", len(got), len(payloads))
		}
		for i, e := range got {
			if string(e.Payload) != payloads[i] || e.Seq != uint64(i+1) || e.Token != 1 {
				t.Fatalf("entry %d = %+v; want payload %q, token 1", i, e, payloads[i])
			}
		}
	}
	want("one", "two")
	if _, err := j.Append(ctx, actor, 1, 2, []journal.Entry{{Payload: []byte("three")}}); err != nil {
		t.Fatal(err)
	}
	want("one", "two", "three")
	if err := j.SaveSnapshot(ctx, actor, 1, journal.Snapshot{Seq: 3, Data: []byte("s")}); err != nil {
		t.Fatal(err)
	}
	if err := j.Truncate(ctx, actor, 1, 3); err != nil {
		t.Fatal(err)
	}
	q := j.c.NewQueryItemsPager("SELECT c.id FROM c WHERE c.type = 'entry'", partitionKey(actor), nil)
	n := 0
	for q.More() {
		p, err := q.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n += len(p.Items)
	}
	if n != 0 {
		t.Fatalf("%d entry documents left after truncating everything; want 0", n)
	}
}

// TestUnavailable: a server that is gone makes every operation fail with
// ErrUnavailable (a refused connection sends nothing).
func TestUnavailable(t *testing.T) {
	s := cosmostest.Start(t)
	j := openInternal(t, s)
	s.Stop()
	ctx := t.Context()
	_, err := j.Append(ctx, "a", 1, 0, []journal.Entry{{}})
	if !errors.Is(err, journal.ErrUnavailable) || errors.Is(err, journal.ErrUnknownOutcome) {
		t.Fatalf("Append to a stopped server: %v; want ErrUnavailable", err)
	}
	if _, err := j.Tail(ctx, "a"); !errors.Is(err, journal.ErrUnavailable) {
		t.Fatalf("Tail on a stopped server: %v; want ErrUnavailable", err)
	}
}

func TestMain(m *testing.M) { os.Exit(cosmostest.Main(m)) }
