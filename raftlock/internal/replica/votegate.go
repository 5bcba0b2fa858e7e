package replica

import (
	"fmt"
	"sync/atomic"

	"github.com/hashicorp/raft"
)

// voteGate sits between the Raft transport and Raft: it answers vote and
// pre-vote requests itself, refused, while this server is not in its own
// latest configuration and Config.VoteGate does not allow it; everything
// else passes through.
//
// hashicorp/raft counts a vote for the server it asked, by address, not
// for the server that answered, and a server with an empty configuration
// grants votes to anyone whose log is as long as its own (any log, when
// its own is empty). So a node restarted on a wiped data dir, listening
// where a voter used to, would vote as that voter with none of the entries
// that voter acknowledged: a lagging candidate could win with that vote
// and overwrite committed entries. A server that is in its own
// configuration received it from a leader's log, after every entry
// committed before it was added, and votes by Raft's rules.
type voteGate struct {
	raft.Transport
	pre   raft.WithPreVote
	close raft.WithClose
	allow func() bool
	id    raft.ServerID
	out   chan raft.RPC
	done  <-chan struct{}

	r       atomic.Pointer[raft.Raft]
	joined  atomic.Bool
	refused atomic.Uint64
}

var (
	_ raft.WithPreVote = (*voteGate)(nil)
	_ raft.WithClose   = (*voteGate)(nil)
)

func newVoteGate(t raft.Transport, id raft.ServerID, allow func() bool, done <-chan struct{}) (*voteGate, error) {
	pre, ok := t.(raft.WithPreVote)
	if !ok {
		return nil, fmt.Errorf("VoteGate needs a transport with pre-vote (%T has none)", t)
	}
	cl, ok := t.(raft.WithClose)
	if !ok {
		return nil, fmt.Errorf("VoteGate needs a transport with Close (%T has none)", t)
	}
	g := &voteGate{Transport: t, pre: pre, close: cl, allow: allow, id: id, out: make(chan raft.RPC), done: done}
	return g, nil
}

// run passes RPCs from the transport to Raft until done is closed.
func (g *voteGate) run() {
	in := g.Transport.Consumer()
	for {
		select {
		case rpc := <-in:
			if g.answer(rpc) {
				continue
			}
			select {
			case g.out <- rpc:
			case <-g.done:
				return
			}
		case <-g.done:
			return
		}
	}
}

// answer refuses rpc if it is a vote or pre-vote this server may not
// grant, and reports whether it did.
func (g *voteGate) answer(rpc raft.RPC) bool {
	var term uint64
	switch req := rpc.Command.(type) {
	case *raft.RequestVoteRequest:
		term = req.Term
	case *raft.RequestPreVoteRequest:
		term = req.Term
	default:
		return false
	}
	if g.mayVote() {
		return false
	}
	g.refused.Add(1)
	hdr := raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(g.id), Addr: g.Transport.EncodePeer(g.id, g.Transport.LocalAddr())}
	switch rpc.Command.(type) {
	case *raft.RequestVoteRequest:
		rpc.Respond(&raft.RequestVoteResponse{RPCHeader: hdr, Term: term}, nil)
	default:
		rpc.Respond(&raft.RequestPreVoteResponse{RPCHeader: hdr, Term: term}, nil)
	}
	return true
}

// mayVote: this server is in its own latest configuration (for good, once
// seen), or the gate allows a server outside it to vote.
func (g *voteGate) mayVote() bool {
	if g.joined.Load() {
		return true
	}
	if r := g.r.Load(); r != nil {
		for _, s := range r.GetConfiguration().Configuration().Servers {
			if s.ID == g.id {
				g.joined.Store(true)
				return true
			}
		}
	}
	return g.allow()
}

func (g *voteGate) Consumer() <-chan raft.RPC { return g.out }

func (g *voteGate) RequestPreVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	return g.pre.RequestPreVote(id, target, args, resp)
}

func (g *voteGate) Close() error { return g.close.Close() }
