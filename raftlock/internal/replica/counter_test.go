package replica

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/loom-mesh/loom/internal/kv"
	"github.com/loom-mesh/loom/raftlock/internal/replica/dedup"
)

// A state machine that knows nothing of locks or journals, for running
// Groups in tests: a counter that commands add to, made exactly-once by
// the dedup table.

// counterWire frames the counter's commands and results.
var counterWire = Wire{Version: 1, MinVersion: 1}

// Flags in an add command's first byte.
const (
	addHasID = 0x80 // the command carries an id and a birth time: it is deduplicated
	addRetry = 0x40 // this copy may not be the first to reach the log
)

// add is one counter command. An add without an id (seq 0) is applied
// every time it reaches the log; the office command is one.
type add struct {
	origin string
	seq    uint64
	born   int64
	retry  bool
	delta  uint64
}

func (a add) key() string { return fmt.Sprintf("%s/%d", a.origin, a.seq) }

func encodeAdd(a add) []byte {
	var head byte
	if a.seq != 0 {
		head = addHasID
		if a.retry {
			head |= addRetry
		}
	}
	b := kv.AppendString([]byte{head}, a.origin)
	b = binary.AppendUvarint(b, a.seq)
	b = binary.AppendVarint(b, a.born)
	return binary.AppendUvarint(b, a.delta)
}

func decodeAdd(b []byte) (add, error) {
	d := kv.Decoder{B: b}
	head := d.Byte()
	a := add{origin: d.String(), seq: d.Uvarint(), born: d.Varint(), retry: head&addRetry != 0, delta: d.Uvarint()}
	return a, d.Finish()
}

// sum is a counter result: the counter after the add, or why it was not
// applied.
type sum struct {
	value uint64
	retry bool   // not the leader: send it again
	text  string // retry, or an unknown outcome
}

// counterCodec is the counter's replica.Codec.
type counterCodec struct{}

func (counterCodec) Name([]byte) string { return "add" }

func (counterCodec) MarkRetry(cmd []byte) {
	if cmd[0]&addHasID != 0 {
		cmd[0] |= addRetry
	}
}

func (counterCodec) EncodeResult(r sum) []byte {
	b := []byte{0}
	if r.retry {
		b[0] = 1
	}
	b = binary.AppendUvarint(b, r.value)
	return kv.AppendString(b, r.text)
}

func (counterCodec) DecodeResult(b []byte) (sum, error) {
	d := kv.Decoder{B: b}
	r := sum{retry: d.Byte() == 1, value: d.Uvarint(), text: d.String()}
	return r, d.Finish()
}

func (counterCodec) Retry(text string) sum { return sum{retry: true, text: text} }
func (counterCodec) IsRetry(r sum) bool    { return r.retry }

// counterConfig is a Group of counters on loopback TCP, with Raft timings
// for tests; its office command is an add without an id.
func counterConfig(t testing.TB, id raft.ServerID, fsm *counter, fwd Forwarder) Config[sum] {
	rc := raft.DefaultConfig()
	rc.HeartbeatTimeout = 200 * time.Millisecond
	rc.ElectionTimeout = 200 * time.Millisecond
	rc.LeaderLeaseTimeout = 100 * time.Millisecond
	rc.CommitTimeout = 10 * time.Millisecond
	rc.SnapshotThreshold = 1 << 40 // the counter has no snapshots
	rc.NoLegacyTelemetry = true
	return Config[sum]{
		Name:                "counter",
		NodeID:              id,
		Dir:                 t.TempDir(),
		BindAddr:            "127.0.0.1:0",
		TransportMaxPool:    3,
		TransportTimeout:    2 * time.Second,
		Forwarder:           fwd,
		Now:                 time.Now,
		Raft:                *rc,
		SnapshotRetain:      1,
		MaxBatch:            64,
		MaxBatchBytes:       1 << 20,
		MaxInFlight:         1,
		MaxForwardsInFlight: 4,
		ForwardTimeout:      time.Second,
		OpenFSM:             func(*slog.Logger) (FSM, error) { return fsm, nil },
		Codec:               counterCodec{},
		Wire:                counterWire,
		TakeOffice: func(_ context.Context, commit func(cmds ...[]byte) ([]sum, error)) error {
			_, err := commit(encodeAdd(add{origin: "office"}))
			return err
		},
	}
}

// counterResp is the counter's answer to an entry.
type counterResp struct {
	index   uint64
	results []sum
	err     error
}

func (r *counterResp) Outcome() (uint64, []sum, error) { return r.index, r.results, r.err }

// counter is the state machine: the sum, how often each command took
// effect, and the dedup table over a kv.Mem bucket. No snapshots.
type counter struct {
	mu         sync.Mutex
	sum        uint64
	effects    map[string]int // command key -> times it was applied
	offices    int            // office commands applied
	remembered int            // commands answered from the dedup table
	unknown    int            // retries refused as possibly forgotten
	table      dedup.Table
	state      dedup.State
	progress   Progress
}

var _ FSM = (*counter)(nil)

func newCounter() *counter {
	c := &counter{effects: map[string]int{}, state: dedup.NewState()}
	c.table = dedup.Table{Bucket: kv.NewMem().Bucket("dedup"), State: &c.state, Index: map[string]uint64{}, Window: 1000, Retention: int64(1 << 40)}
	return c
}

func (c *counter) Apply(l *raft.Log) any { return c.ApplyBatch([]*raft.Log{l})[0] }

func (c *counter) ApplyBatch(logs []*raft.Log) []any {
	resps := make([]any, len(logs))
	c.mu.Lock()
	_, clock, _ := c.Progress()
	for i, l := range logs {
		if l.Type != raft.LogCommand {
			continue
		}
		stamp, cmds, err := counterWire.DecodeBatch(l.Data)
		if err != nil {
			resps[i] = &counterResp{index: l.Index, err: err}
			continue
		}
		clock = max(clock, stamp)
		resp := &counterResp{index: l.Index, results: make([]sum, len(cmds))}
		for j, raw := range cmds {
			if resp.results[j], err = c.applyAdd(raw, clock); err != nil {
				resp = &counterResp{index: l.Index, err: fmt.Errorf("%w: %w", ErrStateMachine, err)}
				break
			}
		}
		resps[i] = resp
	}
	c.mu.Unlock()
	c.progress.Set(logs[len(logs)-1].Index, clock)
	return resps
}

func (c *counter) applyAdd(raw []byte, clock int64) (sum, error) {
	a, err := decodeAdd(raw)
	if err != nil {
		return sum{}, err
	}
	key := []byte(a.key())
	if a.seq != 0 {
		switch v, res, err := c.table.Check(key, a.born, a.retry); {
		case err != nil:
			return sum{}, err
		case v == dedup.Remembered:
			c.remembered++
			return counterCodec{}.DecodeResult(res)
		case v == dedup.Unknown:
			c.unknown++
			return sum{text: "outcome unknown"}, nil
		}
	} else {
		c.offices++
	}
	c.sum += a.delta
	c.effects[a.key()]++
	r := sum{value: c.sum}
	if a.seq != 0 {
		if err := c.table.Remember(key, clock, counterCodec{}.EncodeResult(r)); err != nil {
			return sum{}, err
		}
	}
	return r, nil
}

func (c *counter) Progress() (uint64, int64, error) { return c.progress.Get() }

func (c *counter) WaitApplied(ctx context.Context, index uint64, stop <-chan struct{}) error {
	return c.progress.Wait(ctx, index, stop, ErrClosed)
}

var errNoSnapshots = errors.New("counter: no snapshots")

func (c *counter) Snapshot() (raft.FSMSnapshot, error) { return nil, errNoSnapshots }
func (c *counter) Restore(io.ReadCloser) error         { return errNoSnapshots }
func (c *counter) Close() error                        { return nil }

// snapshot returns the sum, the effects and the dedup counts.
func (c *counter) snapshot() (total uint64, effects map[string]int, offices, remembered int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	effects = make(map[string]int, len(c.effects))
	for k, v := range c.effects {
		effects[k] = v
	}
	return c.sum, effects, c.offices, c.remembered
}
