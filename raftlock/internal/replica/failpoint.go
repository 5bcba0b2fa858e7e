package replica

import (
	"fmt"

	"github.com/hashicorp/raft"
)

// failpointLogStore is the Raft log store with Config.BeforeSync called
// before each write (the chaos suite's slow and full disks).
type failpointLogStore struct {
	raft.LogStore
	before func() error
}

func (s failpointLogStore) hook() error {
	if err := s.before(); err != nil {
		return fmt.Errorf("log store: %w", err)
	}
	return nil
}

func (s failpointLogStore) StoreLog(l *raft.Log) error {
	if err := s.hook(); err != nil {
		return err
	}
	return s.LogStore.StoreLog(l)
}

func (s failpointLogStore) StoreLogs(logs []*raft.Log) error {
	if err := s.hook(); err != nil {
		return err
	}
	return s.LogStore.StoreLogs(logs)
}

func (s failpointLogStore) DeleteRange(lo, hi uint64) error {
	if err := s.hook(); err != nil {
		return err
	}
	return s.LogStore.DeleteRange(lo, hi)
}
