package cosmosjournal

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"

	"github.com/loom-mesh/loom/adapters/cosmos"
	"github.com/loom-mesh/loom/journal"
)

var _ journal.Journal = (*Journal)(nil)

// Sentinel errors of cosmosjournal, besides those of the journal
// contract. Every error from Cosmos DB or the way to it wraps one of them
// and the cause. Test with errors.Is.
var (
	// ErrUnavailable: the operation had no effect: Cosmos DB could not be
	// reached or refused a request before doing anything (throttled,
	// unauthorized, ...), or a request failed before the head document
	// was written (entry documents an append wrote are then orphans no
	// reader sees). Retry. It wraps journal.ErrUnavailable.
	ErrUnavailable = fmt.Errorf("cosmosjournal: cosmos unavailable: %w", journal.ErrUnavailable)
	// ErrUnknownOutcome: the write of the head document was, or may have
	// been, sent and no answer came, or Cosmos DB answered 408 or 5xx. It
	// may have taken effect: Tail tells. It wraps
	// journal.ErrUnknownOutcome.
	ErrUnknownOutcome = fmt.Errorf("cosmosjournal: outcome unknown: %w", journal.ErrUnknownOutcome)
)

// Options configure a Journal.
type Options struct {
	// Cosmos says how to reach the account and which container holds the
	// journals (Cosmos.JournalContainer).
	Cosmos cosmos.Options
	// Meter, when not nil, counts the journal's requests; nil: the journal
	// makes its own.
	Meter *cosmos.Meter
}

// Validate reports every problem with o, or nil.
func (o Options) Validate() error { return o.Cosmos.Validate() }

// maxAttempts bounds the rounds of one write that keeps meeting a head
// changed by another writer that neither fences nor conflicts with it (a
// snapshot or truncation at an equal token).
const maxAttempts = 16

// Journal is a journal.Journal kept in Cosmos DB. See the package doc. It
// is safe for concurrent use. Writes to one actor from this Journal are
// serialised by the actor's writer (a mutex and the attempt nonce it
// guards); every operation holds ops (shared) for its duration, so Close
// waits for operations in flight.
type Journal struct {
	acct    *cosmos.Account
	c       *azcosmos.ContainerClient
	timeout time.Duration

	wmu     sync.Mutex
	writers map[string]*writer

	ops    sync.RWMutex
	closed bool
}

// writer serialises this Journal's writes to one actor. nonce names this
// Journal's entry documents for the actor; it changes after every failed
// append, so an entry document id is written by one attempt only, and
// never twice.
type writer struct {
	mu    sync.Mutex
	nonce string
}

// head is an actor's head document: the truth about its log.
type head struct {
	ID     string  `json:"id"` // headID
	PK     string  `json:"pk"` // pkOf(actor)
	Type   string  `json:"type"`
	Actor  string  `json:"actor"` // for people reading the document
	Tail   string  `json:"tail"`  // last seq assigned
	Token  string  `json:"token"` // highest token that wrote
	Trunc  string  `json:"trunc"` // entries with seq <= trunc are removed
	Snap   *snap   `json:"snap,omitempty"`
	Epochs []epoch `json:"epochs"`
	ETag   string  `json:"_etag,omitempty"`
}

// epoch says which entry documents hold the seqs from From on (until the
// next epoch): those named with nonce N. Token is the writer's, for
// people reading the document.
type epoch struct {
	From  string `json:"from"`
	N     string `json:"n"`
	Token string `json:"token"`
}

// snap points at the snapshot document.
type snap struct {
	Seq   string `json:"seq"`
	Token string `json:"token"`
	ID    string `json:"id"`
}

// entryDoc is one entry; D is journal.MarshalEntry's encoding (base64 in
// JSON), with Seq, Actor and Token stamped.
type entryDoc struct {
	ID   string `json:"id"`
	PK   string `json:"pk"`
	Type string `json:"type"` // "entry"
	Seq  string `json:"sq"`   // zero-padded to 20 digits: ordered as a string
	N    string `json:"n"`
	D    []byte `json:"d"`
}

// snapDoc is a snapshot; D is journal.MarshalSnapshot's encoding.
type snapDoc struct {
	ID   string `json:"id"`
	PK   string `json:"pk"`
	Type string `json:"type"` // "snapshot"
	D    []byte `json:"d"`
}

const headID = "h"

func u64(s string) uint64                     { n, _ := strconv.ParseUint(s, 10, 64); return n }
func str(n uint64) string                     { return strconv.FormatUint(n, 10) }
func padded(n uint64) string                  { return fmt.Sprintf("%020d", n) }
func entryID(seq uint64, nonce string) string { return "e." + padded(seq) + "." + nonce }

// partitionKey is actor's partition: its key in base64url, since Cosmos
// DB (and its test server) mishandle some characters (control characters
// among them) in partition key values. An actor key of MaxActorLen bytes
// gives 1,366 characters, under the 2 KiB a value may have.
func partitionKey(actor string) azcosmos.PartitionKey {
	return azcosmos.NewPartitionKeyString(pkOf(actor))
}

func pkOf(actor string) string { return base64.RawURLEncoding.EncodeToString([]byte(actor)) }

func newNonce() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// state is the head as the journal contract's rules see it.
func (h *head) state() journal.ActorState {
	if h == nil {
		return journal.ActorState{}
	}
	s := journal.ActorState{Tail: u64(h.Tail), Token: u64(h.Token)}
	if h.Snap != nil {
		s.HasSnapshot, s.SnapshotSeq = true, u64(h.Snap.Seq)
	}
	return s
}

// nonceFor is the nonce of the epoch that holds seq.
func (h *head) nonceFor(seq uint64) string {
	n := ""
	for _, e := range h.Epochs {
		if u64(e.From) > seq {
			break
		}
		n = e.N
	}
	return n
}

// Open returns a journal on the account o names, creating the database
// and containers if missing.
func Open(ctx context.Context, o Options) (*Journal, error) {
	acct, err := cosmos.Open(ctx, o.Cosmos, o.Meter)
	if err != nil {
		if errors.Is(err, cosmos.ErrOptions) {
			return nil, fmt.Errorf("cosmosjournal: %w", err)
		}
		return nil, fmt.Errorf("cosmosjournal: cosmos at %s: %w: %w", o.Cosmos.Addr(), kind(err), err)
	}
	return &Journal{acct: acct, c: acct.Journals, timeout: o.Cosmos.Timeout(), writers: map[string]*writer{}}, nil
}

// kind is the sentinel a failed request's error maps to.
func kind(err error) error {
	if cosmos.NotApplied(err) {
		return ErrUnavailable
	}
	return ErrUnknownOutcome
}

// failed wraps the error of a request that cannot have changed the log.
func failed(op, actor string, err error) error {
	return fmt.Errorf("cosmosjournal: %s %q: %w: %w", op, actor, ErrUnavailable, err)
}

// Account is the journal's connection to Cosmos DB.
func (j *Journal) Account() *cosmos.Account { return j.acct }

// Addr is the endpoint's host:port.
func (j *Journal) Addr() string { return j.acct.Addr() }

// Ping reads the database's properties, timing it.
func (j *Journal) Ping(ctx context.Context) (time.Duration, error) { return j.acct.Ping(ctx) }

// CosmosStats is what the journal's Meter has counted.
func (j *Journal) CosmosStats() cosmos.Stats { return j.acct.Meter.Snapshot() }

// begin starts an operation on actor: ErrClosed after Close, ctx's error
// if it has ended; else a context bounded by the request timeout and a
// func to end the operation.
func (j *Journal) begin(ctx context.Context, op, actor string) (context.Context, func(), error) {
	j.ops.RLock()
	if j.closed {
		j.ops.RUnlock()
		return nil, nil, fmt.Errorf("cosmosjournal: %s %q: %w", op, actor, journal.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		j.ops.RUnlock()
		return nil, nil, fmt.Errorf("cosmosjournal: %s %q: %w", op, actor, err)
	}
	ctx, cancel := context.WithTimeout(ctx, j.timeout)
	return ctx, func() { cancel(); j.ops.RUnlock() }, nil
}

// Close implements journal.Journal: it waits for operations in flight.
func (j *Journal) Close() error {
	j.ops.Lock()
	defer j.ops.Unlock()
	if !j.closed {
		j.closed = true
		j.acct.Close()
	}
	return nil
}

// writer returns actor's writer, locked.
func (j *Journal) lockWriter(actor string) *writer {
	j.wmu.Lock()
	w, ok := j.writers[actor]
	if !ok {
		w = &writer{nonce: newNonce()}
		j.writers[actor] = w
	}
	j.wmu.Unlock()
	w.mu.Lock()
	return w
}

// readHead reads actor's head; nil when the actor was never written.
func (j *Journal) readHead(ctx context.Context, actor string) (*head, error) {
	resp, err := j.c.ReadItem(ctx, partitionKey(actor), headID, j.acct.ReadOptions())
	if cosmos.Status(err) == cosmos.StatusNotFound {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	h := new(head)
	if err := json.Unmarshal(resp.Value, h); err != nil {
		return nil, fmt.Errorf("%w: head of %q: %v", journal.ErrCorrupt, actor, err)
	}
	h.ETag = string(resp.ETag)
	return h, nil
}

// commitHead writes next as actor's head: created when prev is nil,
// else replaced with If-Match on prev's etag. lost reports a 409 or 412:
// another writer changed the head first (or an SDK resend of this very
// write did; the caller reads the head again and decides).
func (j *Journal) commitHead(ctx context.Context, actor string, prev, next *head) (lost bool, err error) {
	next.ID, next.PK, next.Type, next.Actor, next.ETag = headID, pkOf(actor), "head", actor, ""
	body, err := json.Marshal(next)
	if err != nil {
		return false, err
	}
	pk := partitionKey(actor)
	if prev == nil {
		_, err = j.c.CreateItem(ctx, pk, body, nil)
	} else {
		etag := azcore.ETag(prev.ETag)
		_, err = j.c.ReplaceItem(ctx, pk, headID, body, &azcosmos.ItemOptions{IfMatchEtag: &etag})
	}
	switch cosmos.Status(err) {
	case cosmos.StatusConflict, cosmos.StatusPreconditionFailed:
		return true, nil
	}
	return false, err
}

// clone copies h deeply enough to edit it (nil gives an empty head).
func (h *head) clone() *head {
	if h == nil {
		return &head{Tail: "0", Token: "0", Trunc: "0"}
	}
	c := *h
	c.Epochs = slices.Clone(h.Epochs)
	if h.Snap != nil {
		s := *h.Snap
		c.Snap = &s
	}
	return &c
}

// checkKinds refuses the message kinds: their meaning needs a journal that
// is also a queue.Store, and this one keeps no queues.
func checkKinds(actor string, entries []journal.Entry) error {
	for i, e := range entries {
		if e.Kind.Message() {
			return fmt.Errorf("%w: cosmosjournal: append to %q: entry %d is of kind %s, which needs a journal that is also a message queue store; the Cosmos DB journal keeps no queues (durable messaging is not available on it)",
				journal.ErrInvalid, actor, i, e.Kind)
		}
	}
	return nil
}

// Append implements journal.Journal. It writes the entries as documents
// of their own, named with this Journal's nonce for the actor, then
// advances the head with If-Match: the head's write is the commit.
func (j *Journal) Append(ctx context.Context, actor string, token, expectedSeq uint64, entries []journal.Entry) (_ uint64, err error) {
	if err := journal.CheckAppendArgs(actor, expectedSeq, entries); err != nil {
		return 0, fmt.Errorf("cosmosjournal: %w", err)
	}
	if err := checkKinds(actor, entries); err != nil {
		return 0, err
	}
	ctx, end, err := j.begin(ctx, "append to", actor)
	if err != nil {
		return 0, err
	}
	defer end()
	w := j.lockWriter(actor)
	defer w.mu.Unlock()
	h, err := j.readHead(ctx, actor)
	if err != nil {
		return 0, failed("append to", actor, err)
	}
	st := h.state()
	if err := st.CheckAppend(actor, token, expectedSeq); err != nil {
		return 0, fmt.Errorf("cosmosjournal: %w", err)
	}
	nonce := w.nonce
	written := false // entry documents may exist under nonce: rotate it on failure
	defer func() {
		if written && err != nil {
			w.nonce = newNonce()
		}
	}()
	newTail := expectedSeq + uint64(len(entries))
	pk := partitionKey(actor)
	for i, e := range entries {
		seq := expectedSeq + uint64(i) + 1
		e.Seq, e.Actor, e.Token = seq, actor, token
		body, _ := json.Marshal(entryDoc{ID: entryID(seq, nonce), PK: pkOf(actor), Type: "entry", Seq: padded(seq), N: nonce, D: journal.MarshalEntry(e)})
		written = true
		_, err = j.c.CreateItem(ctx, pk, body, nil)
		if err != nil && cosmos.Status(err) != cosmos.StatusConflict { // 409: an SDK resend of this create found it done
			return 0, failed("append to", actor, err)
		}
	}
	for range maxAttempts {
		next := h.clone()
		next.Tail, next.Token = str(newTail), str(token)
		if len(next.Epochs) == 0 || next.Epochs[len(next.Epochs)-1].N != nonce {
			next.Epochs = append(next.Epochs, epoch{From: str(expectedSeq + 1), N: nonce, Token: str(token)})
		}
		var lost bool
		lost, err = j.commitHead(ctx, actor, h, next)
		if err != nil {
			return 0, fmt.Errorf("cosmosjournal: append to %q: %w: %w", actor, kind(err), err)
		}
		if !lost {
			return newTail, nil
		}
		if h, err = j.readHead(ctx, actor); err != nil {
			// The append did not happen, or an SDK resend of it did:
			// which, only a read of the head can tell.
			return 0, fmt.Errorf("cosmosjournal: append to %q: %w: %w", actor, ErrUnknownOutcome, err)
		}
		if h != nil && u64(h.Tail) == newTail && h.nonceFor(expectedSeq+1) == nonce {
			// The head names this attempt's documents: an SDK resend of
			// this write applied it, and its answer met the result.
			return newTail, nil
		}
		if err = h.state().CheckAppend(actor, token, expectedSeq); err != nil {
			return 0, fmt.Errorf("cosmosjournal: %w", err)
		}
		// The head changed but neither fences nor conflicts (a snapshot or
		// truncation at an equal token): commit again on it.
	}
	err = fmt.Errorf("cosmosjournal: append to %q: %w: the head kept changing", actor, ErrUnavailable)
	return 0, err
}

// Read implements journal.Journal.
func (j *Journal) Read(ctx context.Context, actor string, fromSeq uint64) ([]journal.Entry, error) {
	if err := journal.CheckActor(actor); err != nil {
		return nil, fmt.Errorf("cosmosjournal: %w", err)
	}
	ctx, end, err := j.begin(ctx, "read", actor)
	if err != nil {
		return nil, err
	}
	defer end()
	h, err := j.readHead(ctx, actor)
	if err != nil {
		return nil, failed("read", actor, err)
	}
	if h == nil {
		return []journal.Entry{}, nil
	}
	from := max(fromSeq, u64(h.Trunc)+1, 1)
	tail := u64(h.Tail)
	if from > tail {
		return []journal.Entry{}, nil
	}
	q := j.c.NewQueryItemsPager("SELECT c.sq, c.n, c.d FROM c WHERE c.type = 'entry' AND c.sq >= @from AND c.sq <= @to",
		partitionKey(actor),
		j.acct.QueryOptions(azcosmos.QueryParameter{Name: "@from", Value: padded(from)}, azcosmos.QueryParameter{Name: "@to", Value: padded(tail)}))
	byseq := make(map[uint64][]byte, tail-from+1)
	for q.More() {
		page, err := q.NextPage(ctx)
		if err != nil {
			return nil, failed("read", actor, err)
		}
		for _, it := range page.Items {
			var d entryDoc
			if err := json.Unmarshal(it, &d); err != nil {
				return nil, fmt.Errorf("cosmosjournal: read %q: %w: %v", actor, journal.ErrCorrupt, err)
			}
			seq := u64(d.Seq)
			if d.N == h.nonceFor(seq) { // others are orphans of failed appends
				byseq[seq] = d.D
			}
		}
	}
	out := make([]journal.Entry, 0, tail-from+1)
	for seq := from; seq <= tail; seq++ {
		b, ok := byseq[seq]
		if !ok {
			return nil, fmt.Errorf("cosmosjournal: read %q: %w: entry %d, which the head names (nonce %s), is missing", actor, journal.ErrCorrupt, seq, h.nonceFor(seq))
		}
		e, err := journal.UnmarshalEntry(b)
		if err != nil {
			return nil, fmt.Errorf("cosmosjournal: read %q: entry %d: %w", actor, seq, err)
		}
		if e.Seq != seq || e.Actor != actor {
			return nil, fmt.Errorf("cosmosjournal: read %q: %w: entry document %d holds seq %d of %q", actor, journal.ErrCorrupt, seq, e.Seq, e.Actor)
		}
		out = append(out, e)
	}
	return out, nil
}

// Tail implements journal.Journal.
func (j *Journal) Tail(ctx context.Context, actor string) (journal.Tail, error) {
	if err := journal.CheckActor(actor); err != nil {
		return journal.Tail{}, fmt.Errorf("cosmosjournal: %w", err)
	}
	ctx, end, err := j.begin(ctx, "tail of", actor)
	if err != nil {
		return journal.Tail{}, err
	}
	defer end()
	h, err := j.readHead(ctx, actor)
	if err != nil {
		return journal.Tail{}, failed("tail of", actor, err)
	}
	st := h.state()
	return journal.Tail{Seq: st.Tail, Token: st.Token}, nil
}

// SaveSnapshot implements journal.Journal. The snapshot is written as a
// new document, then the head is pointed at it with If-Match; the
// snapshot it replaces is deleted after.
func (j *Journal) SaveSnapshot(ctx context.Context, actor string, token uint64, s journal.Snapshot) (err error) {
	if err := journal.CheckActor(actor); err != nil {
		return fmt.Errorf("cosmosjournal: %w", err)
	}
	ctx, end, err := j.begin(ctx, "snapshot of", actor)
	if err != nil {
		return err
	}
	defer end()
	w := j.lockWriter(actor)
	defer w.mu.Unlock()
	h, err := j.readHead(ctx, actor)
	if err != nil {
		return failed("snapshot of", actor, err)
	}
	if err := h.state().CheckSnapshot(actor, token, s.Seq); err != nil {
		return fmt.Errorf("cosmosjournal: %w", err)
	}
	pk := partitionKey(actor)
	id := "s." + newNonce()
	s.Token = token
	body, _ := json.Marshal(snapDoc{ID: id, PK: pkOf(actor), Type: "snapshot", D: journal.MarshalSnapshot(s)})
	if _, err := j.c.CreateItem(ctx, pk, body, nil); err != nil {
		if cosmos.Status(err) == http413 {
			return fmt.Errorf("cosmosjournal: snapshot of %q: %w: %d bytes is over Cosmos DB's document size limit: %v", actor, journal.ErrInvalid, len(s.Data), err)
		}
		return failed("snapshot of", actor, err)
	}
	committed := false
	defer func() {
		if !committed && err != nil && !errors.Is(err, journal.ErrUnknownOutcome) {
			_, _ = j.c.DeleteItem(context.WithoutCancel(ctx), pk, id, nil) // an orphan; best effort
		}
	}()
	for range maxAttempts {
		next := h.clone()
		next.Token = str(token)
		old := next.Snap
		next.Snap = &snap{Seq: str(s.Seq), Token: str(token), ID: id}
		lost, err := j.commitHead(ctx, actor, h, next)
		if err != nil {
			return fmt.Errorf("cosmosjournal: snapshot of %q: %w: %w", actor, kind(err), err)
		}
		if !lost {
			committed = true
			if old != nil && old.ID != id {
				_, _ = j.c.DeleteItem(ctx, pk, old.ID, nil) // best effort: unreferenced once the head moved
			}
			return nil
		}
		if h, err = j.readHead(ctx, actor); err != nil {
			return fmt.Errorf("cosmosjournal: snapshot of %q: %w: %w", actor, ErrUnknownOutcome, err)
		}
		if h != nil && h.Snap != nil && h.Snap.ID == id {
			committed = true
			return nil // an SDK resend of this write applied it
		}
		if err := h.state().CheckSnapshot(actor, token, s.Seq); err != nil {
			return fmt.Errorf("cosmosjournal: %w", err)
		}
	}
	return fmt.Errorf("cosmosjournal: snapshot of %q: %w: the head kept changing", actor, ErrUnavailable)
}

const http413 = 413

// LoadSnapshot implements journal.Journal.
func (j *Journal) LoadSnapshot(ctx context.Context, actor string) (journal.Snapshot, bool, error) {
	if err := journal.CheckActor(actor); err != nil {
		return journal.Snapshot{}, false, fmt.Errorf("cosmosjournal: %w", err)
	}
	ctx, end, err := j.begin(ctx, "load snapshot of", actor)
	if err != nil {
		return journal.Snapshot{}, false, err
	}
	defer end()
	h, err := j.readHead(ctx, actor)
	if err != nil {
		return journal.Snapshot{}, false, failed("load snapshot of", actor, err)
	}
	if h == nil || h.Snap == nil {
		return journal.Snapshot{}, false, nil
	}
	resp, err := j.c.ReadItem(ctx, partitionKey(actor), h.Snap.ID, j.acct.ReadOptions())
	if cosmos.Status(err) == cosmos.StatusNotFound {
		return journal.Snapshot{}, false, fmt.Errorf("cosmosjournal: load snapshot of %q: %w: the head names snapshot %s, which is missing", actor, journal.ErrCorrupt, h.Snap.ID)
	}
	if err != nil {
		return journal.Snapshot{}, false, failed("load snapshot of", actor, err)
	}
	var d snapDoc
	if err := json.Unmarshal(resp.Value, &d); err != nil {
		return journal.Snapshot{}, false, fmt.Errorf("cosmosjournal: load snapshot of %q: %w: %v", actor, journal.ErrCorrupt, err)
	}
	s, err := journal.UnmarshalSnapshot(d.D)
	if err != nil {
		return journal.Snapshot{}, false, fmt.Errorf("cosmosjournal: load snapshot of %q: %w", actor, err)
	}
	return s, true, nil
}

// Truncate implements journal.Journal. The head records the truncation
// (readers then skip those entries); the entry documents at or below it,
// orphans of failed appends included, are deleted after, best effort: a
// later Truncate deletes what one left.
func (j *Journal) Truncate(ctx context.Context, actor string, token, throughSeq uint64) error {
	if err := journal.CheckActor(actor); err != nil {
		return fmt.Errorf("cosmosjournal: %w", err)
	}
	ctx, end, err := j.begin(ctx, "truncate of", actor)
	if err != nil {
		return err
	}
	defer end()
	w := j.lockWriter(actor)
	defer w.mu.Unlock()
	h, err := j.readHead(ctx, actor)
	if err != nil {
		return failed("truncate of", actor, err)
	}
	for range maxAttempts {
		if err := h.state().CheckTruncate(actor, token, throughSeq); err != nil {
			return fmt.Errorf("cosmosjournal: %w", err)
		}
		next := h.clone()
		next.Token = str(token)
		trunc := max(u64(next.Trunc), throughSeq)
		next.Trunc = str(trunc)
		// Keep the epoch that holds trunc+1 and those after it.
		for len(next.Epochs) > 1 && u64(next.Epochs[1].From) <= trunc+1 {
			next.Epochs = next.Epochs[1:]
		}
		lost, err := j.commitHead(ctx, actor, h, next)
		if err != nil {
			return fmt.Errorf("cosmosjournal: truncate of %q: %w: %w", actor, kind(err), err)
		}
		if !lost {
			j.deleteThrough(ctx, actor, trunc)
			return nil
		}
		if h, err = j.readHead(ctx, actor); err != nil {
			return fmt.Errorf("cosmosjournal: truncate of %q: %w: %w", actor, ErrUnknownOutcome, err)
		}
	}
	return fmt.Errorf("cosmosjournal: truncate of %q: %w: the head kept changing", actor, ErrUnavailable)
}

// deleteThrough deletes actor's entry documents with seq <= through, best
// effort.
func (j *Journal) deleteThrough(ctx context.Context, actor string, through uint64) {
	if through == 0 {
		return
	}
	pk := partitionKey(actor)
	q := j.c.NewQueryItemsPager("SELECT c.id FROM c WHERE c.type = 'entry' AND c.sq <= @to", pk,
		j.acct.QueryOptions(azcosmos.QueryParameter{Name: "@to", Value: padded(through)}))
	var ids []string
	for q.More() {
		page, err := q.NextPage(ctx)
		if err != nil {
			return
		}
		for _, it := range page.Items {
			var d struct {
				ID string `json:"id"`
			}
			if json.Unmarshal(it, &d) == nil {
				ids = append(ids, d.ID)
			}
		}
	}
	for _, id := range ids {
		if _, err := j.c.DeleteItem(ctx, pk, id, nil); err != nil && cosmos.Status(err) != cosmos.StatusNotFound {
			return
		}
	}
}
