package chaos

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

// Violation is one failed check.
type Violation struct {
	Checker string `json:"checker"` // linearizability, counter, recovery, convergence, load, harness
	Actor   string `json:"actor,omitempty"`
	Detail  string `json:"detail"`
}

func (v Violation) String() string {
	if v.Actor != "" {
		return fmt.Sprintf("%s: %s: %s", v.Checker, v.Actor, v.Detail)
	}
	return v.Checker + ": " + v.Detail
}

// ---- linearizability (porcupine) ----

// regInput and regOutput are a register op for porcupine.
type regInput struct {
	Kind          string
	Value, Expect int64
}

type regOutput struct {
	Unknown bool
	Value   int64 // read
	Swapped bool  // cas
}

// RegisterModel is a register holding an int64 (0 = never written) with
// read, write and compare-and-set. An op whose outcome is unknown is always
// legal: a write or CAS takes effect at its linearization point (a CAS only
// if the register holds its expected value); porcupine may put it after
// every other op, which is the same as never.
var RegisterModel = porcupine.Model{
	Init: func() any { return int64(0) },
	Step: func(state, input, output any) (bool, any) {
		s, in, out := state.(int64), input.(regInput), output.(regOutput)
		switch in.Kind {
		case OpRead:
			return out.Unknown || out.Value == s, s
		case OpWrite:
			return true, in.Value
		case OpCAS:
			if out.Unknown {
				if s == in.Expect {
					return true, in.Value
				}
				return true, s
			}
			if out.Swapped {
				return s == in.Expect, in.Value
			}
			return s != in.Expect, s
		}
		return false, s
	},
	Hash: func(state any) uint64 { return uint64(state.(int64)) },
	DescribeOperation: func(input, output any) string {
		in, out := input.(regInput), output.(regOutput)
		res := "?"
		switch {
		case out.Unknown:
		case in.Kind == OpRead:
			res = fmt.Sprint(out.Value)
		case in.Kind == OpCAS:
			res = fmt.Sprint(out.Swapped)
		default:
			res = "ok"
		}
		switch in.Kind {
		case OpRead:
			return "read() → " + res
		case OpWrite:
			return fmt.Sprintf("write(%d) → %s", in.Value, res)
		default:
			return fmt.Sprintf("cas(%d→%d) → %s", in.Expect, in.Value, res)
		}
	},
}

// counterInput and counterOutput are a counter op for porcupine.
type counterInput struct {
	Kind  string
	Delta int64
}

type counterOutput struct {
	Unknown bool
	Value   int64
}

// CounterModel is a counter whose add returns the new total and whose get
// returns the total. An add of unknown outcome adds its delta at its
// linearization point.
var CounterModel = porcupine.Model{
	Init: func() any { return int64(0) },
	Step: func(state, input, output any) (bool, any) {
		s, in, out := state.(int64), input.(counterInput), output.(counterOutput)
		switch in.Kind {
		case OpAdd:
			n := s + in.Delta
			return out.Unknown || out.Value == n, n
		case OpGet:
			return out.Unknown || out.Value == s, s
		}
		return false, s
	},
	Hash: func(state any) uint64 { return uint64(state.(int64)) },
	DescribeOperation: func(input, output any) string {
		in, out := input.(counterInput), output.(counterOutput)
		res := "?"
		if !out.Unknown {
			res = fmt.Sprint(out.Value)
		}
		if in.Kind == OpAdd {
			return fmt.Sprintf("add(%d) → %s", in.Delta, res)
		}
		return "get() → " + res
	},
}

// kvState is a kv actor's state over KVKeys: each key's value, 0 for
// absent (values are unique and never 0).
type kvState [4]int64

// kvInput and kvOutput are a kv op for porcupine. Key indexes KVKeys.
type kvInput struct {
	Kind  string
	Key   int
	Value int64
}

type kvOutput struct {
	Unknown bool
	Value   int64 // kv.get: 0 when not found
	Deleted bool  // kv.delete
	Listed  uint8 // kv.list: bit i set when KVKeys[i] was listed
}

// KVModel is a kv actor over KVKeys: put, delete (which says whether the
// key was there), get and list. A put or delete of unknown outcome takes
// effect at its linearization point.
var KVModel = porcupine.Model{
	Init: func() any { return kvState{} },
	Step: func(state, input, output any) (bool, any) {
		s, in, out := state.(kvState), input.(kvInput), output.(kvOutput)
		switch in.Kind {
		case OpKVPut:
			s[in.Key] = in.Value
			return true, s
		case OpKVDelete:
			ok := out.Unknown || out.Deleted == (s[in.Key] != 0)
			s[in.Key] = 0
			return ok, s
		case OpKVGet:
			return out.Unknown || out.Value == s[in.Key], s
		case OpKVList:
			return out.Unknown || out.Listed == s.listed(), s
		}
		return false, s
	},
	Hash: func(state any) uint64 {
		var h uint64 = 14695981039346656037
		for _, v := range state.(kvState) {
			h = (h ^ uint64(v)) * 1099511628211
		}
		return h
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(kvInput), output.(kvOutput)
		res := "?"
		k := KVKeys[in.Key]
		switch in.Kind {
		case OpKVPut:
			if !out.Unknown {
				res = "ok"
			}
			return fmt.Sprintf("put(%s=%d) → %s", k, in.Value, res)
		case OpKVDelete:
			if !out.Unknown {
				res = fmt.Sprint(out.Deleted)
			}
			return fmt.Sprintf("delete(%s) → %s", k, res)
		case OpKVGet:
			return fmt.Sprintf("get(%s) → %d", k, out.Value)
		default:
			return fmt.Sprintf("list() → %v", listedKeys(out.Listed))
		}
	},
	DescribeState: func(state any) string { return fmt.Sprint(state.(kvState)) },
}

func (s kvState) listed() uint8 {
	var m uint8
	for i, v := range s {
		if v != 0 {
			m |= 1 << i
		}
	}
	return m
}

// kvMask is the bit mask of keys (KVKeys indexes); an unknown key sets a
// bit no state has, so that the list is illegal.
func kvMask(keys []string) uint8 {
	var m uint8
	for _, k := range keys {
		i := slices.Index(KVKeys, k)
		if i < 0 {
			i = 7
		}
		m |= 1 << i
	}
	return m
}

func listedKeys(m uint8) []string {
	var out []string
	for i, k := range KVKeys {
		if m&(1<<i) != 0 {
			out = append(out, k)
		}
	}
	if m&(1<<7) != 0 {
		out = append(out, "(a key never written)")
	}
	return out
}

// PorcupineHistory turns one actor's ops into porcupine operations and
// picks its model. Failed ops are left out (they did not happen); unknown
// reads are left out (they constrain nothing); unknown writes are kept with
// a return time after every op of the history, except that an unknown
// register write, CAS or kv.put whose value some successful op observed (a
// read or kv.get of it, a swapped CAS expecting it) returns when the first
// of those did:
// values are unique, so it must have taken effect by then. That prunes
// porcupine's search without changing its answer.
func PorcupineHistory(ops []Op) (porcupine.Model, []porcupine.Operation) {
	var never int64
	seenBy := map[int64]int64{} // register value → first return of an op that observed it
	for _, op := range ops {
		never = max(never, op.Return+1)
		if op.Outcome != OK {
			continue
		}
		v, observed := op.Out, op.Kind == OpRead || op.Kind == OpKVGet
		if op.Kind == OpCAS && op.Swapped {
			v, observed = op.Expect, true
		}
		if observed && v != 0 {
			if r, ok := seenBy[v]; !ok || op.Return < r {
				seenBy[v] = op.Return
			}
		}
	}
	model := RegisterModel
	var out []porcupine.Operation
	for _, op := range ops {
		if op.Outcome == Failed {
			continue
		}
		unknown := op.Outcome == Unknown
		if unknown && !op.IsWrite() {
			continue
		}
		ret := op.Return
		if unknown {
			ret = never
			if r, ok := seenBy[op.Value]; ok && (op.Kind == OpWrite || op.Kind == OpCAS || op.Kind == OpKVPut) && r > op.Call {
				ret = r
			}
		}
		pop := porcupine.Operation{ClientId: op.Client, Call: op.Call, Return: ret, Metadata: op.ID}
		switch op.Kind {
		case OpRead, OpWrite, OpCAS:
			pop.Input = regInput{Kind: op.Kind, Value: op.Value, Expect: op.Expect}
			pop.Output = regOutput{Unknown: unknown, Value: op.Out, Swapped: op.Swapped}
		case OpAdd, OpGet:
			model = CounterModel
			pop.Input = counterInput{Kind: op.Kind, Delta: op.Value}
			pop.Output = counterOutput{Unknown: unknown, Value: op.Out}
		case OpKVPut, OpKVDelete, OpKVGet, OpKVList:
			model = KVModel
			pop.Input = kvInput{Kind: op.Kind, Key: max(0, slices.Index(KVKeys, op.Field)), Value: op.Value}
			pop.Output = kvOutput{Unknown: unknown, Value: op.Out, Deleted: op.Swapped, Listed: kvMask(op.Listed)}
		}
		out = append(out, pop)
	}
	return model, out
}

// LinearizabilityResult is porcupine's answer for one actor.
type LinearizabilityResult struct {
	Actor  string                `json:"actor"`
	Ops    int                   `json:"ops"`
	Result porcupine.CheckResult `json:"result"`
	Took   time.Duration         `json:"took"`
	HTML   string                `json:"html,omitempty"`
}

// CheckLinearizable checks every actor's history with porcupine, each
// within timeout (a counter within a sixth of it, at least 5 s: the
// counters are checked by their bounds too, and porcupine's search over
// increments of unknown outcome grows with 2^unknown). Illegal is a
// violation, and its visualization (with the faults as annotations) is
// written to visDir when that is set; Unknown (timed out) is reported as
// inconclusive, not as a violation. Two actors are checked at a time.
func CheckLinearizable(ops []Op, faults []FaultEvent, timeout time.Duration, visDir string) ([]LinearizabilityResult, []Violation) {
	byActor := map[string][]Op{}
	for _, op := range ops {
		byActor[op.Actor] = append(byActor[op.Actor], op)
	}
	actors := keys(byActor)
	results := make([]LinearizabilityResult, len(actors))
	perActor := make([][]Violation, len(actors))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 2)
	for i, actor := range actors {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			results[i], perActor[i] = checkActor(actor, byActor[actor], faults, timeout, visDir)
		})
	}
	wg.Wait()
	var violations []Violation
	for _, v := range perActor {
		violations = append(violations, v...)
	}
	return results, violations
}

func checkActor(actor string, ops []Op, faults []FaultEvent, timeout time.Duration, visDir string) (LinearizabilityResult, []Violation) {
	model, hist := PorcupineHistory(ops)
	if strings.HasPrefix(actor, TypeCounter+"/") {
		timeout = max(timeout/6, min(timeout, 5*time.Second))
	}
	start := time.Now()
	res, info := porcupine.CheckOperationsVerbose(model, hist, timeout)
	lr := LinearizabilityResult{Actor: actor, Ops: len(hist), Result: res, Took: time.Since(start)}
	if res != porcupine.Illegal {
		return lr, nil
	}
	detail := fmt.Sprintf("history of %d ops is not linearizable", len(hist))
	if visDir != "" {
		info.AddAnnotations(faultAnnotations(faults))
		path := filepath.Join(visDir, "porcupine-"+strings.ReplaceAll(actor, "/", "-")+".html")
		if err := porcupine.VisualizePath(model, info, path); err == nil {
			lr.HTML = path
			detail += " (see " + path + ")"
		}
	}
	return lr, []Violation{{Checker: "linearizability", Actor: actor, Detail: detail}}
}

func faultAnnotations(faults []FaultEvent) []porcupine.Annotation {
	var out []porcupine.Annotation
	for _, f := range faults {
		end := f.Heal
		if end == 0 {
			end = f.Start
		}
		out = append(out, porcupine.Annotation{
			Tag: "faults", Start: f.Start, End: end,
			Description: string(f.Kind) + " " + f.Node, Details: f.Detail,
			BackgroundColor: "#f6c4c4",
		})
	}
	return out
}

// ---- counters ----

// CounterBounds is one counter's final value against its increments.
type CounterBounds struct {
	Actor   string `json:"actor"`
	Acked   int64  `json:"acked"`   // sum of the deltas of OK adds
	Unknown int64  `json:"unknown"` // sum of the deltas of unknown adds
	Final   int64  `json:"final"`
	HasRead bool   `json:"hasFinalRead"`
}

// CheckCounters checks that every counter's final value (its last OK get
// of the final phase, which runs after every add has returned) lies
// between its acknowledged increments and those plus the unknown ones.
func CheckCounters(ops []Op) ([]CounterBounds, []Violation) {
	byActor := map[string]*CounterBounds{}
	for _, op := range ops {
		if op.Kind != OpAdd && op.Kind != OpGet {
			continue
		}
		b := byActor[op.Actor]
		if b == nil {
			b = &CounterBounds{Actor: op.Actor}
			byActor[op.Actor] = b
		}
		switch {
		case op.Kind == OpAdd && op.Outcome == OK:
			b.Acked += op.Value
		case op.Kind == OpAdd && op.Outcome == Unknown:
			b.Unknown += op.Value
		case op.Kind == OpGet && op.Final && op.Outcome == OK:
			b.Final, b.HasRead = op.Out, true // ops come by invoke time: the last wins
		}
	}
	var out []CounterBounds
	var violations []Violation
	for _, k := range keys(byActor) {
		b := *byActor[k]
		out = append(out, b)
		switch {
		case !b.HasRead:
			violations = append(violations, Violation{Checker: "counter", Actor: k, Detail: "no final read succeeded"})
		case b.Final < b.Acked:
			violations = append(violations, Violation{Checker: "counter", Actor: k,
				Detail: fmt.Sprintf("final value %d is below the %d acknowledged (lost %d)", b.Final, b.Acked, b.Acked-b.Final)})
		case b.Final > b.Acked+b.Unknown:
			violations = append(violations, Violation{Checker: "counter", Actor: k,
				Detail: fmt.Sprintf("final value %d is above acknowledged %d + unknown %d (phantom %d)", b.Final, b.Acked, b.Unknown, b.Final-b.Acked-b.Unknown)})
		}
	}
	return out, violations
}

// ---- recovery ----

// Unavailability is, for one fault, the longest time one of the hot actors
// went without a successful operation, measured from its last success
// before the fault to its first one after, and gaps within the fault's
// window (its start until the next fault starts, or the load ends).
type Unavailability struct {
	Fault   int           `json:"fault"` // index into the timeline
	Kind    FaultKind     `json:"kind"`
	Actor   string        `json:"actor"`
	Longest time.Duration `json:"longest"`
	// Recovered is false when the actor had no success left in the
	// window at all.
	Recovered bool `json:"recovered"`
}

// MeasureUnavailability computes each fault's Unavailability over the hot
// actors' successful ops, the window of fault i being [start_i, start_i+1)
// and the last one's ending at loadEnd.
func MeasureUnavailability(ops []Op, faults []FaultEvent, hot []string, loadEnd int64) []Unavailability {
	okEnds := map[string][]int64{}
	for _, op := range ops {
		if op.Outcome == OK && !op.Final && slices.Contains(hot, op.Actor) {
			okEnds[op.Actor] = append(okEnds[op.Actor], op.Return)
		}
	}
	for _, e := range okEnds {
		slices.Sort(e)
	}
	var out []Unavailability
	for i, f := range faults {
		wEnd := loadEnd
		if i+1 < len(faults) {
			wEnd = faults[i+1].Start
		}
		u := Unavailability{Fault: i, Kind: f.Kind, Recovered: true}
		for _, actor := range hot {
			ends := okEnds[actor]
			// the last success at or before the fault started (or the
			// fault's start itself if there was none)
			prev := f.Start
			j, _ := slices.BinarySearch(ends, f.Start+1)
			if j > 0 {
				prev = ends[j-1]
			}
			longest, recovered := time.Duration(0), false
			for ; j < len(ends) && ends[j] < wEnd; j++ {
				longest = max(longest, time.Duration(ends[j]-prev))
				prev, recovered = ends[j], true
			}
			if !recovered {
				longest = time.Duration(wEnd - prev)
			}
			if longest > u.Longest || (!recovered && u.Recovered) {
				u.Longest, u.Actor = longest, actor
				if !recovered {
					u.Recovered = false
				}
			}
		}
		out = append(out, u)
	}
	return out
}

// CheckRecovery fails each fault whose hot actors did not recover within
// bound plus the fault's designed outage (FaultEvent.Outage), or not at
// all.
func CheckRecovery(us []Unavailability, faults []FaultEvent, bound time.Duration) []Violation {
	var out []Violation
	for _, u := range us {
		b, why := bound, ""
		if u.Fault < len(faults) && faults[u.Fault].Outage > 0 {
			o := time.Duration(faults[u.Fault].Outage)
			b += o
			why = fmt.Sprintf(" + the fault's outage %v", o.Round(time.Millisecond))
		}
		switch {
		case !u.Recovered:
			out = append(out, Violation{Checker: "recovery", Actor: u.Actor,
				Detail: fmt.Sprintf("fault %d (%s): no successful op for the remaining %v of its window", u.Fault, u.Kind, u.Longest.Round(time.Millisecond))})
		case u.Longest > b:
			out = append(out, Violation{Checker: "recovery", Actor: u.Actor,
				Detail: fmt.Sprintf("fault %d (%s): unavailable for %v, bound %v%s", u.Fault, u.Kind, u.Longest.Round(time.Millisecond), bound, why)})
		}
	}
	return out
}

// ---- load ----

// LoadBeforeFaults is the load of the run's first phase.
type LoadBeforeFaults struct {
	Window time.Duration `json:"window"`
	OK     int           `json:"ok"`
	QPS    float64       `json:"qps"`
	// HotWithoutOK lists the hot actors without a successful op.
	HotWithoutOK []string `json:"hotWithoutOk,omitempty"`
}

// CheckLoad measures the successful ops completed before the first fault
// (at firstFault; the whole run if no fault) and fails the run when their
// rate is below minQPS or a hot actor had none: a quiet run proves nothing.
func CheckLoad(ops []Op, hot []string, firstFault int64, minQPS float64) (LoadBeforeFaults, []Violation) {
	l := LoadBeforeFaults{Window: time.Duration(firstFault)}
	okHot := map[string]bool{}
	for _, op := range ops {
		if op.Outcome == OK && op.Return <= firstFault && !op.Final {
			l.OK++
			okHot[op.Actor] = true
		}
	}
	if firstFault > 0 {
		l.QPS = float64(l.OK) / time.Duration(firstFault).Seconds()
	}
	for _, h := range hot {
		if !okHot[h] {
			l.HotWithoutOK = append(l.HotWithoutOK, h)
		}
	}
	var v []Violation
	if l.QPS < minQPS || math.IsNaN(l.QPS) {
		v = append(v, Violation{Checker: "load", Detail: fmt.Sprintf("%.1f successful ops/s in the %v before the first fault, below the minimum %.1f: the run proves nothing", l.QPS, l.Window.Round(time.Millisecond), minQPS)})
	}
	if len(l.HotWithoutOK) > 0 {
		v = append(v, Violation{Checker: "load", Detail: fmt.Sprintf("hot actors without a successful op before the first fault: %v", l.HotWithoutOK)})
	}
	return l, v
}

// writeFile is os.WriteFile that ignores an empty dir.
func writeFile(dir, name string, data []byte) error {
	if dir == "" {
		return nil
	}
	return os.WriteFile(filepath.Join(dir, name), data, 0o644)
}
