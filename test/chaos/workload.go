package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/loom-mesh/loom/client"
	"github.com/loom-mesh/loom/errclass"
	"github.com/loom-mesh/loom/runtime"
	"github.com/loom-mesh/loom/transport"
)

// Actor types of the workload (loom-node's built-ins).
const (
	TypeRegister = "register"
	TypeCounter  = "counter"
	TypeKV       = "kv"
)

// Actor is one actor of the workload.
type Actor struct {
	Type, ID string
	Hot      bool
}

// Key is "type/id".
func (a Actor) Key() string { return a.Type + "/" + a.ID }

// WorkloadOptions configure the clients.
type WorkloadOptions struct {
	// Workers run concurrently; even ones call through the embedded
	// client (one client each), odd ones through the HTTP gateway of a
	// random node.
	Workers int
	// Rate bounds the operations per second of all workers together.
	Rate float64
	// OpTimeout bounds each operation.
	OpTimeout time.Duration
	// Hot and cold actors of each type; HotFraction of the operations go
	// to the hot ones. KVs are cold kv actors (put, delete, get and list
	// over KVKeys).
	HotRegisters, ColdRegisters, HotCounters, ColdCounters, KVs int
	HotFraction                                                 float64
	// FanoutEvery, when > 0, is how often the same hot register is read
	// concurrently through every node's gateway and an embedded client at
	// once (each read a client of its own for the checker): replicas and
	// owners that disagree show up as reads no order explains.
	FanoutEvery time.Duration
	// Seed drives every choice of actor, operation and argument.
	Seed int64
	// RetryUnknown sends every op whose outcome is unknown again, with the
	// same idempotency key (its age counted from the first send), through
	// the same kind of caller (a gateway: a node drawn again), until it is
	// answered OK or RetryFor has passed since its first send (it is then
	// still unknown: a refusal of a retry says nothing of an earlier
	// attempt). Its history
	// entry spans the first call to the last return and counts the
	// attempts; the journal audit then checks that every key took effect
	// exactly once.
	RetryUnknown bool
	// RetryFor bounds the retries of one op; 0 means 30 s.
	RetryFor time.Duration
}

// Workload runs recorded operations against a cluster.
type Workload struct {
	opts    WorkloadOptions
	cluster *Cluster
	nodes   []*Node // the gateways: the cluster's nodes when the load started
	rec     *Recorder
	Actors  []Actor
	hot     []Actor
	cold    []Actor
	clients []*client.Client
	hc      *http.Client

	nextValue  atomic.Int64 // unique register values
	nextClient atomic.Int64 // porcupine client ids
}

// NewWorkload dials one embedded client per even worker.
func NewWorkload(ctx context.Context, c *Cluster, rec *Recorder, o WorkloadOptions) (*Workload, error) {
	w := &Workload{opts: o, cluster: c, nodes: slices.Clone(c.Nodes), rec: rec}
	add := func(typ, prefix string, n int, hot bool) {
		for i := range n {
			a := Actor{Type: typ, ID: fmt.Sprintf("%s-%d", prefix, i), Hot: hot}
			w.Actors = append(w.Actors, a)
			if hot {
				w.hot = append(w.hot, a)
			} else {
				w.cold = append(w.cold, a)
			}
		}
	}
	add(TypeRegister, "reg-hot", o.HotRegisters, true)
	add(TypeCounter, "cnt-hot", o.HotCounters, true)
	add(TypeRegister, "reg", o.ColdRegisters, false)
	add(TypeCounter, "cnt", o.ColdCounters, false)
	add(TypeKV, "kv", o.KVs, false)
	if len(w.hot) == 0 {
		return nil, errors.New("chaos: the workload needs at least one hot actor")
	}
	w.hc = c.HTTPClient(o.OpTimeout+2*time.Second,
		&http.Transport{MaxIdleConnsPerHost: o.Workers, IdleConnTimeout: 30 * time.Second})
	w.nextClient.Store(int64(o.Workers))
	for i := 0; i < o.Workers; i += 2 {
		cl, err := client.Dial(ctx, c.GRPCAddrs(), c.ClientOptions())
		if err != nil {
			w.Close()
			return nil, fmt.Errorf("chaos: dialing the cluster: %w", err)
		}
		w.clients = append(w.clients, cl)
	}
	return w, nil
}

// Close closes the clients.
func (w *Workload) Close() {
	for _, c := range w.clients {
		_ = c.Close()
	}
	w.hc.CloseIdleConnections()
}

// HotActors lists the hot actors.
func (w *Workload) HotActors() []Actor { return w.hot }

// Owner is the node the placement ring names for the actor, as the first
// embedded client sees it.
func (w *Workload) Owner(a Actor) (string, bool) { return w.clients[0].Owner(a.Type, a.ID) }

// Run runs the workers (and the fan-out reads) until ctx ends and waits
// for them.
func (w *Workload) Run(ctx context.Context) {
	var wg sync.WaitGroup
	if w.opts.FanoutEvery > 0 {
		wg.Go(func() { w.fanout(ctx) })
	}
	per := time.Duration(float64(w.opts.Workers) / w.opts.Rate * float64(time.Second))
	for i := range w.opts.Workers {
		wk := &worker{
			w: w, id: i, client: i,
			rng:  rand.New(rand.NewPCG(uint64(w.opts.Seed), uint64(i)+1)),
			seen: map[string]int64{},
		}
		if i%2 == 0 {
			wk.embedded = w.clients[i/2]
		}
		wg.Go(func() { wk.run(ctx, per) })
	}
	wg.Wait()
}

type worker struct {
	w        *Workload
	id       int
	client   int
	rng      *rand.Rand
	embedded *client.Client // nil: HTTP gateway
	seen     map[string]int64
	seq      int
}

func (wk *worker) run(ctx context.Context, per time.Duration) {
	tick := time.NewTicker(per)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		wk.one(ctx)
	}
}

// one draws and runs one operation.
func (wk *worker) one(ctx context.Context) {
	w := wk.w
	var a Actor
	if len(w.cold) == 0 || wk.rng.Float64() < w.opts.HotFraction {
		a = w.hot[wk.rng.IntN(len(w.hot))]
	} else {
		a = w.cold[wk.rng.IntN(len(w.cold))]
	}
	op := Op{Actor: a.Key()}
	r := wk.rng.Float64()
	switch a.Type {
	case TypeRegister:
		switch {
		case r < 0.4:
			op.Kind = OpRead
		case r < 0.75:
			op.Kind = OpWrite
			op.Value = w.nextValue.Add(1)
		default:
			op.Kind = OpCAS
			op.Expect = wk.seen[op.Actor]
			op.Value = w.nextValue.Add(1)
		}
	case TypeCounter:
		if r < 0.8 {
			op.Kind, op.Value = OpAdd, 1+wk.rng.Int64N(5)
		} else {
			op.Kind = OpGet
		}
	case TypeKV:
		op.Field = KVKeys[wk.rng.IntN(len(KVKeys))]
		switch {
		case r < 0.35:
			op.Kind, op.Value = OpKVPut, w.nextValue.Add(1)
		case r < 0.5:
			op.Kind = OpKVDelete
		case r < 0.75:
			op.Kind = OpKVGet
		default:
			op.Kind, op.Field = OpKVList, ""
		}
	}
	var via caller
	if wk.embedded != nil {
		via = embeddedCaller{wk.embedded}
	} else {
		via = gatewayCaller{hc: w.hc, node: w.nodes[wk.rng.IntN(len(w.nodes))], timeout: w.opts.OpTimeout}
	}
	// The run's end cancels ctx; an op cut short by it would be recorded
	// as unknown for no fault of the cluster, so each op gets its own
	// deadline and the loop checks ctx between ops.
	wk.seq++
	op.Client = wk.client
	key, born := fmt.Sprintf("chaos-w%d-%d", wk.id, wk.seq), time.Now()
	op = w.attempt(context.WithoutCancel(ctx), via, op, key, born)
	if w.opts.RetryUnknown {
		retryFor := w.opts.RetryFor
		if retryFor == 0 {
			retryFor = 30 * time.Second
		}
		// Once an attempt's outcome is unknown, only an OK settles the op:
		// a later attempt refused before it reached the actor
		// (unavailable, not the owner, overloaded) says nothing of the
		// earlier one, so the op stays unknown unless one is answered.
		first, unknown := op.Call, op.Outcome == Unknown
		for unknown && op.Outcome != OK && time.Since(born) < retryFor && ctx.Err() == nil {
			if wk.embedded == nil {
				via = gatewayCaller{hc: w.hc, node: w.nodes[wk.rng.IntN(len(w.nodes))], timeout: w.opts.OpTimeout}
			}
			attempts := op.Attempts
			op = w.attempt(context.WithoutCancel(ctx), via, op, key, born)
			op.Call, op.Attempts = first, attempts+1
		}
		if unknown && op.Outcome != OK {
			op.Outcome = Unknown
		}
	}
	w.rec.Add(op)
	switch op.Outcome {
	case OK:
		switch op.Kind {
		case OpRead:
			wk.seen[op.Actor] = op.Out
		case OpWrite:
			wk.seen[op.Actor] = op.Value
		case OpCAS:
			if op.Swapped {
				wk.seen[op.Actor] = op.Value
			}
		}
	case Unknown:
		// A client whose op may still take effect is, for the checker, a
		// new client from now on (porcupine allows one pending op per
		// client id in its pictures).
		wk.client = int(w.nextClient.Add(1)) - 1
	}
}

// exec runs op through via and records it.
func (w *Workload) exec(ctx context.Context, via caller, op Op, key string) Op {
	op = w.attempt(ctx, via, op, key, time.Now())
	w.rec.Add(op)
	return op
}

// attempt runs op through via once, under key (born when the op was first
// sent), and returns it with its outcome, unrecorded.
func (w *Workload) attempt(ctx context.Context, via caller, op Op, key string, born time.Time) Op {
	typ, id, _ := strings.Cut(op.Actor, "/")
	var method string
	var payload []byte
	switch op.Kind {
	case OpRead:
		method, payload = "read", []byte(`{}`)
	case OpWrite:
		method, payload = "write", fmt.Appendf(nil, `{"value":%d}`, op.Value)
	case OpCAS:
		exp := "null"
		if op.Expect != 0 {
			exp = fmt.Sprint(op.Expect)
		}
		method, payload = "cas", fmt.Appendf(nil, `{"expect":%s,"value":%d}`, exp, op.Value)
	case OpAdd:
		method, payload = "add", fmt.Appendf(nil, `{"delta":%d}`, op.Value)
	case OpGet:
		method, payload = "get", []byte(`{}`)
	case OpKVPut:
		method, payload = "put", fmt.Appendf(nil, `{"key":%q,"value":%d}`, op.Field, op.Value)
	case OpKVDelete:
		method, payload = "delete", fmt.Appendf(nil, `{"key":%q}`, op.Field)
	case OpKVGet:
		method, payload = "get", fmt.Appendf(nil, `{"key":%q}`, op.Field)
	case OpKVList:
		method, payload = "list", []byte(`{}`)
	}
	ctx, cancel := context.WithTimeout(ctx, w.opts.OpTimeout)
	defer cancel()
	// Every op carries its key as its correlation id (the journal audit
	// matches entries by it); a write also as its idempotency key, so
	// that it runs once however often it is sent. (A keyed call's
	// outcome is recorded in the actor's journal, a read's too: reads
	// go without, as running them twice has no effect.)
	ctx = runtime.WithCorrelationID(ctx, key)
	if op.IsWrite() {
		ctx = runtime.WithIdempotencyKeyAge(ctx, key, time.Since(born))
	}
	op.Key = key
	if op.Attempts == 0 {
		op.Attempts = 1
	}
	op.Call = w.rec.Now()
	out, name, outcome, err := via.call(ctx, typ, id, method, payload)
	op.Return = w.rec.Now()
	op.Via, op.Outcome = name, outcome
	if err != nil {
		op.Err = err.Error()
	}
	if outcome == OK {
		if err := decodeOutput(&op, out); err != nil {
			// Acknowledged with a reply this suite cannot read: it took
			// effect, but its output is unknown.
			op.Outcome, op.Err = Unknown, fmt.Sprintf("undecodable reply %q: %v", out, err)
		}
	}
	return op
}

func decodeOutput(op *Op, out []byte) error {
	switch op.Kind {
	case OpKVGet:
		var v struct {
			Value *int64
			Found *bool
		}
		if err := json.Unmarshal(out, &v); err != nil {
			return err
		}
		if v.Found == nil {
			return errors.New("no found field")
		}
		if *v.Found {
			if v.Value == nil || *v.Value == 0 {
				return errors.New("found, but no value")
			}
			op.Out = *v.Value
		}
	case OpKVDelete:
		var v struct{ Deleted *bool }
		if err := json.Unmarshal(out, &v); err != nil {
			return err
		}
		if v.Deleted == nil {
			return errors.New("no deleted field")
		}
		op.Swapped = *v.Deleted
	case OpKVList:
		var v struct{ Keys *[]string }
		if err := json.Unmarshal(out, &v); err != nil {
			return err
		}
		if v.Keys == nil {
			return errors.New("no keys field")
		}
		op.Listed = *v.Keys
	case OpRead:
		var v struct{ Value *int64 }
		if err := json.Unmarshal(out, &v); err != nil {
			return err
		}
		if v.Value != nil {
			op.Out = *v.Value
		}
	case OpCAS:
		var v struct{ OK *bool }
		if err := json.Unmarshal(out, &v); err != nil {
			return err
		}
		if v.OK == nil {
			return errors.New("no ok field")
		}
		op.Swapped = *v.OK
	case OpAdd, OpGet:
		var v struct{ Value *int64 }
		if err := json.Unmarshal(out, &v); err != nil {
			return err
		}
		if v.Value == nil {
			return errors.New("no value field")
		}
		op.Out = *v.Value
	}
	return nil
}

// fanout reads one hot register through every gateway and the first
// embedded client at the same moment, every FanoutEvery, until ctx ends.
// Each read is a client of its own, so that the checker may order them
// freely among themselves but not against the writes around them.
func (w *Workload) fanout(ctx context.Context) {
	var regs []Actor
	for _, a := range w.hot {
		if a.Type == TypeRegister {
			regs = append(regs, a)
		}
	}
	if len(regs) == 0 {
		return
	}
	rng := rand.New(rand.NewPCG(uint64(w.opts.Seed), 0xfa9))
	tick := time.NewTicker(w.opts.FanoutEvery)
	defer tick.Stop()
	for round := 0; ; round++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		a := regs[rng.IntN(len(regs))]
		vias := []caller{embeddedCaller{w.clients[0]}}
		for _, n := range w.nodes {
			vias = append(vias, gatewayCaller{hc: w.hc, node: n, timeout: w.opts.OpTimeout})
		}
		var wg sync.WaitGroup
		for i, via := range vias {
			op := Op{Actor: a.Key(), Kind: OpRead, Client: int(w.nextClient.Add(1)) - 1}
			wg.Go(func() {
				w.exec(context.WithoutCancel(ctx), via, op, fmt.Sprintf("chaos-fanout-%d-%d", round, i))
			})
		}
		wg.Wait()
	}
}

// caller is one way to reach the cluster.
type caller interface {
	call(ctx context.Context, typ, id, method string, payload []byte) (out []byte, via string, outcome Outcome, err error)
}

// embeddedCaller calls through the embedded cluster client.
type embeddedCaller struct{ c *client.Client }

func (e embeddedCaller) call(ctx context.Context, typ, id, method string, payload []byte) ([]byte, string, Outcome, error) {
	out, err := e.c.Invoke(ctx, typ, id, method, payload)
	return out, "client", ClientOutcome(err), err
}

// ClientOutcome classifies an error of the embedded client (or any
// runtime.Invoker over the transport): nil is OK; transport.MaybeApplied
// decides between Unknown and Failed.
func ClientOutcome(err error) Outcome {
	switch {
	case err == nil:
		return OK
	case transport.MaybeApplied(err):
		return Unknown
	default:
		return Failed
	}
}

// gatewayCaller calls through one node's HTTP gateway.
type gatewayCaller struct {
	hc      *http.Client
	node    *Node
	timeout time.Duration
}

func (g gatewayCaller) call(ctx context.Context, typ, id, method string, payload []byte) ([]byte, string, Outcome, error) {
	via := "http:" + g.node.ID
	url := g.node.URL("/v1/actors/" + typ + "/" + id + "/" + method)
	// The HTTP client's own timeout (OpTimeout + 2s) outlasts the call's
	// X-Loom-Timeout, so a slow answer is the node's word, not a cut.
	req, err := http.NewRequestWithContext(context.WithoutCancel(ctx), http.MethodPost, url, bytes.NewReader(payload))
	if err != nil {
		return nil, via, Failed, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Loom-Timeout", g.timeout.String())
	// The op's key travels as the correlation id (the journal records it)
	// and, for a write, as its Idempotency-Key. With that header Go's
	// http.Transport takes a POST for replayable and sends it again on a
	// new connection when a reused one breaks after the request was
	// written, and reports only the resend's error: a write applied by a
	// node that then died came back as "connection refused" (seen in a
	// run), which reads as "not applied". The suite retries by itself
	// (RetryUnknown), so it turns that off: without GetBody a request
	// with a body is not replayable.
	req.GetBody = nil
	req.Header.Set("X-Correlation-ID", runtime.CorrelationID(ctx))
	if k := runtime.IdempotencyKey(ctx); k != "" {
		req.Header.Set("Idempotency-Key", k)
	}
	resp, err := g.hc.Do(req)
	if err != nil {
		return nil, via, HTTPOutcome(0, err), err
	}
	defer resp.Body.Close()
	body, rerr := io.ReadAll(resp.Body)
	if rerr != nil && resp.StatusCode == http.StatusOK {
		return nil, via, Unknown, fmt.Errorf("reading the reply: %w", rerr)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, via, HTTPOutcome(resp.StatusCode, nil), fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(body))
	}
	return body, via, OK, nil
}

// HTTPOutcome classifies a gateway answer: 200 OK; a status that errclass's
// table gives an error that may have been applied (internal's 500, 502
// unknown outcome, 504 deadline, 499 canceled) Unknown; every other status
// Failed. A transport error is Failed only when the connection was refused
// (nothing was sent), else Unknown.
func HTTPOutcome(status int, err error) Outcome {
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return Failed
		}
		return Unknown
	}
	if status == http.StatusOK {
		return OK
	}
	if status == errclass.Internal.HTTP {
		return Unknown
	}
	for _, r := range errclass.Rows {
		if r.HTTP == status && r.MaybeApplied {
			return Unknown
		}
	}
	return Failed
}
