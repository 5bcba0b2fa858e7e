package chaos

import (
	"strings"
	"testing"
	"time"
)

// dump is node's dump of actor "register/r" with entries (seq, token,
// key) and the lock held by holder (active there).
func dump(node string, holder string, entries ...[3]any) journalDump {
	d := journalDump{Node: node, Actor: actor, Session: "s-" + node, Active: node == holder}
	for _, e := range entries {
		d.Entries = append(d.Entries, dumpEntry{Seq: uint64(e[0].(int)), Kind: "invocation", Method: "write",
			Token: uint64(e[1].(int)), IdempotencyKey: e[2].(string)})
	}
	if n := len(d.Entries); n > 0 {
		d.Tail.Seq, d.Tail.Token = d.Entries[n-1].Seq, d.Entries[n-1].Token
	}
	if holder != "" {
		d.Lock = &dumpLock{Session: "s-" + holder, Owner: holder, Token: d.Tail.Token}
	}
	return d
}

func keyed(o Op, key string) Op { o.Key = key; return o }

// The journal audit must catch each anomaly it looks for.
func TestJournalAudit(t *testing.T) {
	ops := []Op{
		keyed(write(1, 0, 10, OK), "k1"),
		keyed(write(2, 20, 30, OK), "k2"),
		keyed(write(3, 40, 50, Unknown), "k3"),
		keyed(write(4, 60, 70, Failed), "k4"),
		keyed(cas(2, 5, false, 80, 90, OK), "k5"), // no swap: no entry
	}
	good := []journalDump{
		dump("node-1", "node-1", [3]any{1, 3, "k1"}, [3]any{2, 3, "k2"}, [3]any{3, 5, "k3"}),
		dump("node-2", "node-1", [3]any{1, 3, "k1"}, [3]any{2, 3, "k2"}, [3]any{3, 5, "k3"}),
	}
	a, v := AuditJournals(ops, map[string][]journalDump{actor: good})
	if len(v) != 0 || a.Acked != 2 || a.Found != 2 || a.Entries != 3 || a.Locks != 1 {
		t.Fatalf("a good journal: %+v %v", a, v)
	}
	// A lock its holder keeps after evicting the actor is no orphan.
	kept := []journalDump{dump("node-1", "node-2", [3]any{1, 3, "k1"}, [3]any{2, 3, "k2"}), dump("node-2", "", [3]any{1, 3, "k1"}, [3]any{2, 3, "k2"})}
	kept[1].Kept = true
	if _, v := AuditJournals(ops[:2], map[string][]journalDump{actor: kept}); len(v) != 0 {
		t.Fatalf("a kept lock: %v", v)
	}
	for _, c := range []struct {
		name  string
		dumps []journalDump
		want  string
	}{
		{"acknowledged write lost", []journalDump{dump("node-1", "node-1", [3]any{1, 3, "k1"})}, "is not in the journal"},
		{"gap", []journalDump{dump("node-1", "node-1", [3]any{1, 3, "k1"}, [3]any{3, 3, "k2"})}, "gap or repeat"},
		{"token goes down", []journalDump{dump("node-1", "node-1", [3]any{1, 5, "k1"}, [3]any{2, 3, "k2"})}, "under token 3 after an entry under token 5"},
		{"failed op applied", []journalDump{dump("node-1", "node-1", [3]any{1, 3, "k1"}, [3]any{2, 3, "k2"}, [3]any{3, 3, "k4"})}, "failed definitely"},
		{"applied twice", []journalDump{dump("node-1", "node-1", [3]any{1, 3, "k1"}, [3]any{2, 3, "k2"}, [3]any{3, 3, "k2"})}, "twice"},
		{"phantom", []journalDump{dump("node-1", "node-1", [3]any{1, 3, "k1"}, [3]any{2, 3, "k2"}, [3]any{3, 3, "nobody"})}, "phantom"},
		{"replicas differ", []journalDump{good[0], dump("node-2", "node-1", [3]any{1, 3, "k1"}, [3]any{2, 3, "k2"})}, "replicas differ"},
		{"orphaned lock", []journalDump{dump("node-1", "node-2", [3]any{1, 3, "k1"}, [3]any{2, 3, "k2"}), dump("node-2", "", [3]any{1, 3, "k1"}, [3]any{2, 3, "k2"})}, "neither has it active nor keeps its lock"},
		{"orphaned lock a fast replica does not see", []journalDump{dump("node-1", "", [3]any{1, 3, "k1"}, [3]any{2, 3, "k2"}), dump("node-2", "node-9", [3]any{1, 3, "k1"}, [3]any{2, 3, "k2"})}, "not a member"},
		{"lock of a gone node", []journalDump{dump("node-1", "node-9", [3]any{1, 3, "k1"}, [3]any{2, 3, "k2"})}, "not a member"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, v := AuditJournals(ops, map[string][]journalDump{actor: c.dumps})
			found := false
			for _, x := range v {
				found = found || strings.Contains(x.Detail, c.want)
			}
			if !found {
				t.Fatalf("violations %v, want one saying %q", v, c.want)
			}
		})
	}
}

// The single-activation checker must catch a token granted twice and
// writes that go back in token, and measure overlaps.
func TestActivationChecker(t *testing.T) {
	base := time.Unix(1000, 0)
	at := func(ms int) int64 { return base.Add(time.Duration(ms) * time.Millisecond).UnixNano() }
	ev := func(ms int, node, kind string, token uint64, first uint64) activationEvent {
		return activationEvent{Time: at(ms), Node: node, PID: 1, Event: kind, Actor: actor, Token: token, First: first, Last: first}
	}
	good := []activationEvent{
		ev(0, "node-1", "acquired", 3, 0), ev(1, "node-1", "activated", 3, 0), ev(10, "node-1", "write", 3, 1),
		// node-1 is paused; node-2 takes over while node-1 still has it
		ev(100, "node-2", "acquired", 4, 0), ev(101, "node-2", "activated", 4, 0), ev(110, "node-2", "write", 4, 2),
		ev(150, "node-1", "fenced", 3, 0), ev(151, "node-1", "deactivated", 3, 0),
	}
	r, v := CheckActivations(good, nil, base.Add(time.Second))
	if len(v) != 0 {
		t.Fatalf("good log: %v", v)
	}
	if r.Overlaps != 1 || time.Duration(r.OverlapTotal) != 50*time.Millisecond || r.Fenced != 1 || r.Writes != 2 {
		t.Fatalf("report %+v", r)
	}
	// A killed node's activation ends at its death.
	deaths := map[string][]time.Time{"node-1": {base.Add(120 * time.Millisecond)}}
	r, _ = CheckActivations(good[:6], deaths, base.Add(time.Second))
	if time.Duration(r.OverlapTotal) != 19*time.Millisecond {
		t.Fatalf("overlap with node-1 killed at 120 ms: %v", time.Duration(r.OverlapTotal))
	}
	for _, c := range []struct {
		name   string
		events []activationEvent
		want   string
	}{
		{"token granted twice", append(good[:3:3], ev(100, "node-2", "acquired", 3, 0)), "granted to both"},
		{"two writers under one token", append(good[:3:3], ev(100, "node-2", "write", 3, 2)), "wrote under token 3"},
		{"write under an older token", append(good[:6:6], ev(120, "node-1", "write", 3, 3)), "after node-2 wrote under token 4"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, v := CheckActivations(c.events, nil, base.Add(time.Second))
			found := false
			for _, x := range v {
				found = found || strings.Contains(x.Detail, c.want)
			}
			if !found {
				t.Fatalf("violations %v, want one saying %q", v, c.want)
			}
		})
	}
}
