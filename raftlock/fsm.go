package raftlock

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
)

// fsm is the Raft state machine: sessions, locks, journals and the dedup
// table in one bbolt file opened with NoSync (the Raft log is the durable
// record; see the package documentation for why the file is rebuilt on
// every start).
//
// Raft calls ApplyBatch, Apply, Snapshot and Restore from its one FSM
// goroutine; FSMSnapshot.Persist runs on Raft's snapshot goroutine,
// concurrently with ApplyBatch (it reads a bbolt read transaction opened by
// Snapshot). Readers (the Store's Read, Tail, Holder...) run on their
// callers' goroutines.
type fsm struct {
	path        string
	log         *slog.Logger
	dedupWindow uint64 // DedupWindow; tests lower it on their own fsm

	// mu guards db: ApplyBatch and readers hold it shared; Restore (which
	// swaps the file) and close hold it exclusively.
	mu     sync.RWMutex
	db     *bolt.DB
	closed bool

	// progress is what the state machine has applied, guarded by pmu.
	// Writers wait on it (waitApplied); the FSM goroutine advances it.
	pmu      sync.Mutex
	applied  uint64        // index of the last applied Raft entry
	clock    int64         // the state machine's clock (latest leader stamp), UnixNano
	advanced chan struct{} // closed and replaced whenever applied advances or failed is set
	failed   error         // set once, when applying failed: wraps ErrStateMachine
}

var _ raft.BatchingFSM = (*fsm)(nil)

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
		return tx.Bucket(bucketMeta).Put(keyState, fsmMeta{}.marshal())
	}); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("raftlock: initialise state machine %s: %w", path, err)
	}
	return &fsm{path: path, log: log, dedupWindow: DedupWindow, db: db, advanced: make(chan struct{})}, nil
}

// applyResponse is what ApplyBatch returns for one Raft entry, and so what
// the leader's ApplyFuture.Response holds.
type applyResponse struct {
	index   uint64
	results []result // one per command of the batch
	err     error    // the entry could not be applied at all
}

// Apply applies one entry. Raft uses ApplyBatch; Apply is here for the
// raft.FSM interface.
func (f *fsm) Apply(l *raft.Log) any { return f.ApplyBatch([]*raft.Log{l})[0] }

// ApplyBatch applies committed entries in one bbolt transaction. Entries
// other than commands (configuration changes) only advance the applied
// index. A batch that cannot be decoded answers every command with
// codeBadCommand, the same way on every replica. If the transaction fails
// (I/O), the state machine stops: failed is set and every later call fails.
func (f *fsm) ApplyBatch(logs []*raft.Log) []any {
	resps := make([]any, len(logs))
	f.pmu.Lock()
	failed := f.failed
	f.pmu.Unlock()
	if failed != nil {
		for i := range resps {
			resps[i] = &applyResponse{index: logs[i].Index, err: failed}
		}
		return resps
	}

	var m fsmMeta
	f.mu.RLock()
	err := f.db.Update(func(tx *bolt.Tx) error {
		var err error
		if m, err = unmarshalMeta(tx.Bucket(bucketMeta).Get(keyState)); err != nil {
			return err
		}
		ac := newApplyCtx(tx, &m, f.dedupWindow)
		for i, l := range logs {
			m.applied = l.Index
			if l.Type != raft.LogCommand {
				continue
			}
			resp, err := ac.applyEntry(l)
			if err != nil {
				return fmt.Errorf("entry %d: %w", l.Index, err)
			}
			resps[i] = resp
		}
		return tx.Bucket(bucketMeta).Put(keyState, m.marshal())
	})
	f.mu.RUnlock()
	if err != nil {
		err = fmt.Errorf("%w: applying entries %d-%d: %w", ErrStateMachine, logs[0].Index, logs[len(logs)-1].Index, err)
		f.log.Error("raftlock: state machine failed; restart the node to rebuild it", "err", err)
		f.pmu.Lock()
		f.failed = err
		close(f.advanced)
		f.advanced = make(chan struct{})
		f.pmu.Unlock()
		for i := range resps {
			resps[i] = &applyResponse{index: logs[i].Index, err: err}
		}
		return resps
	}
	f.setProgress(m.applied, m.time)
	return resps
}

// setProgress publishes what has been applied and wakes waiters.
func (f *fsm) setProgress(applied uint64, clock int64) {
	f.pmu.Lock()
	f.applied, f.clock = applied, clock
	close(f.advanced)
	f.advanced = make(chan struct{})
	f.pmu.Unlock()
}

// progress returns the applied index, the state machine's clock and the
// failure, if any.
func (f *fsm) progress() (applied uint64, clock int64, failed error) {
	f.pmu.Lock()
	defer f.pmu.Unlock()
	return f.applied, f.clock, f.failed
}

// waitApplied blocks until index has been applied locally, ctx ends, stop
// is closed, or the state machine fails.
func (f *fsm) waitApplied(ctx context.Context, index uint64, stop <-chan struct{}) error {
	for {
		f.pmu.Lock()
		applied, failed, advanced := f.applied, f.failed, f.advanced
		f.pmu.Unlock()
		switch {
		case applied >= index:
			return nil
		case failed != nil:
			return failed
		}
		select {
		case <-advanced:
		case <-ctx.Done():
			return ctx.Err()
		case <-stop:
			return errClosed
		}
	}
}

// view runs fn in a read transaction on the current file.
func (f *fsm) view(fn func(tx *bolt.Tx) error) error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.closed {
		return errClosed
	}
	return f.db.View(fn)
}

// Snapshot opens a read transaction; Persist writes the file as of that
// transaction, which is the state after the last applied entry, since
// Snapshot runs on the FSM goroutine between applies.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
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
// written next to fsm.db, checked, and renamed over it.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	tmp := f.path + ".restore"
	if err := writeFile(tmp, rc); err != nil {
		return fmt.Errorf("raftlock: restore: %w", err)
	}
	m, err := checkFSMFile(tmp)
	if err != nil {
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
		err = fmt.Errorf("%w: restore: %w", ErrStateMachine, err)
		f.closed = true // nothing is open any more
		f.pmu.Lock()
		f.failed = err
		close(f.advanced)
		f.advanced = make(chan struct{})
		f.pmu.Unlock()
		return err
	}
	f.db = db
	f.setProgress(m.applied, m.time)
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

// checkFSMFile opens a state machine file read-only and returns its meta.
func checkFSMFile(path string) (fsmMeta, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return fsmMeta{}, err
	}
	defer db.Close()
	var m fsmMeta
	err = db.View(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			if tx.Bucket(name) == nil {
				return fmt.Errorf("snapshot has no %q bucket", name)
			}
		}
		var err error
		m, err = unmarshalMeta(tx.Bucket(bucketMeta).Get(keyState))
		return err
	})
	return m, err
}

// close closes the file, after in-flight readers. Raft must be shut down.
func (f *fsm) close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	f.closed = true
	return f.db.Close()
}
