package chaos

import (
	"bufio"
	"encoding/json"
	"os"
	"slices"
	"sync"
	"time"
)

// Outcome is what a client can know about an operation.
type Outcome string

// Outcomes.
const (
	// OK: acknowledged; it took effect and its output is the system's.
	OK Outcome = "ok"
	// Failed: definitely not applied (the error says so).
	Failed Outcome = "failed"
	// Unknown: may or may not have been applied (a timeout, a connection
	// lost after the request was sent, an internal error).
	Unknown Outcome = "unknown"
)

// Operation kinds.
const (
	OpRead  = "read"  // register.read
	OpWrite = "write" // register.write
	OpCAS   = "cas"   // register.cas
	OpAdd   = "add"   // counter.add
	OpGet   = "get"   // counter.get

	OpKVPut    = "kv.put"    // kv.put of Field
	OpKVDelete = "kv.delete" // kv.delete of Field
	OpKVGet    = "kv.get"    // kv.get of Field
	OpKVList   = "kv.list"   // kv.list
)

// KVKeys are the keys the workload's kv operations use: few, so that
// puts, deletes, gets and lists of one actor meet.
var KVKeys = []string{"a", "b", "c", "d"}

// Op is one recorded operation. Register values are integers, 0 standing
// for null (never written); every write and CAS writes a value unique in
// the run, so a read tells which write it saw.
type Op struct {
	ID     int64 `json:"id"`
	Client int   `json:"client"` // a new client id after each unknown outcome
	// Key is the op's unique key: the embedded client sends it as the
	// idempotency key, the gateway as the correlation id, and the journal
	// entry a write produces carries it (the journal audit matches them).
	Key   string `json:"key"`
	Via   string `json:"via"`   // "client" (embedded) or "http:node-N"
	Actor string `json:"actor"` // "type/id"
	Kind  string `json:"kind"`
	// Inputs: the value written (write, CAS, kv.put), the expected value
	// (CAS), the delta (add), the kv key (kv.put, kv.delete, kv.get).
	Value  int64  `json:"value,omitempty"`
	Expect int64  `json:"expect,omitempty"`
	Field  string `json:"field,omitempty"`
	// Outputs when OK: the value read (read, get, kv.get; 0 for null or
	// a missing key) or the counter's new value (add); whether a CAS
	// swapped or a kv.delete found its key; the keys kv.list returned.
	Out     int64    `json:"out,omitempty"`
	Swapped bool     `json:"swapped,omitempty"`
	Listed  []string `json:"listed,omitempty"`
	Call    int64    `json:"call"`   // ns since the run started
	Return  int64    `json:"return"` // ns since the run started
	Outcome Outcome  `json:"outcome"`
	Err     string   `json:"err,omitempty"`
	Final   bool     `json:"final,omitempty"` // part of the convergence phase
	// Attempts is how many times the op was sent (WorkloadOptions.RetryUnknown).
	Attempts int `json:"attempts,omitempty"`
}

// IsWrite reports whether the op may change its actor's state.
func (o Op) IsWrite() bool {
	switch o.Kind {
	case OpWrite, OpCAS, OpAdd, OpKVPut, OpKVDelete:
		return true
	}
	return false
}

// Recorder collects operations from many goroutines.
type Recorder struct {
	start time.Time
	mu    sync.Mutex
	ops   []Op
	next  int64
}

// NewRecorder starts the run's clock.
func NewRecorder(start time.Time) *Recorder { return &Recorder{start: start} }

// Now is the time since the run started, in ns (monotonic).
func (r *Recorder) Now() int64 { return int64(time.Since(r.start)) }

// Since is the time since the run started.
func (r *Recorder) Since() time.Duration { return time.Since(r.start) }

// Add records a completed operation and assigns its id.
func (r *Recorder) Add(op Op) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.next++
	op.ID = r.next
	r.ops = append(r.ops, op)
}

// Ops returns the operations recorded so far, by invoke time.
func (r *Recorder) Ops() []Op {
	r.mu.Lock()
	ops := slices.Clone(r.ops)
	r.mu.Unlock()
	slices.SortStableFunc(ops, func(a, b Op) int {
		switch {
		case a.Call < b.Call:
			return -1
		case a.Call > b.Call:
			return 1
		}
		return 0
	})
	return ops
}

// WriteJSONL writes ops, one JSON object a line.
func WriteJSONL(path string, ops []Op) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	for _, op := range ops {
		if err := enc.Encode(op); err != nil {
			f.Close()
			return err
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
