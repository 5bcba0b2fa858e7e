package cluster

import (
	"encoding/json"
	"fmt"

	"github.com/hashicorp/memberlist"
)

// MaxMetaSize is the largest encoded Meta memberlist will carry
// (memberlist.MetaMaxSize, 512 bytes). Config.Validate and UpdateMeta check
// the encoding, including the room this package reserves for its own
// leave-intent flag, against it.
const MaxMetaSize = memberlist.MetaMaxSize

// Meta is what a node tells the others about itself, carried in memberlist's
// node metadata. It is encoded as JSON; the encoding must fit MaxMetaSize.
type Meta struct {
	// NodeID is the node's id, the same as Config.NodeID (which fills it
	// in when it is empty).
	NodeID string `json:"id"`
	// GRPCAddr is the host:port of the node's gRPC server (actor calls,
	// coordinator forwarding, topology).
	GRPCAddr string `json:"grpc,omitempty"`
	// RaftAddr is the host:port of the node's Raft transport.
	RaftAddr string `json:"raft,omitempty"`
	// RaftID is the node's Raft server id, which its data dir decides: a
	// node restarted with a wiped data dir comes back under a new one.
	RaftID string `json:"rid,omitempty"`
	// RaftReady says the node's Raft server has caught up with the
	// leader's log since it started, so it may be made a voter.
	RaftReady bool `json:"rready,omitempty"`
	// Leads has bit g set for each Raft group g the node leads, with
	// several groups: how nodes outside a group find its leader.
	Leads uint64 `json:"leads,omitempty"`
	// ReadyGroups has bit g set once the node's replica of Raft group g
	// has caught up with its leader since the node started (with several
	// groups on some of the nodes each): the group's leader waits for it
	// before it makes the node a voter of g.
	ReadyGroups uint64 `json:"gready,omitempty"`
	// RaftState says the node had Raft state (a log, a snapshot, a vote)
	// when it started: it belongs to a cluster that exists.
	RaftState bool `json:"rstate,omitempty"`
	// HTTPAddr is the host:port of the node's HTTP server (/health,
	// /metrics, the JSON gateway).
	HTTPAddr string `json:"http,omitempty"`
	// Version is the node's software version, free-form.
	Version string `json:"version,omitempty"`
}

// wireMeta is Meta as gossiped: the public fields plus the leave intent that
// lets other nodes tell a graceful leave (StateLeft) from a failure
// (StateDead). Unknown fields are ignored when decoding, so fields can be
// added later without breaking older nodes.
type wireMeta struct {
	Meta
	Leaving bool `json:"leaving,omitempty"`
}

func encodeMeta(m Meta, leaving bool) ([]byte, error) {
	b, err := json.Marshal(wireMeta{Meta: m, Leaving: leaving})
	if err != nil {
		return nil, fmt.Errorf("cluster: encode meta: %w", err)
	}
	return b, nil
}

func decodeMeta(b []byte) (wireMeta, error) {
	var w wireMeta
	if len(b) == 0 {
		return w, fmt.Errorf("cluster: node has no metadata")
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return w, fmt.Errorf("cluster: decode meta: %w", err)
	}
	return w, nil
}

// checkMetaSize returns an error wrapping ErrMetaTooLarge if m, encoded with
// the leave intent set and every group bit set (the larger form), does not
// fit MaxMetaSize.
func checkMetaSize(m Meta) error {
	// The group bitmaps change while the node runs: check room for the
	// longest they can be.
	m.Leads, m.ReadyGroups = ^uint64(0), ^uint64(0)
	b, err := encodeMeta(m, true)
	if err != nil {
		return err
	}
	if len(b) > MaxMetaSize {
		return fmt.Errorf("%w: encoded meta is %d bytes, memberlist carries at most %d (including %d reserved by this package)",
			ErrMetaTooLarge, len(b), MaxMetaSize, len(`,"leaving":true`))
	}
	return nil
}
