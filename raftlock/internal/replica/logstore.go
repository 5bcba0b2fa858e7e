package replica

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
	bolt "go.etcd.io/bbolt"
)

// The Raft log stores a Group can keep its log and stable store in
// (Config.LogStore).
const (
	// LogStoreAuto ("" too) keeps the kind a Dir was made with: raft.db
	// there is LogStoreBolt; otherwise, a new Dir too, LogStoreWAL.
	LogStoreAuto = "auto"
	// LogStoreBolt is raft-boltdb/v2: one bbolt file, raft.db, whose
	// every batch of entries is a B+tree transaction.
	LogStoreBolt = "boltdb"
	// LogStoreWAL is hashicorp/raft-wal: append-only segment files under
	// wal/, one write and one fsync per batch of entries, with the stable
	// store in its meta.db.
	LogStoreWAL = "wal"
)

// ErrLogStoreMismatch: a data dir holds a log of the other kind; it
// keeps the log store it was made with.
var ErrLogStoreMismatch = errors.New("the data dir keeps the Raft log store it was made with")

// logStore is the Raft log and stable store of a Group.
type logStore interface {
	raft.LogStore
	raft.StableStore
	Close() error
}

// openLogStore opens (or creates) dir's log store of the given kind. A
// dir keeps the kind it was made with: the other kind's files there are an
// error, not a second, empty log beside the first; LogStoreAuto picks the
// kind the dir holds, and raft-wal for a new one. The store holds a lock
// on dir that keeps a second process out while it is open.
func openLogStore(dir, kind string, segmentSize int, hlog hclog.Logger) (logStore, error) {
	boltPath, walDir := filepath.Join(dir, "raft.db"), filepath.Join(dir, "wal")
	if kind == "" || kind == LogStoreAuto {
		kind = LogStoreWAL
		if exists(boltPath) {
			kind = LogStoreBolt
		}
	}
	switch kind {
	case LogStoreBolt:
		if exists(walDir) {
			return nil, fmt.Errorf("%w: %s holds a raft-wal log: open it with log store %q", ErrLogStoreMismatch, dir, LogStoreWAL)
		}
		s, err := raftboltdb.New(raftboltdb.Options{
			Path:        boltPath,
			BoltOptions: &bolt.Options{Timeout: time.Second, FreelistType: bolt.FreelistMapType, NoFreelistSync: true},
		})
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("open %s: locked by another process (is another node using data dir %s?): %w", boltPath, filepath.Dir(dir), err)
		}
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", boltPath, err)
		}
		return s, nil
	case LogStoreWAL:
		if exists(boltPath) {
			return nil, fmt.Errorf("%w: %s holds a raft-boltdb log (raft.db): open it with log store %q", ErrLogStoreMismatch, dir, LogStoreBolt)
		}
		if err := os.MkdirAll(walDir, 0o700); err != nil {
			return nil, err
		}
		// raft-wal's meta.db would wait for another process's lock
		// forever: take one of our own first, failing at once.
		lock, err := lockDir(walDir)
		if err != nil {
			return nil, err
		}
		// Our own meta store, to close it: WAL.Close leaves it open
		// (v0.4.2), and with it the lock on meta.db.
		meta := &metadb.BoltMetaDB{}
		size := wal.WithSegmentSize(64 << 20) // raft-wal's default
		if segmentSize > 0 {
			size = wal.WithSegmentSize(segmentSize)
		}
		w, err := wal.Open(walDir, wal.WithLogger(hlog), wal.WithMetaStore(meta), size)
		if err != nil {
			meta.Close()
			lock.Close()
			return nil, fmt.Errorf("open %s: %w", walDir, err)
		}
		return &walStore{WAL: w, meta: meta, lock: lock}, nil
	default:
		return nil, fmt.Errorf("unknown log store %q (want %q, %q or %q)", kind, LogStoreAuto, LogStoreBolt, LogStoreWAL)
	}
}

// walStore is a raft-wal log with its meta store and the lock on its
// directory.
type walStore struct {
	*wal.WAL
	meta *metadb.BoltMetaDB
	lock *os.File
}

func (s *walStore) Close() error {
	err := s.WAL.Close()                                    // waits for writes in progress
	return errors.Join(err, s.meta.Close(), s.lock.Close()) // closing the file releases the lock
}

// lockDir takes an exclusive lock on dir/LOCK, or fails at once if
// another process holds it.
func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, "LOCK")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("open %s: locked by another process (is another node using data dir %s?)", dir, filepath.Dir(filepath.Dir(dir)))
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return f, nil
}

// HasLogStore reports whether dir holds a Raft log store of either kind:
// whether a Group was ever opened there.
func HasLogStore(dir string) bool {
	return exists(filepath.Join(dir, "raft.db")) || exists(filepath.Join(dir, "wal"))
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return !errors.Is(err, fs.ErrNotExist)
}
