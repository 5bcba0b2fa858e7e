package chaos

import (
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/anishathalye/porcupine"
)

// Dur is a duration that reads well in JSON ("1.234s").
type Dur time.Duration

// MarshalJSON writes the duration as a string.
func (d Dur) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).Round(time.Millisecond).String())
}

// OpCounts counts operations by outcome.
type OpCounts struct {
	Attempted int `json:"attempted"`
	OK        int `json:"ok"`
	Failed    int `json:"failed"`
	Unknown   int `json:"unknown"`
	// Retried: ops sent more than once (WorkloadOptions.RetryUnknown),
	// and RetriedOK the ones of them that were then answered OK.
	Retried   int `json:"retried,omitempty"`
	RetriedOK int `json:"retriedOk,omitempty"`
}

func (c *OpCounts) add(o Outcome) {
	c.Attempted++
	switch o {
	case OK:
		c.OK++
	case Failed:
		c.Failed++
	case Unknown:
		c.Unknown++
	}
}

// Report is one scenario's result.
type Report struct {
	Scenario string `json:"scenario"`
	Seed     int64  `json:"seed"`
	Nodes    int    `json:"nodes"`
	// Network says how partitions were cut: by the chaos hook (empty) or
	// by the kernel.
	Network string `json:"network,omitempty"`
	// Backend is where the nodes keep coordination, journals and queues:
	// "raft" (their Raft store), "redis" (a redis-server), or a mix named
	// part by part.
	Backend string `json:"backend"`
	// Security is what the nodes ran with: plaintext, or mutual TLS,
	// gossip encryption and bearer tokens (Scenario.Secure).
	Security string    `json:"security,omitempty"`
	Commit   string    `json:"commit"`
	Started  time.Time `json:"started"`
	Duration Dur       `json:"duration"`

	Ops OpCounts `json:"ops"`
	// Phases: "before" the first fault, "faults" (from the first fault to
	// the end of the load), "final" (the convergence phase's writes and
	// reads).
	Phases map[string]OpCounts `json:"phases"`
	Load   LoadBeforeFaults    `json:"loadBeforeFaults"`

	Faults         map[FaultKind]int `json:"faults"`
	Timeline       []FaultEvent      `json:"timeline"`
	Unavailability []Unavailability  `json:"unavailability"`
	// LongestUnavailability is the longest over every fault; ByKind the
	// longest per fault kind.
	LongestUnavailability Dur               `json:"longestUnavailability"`
	UnavailabilityByKind  map[FaultKind]Dur `json:"unavailabilityByKind"`
	ConvergedAfter        Dur               `json:"convergedAfter"`
	// Bounds are the liveness bounds, derived from the nodes'
	// configuration.
	Bounds Bounds `json:"bounds"`
	// Partitions: availability per side of each partition with a
	// majority, and the longest time nothing committed.
	Partitions []PartitionAvailability `json:"partitions,omitempty"`
	// LeaderPauses: how long after a leader's SIGSTOP (during a burst)
	// each follower committed again.
	LeaderPauses []LeaderPause `json:"leaderPauses,omitempty"`

	Linearizability map[porcupine.CheckResult]int `json:"linearizability"`
	LinearDetails   []LinearizabilityResult       `json:"linearizabilityDetails"`
	Counters        []CounterBounds               `json:"counters"`
	Journal         JournalAudit                  `json:"journalAudit"`
	Activation      ActivationReport              `json:"singleActivation"`
	// Messages is the messaging workload's check (absent without one).
	Messages *MessageReport `json:"messages,omitempty"`

	Violations []Violation `json:"violations"`
	OutDir     string      `json:"outDir,omitempty"`
}

// countOps fills Ops and Phases.
func (r *Report) countOps(ops []Op, firstFault int64) {
	r.Phases = map[string]OpCounts{}
	for _, op := range ops {
		r.Ops.add(op.Outcome)
		if op.Attempts > 1 {
			r.Ops.Retried++
			if op.Outcome == OK {
				r.Ops.RetriedOK++
			}
		}
		phase := "before"
		switch {
		case op.Final:
			phase = "final"
		case firstFault > 0 && op.Call >= firstFault:
			phase = "faults"
		}
		c := r.Phases[phase]
		c.add(op.Outcome)
		r.Phases[phase] = c
	}
}

func (r *Report) faultSummary() string {
	if len(r.Faults) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range keys(r.Faults) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, r.Faults[k]))
	}
	return strings.Join(parts, " ")
}

// sides sums the partitions' requests per side and finds the longest
// time nothing committed during one.
func (r *Report) sides() (majority, minority SideAvailability, noCommit Dur) {
	for _, p := range r.Partitions {
		majority.Attempted += p.Majority.Attempted
		majority.OK += p.Majority.OK
		minority.Attempted += p.Minority.Attempted
		minority.OK += p.Minority.OK
		noCommit = max(noCommit, p.NoCommit)
	}
	return majority, minority, noCommit
}

func rate(s SideAvailability) string {
	if s.Attempted == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%% of %d", 100*s.Rate(), s.Attempted)
}

// leaderPause is the longest commit stall after a leader pause against
// its bound ("-" without one).
func (r *Report) leaderPause() string {
	if len(r.LeaderPauses) == 0 {
		return "-"
	}
	var longest Dur
	recovered := true
	for _, lp := range r.LeaderPauses {
		longest = max(longest, lp.Longest)
		recovered = recovered && lp.Recovered
	}
	s := fmt.Sprintf("%v (bound %v)", time.Duration(longest).Round(10*time.Millisecond), time.Duration(r.Bounds.LeaderPause).Round(10*time.Millisecond))
	if !recovered {
		s = ">= " + s
	}
	return s
}

// WriteTable prints reports as one table, then each report's bounds (and
// their parts), partitions and leader pauses.
func WriteTable(w io.Writer, reports ...*Report) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tseed\tnodes\tduration\tops\tok\tfailed\tunknown\tfaults\tviolations\tlongest unavailability (bound)\tmajority side ok\tminority side ok\tlongest majority no-commit\tcommit after leader pause\tdouble activation (M1)")
	for _, r := range reports {
		maj, mnr, noCommit := r.sides()
		nc := "-"
		if len(r.Partitions) > 0 {
			nc = time.Duration(noCommit).Round(10 * time.Millisecond).String()
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%v\t%d\t%d\t%d\t%d\t%s\t%d\t%v (%v)\t%s\t%s\t%s\t%s\t%v\n",
			r.Scenario, r.Seed, r.Nodes, time.Duration(r.Duration).Round(100*time.Millisecond),
			r.Ops.Attempted, r.Ops.OK, r.Ops.Failed, r.Ops.Unknown, r.faultSummary(),
			len(r.Violations), time.Duration(r.LongestUnavailability).Round(10*time.Millisecond),
			time.Duration(r.Bounds.Recovery).Round(10*time.Millisecond),
			rate(maj), rate(mnr), nc, r.leaderPause(),
			time.Duration(r.Activation.OverlapTotal).Round(time.Millisecond))
	}
	tw.Flush()
	for _, r := range reports {
		if r.Security != "" {
			fmt.Fprintf(w, "%s: security: %s\n", r.Scenario, r.Security)
		}
		fmt.Fprintf(w, "%s: bounds: %s\n", r.Scenario, r.Bounds)
		if r.Ops.Retried > 0 {
			fmt.Fprintf(w, "%s: %d ops of unknown outcome sent again under their idempotency key, %d of them then answered ok\n", r.Scenario, r.Ops.Retried, r.Ops.RetriedOK)
		}
		for _, p := range r.Partitions {
			fmt.Fprintf(w, "%s: fault %d (%s): majority %v %s ok, minority %v %s ok, longest no-commit %v\n",
				r.Scenario, p.Fault, p.Kind, p.Majority.Nodes, rate(p.Majority), p.Minority.Nodes, rate(p.Minority),
				time.Duration(p.NoCommit).Round(time.Millisecond))
		}
		for _, lp := range r.LeaderPauses {
			var parts []string
			for _, id := range keys(lp.Stall) {
				parts = append(parts, fmt.Sprintf("%s %v", id, time.Duration(lp.Stall[id]).Round(time.Millisecond)))
			}
			fmt.Fprintf(w, "%s: fault %d (%s): first commit after the leader's SIGSTOP per follower: %s (bound %v, all committed again while paused: %v)\n",
				r.Scenario, lp.Fault, PauseLeaderBurst, strings.Join(parts, ", "), time.Duration(lp.Bound).Round(time.Millisecond), lp.Recovered)
		}
	}
}

// gitCommit is the checkout's commit, "unknown" outside a git checkout.
func gitCommit() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}
