package chaos

import (
	"strings"
	"testing"
	"time"

	"github.com/loom-mesh/loom/config"
)

func kvOp(kind, field string, call, ret int64, outcome Outcome, f func(*Op)) Op {
	o := Op{Actor: "kv/k", Kind: kind, Field: field, Call: call * int64(time.Millisecond), Return: ret * int64(time.Millisecond), Outcome: outcome}
	if f != nil {
		f(&o)
	}
	return o
}

func put(k string, v, call, ret int64, outcome Outcome) Op {
	return kvOp(OpKVPut, k, call, ret, outcome, func(o *Op) { o.Value = v })
}

func del(k string, deleted bool, call, ret int64, outcome Outcome) Op {
	return kvOp(OpKVDelete, k, call, ret, outcome, func(o *Op) { o.Swapped = deleted })
}

func kget(k string, out, call, ret int64) Op {
	return kvOp(OpKVGet, k, call, ret, OK, func(o *Op) { o.Out = out })
}

func list(call, ret int64, keys ...string) Op {
	return kvOp(OpKVList, "", call, ret, OK, func(o *Op) { o.Listed = keys })
}

func TestKVLinearizability(t *testing.T) {
	cases := []struct {
		name  string
		ops   []Op
		legal bool
	}{
		{"put, get, list", []Op{put("a", 1, 0, 10, OK), put("c", 2, 20, 30, OK), kget("a", 1, 40, 50), list(60, 70, "a", "c")}, true},
		{"delete then list", []Op{put("a", 1, 0, 10, OK), del("a", true, 20, 30, OK), list(40, 50), kget("a", 0, 60, 70)}, true},
		{"list misses an acknowledged put", []Op{put("a", 1, 0, 10, OK), put("b", 2, 20, 30, OK), list(40, 50, "a")}, false},
		{"list shows a deleted key", []Op{put("a", 1, 0, 10, OK), del("a", true, 20, 30, OK), list(40, 50, "a")}, false},
		{"delete finds a key never put", []Op{del("b", true, 0, 10, OK)}, false},
		{"get goes back to an overwritten value", []Op{put("a", 1, 0, 10, OK), put("a", 2, 20, 30, OK), kget("a", 1, 40, 50)}, false},
		{"concurrent put may or may not be listed", []Op{put("a", 1, 0, 100, OK), list(10, 20), list(30, 40, "a")}, true},
		{"unknown put observed, then lost", []Op{put("a", 1, 0, 10, Unknown), kget("a", 1, 20, 30), list(40, 50)}, false},
		{"unknown delete may apply", []Op{put("a", 1, 0, 10, OK), del("a", false, 20, 30, Unknown), list(40, 50)}, true},
		{"failed put must not appear", []Op{put("a", 1, 0, 10, Failed), list(20, 30, "a")}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, v := CheckLinearizable(c.ops, nil, 10*time.Second, "")
			if len(res) != 1 {
				t.Fatalf("results %v", res)
			}
			if legal := len(v) == 0; legal != c.legal {
				t.Fatalf("legal=%v (%s), want %v; violations %v", legal, res[0].Result, c.legal, v)
			}
		})
	}
}

func TestPartitionAvailability(t *testing.T) {
	ms := func(x int64) int64 { return x * int64(time.Millisecond) }
	f := FaultEvent{Kind: PartitionMinority, Start: ms(1000), Heal: ms(5000), Majority: []string{"node-1", "node-2"}, Minority: []string{"node-3"}}
	var ops []Op
	for at := int64(0); at < 6000; at += 100 {
		// writes through node-1 commit, except from 1000 to 2500 ms
		o := Op{Actor: "register/h", Kind: OpWrite, Via: "http:node-1", Call: ms(at), Return: ms(at + 10), Outcome: OK}
		if at >= 1000 && at < 2500 {
			o.Outcome = Unknown
		}
		ops = append(ops, o)
		// reads through node-3 fail; one in four through node-2 fails
		ops = append(ops, Op{Actor: "register/h", Kind: OpRead, Via: "http:node-3", Call: ms(at), Return: ms(at + 5), Outcome: Failed})
		r := Op{Actor: "register/h", Kind: OpRead, Via: "http:node-2", Call: ms(at), Return: ms(at + 5), Outcome: OK}
		if at%400 == 0 {
			r.Outcome = Failed
		}
		ops = append(ops, r)
		// the embedded client's calls belong to no side
		ops = append(ops, Op{Actor: "register/h", Kind: OpRead, Via: "client", Call: ms(at), Return: ms(at + 5), Outcome: OK})
	}
	ps := MeasurePartitions(ops, []FaultEvent{{Kind: KillOwner, Start: 0, Heal: ms(500)}, f})
	if len(ps) != 1 {
		t.Fatalf("partitions %+v, want the one with a majority", ps)
	}
	p := ps[0]
	if p.Fault != 1 || p.Majority.Attempted != 80 || p.Majority.OK != 55 || p.Minority.Attempted != 40 || p.Minority.OK != 0 {
		t.Fatalf("sides %+v", p)
	}
	// the first write acknowledged is the one invoked at 2500 ms
	if got := time.Duration(p.NoCommit); got != 1510*time.Millisecond {
		t.Fatalf("longest no-commit %v, want 1.51s", got)
	}
	if got := longestGap(nil, ms(10), ms(30)); got != 20*time.Millisecond {
		t.Fatalf("nothing at all: %v", got)
	}
}

func TestLeaderPause(t *testing.T) {
	ms := func(x int64) int64 { return x * int64(time.Millisecond) }
	f := FaultEvent{Kind: PauseLeaderBurst, Start: ms(1000), Heal: ms(6000),
		Burst: map[string][]string{"node-2": {"register/a"}, "node-3": {"register/b"}}}
	w := func(actor string, call, ret int64, o Outcome) Op {
		return Op{Actor: actor, Kind: OpWrite, Call: ms(call), Return: ms(ret), Outcome: o}
	}
	ops := []Op{
		w("register/a", 900, 1100, OK),       // invoked before the pause: not a new commit
		w("register/a", 1010, 3010, Unknown), // stuck
		w("register/a", 1300, 1800, OK),      // node-2 commits 800 ms after the stop
		w("register/b", 1020, 1500, Failed),
		w("register/b", 1020, 1600, OK), // node-3 600 ms
		w("register/c", 1010, 1020, OK), // not a burst actor
	}
	lps := MeasureLeaderPause(ops, []FaultEvent{f}, 1600*time.Millisecond)
	if len(lps) != 1 || !lps[0].Recovered || lps[0].Longest != Dur(800*time.Millisecond) ||
		lps[0].Stall["node-3"] != Dur(600*time.Millisecond) {
		t.Fatalf("leader pause %+v", lps)
	}
	if v := CheckLeaderPause(lps); len(v) != 0 {
		t.Fatalf("within the bound: %v", v)
	}
	lps = MeasureLeaderPause(ops, []FaultEvent{f}, 700*time.Millisecond)
	if v := CheckLeaderPause(lps); len(v) != 1 || !strings.Contains(v[0].Detail, "node-2 800ms") {
		t.Fatalf("over the bound: %v", v)
	}
	// node-3 never commits while the leader is stopped
	lps = MeasureLeaderPause(ops[:4], []FaultEvent{f}, time.Hour)
	if v := CheckLeaderPause(lps); lps[0].Recovered || lps[0].Stall["node-3"] != Dur(5*time.Second) || len(v) != 1 {
		t.Fatalf("no commit at all must fail: %+v %v", lps, v)
	}
}

func TestBoundsFromConfig(t *testing.T) {
	cfg := config.Default()
	cfg.Coordination.SessionTTL = 3 * time.Second
	cfg.Cluster.Gossip = config.GossipLocal
	b := DeriveBounds(cfg, 3, 2*time.Second)
	// local preset: Raft heartbeat and election 200 ms; memberlist's
	// local probe 1 s, its timeout 200 ms, suspicion 3 x 1 s for 3 nodes
	want := Bounds{Coordination: cfg.Coordination.Backend, SessionTTL: Dur(3 * time.Second), Election: Dur(600 * time.Millisecond),
		FailureDetection: Dur(4200 * time.Millisecond), Margin: Dur(3 * time.Second),
		Recovery: Dur(10800 * time.Millisecond), LeaderPause: Dur(1600 * time.Millisecond),
		FollowerLag: Dur(150 * time.Millisecond)}
	if b != want {
		t.Fatalf("bounds %+v, want %+v", b, want)
	}
	// on Redis nothing is elected: recovery is the TTL, gossip's failure
	// detection and the margin
	rcfg := cfg
	rcfg.Coordination.Backend, rcfg.Journal.Backend = config.CoordinationRedis, config.JournalRedis
	rb := DeriveBounds(rcfg, 3, 2*time.Second)
	if rb.Election != 0 || rb.Recovery != Dur(10200*time.Millisecond) || rb.Coordination != config.CoordinationRedis {
		t.Fatalf("redis bounds %+v", rb)
	}
	if s := rb.String(); !strings.Contains(s, "recovery 10.2s = session TTL 3s + failure detection 4.2s + margin 3s") || !strings.Contains(s, "no election") {
		t.Fatalf("redis bounds read %q", s)
	}
	// ten nodes suspect for longer; the LAN preset elects slower
	cfg.Cluster.Gossip = config.GossipLAN
	b = DeriveBounds(cfg, 10, 2*time.Second)
	if b.Election != Dur(3*time.Second) || b.FailureDetection <= Dur(4200*time.Millisecond) {
		t.Fatalf("LAN bounds %+v", b)
	}
	if s := b.String(); !strings.Contains(s, "session TTL 3s") || !strings.Contains(s, "election 3s + 1s") {
		t.Fatalf("bounds read %q", s)
	}
}
