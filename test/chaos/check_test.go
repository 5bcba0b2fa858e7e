package chaos

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/runtime"
	"github.com/loom-mesh/loom/transport"
	"github.com/loom-mesh/loom/transport/loompb"
)

// The checkers must be able to fail: each is fed synthetic histories, good
// ones that must pass and broken ones (the anomalies a faulty cluster
// produces) that must be caught.

const actor = "register/r"

// h builds a history from compact op literals; times are in ms.
func op(kind string, call, ret int64, outcome Outcome, f func(*Op)) Op {
	o := Op{Actor: actor, Kind: kind, Call: call * int64(time.Millisecond), Return: ret * int64(time.Millisecond), Outcome: outcome}
	if kind == OpAdd || kind == OpGet {
		o.Actor = "counter/c"
	}
	if f != nil {
		f(&o)
	}
	return o
}

func write(v, call, ret int64, outcome Outcome) Op {
	return op(OpWrite, call, ret, outcome, func(o *Op) { o.Value = v })
}

func read(out, call, ret int64) Op {
	return op(OpRead, call, ret, OK, func(o *Op) { o.Out = out })
}

func cas(expect, v int64, swapped bool, call, ret int64, outcome Outcome) Op {
	return op(OpCAS, call, ret, outcome, func(o *Op) { o.Expect, o.Value, o.Swapped = expect, v, swapped })
}

func add(delta, out, call, ret int64, outcome Outcome) Op {
	return op(OpAdd, call, ret, outcome, func(o *Op) { o.Value, o.Out = delta, out })
}

func get(out, call, ret int64, final bool) Op {
	return op(OpGet, call, ret, OK, func(o *Op) { o.Out, o.Final = out, final })
}

func TestLinearizabilityChecker(t *testing.T) {
	cases := []struct {
		name  string
		ops   []Op
		legal bool
	}{
		{"sequential writes and reads", []Op{write(1, 0, 10, OK), read(1, 20, 30), write(2, 40, 50, OK), read(2, 60, 70)}, true},
		{"concurrent write may or may not be seen", []Op{write(1, 0, 10, OK), write(2, 20, 60, OK), read(1, 30, 40), read(2, 50, 70)}, true},
		{"stale read after an acknowledged write", []Op{write(1, 0, 10, OK), read(0, 20, 30)}, false},
		{"lost acknowledged write", []Op{write(1, 0, 10, OK), write(2, 20, 30, OK), read(1, 40, 50)}, false},
		{"reads going back in time", []Op{write(1, 0, 10, OK), write(2, 5, 100, OK), read(2, 20, 30), read(1, 40, 50)}, false},
		{"unknown write may take effect late", []Op{write(1, 0, 10, Unknown), read(0, 20, 30), read(1, 40, 50)}, true},
		{"unknown write may never take effect", []Op{write(1, 0, 10, Unknown), read(0, 20, 30), read(0, 400, 500)}, true},
		{"failed write must not appear", []Op{write(1, 0, 10, Failed), read(1, 20, 30)}, false},
		{"a value nobody wrote", []Op{write(1, 0, 10, OK), read(7, 20, 30)}, false},
		{"cas swaps once", []Op{cas(0, 1, true, 0, 10, OK), cas(0, 2, false, 20, 30, OK), read(1, 40, 50)}, true},
		{"two cas from the same value both swap", []Op{cas(0, 1, true, 0, 10, OK), cas(0, 2, true, 20, 30, OK)}, false},
		{"cas refused although the value matched", []Op{write(5, 0, 10, OK), cas(5, 6, false, 20, 30, OK)}, false},
		{"unknown cas may swap", []Op{write(5, 0, 10, OK), cas(5, 6, false, 20, 30, Unknown), read(6, 40, 50)}, true},
		{"unknown cas with the wrong expectation cannot swap", []Op{write(5, 0, 10, OK), cas(4, 6, false, 20, 30, Unknown), read(6, 40, 50)}, false},
		{"unknown write observed, then the register goes back", []Op{write(1, 0, 10, OK), write(2, 5, 8, Unknown), read(2, 20, 30), read(1, 40, 50)}, false},
		{"unknown write observed late", []Op{write(1, 0, 10, OK), write(2, 20, 25, Unknown), read(1, 30, 40), read(2, 50, 60), read(2, 70, 80)}, true},
		{"unknown cas observed", []Op{write(1, 0, 10, OK), cas(1, 3, false, 20, 25, Unknown), read(3, 30, 40), cas(3, 4, true, 50, 60, OK), read(4, 70, 80)}, true},
		{"counter adds", []Op{add(1, 1, 0, 10, OK), add(2, 3, 20, 30, OK), get(3, 40, 50, false)}, true},
		{"counter add lost", []Op{add(1, 1, 0, 10, OK), add(2, 3, 20, 30, OK), get(1, 40, 50, false)}, false},
		{"counter add applied twice", []Op{add(1, 1, 0, 10, OK), add(1, 1, 20, 30, OK)}, false},
		{"counter unknown add may count", []Op{add(1, 1, 0, 10, OK), add(5, 0, 20, 30, Unknown), get(6, 40, 50, false)}, true},
		{"counter failed add must not count", []Op{add(1, 1, 0, 10, OK), add(5, 0, 20, 30, Failed), get(6, 40, 50, false)}, false},
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

func TestLinearizabilityViolationWritesVisualization(t *testing.T) {
	dir := t.TempDir()
	faults := []FaultEvent{{Kind: KillOwner, Node: "node-2", Start: int64(15 * time.Millisecond), Heal: int64(18 * time.Millisecond)}}
	res, v := CheckLinearizable([]Op{write(1, 0, 10, OK), read(0, 20, 30)}, faults, 10*time.Second, dir)
	if len(v) != 1 || v[0].Checker != "linearizability" || v[0].Actor != actor {
		t.Fatalf("violations %v", v)
	}
	b, err := os.ReadFile(res[0].HTML)
	if err != nil || !strings.Contains(string(b), "kill-owner node-2") {
		t.Fatalf("visualization %s: %v (annotations missing?)", res[0].HTML, err)
	}
}

func TestCounterChecker(t *testing.T) {
	hist := func(final int64) []Op {
		return []Op{
			add(2, 2, 0, 10, OK), add(3, 5, 20, 30, OK), // acked 5
			add(4, 0, 40, 50, Unknown),  // maybe 4 more
			add(100, 0, 60, 70, Failed), // never
			get(final, 80, 90, true),
		}
	}
	for final, ok := range map[int64]bool{4: false, 5: true, 7: true, 9: true, 10: false, 105: false} {
		b, v := CheckCounters(hist(final))
		if (len(v) == 0) != ok {
			t.Errorf("final %d: violations %v, want ok=%v", final, v, ok)
		}
		if b[0].Acked != 5 || b[0].Unknown != 4 || b[0].Final != final {
			t.Errorf("final %d: bounds %+v", final, b[0])
		}
	}
	// A get during the run is not the final value; without a final read
	// the counter cannot be judged, and that fails too.
	_, v := CheckCounters([]Op{add(1, 1, 0, 10, OK), get(1, 20, 30, false)})
	if len(v) != 1 || !strings.Contains(v[0].Detail, "no final read") {
		t.Fatalf("violations %v", v)
	}
}

func TestUnavailability(t *testing.T) {
	ms := func(x int64) int64 { return x * int64(time.Millisecond) }
	var ops []Op
	// a hot actor answering every 100 ms, except from 1000 to 4000 ms
	for at := int64(0); at < 8000; at += 100 {
		if at > 1000 && at < 4000 {
			continue
		}
		ops = append(ops, Op{Actor: "register/h", Kind: OpRead, Outcome: OK, Call: ms(at), Return: ms(at + 5)})
		// failed ops do not count as availability
		ops = append(ops, Op{Actor: "register/h", Kind: OpRead, Outcome: Failed, Call: ms(at + 50), Return: ms(at + 55)})
	}
	faults := []FaultEvent{{Kind: KillOwner, Start: ms(1050)}, {Kind: PauseOwner, Start: ms(6000)}}
	us := MeasureUnavailability(ops, faults, []string{"register/h"}, ms(8000))
	if len(us) != 2 || us[0].Longest != 3*time.Second || !us[0].Recovered || us[1].Longest != 100*time.Millisecond {
		t.Fatalf("unavailability %+v", us)
	}
	if v := CheckRecovery(us, faults, 5*time.Second); len(v) != 0 {
		t.Fatalf("within the bound: %v", v)
	}
	if v := CheckRecovery(us, faults, 2*time.Second); len(v) != 1 {
		t.Fatalf("over the bound: %v", v)
	}
	// A fault's designed outage widens its bound.
	withOutage := slices.Clone(faults)
	withOutage[0].Outage = Dur(1500 * time.Millisecond)
	if v := CheckRecovery(us, withOutage, 2*time.Second); len(v) != 0 {
		t.Fatalf("within the bound plus the outage: %v", v)
	}
	// No success after the fault at all: not recovered.
	us = MeasureUnavailability(ops[:10], faults[:1], []string{"register/h"}, ms(8000))
	if us[0].Recovered {
		t.Fatalf("recovered without a success: %+v", us)
	}
	if v := CheckRecovery(us, faults, time.Hour); len(v) != 1 {
		t.Fatalf("no recovery must fail: %v", v)
	}
}

func TestLoadChecker(t *testing.T) {
	var ops []Op
	for i := range int64(100) {
		ops = append(ops, Op{Actor: "register/h", Kind: OpRead, Outcome: OK, Call: i * int64(100*time.Millisecond), Return: i*int64(100*time.Millisecond) + 1})
	}
	tenSeconds := int64(10 * time.Second)
	if l, v := CheckLoad(ops, []string{"register/h"}, tenSeconds, 5); len(v) != 0 || l.QPS < 9 {
		t.Fatalf("10 ops/s against a minimum of 5: %+v %v", l, v)
	}
	if _, v := CheckLoad(ops, []string{"register/h"}, tenSeconds, 50); len(v) != 1 {
		t.Fatalf("10 ops/s against a minimum of 50 must fail: %v", v)
	}
	if _, v := CheckLoad(ops, []string{"register/h", "register/idle"}, tenSeconds, 5); len(v) != 1 {
		t.Fatalf("a hot actor without load must fail: %v", v)
	}
}

func TestOutcomeClassification(t *testing.T) {
	remote := func(code string, maybe bool) error {
		return transport.DecodeError(&loompb.Error{Code: code, Message: code, MaybeApplied: maybe})
	}
	for _, c := range []struct {
		err  error
		want Outcome
	}{
		{nil, OK},
		{fmt.Errorf("x: %w", transport.ErrUnknownOutcome), Unknown},
		{context.DeadlineExceeded, Unknown},
		{fmt.Errorf("%w: no node", runtime.ErrUnavailable), Failed},
		{transport.ErrNotOwner, Failed},
		{remote("unknown_outcome", true), Unknown},
		{remote("fenced", false), Failed},
		{remote("unavailable", false), Failed},
		{remote("deadline_exceeded", true), Unknown},
		{remote("internal", true), Unknown},
		{journal.ErrFenced, Failed},
		{errors.New("something else"), Unknown},
	} {
		if got := ClientOutcome(c.err); got != c.want {
			t.Errorf("ClientOutcome(%v) = %s, want %s", c.err, got, c.want)
		}
	}
	refused := fmt.Errorf("dial: %w", syscall.ECONNREFUSED)
	for _, c := range []struct {
		status int
		err    error
		want   Outcome
	}{
		{http.StatusOK, nil, OK},
		{http.StatusServiceUnavailable, nil, Failed},
		{http.StatusConflict, nil, Failed},
		{http.StatusUnprocessableEntity, nil, Failed},
		{http.StatusInternalServerError, nil, Unknown},
		{http.StatusGatewayTimeout, nil, Unknown},
		{http.StatusBadGateway, nil, Unknown}, // unknown_outcome
		{499, nil, Unknown},
		{0, refused, Failed},
		{0, context.DeadlineExceeded, Unknown},
		{0, errors.New("EOF"), Unknown},
	} {
		if got := HTTPOutcome(c.status, c.err); got != c.want {
			t.Errorf("HTTPOutcome(%d, %v) = %s, want %s", c.status, c.err, got, c.want)
		}
	}
}

// A gateway write carries its key as Idempotency-Key (and correlation
// id), and a call whose kept-alive connection breaks after the request was
// written is Unknown and is not sent again behind the suite's back: Go's
// http.Transport would resend a POST carrying Idempotency-Key and report
// only the resend's error (a run once saw a write applied by a dying node
// reported as "connection refused"); the suite retries by itself.
func TestGatewayCallCarriesItsKeyAndIsNotResent(t *testing.T) {
	var requests atomic.Int32
	var mu sync.Mutex
	var keys, cids []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		keys, cids = append(keys, r.Header.Get("Idempotency-Key")), append(cids, r.Header.Get("X-Correlation-ID"))
		mu.Unlock()
		if requests.Add(1) == 1 {
			_, _ = w.Write([]byte(`{"value":1}`))
			return
		}
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close() // read the request, then die without answering
		}
	}))
	defer srv.Close()
	port, _ := strconv.Atoi(srv.URL[strings.LastIndex(srv.URL, ":")+1:])
	g := gatewayCaller{hc: srv.Client(), node: &Node{ID: "node-1", HTTPPort: port}, timeout: time.Second}
	ctx := runtime.WithIdempotencyKey(runtime.WithCorrelationID(context.Background(), "chaos-w1-1"), "chaos-w1-1")
	if _, _, outcome, err := g.call(ctx, "counter", "c", "add", []byte(`{"delta":1}`)); outcome != OK {
		t.Fatalf("first call: %s %v", outcome, err)
	}
	_, _, outcome, err := g.call(ctx, "counter", "c", "add", []byte(`{"delta":1}`))
	if outcome != Unknown || requests.Load() != 2 {
		t.Fatalf("second call: %s (%v) after %d requests; want unknown after 2", outcome, err, requests.Load())
	}
	mu.Lock()
	defer mu.Unlock()
	for i := range keys {
		if keys[i] != "chaos-w1-1" || cids[i] != "chaos-w1-1" {
			t.Errorf("request %d carried key %q, correlation id %q", i+1, keys[i], cids[i])
		}
	}
}
