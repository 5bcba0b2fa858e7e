package placement

import (
	"sync"
	"sync/atomic"
)

// Table is the live ring of a node: it holds the current *Ring and replaces
// it, atomically, when the set of alive members changes.
//
// Locate, Ring and Version are lock-free and may be called from any
// goroutine; Update may be called from any goroutine too (calls are
// serialised by a mutex that readers never take).
type Table struct {
	cfg Config
	mu  sync.Mutex // serialises Update; readers never take it
	cur atomic.Pointer[Ring]
}

// NewTable returns a table holding the empty ring (Version 0), or an error
// wrapping ErrInvalidConfig if cfg is not valid.
func NewTable(cfg Config) (*Table, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	t := &Table{cfg: cfg}
	t.cur.Store(NewRing(nil, cfg))
	return t, nil
}

// Update replaces the ring with one built for members (order and duplicates
// do not matter) and reports whether it did. If the member set is the one
// the table already has, nothing changes and the version stays the same;
// otherwise the version increases by one. Readers see either the old ring or
// the new one, never a mix.
func (t *Table) Update(members []string) (changed bool) {
	ids := normalize(members)
	t.mu.Lock()
	defer t.mu.Unlock()
	old := t.cur.Load()
	if old.sameMembers(ids) {
		return false
	}
	r := NewRing(ids, t.cfg)
	r.version = old.version + 1
	t.cur.Store(r)
	return true
}

// Ring returns the current ring. It never returns nil.
func (t *Table) Ring() *Ring { return t.cur.Load() }

// Locate places key on the current ring; see Ring.Locate.
func (t *Table) Locate(key string) (nodeID string, ok bool) { return t.cur.Load().Locate(key) }

// Version returns the version of the current ring: 0 for the initial empty
// ring, increased by one on each Update that changed the member set.
func (t *Table) Version() uint64 { return t.cur.Load().version }

// Config returns the table's configuration.
func (t *Table) Config() Config { return t.cfg }
