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
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The messaging workload: senders send durable counter increments, each
// with a unique message id, through the HTTP gateway of a random node,
// while the faults run. A send whose answer is lost is sent again, with
// the same id, until a node accepts it (the store accepts an id once).
// Every FailEvery-th message names a handler failure (counter.add's fail
// field): it must end in the dead-letter queue, applied never. After the
// convergence the check (CheckMessages) wants every counter equal to the
// sum of its accepted increments, each accepted id acknowledged exactly
// once in its actor's journal (a delivery's ack, or the direct entry of a
// message applied as it was accepted; the failing ones never), the queues
// empty, nothing in flight, and the dead letters exactly the failing
// messages.

// MessageOptions configure the messaging workload.
type MessageOptions struct {
	// Senders send concurrently; 0 turns the workload off.
	Senders int
	// Rate bounds the sends per second of all senders together.
	Rate float64
	// Counters is how many counter actors receive messages ("msg-<i>").
	Counters int
	// FailEvery: every FailEvery-th message fails on purpose (0: none).
	FailEvery int
	// SendTimeout bounds one send.
	SendTimeout time.Duration
}

// SentMessage is one message of the workload.
type SentMessage struct {
	ID       string `json:"id"`
	Actor    string `json:"actor"` // "counter/msg-3"
	Delta    int64  `json:"delta"`
	Fail     bool   `json:"fail"`
	Accepted bool   `json:"accepted"`
	Sends    int    `json:"sends"` // attempts until accepted (or given up)
	LastErr  string `json:"lastError,omitempty"`
}

// Messenger runs the messaging workload.
type Messenger struct {
	opts    MessageOptions
	cluster *Cluster
	nodes   []*Node // the gateways: the cluster's nodes when the workload was made (churn changes cluster.Nodes)
	hc      *http.Client
	rng     *rand.Rand
	rngMu   sync.Mutex

	mu   sync.Mutex
	sent []*SentMessage
	next atomic.Int64
}

// NewMessenger builds the workload; Run sends.
func NewMessenger(c *Cluster, o MessageOptions, seed int64) *Messenger {
	if o.SendTimeout <= 0 {
		o.SendTimeout = 3 * time.Second
	}
	return &Messenger{
		opts: o, cluster: c, nodes: slices.Clone(c.Nodes), rng: rand.New(rand.NewPCG(uint64(seed), 0x6d7367)),
		hc: c.HTTPClient(o.SendTimeout, &http.Transport{MaxIdleConnsPerHost: max(o.Senders, 2), IdleConnTimeout: 30 * time.Second}),
	}
}

// Actors are the workload's counters.
func (m *Messenger) Actors() []Actor {
	out := make([]Actor, m.opts.Counters)
	for i := range out {
		out[i] = Actor{Type: TypeCounter, ID: fmt.Sprintf("msg-%d", i)}
	}
	return out
}

func (m *Messenger) intn(n int) int {
	m.rngMu.Lock()
	defer m.rngMu.Unlock()
	return m.rng.IntN(n)
}

// Run sends until ctx ends.
func (m *Messenger) Run(ctx context.Context) {
	if m.opts.Senders <= 0 || m.opts.Counters <= 0 {
		return
	}
	per := time.Duration(float64(time.Second) * float64(m.opts.Senders) / m.opts.Rate)
	var wg sync.WaitGroup
	for range m.opts.Senders {
		wg.Go(func() {
			t := time.NewTicker(per)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				m.sendNew(ctx)
			}
		})
	}
	wg.Wait()
}

// sendNew makes one message and sends it, trying again (same id) while the
// answer is lost and ctx lasts.
func (m *Messenger) sendNew(ctx context.Context) {
	n := m.next.Add(1)
	msg := &SentMessage{
		ID:    fmt.Sprintf("chaos-msg-%d", n),
		Actor: fmt.Sprintf("%s/msg-%d", TypeCounter, m.intn(m.opts.Counters)),
		Delta: int64(1 + m.intn(5)),
		Fail:  m.opts.FailEvery > 0 && n%int64(m.opts.FailEvery) == 0,
	}
	m.mu.Lock()
	m.sent = append(m.sent, msg)
	m.mu.Unlock()
	for ctx.Err() == nil && !m.send(msg) {
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// statusCanceled is the gateway's answer to a call or send canceled
// before its outcome was known (errclass "canceled", nginx's 499).
const statusCanceled = 499

// send sends msg once through a random running node; true once a node
// answered with a definite acceptance or refusal.
func (m *Messenger) send(msg *SentMessage) bool {
	nodes := m.nodes
	var node *Node
	for range len(nodes) {
		if n := nodes[m.intn(len(nodes))]; n.State() == Running {
			node = n
			break
		}
	}
	if node == nil {
		return false
	}
	body := fmt.Sprintf(`{"delta":%d}`, msg.Delta)
	if msg.Fail {
		body = fmt.Sprintf(`{"delta":%d,"fail":"chaos: failing on purpose"}`, msg.Delta)
	}
	typ, id, _ := strings.Cut(msg.Actor, "/")
	req, err := http.NewRequest(http.MethodPost, node.URL("/v1/messages/"+typ+"/"+id+"/add"), strings.NewReader(body))
	if err != nil {
		return false
	}
	req.GetBody = nil // no resend by net/http: this workload resends by itself
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Loom-Message-Id", msg.ID)
	m.mu.Lock()
	msg.Sends++
	m.mu.Unlock()
	resp, err := m.hc.Do(req)
	if err != nil {
		m.note(msg, err.Error(), false)
		return false
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	switch {
	case resp.StatusCode == http.StatusAccepted:
		m.note(msg, "", true)
		return true
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == statusCanceled:
		// Not accepted, or not known to be (499: the send was canceled on
		// its way, outcome unknown): send it again, the id makes it once.
		m.note(msg, fmt.Sprintf("%s: %s", resp.Status, bytes.TrimSpace(out)), false)
		return false
	default:
		// A refusal of a well-formed send is a bug; the checker reports
		// the message as never accepted.
		m.note(msg, fmt.Sprintf("refused: %s: %s", resp.Status, bytes.TrimSpace(out)), false)
		return true
	}
}

func (m *Messenger) note(msg *SentMessage, err string, accepted bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	msg.LastErr = err
	msg.Accepted = msg.Accepted || accepted
}

// Settle sends every message not yet accepted again (same id) until each
// is accepted or refused, or ctx ends.
func (m *Messenger) Settle(ctx context.Context) error {
	for {
		var open []*SentMessage
		m.mu.Lock()
		for _, s := range m.sent {
			if !s.Accepted && !strings.HasPrefix(s.LastErr, "refused") {
				open = append(open, s)
			}
		}
		m.mu.Unlock()
		if len(open) == 0 {
			return nil
		}
		for _, s := range open {
			m.send(s)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d messages still not accepted: %w", len(open), ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Sent returns a copy of the messages sent so far.
func (m *Messenger) Sent() []SentMessage {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]SentMessage, len(m.sent))
	for i, s := range m.sent {
		out[i] = *s
	}
	return out
}

// queueHealth is what the check reads of /health's messageQueues.
type queueHealth struct {
	Components struct {
		MessageQueues *struct {
			InFlight int `json:"inFlight"`
			Types    map[string]struct {
				Pending     int `json:"pending"`
				Scheduled   int `json:"scheduled"`
				DeadLetters int `json:"deadLetters"`
			} `json:"types"`
			// RabbitMQ is the broker of messaging.backend rabbitmq.
			RabbitMQ *struct {
				Queues *struct {
					Ready   int `json:"ready"`
					Delayed int `json:"delayed"`
				} `json:"queues"`
			} `json:"rabbitmq"`
		} `json:"messageQueues"`
	} `json:"components"`
}

// AwaitDrained waits until every running node reports no message pending,
// scheduled or in flight. It returns the last figures seen.
func (m *Messenger) AwaitDrained(ctx context.Context) (string, error) {
	var last string
	for {
		idle, desc, err := m.drained(ctx)
		last = desc
		if err == nil && idle {
			return last, nil
		}
		select {
		case <-ctx.Done():
			if err != nil {
				last += " (" + err.Error() + ")"
			}
			return last, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (m *Messenger) drained(ctx context.Context) (bool, string, error) {
	idle := true
	var desc []string
	for _, n := range m.cluster.Nodes {
		if n.State() != Running {
			continue
		}
		var h queueHealth
		if err := m.getJSON(ctx, n, "/health", &h); err != nil {
			return false, "", err
		}
		q := h.Components.MessageQueues
		if q == nil {
			return false, "", fmt.Errorf("%s: /health has no messageQueues", n.ID)
		}
		pending := 0
		for _, t := range q.Types {
			pending += t.Pending + t.Scheduled
		}
		if r := q.RabbitMQ; r != nil {
			if r.Queues == nil {
				return false, "", fmt.Errorf("%s: /health shows no queue depths of its RabbitMQ broker", n.ID)
			}
			pending += r.Queues.Ready + r.Queues.Delayed
		}
		if pending > 0 || q.InFlight > 0 {
			idle = false
		}
		desc = append(desc, fmt.Sprintf("%s: %d pending, %d in flight", n.ID, pending, q.InFlight))
	}
	return idle, strings.Join(desc, "; "), nil
}

func (m *Messenger) getJSON(ctx context.Context, n *Node, path string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.URL(path), nil)
	if err != nil {
		return err
	}
	resp, err := m.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("%s %s: %s: %s", n.ID, path, resp.Status, bytes.TrimSpace(b))
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// MessageState is what the cluster holds at the end, for CheckMessages.
type MessageState struct {
	// Values are the counters' values, by actor key.
	Values map[string]int64
	// Journals are the counters' journals, every node's replica.
	Journals map[string][]journalDump
	// Dead are the dead letters' ids, by actor key.
	Dead map[string][]string
	// Drained: the queues were empty with nothing in flight; Figures
	// what the nodes last reported.
	Drained bool
	Figures string
}

// Collect reads the counters, their journals and the dead letters.
func (m *Messenger) Collect(ctx context.Context) (MessageState, error) {
	st := MessageState{Values: map[string]int64{}, Dead: map[string][]string{}}
	var node *Node
	for _, n := range m.cluster.Nodes {
		if n.State() == Running {
			node = n
			break
		}
	}
	if node == nil {
		return st, errors.New("no node running")
	}
	var errs []error
	for _, a := range m.Actors() {
		v, err := m.counter(ctx, node, a)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		st.Values[a.Key()] = v
	}
	var dead struct {
		DeadLetters []struct {
			ID    string `json:"id"`
			Actor string `json:"actor"`
		} `json:"deadLetters"`
	}
	if err := m.getJSON(ctx, node, "/v1/deadletters", &dead); err != nil {
		errs = append(errs, err)
	}
	for _, d := range dead.DeadLetters {
		st.Dead[d.Actor] = append(st.Dead[d.Actor], d.ID)
	}
	dumps, err := m.cluster.DumpAll(ctx, m.Actors())
	if err != nil {
		errs = append(errs, err)
	}
	st.Journals = dumps
	return st, errors.Join(errs...)
}

func (m *Messenger) counter(ctx context.Context, n *Node, a Actor) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.URL("/v1/actors/"+a.Type+"/"+a.ID+"/get"), nil)
	if err != nil {
		return 0, err
	}
	resp, err := m.hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var v struct {
		Value int64 `json:"value"`
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("get %s: %s", a.Key(), resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return 0, fmt.Errorf("get %s: %w", a.Key(), err)
	}
	return v.Value, nil
}

// MessageReport is the messaging check's summary.
type MessageReport struct {
	Sent          int `json:"sent"`
	Accepted      int `json:"accepted"`
	Resent        int `json:"resent"` // accepted after more than one send
	FailOnPurpose int `json:"failOnPurpose"`
	DeadLetters   int `json:"deadLetters"`
	// Unverifiable: acknowledgements a snapshot hides from the audit.
	Unverifiable int    `json:"unverifiable"`
	Figures      string `json:"figures,omitempty"`
}

// CheckMessages checks the end state against the messages sent.
func CheckMessages(sent []SentMessage, st MessageState) (MessageReport, []Violation) {
	rep := MessageReport{Sent: len(sent), Figures: st.Figures}
	var vs []Violation
	violate := func(actor, format string, args ...any) {
		vs = append(vs, Violation{Checker: "messages", Actor: actor, Detail: fmt.Sprintf(format, args...)})
	}
	if !st.Drained {
		violate("", "the queues did not drain: %s", st.Figures)
	}
	want := map[string]int64{}
	byID := map[string]SentMessage{}
	failing := map[string][]string{}
	for _, s := range sent {
		byID[s.ID] = s
		if !s.Accepted {
			violate(s.Actor, "message %s was never accepted after %d sends: %s", s.ID, s.Sends, s.LastErr)
			continue
		}
		rep.Accepted++
		if s.Sends > 1 {
			rep.Resent++
		}
		if s.Fail {
			rep.FailOnPurpose++
			failing[s.Actor] = append(failing[s.Actor], s.ID)
			continue
		}
		want[s.Actor] += s.Delta
	}
	actors := make([]string, 0, len(st.Values))
	for a := range st.Values {
		actors = append(actors, a)
	}
	sort.Strings(actors)
	for _, a := range actors {
		if got := st.Values[a]; got != want[a] {
			violate(a, "counter is %d, the accepted increments sum to %d", got, want[a])
		}
	}
	for a, ids := range st.Dead {
		rep.DeadLetters += len(ids)
		slices.Sort(ids)
		exp := slices.Clone(failing[a])
		slices.Sort(exp)
		if !slices.Equal(ids, exp) {
			violate(a, "dead letters %v, want exactly the failing messages %v", ids, exp)
		}
	}
	for a, ids := range failing {
		if len(st.Dead[a]) == 0 {
			violate(a, "failing messages %v are not in the dead-letter queue", ids)
		}
	}
	// The journals: every accepted, succeeding id acknowledged once in
	// its actor's journal, on every replica; no failing or unknown id.
	for _, a := range sortedKeys(st.Journals) {
		for _, d := range st.Journals[a] {
			acks := map[string]int{}
			for _, e := range d.Entries {
				// An acknowledgement of a delivered message, or the
				// acceptance of one applied as it was accepted: each
				// says the message took effect in this append.
				if e.Kind == "ack" || e.Kind == "direct" {
					acks[e.IdempotencyKey]++
				}
			}
			first := uint64(1)
			if len(d.Entries) > 0 {
				first = d.Entries[0].Seq
			}
			for id, n := range acks {
				s, ok := byID[id]
				switch {
				case !ok:
					violate(a, "%s: the journal acknowledges %s, which was never sent", d.Node, id)
				case s.Fail:
					violate(a, "%s: the journal acknowledges %s, whose handler always fails", d.Node, id)
				case n > 1:
					violate(a, "%s: message %s acknowledged %d times", d.Node, id, n)
				case s.Actor != a:
					violate(a, "%s: message %s to %s acknowledged here", d.Node, id, s.Actor)
				}
			}
			for _, s := range sent {
				if s.Actor != a || !s.Accepted || s.Fail || acks[s.ID] > 0 {
					continue
				}
				if d.Snapshot != nil && first > 1 {
					rep.Unverifiable++ // possibly behind the snapshot
					continue
				}
				violate(a, "%s: accepted message %s is not acknowledged in the journal", d.Node, s.ID)
			}
		}
	}
	return rep, vs
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
