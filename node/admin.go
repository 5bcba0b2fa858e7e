package node

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/loom-mesh/loom/journal"
)

// The read-only admin API: what an operator (or the chaos suite's journal
// audit) reads to see an actor as this node's replica has it.
//
//	GET /v1/admin/journal/{type}/{id}[?sync=1]
//
// answers a JournalDump as JSON. sync=1 first waits until this node's
// replica has applied everything committed before the request (a Raft
// round trip: it needs a leader); without it the replica is read as it is.
// Nothing here changes any state.

// JournalDump is an actor's journal, lock and activation as one node sees
// them.
type JournalDump struct {
	Node  string `json:"node"`
	Actor string `json:"actor"`
	// Tail is the last seq and the highest token that has written.
	Tail journal.Tail `json:"tail"`
	// Snapshot is the stored snapshot's position, if there is one; the
	// entries it covers may have been truncated.
	Snapshot *SnapshotInfo `json:"snapshot,omitempty"`
	Entries  []EntryDump   `json:"entries"`
	// Lock is the actor's lock holder, if any.
	Lock *LockDump `json:"lock,omitempty"`
	// Session is this node's current coordinator session; Active whether
	// the actor is loaded on this node; Kept whether this node keeps the
	// actor's lock after evicting it (it activates here again without a
	// new grant).
	Session string `json:"session"`
	Active  bool   `json:"active"`
	Kept    bool   `json:"kept,omitempty"`
}

// SnapshotInfo locates a snapshot.
type SnapshotInfo struct {
	Seq   uint64 `json:"seq"`
	Token uint64 `json:"token"`
	Bytes int    `json:"bytes"`
}

// EntryDump is one journal entry.
type EntryDump struct {
	Seq            uint64    `json:"seq"`
	Kind           string    `json:"kind"`
	Method         string    `json:"method,omitempty"`
	Token          uint64    `json:"token"`
	Time           time.Time `json:"time"`
	CorrelationID  string    `json:"correlationId,omitempty"`
	IdempotencyKey string    `json:"idempotencyKey,omitempty"`
	TraceID        string    `json:"traceId,omitempty"`
	Payload        []byte    `json:"payload,omitempty"`
}

// LockDump is a lock's holder.
type LockDump struct {
	Session string `json:"session"`
	Owner   string `json:"owner"`
	Token   uint64 `json:"token"`
}

func (n *Node) adminRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/admin/journal/{type}/{id}", n.journalDump)
	n.groupRoutes(mux)
}

func (n *Node) journalDump(w http.ResponseWriter, r *http.Request) {
	typ, id := r.PathValue("type"), r.PathValue("id")
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	d, err := n.DumpJournal(ctx, typ, id, r.URL.Query().Get("sync") == "1")
	if err != nil && n.forwardJournalDump(w, r.WithContext(ctx), typ+"/"+id, err) {
		return
	}
	if err != nil {
		status := http.StatusServiceUnavailable
		if errors.Is(err, journal.ErrInvalid) {
			status = http.StatusBadRequest
		}
		http.Error(w, err.Error(), status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(d)
}

// DumpJournal reads the actor's journal, lock and activation from this
// node (see the admin API above).
func (n *Node) DumpJournal(ctx context.Context, actorType, id string, sync bool) (JournalDump, error) {
	key := actorType + "/" + id
	d := JournalDump{Node: n.cfg.Node.ID, Actor: key, Entries: []EntryDump{}}
	if n.journal == nil || n.coord == nil {
		return d, errors.New("node: not started")
	}
	if s, ok := n.journal.(interface{ Sync(context.Context) error }); ok && sync {
		if err := s.Sync(ctx); err != nil {
			return d, err
		}
	}
	var err error
	if d.Tail, err = n.journal.Tail(ctx, key); err != nil {
		return d, err
	}
	snap, ok, err := n.journal.LoadSnapshot(ctx, key)
	if err != nil {
		return d, err
	}
	from := uint64(1)
	if ok {
		d.Snapshot = &SnapshotInfo{Seq: snap.Seq, Token: snap.Token, Bytes: len(snap.Data)}
		from = snap.Seq + 1
	}
	entries, err := n.journal.Read(ctx, key, from)
	if err != nil {
		return d, err
	}
	for _, e := range entries {
		d.Entries = append(d.Entries, EntryDump{
			Seq: e.Seq, Kind: e.Kind.String(), Method: e.Method, Token: e.Token, Time: e.Time,
			CorrelationID: e.CorrelationID, IdempotencyKey: e.IdempotencyKey, TraceID: e.TraceID, Payload: e.Payload,
		})
	}
	info, held, err := n.coord.Holder(ctx, key)
	if err != nil {
		return d, err
	}
	if held {
		d.Lock = &LockDump{Session: string(info.Session), Owner: info.Owner, Token: info.Token}
	}
	if n.keeper != nil {
		d.Session = string(n.keeper.Session())
	}
	if rt := n.runtime(); rt != nil {
		d.Active = rt.IsActive(actorType, id)
		d.Kept = rt.KeepsLock(actorType, id)
	}
	return d, nil
}
