package raftlock

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/raftlock/internal/replica"
	"github.com/loom-mesh/loom/raftlock/internal/replica/dedup"
	bolt "go.etcd.io/bbolt"
)

// fsm is the Raft state machine: sessions, locks, journals and the dedup
// table in one bbolt file opened with NoSync (the Raft log is the durable
// record; see the package documentation for why the file is rebuilt on
// every start), written behind: applies change an in-memory overlay on top
// of the file, which is flushed to the file in one bbolt transaction once
// it holds flushKeys records or flushBytes bytes, and before every
// snapshot (fsm_overlay.go).
//
// Raft calls ApplyBatch, Apply, Snapshot and Restore from its one FSM
// goroutine; FSMSnapshot.Persist runs on Raft's snapshot goroutine,
// concurrently with ApplyBatch (it reads a bbolt read transaction opened by
// Snapshot). A flush runs on a goroutine of its own, started by the FSM
// goroutine, concurrently with applies and readers. Readers (the Store's
// Read, Tail, Holder...) run on their callers' goroutines.
type fsm struct {
	path           string
	log            *slog.Logger
	dedupWindow    uint64 // DedupWindow; tests lower it on their own fsm
	dedupRetention int64  // DedupRetention in nanoseconds; tests lower it too
	flushKeys      int    // flush once the active overlay holds this many records...
	flushBytes     int    // ...or this many bytes; tests lower them

	// dedupIndex maps the dedup key of each command in the dedup table
	// to its chunk (fsm_layout.go). Only the FSM goroutine uses it: the
	// applies keep it, Restore rebuilds it from the restored file.
	dedupIndex map[string]uint64

	// queueRetention is how long the queue machine remembers the id of a
	// message that left (Config.MessageIDRetention); part of the state
	// machine's definition, like the dedup bounds.
	queueRetention time.Duration
	// notify is told, after each applied batch, about the actors the
	// batch gave something to deliver (Queues.Notify).
	notify atomic.Pointer[func(actor string, at time.Time)]

	// mu guards db, closed, ov, fl and flushDone. ApplyBatch holds it
	// exclusively while it applies (it writes ov), so readers see the
	// state after a whole batch; readers hold it shared; Restore (which
	// swaps the file) and Close hold it exclusively. A flush goroutine
	// never takes it, and the FSM goroutine waits for a flush holding
	// neither mu nor a bbolt transaction (a flush that grows the file
	// waits for every read transaction to end).
	mu     sync.RWMutex
	db     *bolt.DB
	closed bool
	ov     *overlay // the active overlay: what applies write
	// fl is the overlay handed to the running or last flush (nil if
	// none): readers read it under ov until the FSM goroutine has seen
	// the flush commit. flushDone is closed when that flush has ended
	// (nil if no flush was started since fl was last dropped); flushErr
	// is its outcome, written by the flush goroutine before it closes
	// flushDone and read only after.
	fl        *overlay
	flushDone chan struct{}
	flushErr  error
	flushes   atomic.Uint64 // flushes committed, for tests and Stats
	// flushHook, if set (by tests, before the flush it affects starts),
	// runs on the flush goroutine before the flush writes; an error
	// fails the flush.
	flushHook func() error

	// progress is what the state machine has applied, and its failure:
	// the FSM goroutine advances it, writers wait on it (WaitApplied).
	progress replica.Progress
}

// The write-behind bounds: a flush writes about 32k records (some 20,000
// appends to actors drawn from 10,000) or 16 MiB in one bbolt transaction.
// Larger flushes share more pages between records (at 4k records an append
// costs about twice what it costs at 32k) but hold more memory, the active
// overlay plus the one being flushed: some 300 bytes per record with small
// entries, about 10 MiB per full overlay.
const (
	defaultFlushKeys  = 1 << 15
	defaultFlushBytes = 16 << 20
)

var _ replica.FSM = (*fsm)(nil)

// boltOptions are fsm.db's options. NoSync: the file is rebuilt from the
// Raft log on start, so it needs no fsync. The large initial mmap keeps
// readers from blocking the FSM goroutine while the file is small.
func boltOptions() *bolt.Options {
	return &bolt.Options{
		Timeout:         time.Second,
		NoSync:          true,
		NoGrowSync:      true,
		NoFreelistSync:  true,
		FreelistType:    bolt.FreelistMapType,
		InitialMmapSize: 128 << 20,
	}
}

// openFSM creates a new, empty state machine at path, removing whatever
// file was there.
func openFSM(path string, log *slog.Logger) (*fsm, error) {
	for _, p := range []string{path, path + ".restore"} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("raftlock: discard old state machine file: %w", err)
		}
	}
	db, err := bolt.Open(path, 0o600, boltOptions())
	if err != nil {
		return nil, fmt.Errorf("raftlock: open state machine %s: %w", path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucket(name); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put(keyState, newMeta().marshal())
	}); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("raftlock: initialise state machine %s: %w", path, err)
	}
	return &fsm{path: path, log: log, dedupWindow: DedupWindow, dedupRetention: int64(DedupRetention),
		flushKeys: defaultFlushKeys, flushBytes: defaultFlushBytes,
		dedupIndex: map[string]uint64{}, db: db, ov: newOverlay(nil)}, nil
}

// applyResponse is what ApplyBatch returns for one Raft entry, and so what
// the leader's ApplyFuture.Response holds (a replica.Response).
type applyResponse struct {
	index   uint64
	results []result // one per command of the batch
	err     error    // the entry could not be applied at all
}

var _ replica.Response[result] = (*applyResponse)(nil)

// Outcome returns the entry's index, its results and its error.
func (r *applyResponse) Outcome() (uint64, []result, error) { return r.index, r.results, r.err }

// Apply applies one entry. Raft uses ApplyBatch; Apply is here for the
// raft.FSM interface.
func (f *fsm) Apply(l *raft.Log) any { return f.ApplyBatch([]*raft.Log{l})[0] }

// ApplyBatch applies committed entries to the active overlay, as one unit
// for readers. Entries other than commands (configuration changes) only
// advance the applied index. A batch that cannot be decoded answers every
// command with codeBadCommand, the same way on every replica. Once the
// overlay is past its bounds it is handed to a flush (waiting for the
// previous flush first). If applying or flushing fails (I/O), the state
// machine stops: failed is set and every later call fails.
func (f *fsm) ApplyBatch(logs []*raft.Log) []any {
	resps := make([]any, len(logs))
	if _, _, failed := f.Progress(); failed != nil {
		for i := range resps {
			resps[i] = &applyResponse{index: logs[i].Index, err: failed}
		}
		return resps
	}
	f.dropFlushed()

	var m fsmMeta
	var ac *applyCtx
	f.mu.Lock()
	err := f.apply(func(l *layers) error {
		meta := l.bucket(bMeta)
		var err error
		if m, err = unmarshalMeta(meta.Get(keyState)); err != nil {
			return err
		}
		ac = newApplyCtx(l, &m, f.dedupWindow, f.dedupRetention, f.dedupIndex, f.queueRetention)
		for i, lg := range logs {
			m.applied = lg.Index
			if lg.Type != raft.LogCommand {
				continue
			}
			resp, err := ac.applyEntry(lg)
			if err != nil {
				return fmt.Errorf("entry %d: %w", lg.Index, err)
			}
			resps[i] = resp
		}
		return meta.Put(keyState, m.marshal())
	})
	full := f.ov.keys >= f.flushKeys || f.ov.bytes >= f.flushBytes
	f.mu.Unlock()
	if err == nil && full {
		// The previous flush must have committed before the next
		// overlay goes: there is one flushing layer.
		if err = f.waitFlush(); err == nil {
			f.startFlush()
		}
	}
	if err != nil {
		err = f.fail(fmt.Errorf("%w: applying entries %d-%d: %w", ErrStateMachine, logs[0].Index, logs[len(logs)-1].Index, err))
		for i := range resps {
			resps[i] = &applyResponse{index: logs[i].Index, err: err}
		}
		return resps
	}
	f.progress.Set(m.applied, m.time)
	// The batch is applied and mu released: tell the queues' listener
	// (which must not block) of the actors it gave something to deliver.
	if fn := f.notify.Load(); fn != nil && ac != nil {
		for _, w := range ac.wakes {
			(*fn)(w.actor, time.Unix(0, w.at).UTC())
		}
	}
	return resps
}

// apply runs fn on the layers with the active overlay on top, and a bbolt
// read transaction underneath. The caller holds mu exclusively.
func (f *fsm) apply(fn func(l *layers) error) error {
	if f.closed {
		return errClosed
	}
	tx, err := f.db.Begin(false)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	return fn(&layers{top: f.ov, flushing: f.fl, tx: tx})
}

// fail records that the state machine failed (the first failure wins),
// wakes the waiters and returns the recorded failure.
func (f *fsm) fail(err error) error {
	failed, first := f.progress.Fail(err)
	if first {
		f.log.Error("raftlock: state machine failed; restart the node to rebuild it", "err", err)
	}
	return failed
}

// startFlush hands the active overlay to a new flush goroutine, which
// writes it to fsm.db in one transaction. Only the FSM goroutine calls it,
// with no flush running (after waitFlush). The overlay stays readable, as
// fl, until the FSM goroutine has seen the flush commit (waitFlush,
// dropFlushed).
func (f *fsm) startFlush() {
	done := make(chan struct{})
	f.mu.Lock()
	fl, db := f.ov, f.db
	f.fl, f.ov, f.flushDone = fl, newOverlay(fl), done
	f.mu.Unlock()
	hook := f.flushHook
	go func() {
		var err error
		if hook != nil {
			err = hook()
		}
		if err == nil {
			err = db.Update(fl.writeTo)
		}
		if err != nil {
			err = f.fail(fmt.Errorf("%w: writing applied entries to %s: %w", ErrStateMachine, f.path, err))
		} else {
			f.flushes.Add(1)
		}
		f.flushErr = err
		close(done)
	}()
}

// waitFlush waits for the flush started last, if it has not been waited
// for, and returns its error. After a successful flush its overlay is
// dropped (fsm.db holds it); after a failed one it stays, so readers keep
// a consistent view. Called by the FSM goroutine, or by Close once Raft
// has stopped; never with mu held.
func (f *fsm) waitFlush() error {
	f.mu.RLock()
	done := f.flushDone
	f.mu.RUnlock()
	if done == nil {
		return nil
	}
	<-done
	f.mu.Lock()
	defer f.mu.Unlock()
	err := f.flushErr
	f.flushDone, f.flushErr = nil, nil
	if err == nil {
		f.fl = nil
	}
	return err
}

// dropFlushed drops the flushed overlay if its flush has committed, so
// reads stop looking at it; it does not wait.
func (f *fsm) dropFlushed() {
	f.mu.RLock()
	done := f.flushDone
	f.mu.RUnlock()
	if done == nil {
		return
	}
	select {
	case <-done:
		_ = f.waitFlush() // a failure is recorded already
	default:
	}
}

// flush writes the active overlay to fsm.db and waits until it is
// committed (after any flush still running). The FSM goroutine calls it.
func (f *fsm) flush() error {
	if err := f.waitFlush(); err != nil {
		return err
	}
	f.mu.RLock()
	empty := f.ov.empty()
	f.mu.RUnlock()
	if empty {
		return nil
	}
	f.startFlush()
	return f.waitFlush()
}

// Progress returns the applied index, the state machine's clock and the
// failure, if any.
func (f *fsm) Progress() (applied uint64, clock int64, failed error) { return f.progress.Get() }

// WaitApplied blocks until index has been applied locally, ctx ends, stop
// is closed (errClosed), or the state machine fails.
func (f *fsm) WaitApplied(ctx context.Context, index uint64, stop <-chan struct{}) error {
	return f.progress.Wait(ctx, index, stop, errClosed)
}

// view runs fn on a consistent view of the state machine: the overlays,
// then a read transaction on fsm.db. fn must not write.
func (f *fsm) view(fn func(l *layers) error) error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.closed {
		return errClosed
	}
	return f.db.View(func(tx *bolt.Tx) error {
		return fn(&layers{top: f.ov, flushing: f.fl, tx: tx})
	})
}

// Snapshot flushes the overlay, then opens a read transaction; Persist
// writes the file as of that transaction, which is the state after the
// last applied entry, since Snapshot runs on the FSM goroutine between
// applies.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	if _, _, failed := f.Progress(); failed != nil {
		return nil, failed
	}
	if err := f.flush(); err != nil {
		return nil, fmt.Errorf("raftlock: snapshot: %w", err)
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.closed {
		return nil, errClosed
	}
	tx, err := f.db.Begin(false)
	if err != nil {
		return nil, fmt.Errorf("raftlock: snapshot: %w", err)
	}
	return &fsmSnapshot{tx: tx}, nil
}

type fsmSnapshot struct {
	tx   *bolt.Tx
	once sync.Once
}

// Persist writes a consistent copy of the bbolt file to sink.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := s.tx.WriteTo(sink); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("raftlock: persist snapshot: %w", err)
	}
	return sink.Close()
}

// Release ends the read transaction.
func (s *fsmSnapshot) Release() { s.once.Do(func() { _ = s.tx.Rollback() }) }

// Restore replaces the state machine with the snapshot's file: it is
// written next to fsm.db, migrated if it is of an earlier format, checked,
// and renamed over it, and the overlays
// are dropped (after waiting for a running flush, which writes to the old
// file).
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	tmp := f.path + ".restore"
	if err := writeFile(tmp, rc); err != nil {
		return fmt.Errorf("raftlock: restore: %w", err)
	}
	var (
		m     fsmMeta
		index map[string]uint64
	)
	err := migrate(tmp) // a snapshot of an earlier release
	if err == nil {
		m, index, err = checkFSMFile(tmp)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("raftlock: restore: %w", err)
	}

	if err := f.waitFlush(); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("raftlock: restore: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		_ = os.Remove(tmp)
		return errClosed
	}
	if err := f.db.Close(); err != nil {
		return fmt.Errorf("raftlock: restore: close %s: %w", f.path, err)
	}
	var db *bolt.DB
	if err = os.Rename(tmp, f.path); err == nil {
		db, err = bolt.Open(f.path, 0o600, boltOptions())
	}
	if err != nil {
		f.closed = true // nothing is open any more
		return f.fail(fmt.Errorf("%w: restore: %w", ErrStateMachine, err))
	}
	f.db, f.ov, f.fl, f.dedupIndex = db, newOverlay(nil), nil, index
	f.progress.Set(m.applied, m.time)
	return nil
}

func writeFile(path string, r io.Reader) error {
	file, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(file, r)
	return errors.Join(err, file.Close())
}

// checkFSMFile opens a state machine file read-only and returns its meta
// and the index of its dedup table.
func checkFSMFile(path string) (fsmMeta, map[string]uint64, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return fsmMeta{}, nil, err
	}
	defer db.Close()
	var (
		m     fsmMeta
		index map[string]uint64
	)
	err = db.View(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			if tx.Bucket(name) == nil {
				return fmt.Errorf("snapshot has no %q bucket", name)
			}
		}
		var err error
		if m, err = unmarshalMeta(tx.Bucket(bucketMeta).Get(keyState)); err != nil {
			return err
		}
		var count uint64
		index, count, err = dedup.Load(tx.Bucket(bucketDedup).ForEach)
		if err == nil && (count != m.dedup.Count || uint64(len(index)) != count) {
			err = fmt.Errorf("%w: dedup table holds %d results (%d keys), meta counts %d", journal.ErrCorrupt, count, len(index), m.dedup.Count)
		}
		return err
	})
	return m, index, err
}

// Close closes the file, after a running flush and in-flight readers.
// Raft must be shut down. The overlay is dropped: fsm.db is rebuilt from
// the Raft log on the next start anyway.
func (f *fsm) Close() error {
	_ = f.waitFlush() // its failure is recorded already
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	f.closed = true
	return f.db.Close()
}
