package chaos

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// ---- availability per side of a partition ----

// SideAvailability counts one side's requests during a partition: the
// gateway calls made to that side's nodes (an embedded client's call is
// routed by the client, so it belongs to no side).
type SideAvailability struct {
	Nodes     []string `json:"nodes"`
	Attempted int      `json:"attempted"`
	OK        int      `json:"ok"`
}

// Rate is the share of OK requests (NaN-free: 0 when there were none).
func (s SideAvailability) Rate() float64 {
	if s.Attempted == 0 {
		return 0
	}
	return float64(s.OK) / float64(s.Attempted)
}

// PartitionAvailability is one partition's availability per side and the
// longest time in which nothing committed (no write invoked during the
// partition was acknowledged: the minority side cannot commit, so that is
// the time the majority side committed nothing).
type PartitionAvailability struct {
	Fault    int              `json:"fault"` // index into the timeline
	Kind     FaultKind        `json:"kind"`
	Majority SideAvailability `json:"majority"`
	Minority SideAvailability `json:"minority"`
	// NoCommit is the longest window of [start, heal) without an
	// acknowledged write invoked in it.
	NoCommit Dur `json:"longestNoCommit"`
}

// MeasurePartitions measures every partition of the timeline that has a
// majority side.
func MeasurePartitions(ops []Op, faults []FaultEvent) []PartitionAvailability {
	var out []PartitionAvailability
	for i, f := range faults {
		if len(f.Majority) == 0 || f.Heal <= f.Start {
			continue
		}
		p := PartitionAvailability{Fault: i, Kind: f.Kind,
			Majority: SideAvailability{Nodes: f.Majority}, Minority: SideAvailability{Nodes: f.Minority}}
		var acks []int64
		for _, op := range ops {
			if op.Final || op.Call < f.Start || op.Call >= f.Heal {
				continue
			}
			if op.Outcome == OK && op.IsWrite() && op.Return < f.Heal {
				acks = append(acks, op.Return)
			}
			node, ok := strings.CutPrefix(op.Via, "http:")
			if !ok {
				continue
			}
			side := &p.Majority
			switch {
			case slices.Contains(f.Minority, node):
				side = &p.Minority
			case !slices.Contains(f.Majority, node):
				continue
			}
			side.Attempted++
			if op.Outcome == OK {
				side.OK++
			}
		}
		p.NoCommit = Dur(longestGap(acks, f.Start, f.Heal))
		out = append(out, p)
	}
	return out
}

// longestGap is the longest interval of [from, to) that contains none of
// the times ts.
func longestGap(ts []int64, from, to int64) time.Duration {
	ts = slices.Clone(ts)
	slices.Sort(ts)
	prev, longest := from, int64(0)
	for _, t := range ts {
		longest = max(longest, t-prev)
		prev = max(prev, t)
	}
	return time.Duration(max(longest, to-prev))
}

// ---- commits after a leader pause ----

// LeaderPause is, for one PauseLeaderBurst, how long after the leader was
// stopped each follower committed again: the first acknowledged write,
// invoked after the stop, to an actor it owned (FaultEvent.Burst). A
// follower that committed nothing before the leader was continued counts
// the whole pause (Recovered false).
type LeaderPause struct {
	Fault int `json:"fault"`
	// Stall per follower, and the longest (the time until the whole
	// majority commits again).
	Stall     map[string]Dur `json:"stall"`
	Longest   Dur            `json:"longest"`
	Recovered bool           `json:"recovered"`
	Bound     Dur            `json:"bound"`
}

// MeasureLeaderPause measures every PauseLeaderBurst of the timeline.
func MeasureLeaderPause(ops []Op, faults []FaultEvent, bound time.Duration) []LeaderPause {
	var out []LeaderPause
	for i, f := range faults {
		if f.Kind != PauseLeaderBurst || len(f.Burst) == 0 || f.Heal <= f.Start {
			continue
		}
		lp := LeaderPause{Fault: i, Stall: map[string]Dur{}, Recovered: true, Bound: Dur(bound)}
		for node, actors := range f.Burst {
			first := f.Heal
			for _, op := range ops {
				if op.Outcome == OK && op.IsWrite() && op.Call >= f.Start && op.Return < first && slices.Contains(actors, op.Actor) {
					first = op.Return
				}
			}
			if first == f.Heal {
				lp.Recovered = false
			}
			lp.Stall[node] = Dur(first - f.Start)
			lp.Longest = max(lp.Longest, Dur(first-f.Start))
		}
		out = append(out, lp)
	}
	return out
}

// CheckLeaderPause fails every leader pause after which some follower did
// not commit within its bound.
func CheckLeaderPause(lps []LeaderPause) []Violation {
	var out []Violation
	for _, lp := range lps {
		if lp.Recovered && lp.Longest <= lp.Bound {
			continue
		}
		var parts []string
		for _, id := range keys(lp.Stall) {
			parts = append(parts, fmt.Sprintf("%s %v", id, time.Duration(lp.Stall[id]).Round(time.Millisecond)))
		}
		what := "committed again"
		if !lp.Recovered {
			what = "had not all committed again when the leader was continued"
		}
		out = append(out, Violation{Checker: "leader-pause", Detail: fmt.Sprintf(
			"fault %d (%s): the followers %s after %v, bound %v (election + 1s); first commit per follower: %s",
			lp.Fault, PauseLeaderBurst, what, time.Duration(lp.Longest).Round(time.Millisecond),
			time.Duration(lp.Bound).Round(time.Millisecond), strings.Join(parts, ", "))})
	}
	return out
}
