package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// rawRaft is the raft-apply baseline: three hashicorp/raft nodes in this
// process with Raft's default configuration, each with a raft-boltdb log
// and stable store (its defaults: every commit synced to disk), a TCP
// transport on loopback, and a state machine that only counts what it
// applies. Each call is one Apply on the leader: one log entry, which the
// leader's loop writes together with whatever other Applies are waiting
// (up to MaxAppendEntries). It is what durable-add does without Loom: no
// client, no actor, no fencing, no group commit of its own.
type rawRaft struct {
	dir    string
	nodes  []*raft.Raft
	fsms   []*countFSM
	stores []*raftboltdb.BoltStore
	trans  []*raft.NetworkTransport
	cmd    []byte
}

// startRawRaft starts n nodes in a new temporary directory and waits up to
// timeout for one of them to lead.
func startRawRaft(n int, timeout time.Duration) (_ *rawRaft, err error) {
	dir, err := os.MkdirTemp("", "loom-bench-raft-")
	if err != nil {
		return nil, err
	}
	// The size of the command durable-add's journal append sends to
	// Raft: actor key, token, seq and one entry with its payload.
	rr := &rawRaft{dir: dir, cmd: make([]byte, 128)}
	defer func() {
		if err != nil {
			rr.close()
		}
	}()
	var servers []raft.Server
	// Every node reports leader changes here, so that the wait for the
	// first leader wakes on the event.
	observed := make(chan raft.Observation, 3*n)
	for i := range n {
		ndir := filepath.Join(dir, fmt.Sprintf("node-%d", i))
		if err := os.MkdirAll(ndir, 0o700); err != nil {
			return nil, err
		}
		store, err := raftboltdb.NewBoltStore(filepath.Join(ndir, "raft.db"))
		if err != nil {
			return nil, err
		}
		rr.stores = append(rr.stores, store)
		snaps, err := raft.NewFileSnapshotStore(ndir, 1, io.Discard)
		if err != nil {
			return nil, err
		}
		trans, err := raft.NewTCPTransport("127.0.0.1:0", nil, 3, 10*time.Second, io.Discard)
		if err != nil {
			return nil, err
		}
		rr.trans = append(rr.trans, trans)
		cfg := raft.DefaultConfig()
		cfg.LocalID = raft.ServerID(fmt.Sprintf("node-%d", i))
		cfg.Logger = hclog.NewNullLogger()
		fsm := &countFSM{}
		node, err := raft.NewRaft(cfg, fsm, store, store, snaps, trans)
		if err != nil {
			return nil, err
		}
		node.RegisterObserver(raft.NewObserver(observed, false, func(o *raft.Observation) bool {
			_, ok := o.Data.(raft.LeaderObservation)
			return ok
		}))
		rr.nodes = append(rr.nodes, node)
		rr.fsms = append(rr.fsms, fsm)
		servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: cfg.LocalID, Address: trans.LocalAddr()})
	}
	if err := rr.nodes[0].BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	for rr.leader() == nil {
		select {
		case <-observed:
		case <-t.C:
			return nil, fmt.Errorf("no raft leader after %v", timeout)
		}
	}
	return rr, nil
}

// leader returns the node that leads, nil if none does.
func (rr *rawRaft) leader() *raft.Raft {
	for _, n := range rr.nodes {
		if n.State() == raft.Leader {
			return n
		}
	}
	return nil
}

// apply commits one command through the leader.
func (rr *rawRaft) apply() error {
	l := rr.leader()
	if l == nil {
		return raft.ErrNotLeader
	}
	return l.Apply(rr.cmd, 0).Error()
}

// close shuts every node down, closes the transports' pooled connections
// (as raftlock.Store.Close does: Shutdown leaves them to the garbage
// collector) and removes the directory.
func (rr *rawRaft) close() {
	var errs []error
	for _, n := range rr.nodes {
		errs = append(errs, n.Shutdown().Error())
	}
	for _, t := range rr.trans {
		t.CloseStreams()
		errs = append(errs, t.Close())
	}
	for _, s := range rr.stores {
		errs = append(errs, s.Close())
	}
	errs = append(errs, os.RemoveAll(rr.dir))
	if err := errors.Join(errs...); err != nil {
		fmt.Fprintf(os.Stderr, "loom-bench: closing the raft baseline: %v\n", err)
	}
}

// countFSM counts the commands it applies.
type countFSM struct{ n atomic.Uint64 }

func (f *countFSM) Apply(*raft.Log) any { f.n.Add(1); return nil }

func (f *countFSM) Snapshot() (raft.FSMSnapshot, error) { return countSnapshot(f.n.Load()), nil }

func (f *countFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var b [8]byte
	if _, err := io.ReadFull(rc, b[:]); err != nil {
		return err
	}
	f.n.Store(binary.BigEndian.Uint64(b[:]))
	return nil
}

type countSnapshot uint64

func (s countSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(binary.BigEndian.AppendUint64(nil, uint64(s))); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (countSnapshot) Release() {}
