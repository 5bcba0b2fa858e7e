package faultnet

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
)

// ErrPoisoned is returned by a connection that lost bytes to a drop rule,
// once the rule is lifted: the stream has a hole and must be dropped.
var ErrPoisoned = errors.New("faultnet: connection lost data to an injected fault")

// conn applies the rules of one peer and channel to a stream.
type conn struct {
	net.Conn
	h        *Hook
	peer     string // the peer's node id, if the dialer named it
	addr     string // else: the address its id is looked up by, on each use
	ch       Channel
	poisoned atomic.Bool
}

// who is the connection's peer. An address is looked up on every use, not
// once: a connection made before the address book named its peer (the
// book is set after the node starts) must obey the rules set later.
func (c *conn) who() string {
	if c.peer != "" {
		return c.peer
	}
	return c.h.Peer(c.addr)
}

func (c *conn) Read(b []byte) (int, error) {
	for {
		if c.poisoned.Load() && !c.h.verdict(c.who(), c.ch, In).drop {
			return 0, c.poison()
		}
		n, err := c.Conn.Read(b)
		if n > 0 && c.h.verdict(c.who(), c.ch, In).drop {
			c.poisoned.Store(true) // arrived, but "lost" on the way: discard
			if err != nil {
				return 0, err
			}
			continue
		}
		if n > 0 && c.poisoned.Load() {
			return 0, c.poison() // real data after a hole
		}
		return n, err
	}
}

func (c *conn) Write(b []byte) (int, error) {
	v := c.h.verdict(c.who(), c.ch, Out)
	if v.drop {
		c.poisoned.Store(true)
		return len(b), nil // swallowed, as by a network that drops it
	}
	if c.poisoned.Load() {
		return 0, c.poison()
	}
	if v.delay > 0 {
		time.Sleep(v.delay)
	}
	return c.Conn.Write(b)
}

// poison closes a connection that lost data and returns ErrPoisoned.
func (c *conn) poison() error {
	c.Conn.Close()
	return ErrPoisoned
}

// wrap attributes a connection to a peer: the one named, else the one
// its address (addr, or else its remote address) belongs to.
func (h *Hook) wrap(nc net.Conn, ch Channel, peer, addr string) net.Conn {
	if addr == "" {
		addr = nc.RemoteAddr().String()
	}
	return &conn{Conn: nc, h: h, peer: peer, addr: addr, ch: ch}
}

// listener wraps accepted connections.
type listener struct {
	net.Listener
	h  *Hook
	ch Channel
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return l.h.wrap(c, l.ch, "", ""), nil
}

// Listener wraps ln so that accepted connections obey the rules of ch.
// Their peer is found by source IP (see the package doc).
func (h *Hook) Listener(ln net.Listener, ch Channel) net.Listener {
	return &listener{Listener: ln, h: h, ch: ch}
}

// dial dials addr from the hook's local IP under the rules of ch. A dial
// to a blocked (or lost) peer hangs until ctx ends, as a SYN into a
// blackhole would, then fails.
func (h *Hook) dial(ctx context.Context, ch Channel, addr, peer string) (net.Conn, error) {
	v := h.verdict(cmp.Or(peer, h.Peer(addr)), ch, Out)
	if h.lost(v) {
		<-ctx.Done()
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: fmt.Errorf("faultnet: %s unreachable (injected): %w", addr, os.ErrDeadlineExceeded)}
	}
	if v.delay > 0 {
		select {
		case <-time.After(v.delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	d := net.Dialer{}
	if h.localIP != nil {
		d.LocalAddr = &net.TCPAddr{IP: h.localIP}
	}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return h.wrap(c, ch, peer, addr), nil
}

// Dialer returns a dial function for ch, shaped for gRPC's
// grpc.WithContextDialer.
func (h *Hook) Dialer(ch Channel) func(ctx context.Context, addr string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) { return h.dial(ctx, ch, addr, "") }
}

// streamLayer is a raft.StreamLayer under the hook.
type streamLayer struct {
	net.Listener
	h *Hook
}

// StreamLayer makes a raft.StreamLayer of a TCP listener (for
// raft.NewNetworkTransportWithConfig): accepted and dialed Raft connections
// obey the Raft channel's rules.
func (h *Hook) StreamLayer(ln net.Listener) raft.StreamLayer {
	return &streamLayer{Listener: h.Listener(ln, Raft), h: h}
}

func (s *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return s.h.dial(ctx, Raft, string(address), "")
}

// gossip wraps a memberlist transport (memberlist.NetTransport, bound to
// the node's own IP so that its packets' source identifies it).
type gossip struct {
	inner   memberlist.NodeAwareTransport
	h       *Hook
	packets chan *memberlist.Packet
	streams chan net.Conn
	stop    chan struct{} // closed by Shutdown: deliver nothing more
	drained chan struct{} // closed once inner is shut down: the pumps end
	once    sync.Once
	wg      sync.WaitGroup
}

// Memberlist wraps a memberlist transport: packets and streams to and from
// blocked peers are dropped, delayed or lost per the Gossip channel's
// rules. Its Shutdown shuts inner down.
func (h *Hook) Memberlist(inner memberlist.NodeAwareTransport) memberlist.NodeAwareTransport {
	g := &gossip{inner: inner, h: h, packets: make(chan *memberlist.Packet, 64),
		streams: make(chan net.Conn, 16), stop: make(chan struct{}), drained: make(chan struct{})}
	g.wg.Add(2)
	go g.pumpPackets()
	go g.pumpStreams()
	return g
}

// The pumps keep reading inner's channels until inner is shut down, even
// after Shutdown stopped delivering: memberlist's NetTransport sends to
// them without a way out, so a pump that stopped reading first would hang
// its Shutdown (and the node's) on the next packet that arrives.

func (g *gossip) pumpPackets() {
	defer g.wg.Done()
	for {
		select {
		case p, ok := <-g.inner.PacketCh():
			if !ok {
				return
			}
			v := g.h.verdict(g.h.Peer(p.From.String()), Gossip, In)
			if g.h.lost(v) {
				continue
			}
			if v.delay > 0 {
				time.AfterFunc(v.delay, func() {
					select {
					case g.packets <- p:
					case <-g.stop:
					}
				})
				continue
			}
			select {
			case g.packets <- p:
			case <-g.stop: // dropped: shutting down
			}
		case <-g.drained:
			return
		}
	}
}

func (g *gossip) pumpStreams() {
	defer g.wg.Done()
	for {
		select {
		case c, ok := <-g.inner.StreamCh():
			if !ok {
				return
			}
			select {
			case g.streams <- g.h.wrap(c, Gossip, "", ""):
			case <-g.stop:
				c.Close()
			}
		case <-g.drained:
			return
		}
	}
}

func (g *gossip) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	return g.inner.FinalAdvertiseAddr(ip, port)
}

func (g *gossip) WriteTo(b []byte, addr string) (time.Time, error) {
	return g.WriteToAddress(b, memberlist.Address{Addr: addr})
}

func (g *gossip) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	peer := a.Name
	if peer == "" {
		peer = g.h.Peer(a.Addr)
	}
	v := g.h.verdict(peer, Gossip, Out)
	if g.h.lost(v) {
		return time.Now(), nil // sent into the void
	}
	if v.delay > 0 {
		buf := append([]byte(nil), b...)
		time.AfterFunc(v.delay, func() { _, _ = g.inner.WriteToAddress(buf, a) })
		return time.Now(), nil
	}
	return g.inner.WriteToAddress(b, a)
}

func (g *gossip) PacketCh() <-chan *memberlist.Packet { return g.packets }
func (g *gossip) StreamCh() <-chan net.Conn           { return g.streams }

func (g *gossip) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return g.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

func (g *gossip) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return g.h.dial(ctx, Gossip, a.Addr, a.Name)
}

func (g *gossip) Shutdown() error {
	var err error
	g.once.Do(func() {
		close(g.stop)
		err = g.inner.Shutdown()
		close(g.drained)
		g.wg.Wait()
	})
	return err
}
