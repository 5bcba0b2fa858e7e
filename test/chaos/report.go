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
	Network  string    `json:"network,omitempty"`
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

	Linearizability map[porcupine.CheckResult]int `json:"linearizability"`
	LinearDetails   []LinearizabilityResult       `json:"linearizabilityDetails"`
	Counters        []CounterBounds               `json:"counters"`
	Journal         JournalAudit                  `json:"journalAudit"`
	Activation      ActivationReport              `json:"singleActivation"`

	Violations []Violation `json:"violations"`
	OutDir     string      `json:"outDir,omitempty"`
}

// countOps fills Ops and Phases.
func (r *Report) countOps(ops []Op, firstFault int64) {
	r.Phases = map[string]OpCounts{}
	for _, op := range ops {
		r.Ops.add(op.Outcome)
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

// WriteTable prints reports as one table.
func WriteTable(w io.Writer, reports ...*Report) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tseed\tnodes\tduration\tops\tok\tfailed\tunknown\tfaults\tviolations\tlongest unavailability\tdouble activation (M1)")
	for _, r := range reports {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%v\t%d\t%d\t%d\t%d\t%s\t%d\t%v\t%v\n",
			r.Scenario, r.Seed, r.Nodes, time.Duration(r.Duration).Round(100*time.Millisecond),
			r.Ops.Attempted, r.Ops.OK, r.Ops.Failed, r.Ops.Unknown, r.faultSummary(),
			len(r.Violations), time.Duration(r.LongestUnavailability).Round(10*time.Millisecond),
			time.Duration(r.Activation.OverlapTotal).Round(time.Millisecond))
	}
	tw.Flush()
}

// gitCommit is the checkout's commit, "unknown" outside a git checkout.
func gitCommit() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}
