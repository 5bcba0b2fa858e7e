package cluster

import (
	"fmt"
	"time"
)

// State is a member's state as this node sees it.
type State int

const (
	// StateAlive: the member answers probes (or has not yet been found
	// not to).
	StateAlive State = iota
	// StateSuspect: the member missed probes and may be declared dead.
	// memberlist v0.7.0 keeps suspicion internal (its public Node.State is
	// never filled in), so this version never reports it: a suspected
	// member shows as alive until memberlist declares it dead. The value
	// exists so that code switching on State is complete when it does.
	StateSuspect
	// StateDead: the member was declared failed by failure detection
	// (killed, crashed, partitioned away).
	StateDead
	// StateLeft: the member left gracefully (Leave or Close).
	StateLeft
)

func (s State) String() string {
	switch s {
	case StateAlive:
		return "alive"
	case StateSuspect:
		return "suspect"
	case StateDead:
		return "dead"
	case StateLeft:
		return "left"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Member is one node as this node sees it.
type Member struct {
	NodeID string
	Meta   Meta
	State  State
	// Addr is the member's gossip address, "ip:port".
	Addr string
	// Since is when this node saw the member enter State.
	Since time.Time
}

// EventType says what happened to a member.
type EventType int

const (
	// EventJoin: a member became alive (new, or back from dead or left).
	EventJoin EventType = iota + 1
	// EventLeave: a member is gone; Member.State says whether it left
	// gracefully (StateLeft) or failed (StateDead).
	EventLeave
	// EventUpdate: an alive member's Meta or address changed.
	EventUpdate
	// EventResync: the subscriber fell behind and events were dropped in
	// its place; Member is zero. Read Members or Alive to get the current
	// view, which includes every dropped change.
	EventResync
)

func (t EventType) String() string {
	switch t {
	case EventJoin:
		return "join"
	case EventLeave:
		return "leave"
	case EventUpdate:
		return "update"
	case EventResync:
		return "resync"
	}
	return fmt.Sprintf("EventType(%d)", int(t))
}

// Event is a change in membership, delivered by Subscribe.
type Event struct {
	Type   EventType
	Member Member
}
