// Package smtest drives raftlock's state machines (locksm, journalsm) in
// tests, without Raft or a network: Gen makes random command sequences
// that reach the rules' edges (lapsed sessions, held locks, stale tokens,
// wrong seqs, stale stamps), and a Replica applies them over a kv.Mem the
// way raftlock's fsm applies them over its overlay. It is imported by
// tests only.
package smtest

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/loom-mesh/loom/internal/kv"
	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/lock"
	"github.com/loom-mesh/loom/raftlock/internal/journalsm"
	"github.com/loom-mesh/loom/raftlock/internal/locksm"
)

// Op names a command of the state machines.
type Op uint8

const (
	CreateSession Op = iota + 1
	Renew
	DestroySession
	EndOwner
	Acquire
	Release
	Reap
	LeaderStart
	Append
	SaveSnapshot
	Truncate
)

var opNames = [...]string{CreateSession: "create-session", Renew: "renew", DestroySession: "destroy-session",
	EndOwner: "end-owner", Acquire: "acquire", Release: "release", Reap: "reap", LeaderStart: "leader-start",
	Append: "append", SaveSnapshot: "save-snapshot", Truncate: "truncate"}

func (o Op) String() string { return opNames[o] }

// Cmd is one command with the leader's stamp it is applied at. Which
// fields are set depends on Op, as in raftlock's command.
type Cmd struct {
	Op      Op
	Stamp   int64 // UnixNano; may be behind the clock (a new leader's clock)
	Owner   string
	TTL     int64
	Session lock.SessionID // Acquire, Release, Renew, DestroySession; EndOwner: the one to keep
	Key     string         // lock key or actor
	Token   uint64
	Seq     uint64   // Append: expected seq; SaveSnapshot: its seq; Truncate: through
	Records [][]byte // Append: entry records; SaveSnapshot: one snapshot record
}

func (c Cmd) String() string {
	return fmt.Sprintf("%v@%d owner=%q ttl=%d session=%q key=%q token=%d seq=%d records=%d",
		c.Op, c.Stamp, c.Owner, c.TTL, c.Session, c.Key, c.Token, c.Seq, len(c.Records))
}

// Result is a command's outcome: Value is the token (Acquire), the tail
// (Append) or the count (EndOwner), Session the id CreateSession made, Rule
// the rule violation.
type Result struct {
	Value   uint64
	Session lock.SessionID
	Rule    error
}

func (r Result) String() string {
	return fmt.Sprintf("value=%d session=%q rule=%v", r.Value, r.Session, r.Rule)
}

// Replica is one copy of the state: the buckets, the lock counters and the
// clock, which is the largest stamp applied so far (raftlock keeps the
// last two in its meta record).
type Replica struct {
	Mem      *kv.Mem
	Counters locksm.Counters
	Clock    int64
}

// NewReplica returns an empty replica whose clock starts at start.
func NewReplica(start int64) *Replica { return &Replica{Mem: kv.NewMem(), Clock: start} }

// Locks returns the lock machine over r.
func (r *Replica) Locks() *locksm.Machine {
	m := r.Mem
	return locksm.New(locksm.Buckets{Sessions: m.Bucket("sessions"), Expiry: m.Bucket("expiry"),
		Held: m.Bucket("held"), Locks: m.Bucket("locks")}, &r.Counters)
}

// Journals returns the journal machine over r, fenced by locks.
func (r *Replica) Journals(locks journalsm.Locks) *journalsm.Machine {
	m := r.Mem
	return journalsm.New(journalsm.Buckets{Actors: m.Bucket("actors"), Log: m.Bucket("log"),
		Snapshots: m.Bucket("snapshots")}, locks)
}

// Now is the clock c would be applied at: the clock never goes back.
func (r *Replica) Now(c Cmd) int64 { return max(r.Clock, c.Stamp) }

// Apply applies c as raftlock's fsm does: the clock moves to c's stamp
// unless it is behind, and c goes to the machine it belongs to. err is
// fatal (a storage failure or a corrupt record).
func (r *Replica) Apply(c Cmd) (Result, error) {
	prev := r.Clock
	r.Clock = r.Now(c)
	now := r.Clock
	locks := r.Locks()
	journals := r.Journals(locks)
	var res Result
	var err error
	switch c.Op {
	case CreateSession:
		res.Session, res.Rule, err = locks.CreateSession(now, c.Owner, c.TTL, c.Session)
	case Renew:
		res.Rule, err = locks.Renew(now, c.Session)
	case DestroySession:
		err = locks.DestroySession(c.Session)
	case EndOwner:
		res.Value, err = locks.EndOwner(c.Owner, c.Session)
	case Acquire:
		res.Value, res.Rule, err = locks.Acquire(now, c.Session, c.Key, journals)
	case Release:
		res.Rule, err = locks.Release(now, c.Session, c.Key)
	case Reap:
		err = locks.Reap(now)
	case LeaderStart:
		err = locks.LeaderStart(prev, now)
	case Append:
		res.Value, res.Rule, err = journals.Append(now, c.Key, c.Token, c.Seq, c.Records)
	case SaveSnapshot:
		res.Rule, err = journals.SaveSnapshot(now, c.Key, c.Token, c.Seq, c.Records[0])
	case Truncate:
		res.Rule, err = journals.Truncate(now, c.Key, c.Token, c.Seq)
	default:
		err = fmt.Errorf("unknown op %d", c.Op)
	}
	return res, err
}

// Snapshot returns a copy of r that shares nothing with it.
func (r *Replica) Snapshot() *Replica {
	return &Replica{Mem: r.Mem.Clone(), Counters: r.Counters, Clock: r.Clock}
}

// Dump describes the whole state canonically: equal dumps, equal states.
func (r *Replica) Dump() string {
	return fmt.Sprintf("clock %d token %d sessions %d\n%s", r.Clock, r.Counters.Token, r.Counters.Sessions, r.Mem.Dump())
}

// Keys are the lock keys and actors Gen uses: few, so commands collide.
var Keys = []string{"t/a", "t/b", "t/c", "t/d"}

var owners = []string{"n1", "n2", "n3"}

// Gen makes random commands. It learns what they did from Observe (the
// sessions created, the tokens granted, the tails and snapshots), so that
// most commands are plausible and many meet a rule's edge: a token one
// below or above the holder's, the tail or one off it, a session that has
// just lapsed.
type Gen struct {
	rng      *rand.Rand
	stamp    int64 // the latest stamp issued
	sessions []lock.SessionID
	tokens   []uint64 // granted, in order
	grants   map[string]grant
	tails    map[string]uint64
	snaps    map[string]uint64
}

// grant is the last grant Gen saw on a key.
type grant struct {
	session lock.SessionID
	token   uint64
}

// NewGen returns a generator seeded with seed whose stamps start at start.
func NewGen(seed uint64, start int64) *Gen {
	return &Gen{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), stamp: start,
		grants: map[string]grant{}, tails: map[string]uint64{}, snaps: map[string]uint64{}}
}

// weights of the ops, by Op.
var weights = [...]int{CreateSession: 6, Renew: 15, DestroySession: 2, EndOwner: 2, Acquire: 15, Release: 5,
	Reap: 3, LeaderStart: 2, Append: 30, SaveSnapshot: 6, Truncate: 5}

// Next returns the next command.
func (g *Gen) Next() Cmd {
	c := Cmd{Op: g.op(), Stamp: g.nextStamp()}
	switch c.Op {
	case CreateSession:
		c.Owner = owners[g.rng.IntN(len(owners))]
		c.TTL = []int64{int64(time.Second), 5 * int64(time.Second), 20 * int64(time.Second)}[g.rng.IntN(3)]
		if g.rng.IntN(40) == 0 {
			c.Owner = ""
		}
	case Renew, DestroySession:
		c.Session = g.session()
	case EndOwner:
		c.Owner, c.Session = owners[g.rng.IntN(len(owners))], g.session()
	case Acquire:
		c.Session, c.Key = g.session(), g.key()
	case Release:
		c.Session, c.Key = g.session(), g.key()
		if gr, ok := g.grants[c.Key]; ok && g.rng.IntN(2) == 0 {
			c.Session = gr.session
		}
	case Append:
		c.Key = g.key()
		c.Token = g.token(c.Key)
		tail := g.tails[c.Key]
		c.Seq = g.near(tail)
		n := 1 + g.rng.IntN(3)
		if g.rng.IntN(40) == 0 {
			n = 0
		}
		for i := range n {
			e := journal.Entry{Seq: c.Seq + uint64(i) + 1, Actor: c.Key, Token: c.Token, Kind: journal.KindInvocation,
				Method: "m", Payload: []byte{byte(g.rng.IntN(256))}}
			c.Records = append(c.Records, journal.MarshalEntry(e))
		}
	case SaveSnapshot:
		c.Key = g.key()
		c.Token = g.token(c.Key)
		c.Seq = g.rng.Uint64N(g.tails[c.Key] + 2)
		c.Records = [][]byte{journal.MarshalSnapshot(journal.Snapshot{Seq: c.Seq, Token: c.Token, Data: []byte("s")})}
	case Truncate:
		c.Key = g.key()
		c.Token = g.token(c.Key)
		c.Seq = g.near(g.snaps[c.Key])
	}
	return c
}

func (g *Gen) op() Op {
	total := 0
	for _, w := range weights {
		total += w
	}
	n := g.rng.IntN(total)
	for op, w := range weights {
		if n < w {
			return Op(op)
		}
		n -= w
	}
	panic("unreachable")
}

// nextStamp mostly moves on by up to 0.5 s (or not at all, as commands in
// one Raft entry share a stamp); sometimes it is behind (a new leader
// whose clock is late) or jumps far ahead (sessions lapse).
func (g *Gen) nextStamp() int64 {
	switch n := g.rng.IntN(100); {
	case n < 25:
		return g.stamp
	case n < 33:
		return g.stamp - g.rng.Int64N(int64(2*time.Second))
	case n < 35:
		g.stamp += 12 * int64(time.Second)
	default:
		g.stamp += g.rng.Int64N(int64(500 * time.Millisecond))
	}
	return g.stamp
}

func (g *Gen) session() lock.SessionID {
	if len(g.sessions) == 0 || g.rng.IntN(12) == 0 {
		return "s999.0" // never created
	}
	// Recent sessions more often: old ones have mostly lapsed.
	n := len(g.sessions)
	return g.sessions[max(0, n-1-g.rng.IntN(min(n, 6)))]
}

func (g *Gen) key() string {
	if g.rng.IntN(50) == 0 {
		return ""
	}
	return Keys[g.rng.IntN(len(Keys))]
}

// token picks a token for key near the edges: mostly the key's latest
// grant, else one below or above it, another grant, or 0.
func (g *Gen) token(key string) uint64 {
	if len(g.tokens) == 0 {
		return uint64(g.rng.IntN(2))
	}
	last := g.tokens[len(g.tokens)-1]
	if gr, ok := g.grants[key]; ok {
		last = gr.token
	}
	switch g.rng.IntN(12) {
	case 0:
		return last - 1
	case 1:
		return last + 1
	case 2, 3:
		return g.tokens[g.rng.IntN(len(g.tokens))]
	case 4:
		return 0
	default:
		return last
	}
}

// near returns v mostly, else one off it.
func (g *Gen) near(v uint64) uint64 {
	switch g.rng.IntN(10) {
	case 0:
		return v + 1
	case 1:
		if v > 0 {
			return v - 1
		}
	}
	return v
}

// Observe tells g what c did.
func (g *Gen) Observe(c Cmd, r Result) {
	if r.Rule != nil {
		return
	}
	switch c.Op {
	case CreateSession:
		g.sessions = append(g.sessions, r.Session)
	case Acquire:
		if !slices.Contains(g.tokens, r.Value) {
			g.tokens = append(g.tokens, r.Value)
		}
		g.grants[c.Key] = grant{c.Session, r.Value}
	case Append:
		g.tails[c.Key] = r.Value
	case SaveSnapshot:
		g.snaps[c.Key] = c.Seq
	}
}
