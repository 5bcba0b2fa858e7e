package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

// ---- journal audit ----

// journalDump is what GET /v1/admin/journal/{type}/{id} answers (node's
// JournalDump; declared here so the suite does not depend on node).
type journalDump struct {
	Node  string `json:"node"`
	Actor string `json:"actor"`
	Tail  struct {
		Seq   uint64 `json:"Seq"`
		Token uint64 `json:"Token"`
	} `json:"tail"`
	Snapshot *struct {
		Seq   uint64 `json:"seq"`
		Token uint64 `json:"token"`
	} `json:"snapshot"`
	Entries []dumpEntry `json:"entries"`
	Lock    *dumpLock   `json:"lock"`
	Session string      `json:"session"`
	Active  bool        `json:"active"`
	Kept    bool        `json:"kept"` // the node keeps the lock of the evicted actor
}

type dumpEntry struct {
	Seq            uint64 `json:"seq"`
	Kind           string `json:"kind"`
	Method         string `json:"method"`
	Token          uint64 `json:"token"`
	CorrelationID  string `json:"correlationId"`
	IdempotencyKey string `json:"idempotencyKey"`
}

type dumpLock struct {
	Session string `json:"session"`
	Owner   string `json:"owner"`
	Token   uint64 `json:"token"`
}

// DumpJournal reads an actor's journal dump from node n, synced (its
// replica has applied everything committed before the request).
func (c *Cluster) DumpJournal(ctx context.Context, n *Node, actor string) (journalDump, error) {
	var d journalDump
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.URL("/v1/admin/journal/"+actor+"?sync=1"), nil)
	if err != nil {
		return d, err
	}
	resp, err := c.dumpHC.Do(req)
	if err != nil {
		return d, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return d, fmt.Errorf("%s: GET /v1/admin/journal/%s: %s", n.ID, actor, resp.Status)
	}
	return d, json.NewDecoder(resp.Body).Decode(&d)
}

// JournalAudit is the audit's summary.
type JournalAudit struct {
	Actors  int `json:"actors"`
	Entries int `json:"entries"`
	// Acked is the acknowledged writes looked for, Found those found.
	Acked int `json:"acked"`
	Found int `json:"found"`
	// Unverifiable acknowledged writes: their actor has a snapshot, so
	// their entries may have been truncated.
	Unverifiable int `json:"unverifiable"`
	// Locks held at the end, by the node that has the actor active.
	Locks int `json:"locks"`
}

// AuditJournals checks every actor's journal as each node's replica has
// it (dumps[actor][i] is node i's), against the history:
//
//   - seqs contiguous from the snapshot (or 1) up to the tail;
//   - tokens never decreasing in seq order, the tail's token the highest;
//   - every acknowledged write (write, swapped CAS, add, kv.put, kv.delete
//     that found its key) present exactly
//     once (by its key), no entry of a definitely failed op, no entry of an
//     op nobody invoked, no key twice;
//   - every replica holds the same journal;
//   - no orphaned lock: a held lock belongs to the current session of a
//     node that has the actor active (every actor was just called).
func AuditJournals(ops []Op, dumps map[string][]journalDump) (JournalAudit, []Violation) {
	var a JournalAudit
	var out []Violation
	bad := func(checker, actor, format string, args ...any) {
		out = append(out, Violation{Checker: checker, Actor: actor, Detail: fmt.Sprintf(format, args...)})
	}
	byKey := map[string]Op{}
	for _, op := range ops {
		byKey[op.Key] = op
	}
	for _, actor := range keys(dumps) {
		ds := dumps[actor]
		if len(ds) == 0 {
			continue
		}
		a.Actors++
		d := ds[0]
		a.Entries += len(d.Entries)
		next := uint64(1)
		if d.Snapshot != nil {
			next = d.Snapshot.Seq + 1
		}
		var lastToken uint64
		seen := map[string]uint64{} // key → seq
		for _, e := range d.Entries {
			if e.Seq != next {
				bad("journal", actor, "seq %d follows seq %d (gap or repeat) on %s", e.Seq, next-1, d.Node)
			}
			next = e.Seq + 1
			if e.Token < lastToken {
				bad("journal", actor, "entry %d written under token %d after an entry under token %d", e.Seq, e.Token, lastToken)
			}
			lastToken = max(lastToken, e.Token)
			key := entryKey(e.IdempotencyKey, e.CorrelationID, byKey)
			if key == "" {
				bad("journal", actor, "entry %d (%s, correlation id %q) maps to no operation of the history (phantom)", e.Seq, e.Method, e.CorrelationID)
				continue
			}
			if s, dup := seen[key]; dup {
				bad("journal", actor, "op %s is in the journal twice (seqs %d and %d)", key, s, e.Seq)
			}
			seen[key] = e.Seq
			if op := byKey[key]; op.Outcome == Failed {
				bad("journal", actor, "entry %d is op %s, which failed definitely (%s)", e.Seq, key, op.Err)
			}
		}
		if len(d.Entries) > 0 && d.Tail.Seq != next-1 {
			bad("journal", actor, "tail seq %d but the last entry is %d", d.Tail.Seq, next-1)
		}
		if d.Tail.Token < lastToken {
			bad("journal", actor, "tail token %d below an entry's token %d", d.Tail.Token, lastToken)
		}
		for _, op := range ops {
			if op.Actor != actor || op.Outcome != OK || !writes(op) {
				continue
			}
			if d.Snapshot != nil {
				if _, ok := seen[op.Key]; !ok {
					a.Unverifiable++
					continue
				}
			}
			a.Acked++
			if _, ok := seen[op.Key]; ok {
				a.Found++
			} else {
				bad("journal", actor, "acknowledged %s (op %d, key %s, returned at +%.3fs) is not in the journal",
					op.Kind, op.ID, op.Key, time.Duration(op.Return).Seconds())
			}
		}
		// The replicas agree.
		for _, o := range ds[1:] {
			if p := sameJournal(d, o); p != "" {
				bad("journal", actor, "replicas differ: %s vs %s: %s", d.Node, o.Node, p)
			}
		}
		// No orphaned lock.
		var active []string
		for _, o := range ds {
			if o.Active {
				active = append(active, o.Node)
			}
		}
		// The lock as any replica sees it (the highest token): a replica
		// judges expiry by the later of the state machine's clock and its
		// own, and a node whose clock ran fast under a clock fault stays
		// ahead (the hook's clock carries on from where the rate left
		// it), so it may see a held lock as lapsed.
		lk := d.Lock
		for _, o := range ds {
			if o.Lock != nil && (lk == nil || o.Lock.Token > lk.Token) {
				lk = o.Lock
			}
		}
		if lk == nil {
			continue
		}
		a.Locks++
		var holder *journalDump
		for i := range ds {
			if ds[i].Node == lk.Owner {
				holder = &ds[i]
			}
		}
		switch {
		case holder == nil:
			bad("orphan-lock", actor, "held by %s (session %s, token %d), which is not a member", lk.Owner, lk.Session, lk.Token)
		case holder.Session != lk.Session:
			bad("orphan-lock", actor, "held by an old session %s of %s (its session is %s)", lk.Session, lk.Owner, holder.Session)
		case !holder.Active && !holder.Kept:
			bad("orphan-lock", actor, "held by %s, which neither has it active nor keeps its lock (active on %v)", lk.Owner, active)
		}
	}
	return a, out
}

// writes reports whether an OK op appended to its journal.
func writes(op Op) bool {
	switch op.Kind {
	case OpWrite, OpAdd, OpKVPut:
		return true
	case OpCAS, OpKVDelete:
		return op.Swapped // swapped; found its key
	}
	return false
}

// entryKey finds the op an entry came from: its idempotency key (embedded
// client) or its correlation id (gateway).
func entryKey(idem, corr string, byKey map[string]Op) string {
	for _, k := range []string{idem, corr} {
		if _, ok := byKey[k]; ok && k != "" {
			return k
		}
	}
	return ""
}

// sameJournal describes the first difference between two replicas' dumps.
func sameJournal(a, b journalDump) string {
	if a.Tail != b.Tail {
		return fmt.Sprintf("tail %+v vs %+v", a.Tail, b.Tail)
	}
	// A replica may have truncated up to a different snapshot; compare
	// the entries both have.
	am := map[uint64]string{}
	for _, e := range a.Entries {
		am[e.Seq] = fmt.Sprintf("token %d key %s/%s", e.Token, e.IdempotencyKey, e.CorrelationID)
	}
	for _, e := range b.Entries {
		if x, ok := am[e.Seq]; ok && x != fmt.Sprintf("token %d key %s/%s", e.Token, e.IdempotencyKey, e.CorrelationID) {
			return fmt.Sprintf("entry %d: %s vs token %d key %s/%s", e.Seq, x, e.Token, e.IdempotencyKey, e.CorrelationID)
		}
	}
	return ""
}

// DumpAll dumps every actor from every running node.
func (c *Cluster) DumpAll(ctx context.Context, actors []Actor) (map[string][]journalDump, error) {
	out := map[string][]journalDump{}
	var errs []string
	for _, a := range actors {
		for _, n := range c.Nodes {
			if n.State() != Running {
				continue
			}
			d, err := c.DumpJournal(ctx, n, a.Key())
			if err != nil {
				errs = append(errs, err.Error())
				continue
			}
			out[a.Key()] = append(out[a.Key()], d)
		}
	}
	if len(errs) > 0 {
		slices.Sort(errs)
		return out, fmt.Errorf("%d dumps failed, first: %s", len(errs), strings.Join(errs[:1], ""))
	}
	return out, nil
}
