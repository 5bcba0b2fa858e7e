package faultnet

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Channel is a kind of traffic between nodes.
type Channel string

// Channels.
const (
	Gossip Channel = "gossip" // memberlist, UDP packets and TCP streams
	Raft   Channel = "raft"   // the Raft transport
	GRPC   Channel = "grpc"   // actor calls, forwarding, topology
)

// Direction says which traffic of a link a rule affects, seen from the
// node that holds the rule.
type Direction string

// Directions.
const (
	Out  Direction = "out"  // what this node sends to the peer
	In   Direction = "in"   // what this node receives from the peer
	Both Direction = "both" // both
)

// Duration is a time.Duration written as a string in JSON ("250ms").
type Duration time.Duration

// MarshalJSON writes d as a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	*d = Duration(v)
	return err
}

// Rule is a fault on the links to one peer (or every peer).
type Rule struct {
	// Peer is a node id, or "*" for every peer.
	Peer string `json:"peer"`
	// Dir is Out, In or Both (the default).
	Dir Direction `json:"dir,omitempty"`
	// Channels limits the rule to some channels; empty means all.
	Channels []Channel `json:"channels,omitempty"`
	// Drop blackholes the traffic.
	Drop bool `json:"drop,omitempty"`
	// Loss is the probability that a gossip packet or a new connection is
	// lost (0..1). Bytes on an established stream are never lost alone:
	// TCP would resend them; use Delay.
	Loss float64 `json:"loss,omitempty"`
	// Delay (plus up to Jitter) is added before each packet and each write.
	Delay  Duration `json:"delay,omitempty"`
	Jitter Duration `json:"jitter,omitempty"`
}

// ClockFault skews the node's own clock as its lease code reads it.
type ClockFault struct {
	// Offset is added to the time.
	Offset Duration `json:"offset,omitempty"`
	// Rate is how fast the node's clock runs (1.5: its timers fire early,
	// 0.5: late); 0 means 1.
	Rate float64 `json:"rate,omitempty"`
}

// DiskFault slows or fails the node's durable writes.
type DiskFault struct {
	// SyncDelay is slept before every fsync.
	SyncDelay Duration `json:"syncDelay,omitempty"`
	// NoSpace makes every durable write fail with ENOSPC.
	NoSpace bool `json:"noSpace,omitempty"`
}

// Faults is the whole fault state of one node. The zero value is healthy.
type Faults struct {
	Rules []Rule `json:"rules,omitempty"`
	// Peers maps a node id to its IPs or host:port addresses.
	Peers map[string][]string `json:"peers,omitempty"`
	Clock ClockFault          `json:"clock"`
	Disk  DiskFault           `json:"disk"`
}

// Validate reports every problem of f.
func (f Faults) Validate() error {
	var errs []error
	for i, r := range f.Rules {
		if r.Peer == "" {
			errs = append(errs, fmt.Errorf("rule %d: no peer (a node id, or *)", i))
		}
		switch r.Dir {
		case "", In, Out, Both:
		default:
			errs = append(errs, fmt.Errorf("rule %d: dir %q is not in, out or both", i, r.Dir))
		}
		for _, c := range r.Channels {
			if c != Gossip && c != Raft && c != GRPC {
				errs = append(errs, fmt.Errorf("rule %d: unknown channel %q", i, c))
			}
		}
		if r.Loss < 0 || r.Loss > 1 {
			errs = append(errs, fmt.Errorf("rule %d: loss %v is not within 0..1", i, r.Loss))
		}
		if r.Delay < 0 || r.Jitter < 0 {
			errs = append(errs, fmt.Errorf("rule %d: negative delay or jitter", i))
		}
	}
	if f.Clock.Rate < 0 {
		errs = append(errs, fmt.Errorf("clock: negative rate %v", f.Clock.Rate))
	}
	if f.Disk.SyncDelay < 0 {
		errs = append(errs, errors.New("disk: negative syncDelay"))
	}
	return errors.Join(errs...)
}

// ErrNoSpace is what BeforeSync returns while Disk.NoSpace is set; it
// wraps syscall.ENOSPC.
var ErrNoSpace = fmt.Errorf("faultnet: injected: %w", syscall.ENOSPC)

// Hook holds one node's faults and applies them.
type Hook struct {
	self    string
	localIP net.IP

	state  atomic.Pointer[state]
	origin time.Time // MonotonicNow's origin

	mu  sync.Mutex // serialises Set, and guards rng
	rng *rand.Rand
}

// state is an immutable compiled Faults.
type state struct {
	f     Faults
	owner map[string]string // IP or host:port → node id
	// clock: time = fakeBase + (real - realBase) * rate; its monotonic
	// reading, which no offset moves: monoBase + (real - realBase) * rate
	realBase, fakeBase time.Time
	monoBase           time.Duration
	rate               float64
}

// New returns a healthy hook for the node self, whose dialers dial from
// localIP ("" to let the kernel choose, which leaves inbound traffic
// unattributable). seed drives the loss and jitter draws.
func New(self, localIP string, seed uint64) *Hook {
	h := &Hook{self: self, rng: rand.New(rand.NewPCG(seed, 0x5eed))}
	if localIP != "" {
		h.localIP = net.ParseIP(localIP)
	}
	now := time.Now()
	h.origin = now
	h.state.Store(&state{owner: map[string]string{}, realBase: now, fakeBase: now, rate: 1})
	return h
}

// Set replaces the node's faults. The clock carries on from its current
// reading, so changing the rate never makes it jump.
func (h *Hook) Set(f Faults) error {
	if err := f.Validate(); err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	old := h.state.Load()
	now := time.Now()
	s := &state{f: f, owner: map[string]string{}, realBase: now, rate: f.Clock.Rate}
	if s.rate == 0 {
		s.rate = 1
	}
	// carry the clock on without the old offset, then apply the new one
	s.fakeBase = old.read(now).Add(-time.Duration(old.f.Clock.Offset)).Add(time.Duration(f.Clock.Offset))
	s.monoBase = old.readMono(now)
	for id, addrs := range f.Peers {
		for _, a := range addrs {
			s.owner[a] = id
		}
	}
	h.state.Store(s)
	return nil
}

// Faults returns the current faults.
func (h *Hook) Faults() Faults { return h.state.Load().f }

func (s *state) read(real time.Time) time.Time {
	return s.fakeBase.Add(time.Duration(float64(real.Sub(s.realBase)) * s.rate))
}

func (s *state) readMono(real time.Time) time.Duration {
	return s.monoBase + time.Duration(float64(real.Sub(s.realBase))*s.rate)
}

// Now is the node's clock: the real clock with the clock fault applied.
// It keeps a monotonic reading, so durations between two Now values follow
// the fault's rate.
func (h *Hook) Now() time.Time { return h.state.Load().read(time.Now()) }

// Monotonic is the node's monotonic clock, as a duration since the hook
// was made: it runs at the fault's rate, and no offset moves it (an offset
// is a step of the wall clock, Now, as NTP or an operator makes one; a
// monotonic clock never steps). It fits raftlock.Config.Monotonic, and
// MonotonicNow the keeper.
func (h *Hook) Monotonic() time.Duration { return h.state.Load().readMono(time.Now()) }

// MonotonicNow is Monotonic as a time.Time (from a fixed origin), for
// code that measures durations as differences of Now values: its
// differences follow the rate, and no offset steps it.
func (h *Hook) MonotonicNow() time.Time { return h.origin.Add(h.Monotonic()) }

// AfterFunc is time.AfterFunc on the hook's clock: d is scaled by the rate
// in force when it is called. With Now it fits lock.KeeperConfig.
func (h *Hook) AfterFunc(d time.Duration, f func()) (stop func() bool) {
	s := h.state.Load()
	t := time.AfterFunc(time.Duration(float64(d)/s.rate), f)
	return t.Stop
}

// BeforeSync is for the journal and log stores to call before each fsync:
// it sleeps the injected delay and fails with ErrNoSpace while the disk is
// "full".
func (h *Hook) BeforeSync() error {
	d := h.state.Load().f.Disk
	if d.SyncDelay > 0 {
		time.Sleep(time.Duration(d.SyncDelay))
	}
	if d.NoSpace {
		return ErrNoSpace
	}
	return nil
}

// Peer names the node an address (host:port or host) belongs to, or "".
func (h *Hook) Peer(addr string) string {
	s := h.state.Load()
	if id, ok := s.owner[addr]; ok {
		return id
	}
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return s.owner[host]
	}
	return ""
}

// verdict is what the rules say about traffic with a peer on a channel in
// one direction: drop it, lose it with a probability, delay it.
type verdict struct {
	drop  bool
	loss  float64
	delay time.Duration
}

func (h *Hook) verdict(peer string, ch Channel, dir Direction) verdict {
	var v verdict
	if peer == "" {
		return v // unattributable traffic is never faulted
	}
	for _, r := range h.state.Load().f.Rules {
		if r.Peer != "*" && r.Peer != peer {
			continue
		}
		if r.Dir != "" && r.Dir != Both && r.Dir != dir {
			continue
		}
		if len(r.Channels) > 0 && !slices.Contains(r.Channels, ch) {
			continue
		}
		v.drop = v.drop || r.Drop
		v.loss = max(v.loss, r.Loss)
		d := time.Duration(r.Delay)
		if r.Jitter > 0 {
			h.mu.Lock()
			d += time.Duration(h.rng.Int64N(int64(r.Jitter)))
			h.mu.Unlock()
		}
		v.delay = max(v.delay, d)
	}
	return v
}

// lost draws whether a packet or a dial with verdict v is lost.
func (h *Hook) lost(v verdict) bool {
	if v.drop {
		return true
	}
	if v.loss <= 0 {
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.rng.Float64() < v.loss
}

// Handler serves the control API, to be mounted at /chaos/:
//
//	GET    /chaos/faults   the current Faults as JSON
//	PUT    /chaos/faults   replace them (body: Faults); 400 with every problem
//	DELETE /chaos/faults   heal everything
func (h *Hook) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /chaos/faults", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(h.Faults())
	})
	mux.HandleFunc("PUT /chaos/faults", func(w http.ResponseWriter, r *http.Request) {
		var f Faults
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&f); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if err := h.Set(f); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("DELETE /chaos/faults", func(w http.ResponseWriter, _ *http.Request) {
		_ = h.Set(Faults{Peers: h.Faults().Peers})
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}
