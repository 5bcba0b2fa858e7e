package replica

import (
	"errors"
	"sync"

	"github.com/hashicorp/raft"
)

// closingStable is the stable store (raft.db) as Raft sees it, so that
// Close can shut the store under a heartbeat that outlives Raft.
//
// raft.NetworkTransport runs a heartbeat on its connection's goroutine,
// which no Raft shutdown waits for (hashicorp/raft#717): a heartbeat that
// got past Raft's shutdown check just before Shutdown may still be
// running after Shutdown returned, and persist a newer leader's term with
// setCurrentTerm, which panics on any error, the closed store's "database
// not open" included. A node killed that way takes its whole process with
// it. So close waits for the calls in progress, and from then on a write
// is dropped and reported done: Raft has stopped by then, nothing in this
// process reads the store again, and the next start finds it as a crash
// at the moment of close would have left it; the late heartbeat's answer
// only tells its leader that this node was in contact.
type closingStable struct {
	raft.StableStore
	mu     sync.RWMutex
	closed bool
}

var errStableClosed = errors.New("stable store closed")

func (s *closingStable) Set(key, val []byte) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil
	}
	return s.StableStore.Set(key, val)
}

func (s *closingStable) SetUint64(key []byte, val uint64) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil
	}
	return s.StableStore.SetUint64(key, val)
}

func (s *closingStable) Get(key []byte) ([]byte, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, errStableClosed
	}
	return s.StableStore.Get(key)
}

func (s *closingStable) GetUint64(key []byte) (uint64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return 0, errStableClosed
	}
	return s.StableStore.GetUint64(key)
}

// close waits for the calls in progress and turns later writes into
// no-ops; the store underneath may be closed after it.
func (s *closingStable) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
}
