package raftlock_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/raftlock"
)

// A one-node cluster: open, bootstrap, then use the Store as coordinator
// and journal. A node of a larger cluster also sets Config.Forwarder, and
// only one node bootstraps (or node/ adds the others with AddVoter).
func Example() {
	dir, err := os.MkdirTemp("", "raftlock-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	cfg := raftlock.FastConfig()
	cfg.NodeID = "node-1"
	cfg.DataDir = dir
	cfg.BindAddr = "127.0.0.1:0"
	s, err := raftlock.Open(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	if !s.HasState() {
		if err := s.Bootstrap([]raftlock.Server{s.LocalServer()}); err != nil {
			log.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Sync(ctx); err != nil { // waits for a leader, here this node
		log.Fatal(err)
	}

	session, err := s.CreateSession(ctx, "node-1", 10*time.Second)
	if err != nil {
		log.Fatal(err)
	}
	token, err := s.Acquire(ctx, session, "counter/c1")
	if err != nil {
		log.Fatal(err)
	}
	tail, err := s.Append(ctx, "counter/c1", token, 0, []journal.Entry{{Kind: journal.KindInvocation, Method: "Add", Payload: []byte("+1")}})
	if err != nil {
		log.Fatal(err)
	}
	entries, err := s.Read(ctx, "counter/c1", 0)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("token", token, "tail", tail, "read", len(entries), entries[0].Method)
	// Output: token 1 tail 1 read 1 Add
}
