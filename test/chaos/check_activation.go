package chaos

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"time"
)

// ---- single activation (the nodes' activation logs) ----

// activationEvent is one line of a node's activation log (node's
// ChaosEvent; declared here so the suite does not depend on node).
type activationEvent struct {
	Time   int64  `json:"t"` // wall clock, ns since the epoch
	Node   string `json:"node"`
	PID    int    `json:"pid"`
	Event  string `json:"ev"`
	Actor  string `json:"actor"`
	Token  uint64 `json:"token"`
	First  uint64 `json:"first"`
	Last   uint64 `json:"last"`
	Reason string `json:"reason"`
}

// ReadActivationLog reads a node's activation log (missing: empty).
func ReadActivationLog(path string) ([]activationEvent, error) {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []activationEvent
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		var e activationEvent
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			// a kill -9 may cut the last line short
			continue
		}
		out = append(out, e)
	}
	return out, sc.Err()
}

// ActivationReport is the single-activation checker's summary.
type ActivationReport struct {
	Events      int `json:"events"`
	Activations int `json:"activations"`
	Writes      int `json:"writes"`
	Fenced      int `json:"fenced"` // writes the journal refused as fenced
	// Overlaps: windows in which two processes both had one actor
	// active (M1: allowed, fencing makes them harmless); their total and
	// longest.
	Overlaps       int `json:"overlaps"`
	OverlapTotal   Dur `json:"overlapTotal"`
	OverlapLongest Dur `json:"overlapLongest"`
	// LongestActor is the actor of the longest overlap.
	LongestActor string `json:"longestActor,omitempty"`
}

// interval is one activation of an actor by one process.
type interval struct {
	node       string
	pid        int
	start, end int64
}

// CheckActivations checks the nodes' activation logs (events) against
// single activation:
//
//   - no fencing token granted to two nodes for one actor (S2);
//   - no two nodes wrote an actor under the same token, and no write under
//     a token lower than one an earlier write (in seq order) used (S3);
//
// and measures how long two processes both had an actor active (M1).
// deaths[node] are the times the node's processes died (an activation
// still open then ended there); end closes what is open at the end.
func CheckActivations(events []activationEvent, deaths map[string][]time.Time, end time.Time) (ActivationReport, []Violation) {
	var r ActivationReport
	var out []Violation
	bad := func(actor, format string, args ...any) {
		out = append(out, Violation{Checker: "single-activation", Actor: actor, Detail: fmt.Sprintf(format, args...)})
	}
	r.Events = len(events)
	slices.SortStableFunc(events, func(a, b activationEvent) int { return cmpInt(a.Time, b.Time) })
	type tk struct {
		actor string
		token uint64
	}
	granted := map[tk]string{} // first node granted (actor, token)
	wrote := map[tk]string{}   // first node that wrote under (actor, token)
	type write struct {
		first uint64
		token uint64
		node  string
	}
	writesOf := map[string][]write{}
	open := map[string]map[string]*interval{} // actor → node/pid → open interval
	var closed = map[string][]interval{}
	deathAfter := func(node string, t int64) int64 {
		for _, d := range deaths[node] {
			if d.UnixNano() >= t {
				return d.UnixNano()
			}
		}
		return end.UnixNano()
	}
	closeOpen := func(actor, proc string, at int64) {
		if iv := open[actor][proc]; iv != nil {
			iv.end = at
			closed[actor] = append(closed[actor], *iv)
			delete(open[actor], proc)
		}
	}
	for _, e := range events {
		proc := fmt.Sprintf("%s/%d", e.Node, e.PID)
		switch e.Event {
		case "acquired", "activated":
			k := tk{e.Actor, e.Token}
			if n, ok := granted[k]; !ok {
				granted[k] = e.Node
			} else if n != e.Node {
				bad(e.Actor, "token %d granted to both %s and %s", e.Token, n, e.Node)
				granted[k] = e.Node // report each further node once
			}
			if e.Event == "activated" {
				r.Activations++
				if open[e.Actor] == nil {
					open[e.Actor] = map[string]*interval{}
				}
				closeOpen(e.Actor, proc, e.Time)
				open[e.Actor][proc] = &interval{node: e.Node, pid: e.PID, start: e.Time}
			}
		case "deactivated", "failed":
			closeOpen(e.Actor, proc, e.Time)
		case "write":
			r.Writes++
			k := tk{e.Actor, e.Token}
			if n, ok := wrote[k]; !ok {
				wrote[k] = e.Node
			} else if n != e.Node {
				bad(e.Actor, "both %s and %s wrote under token %d", n, e.Node, e.Token)
				wrote[k] = e.Node
			}
			writesOf[e.Actor] = append(writesOf[e.Actor], write{first: e.First, token: e.Token, node: e.Node})
		case "fenced":
			r.Fenced++
		}
	}
	for actor, ws := range writesOf {
		slices.SortStableFunc(ws, func(a, b write) int { return cmpInt(int64(a.first), int64(b.first)) })
		var high write
		for _, w := range ws {
			if w.token < high.token {
				bad(actor, "%s wrote seq %d under token %d after %s wrote under token %d", w.node, w.first, w.token, high.node, high.token)
			}
			if w.token > high.token {
				high = w
			}
		}
	}
	for actor, procs := range open {
		for proc, iv := range procs {
			closeOpen(actor, proc, deathAfter(iv.node, iv.start))
		}
	}
	for actor, ivs := range closed {
		n, total, longest := overlaps(ivs)
		r.Overlaps += n
		r.OverlapTotal += Dur(total)
		if Dur(longest) > r.OverlapLongest {
			r.OverlapLongest, r.LongestActor = Dur(longest), actor
		}
	}
	return r, out
}

// overlaps sums the time in which at least two of ivs (of different
// processes) were open, and counts the windows.
func overlaps(ivs []interval) (windows int, total, longest time.Duration) {
	type edge struct {
		t     int64
		delta int
	}
	var es []edge
	for _, iv := range ivs {
		if iv.end > iv.start {
			es = append(es, edge{iv.start, 1}, edge{iv.end, -1})
		}
	}
	slices.SortFunc(es, func(a, b edge) int {
		if c := cmpInt(a.t, b.t); c != 0 {
			return c
		}
		return a.delta - b.delta // ends before starts at the same instant
	})
	depth := 0
	var since int64
	for _, e := range es {
		prev := depth
		depth += e.delta
		switch {
		case prev < 2 && depth >= 2:
			since = e.t
		case prev >= 2 && depth < 2:
			d := time.Duration(e.t - since)
			windows++
			total += d
			longest = max(longest, d)
		}
	}
	return windows, total, longest
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
