package raftlock

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/loom-mesh/loom/raftlock/internal/replica"
)

// muxMagic starts the header of a connection for a Raft group other than
// group 0. No connection without a header starts with it: the first byte
// raft.NetworkTransport writes is an RPC type (0 to 4 in hashicorp/raft
// v1.7, numbered up from 0, so a new one would come far below 0xF7), and a
// TLS connection starts with a record's content type (0x14 to 0x18; 0x16
// for the ClientHello). (An SSLv2-compatible ClientHello could start with
// any byte from 0x80, but Go's TLS neither sends nor accepts one.)
const muxMagic = 0xF7

// MuxStreams splits base into groups stream layers, one per Raft group
// (index g is group g), that share base's listener and address, so that
// K Raft groups, each with its own raft.NetworkTransport, run over one
// port. It panics if groups < 1.
//
// Wire format. Group 0 is headerless: its connections are base's,
// byte for byte, so a node that runs one plain Raft transport on base (an
// earlier release) and group 0 of a muxed node serve each other, both
// ways. A connection for group g >= 1 starts with the byte 0xF7 (which
// neither a Raft RPC type nor TLS starts with; see muxMagic) and then g
// as a uvarint (encoding/binary), which Dial writes as soon as base's
// Dial returns, before anything else. TLS layered on a group's stream
// (TLSStreamLayer over it) therefore handshakes after the header: the
// header travels outside TLS. It only routes a connection to a group and
// carries no authority; whatever authenticates a peer (TLS) must run on
// the group's stream. (0xF7 then 0 routes to group 0 too, though Dial
// never writes it.)
//
// Accepting. One goroutine accepts from base and reads each connection's
// header in a goroutine of its own, under a read deadline of
// headerTimeout (0 or less: replica.AcceptTimeout, 10 s) that is cleared
// once the header is read, so a peer that sends nothing holds up no other
// connection. A connection whose first byte is not 0xF7 goes to group 0
// with that byte still to be read. A connection is closed, and nothing
// logged, if its header names a group >= groups, is not a uvarint of at
// most 10 bytes, or is not read within headerTimeout. After the header, a
// group's connection has no deadline from the mux: wrap the group's stream
// in TLSStreamLayer or BoundAccepts to bound its first request as Open's
// own transport does.
//
// A stream's Accept returns the next connection for its group; once the
// stream is closed, an error that wraps net.ErrClosed. Once base's Accept
// fails with an error that wraps net.ErrClosed (base was closed), every
// stream's Accept fails with that error. Other errors of base's Accept
// are retried, backing off as Raft's own accept loop does (5 ms doubling
// to 1 s), until the last stream is closed.
//
// A stream's Close ends its Accepts and closes the connections routed to
// its group that no Accept took; a second Close does nothing. The last
// stream's Close closes base (raft.NetworkTransport.Close closes its
// stream layer, so closing all K transports closes base) and returns
// base's Close's error, and closes the connections whose header is still
// being read, after which the mux's goroutines end. Every stream's Addr
// is base's; Dial dials through base (also once the stream is closed).
func MuxStreams(base raft.StreamLayer, groups int, headerTimeout time.Duration) []raft.StreamLayer {
	if groups < 1 {
		panic(fmt.Sprintf("raftlock: MuxStreams of %d groups", groups))
	}
	if headerTimeout <= 0 {
		headerTimeout = replica.AcceptTimeout
	}
	m := &mux{
		base:    base,
		timeout: headerTimeout,
		open:    groups,
		reading: map[net.Conn]struct{}{},
		stop:    make(chan struct{}),
		failed:  make(chan struct{}),
	}
	streams := make([]raft.StreamLayer, groups)
	m.groups = make([]*muxStream, groups)
	for g := range groups {
		s := &muxStream{m: m, g: g, conns: make(chan net.Conn), closed: make(chan struct{})}
		if g > 0 {
			s.header = binary.AppendUvarint([]byte{muxMagic}, uint64(g))
		}
		m.groups[g] = s
		streams[g] = s
	}
	m.wg.Add(1)
	go m.acceptLoop()
	return streams
}

// mux is the state the streams of one MuxStreams call share.
type mux struct {
	base    raft.StreamLayer
	timeout time.Duration // of a header's read
	groups  []*muxStream

	stop   chan struct{} // closed when the last stream is closed
	failed chan struct{} // closed when base's Accept failed for good
	err    error         // why, set before failed is closed

	// wg counts the accept loop and the header readers; tests wait on it
	// to see that all of them end.
	wg sync.WaitGroup

	mu      sync.Mutex
	open    int                   // streams not closed
	stopped bool                  // stop is closed
	reading map[net.Conn]struct{} // connections whose header is being read
}

// acceptLoop accepts from base until base's Accept fails for good or the
// last stream is closed.
func (m *mux) acceptLoop() {
	defer m.wg.Done()
	const baseDelay, maxDelay = 5 * time.Millisecond, time.Second
	var delay time.Duration
	for {
		c, err := m.base.Accept()
		if err == nil {
			delay = 0
			m.wg.Add(1)
			go m.route(c)
			continue
		}
		select {
		case <-m.stop:
			return
		default:
		}
		if errors.Is(err, net.ErrClosed) {
			m.err = err
			close(m.failed)
			return
		}
		delay = min(max(2*delay, baseDelay), maxDelay)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-m.stop:
			t.Stop()
			return
		}
	}
}

// route reads c's header and hands c to its group's Accept, or closes it.
func (m *mux) route(c net.Conn) {
	defer m.wg.Done()
	m.mu.Lock()
	if m.stopped {
		m.mu.Unlock()
		_ = c.Close()
		return
	}
	m.reading[c] = struct{}{}
	m.mu.Unlock()

	g, conn, ok := m.readHeader(c)

	m.mu.Lock()
	delete(m.reading, c)
	stopped := m.stopped
	m.mu.Unlock()
	if !ok || stopped {
		_ = c.Close()
		return
	}
	s := m.groups[g]
	select {
	case s.conns <- conn:
	case <-s.closed:
		_ = c.Close()
	case <-m.failed:
		_ = c.Close()
	}
}

// readHeader reads c's header under m.timeout and returns c's group and
// the connection to hand on; ok is false if c is to be closed.
func (m *mux) readHeader(c net.Conn) (g int, conn net.Conn, ok bool) {
	if err := c.SetReadDeadline(time.Now().Add(m.timeout)); err != nil {
		return 0, nil, false
	}
	r := byteReader{c}
	first, err := r.ReadByte()
	if err != nil {
		return 0, nil, false
	}
	conn = c
	if first != muxMagic {
		conn = &peekedConn{Conn: c, first: first, peeked: true}
	} else {
		id, err := binary.ReadUvarint(r)
		if err != nil || id >= uint64(len(m.groups)) {
			return 0, nil, false
		}
		g = int(id)
	}
	if err := c.SetReadDeadline(time.Time{}); err != nil {
		return 0, nil, false
	}
	return g, conn, true
}

// byteReader reads a connection one byte at a time, so that nothing past
// the header is read.
type byteReader struct{ c net.Conn }

func (r byteReader) ReadByte() (byte, error) {
	var b [1]byte
	for {
		n, err := r.c.Read(b[:])
		if n == 1 {
			return b[0], nil
		}
		if err != nil {
			return 0, err
		}
	}
}

// peekedConn is a group 0 connection whose first byte the mux has read:
// its first Read returns that byte.
type peekedConn struct {
	net.Conn
	mu     sync.Mutex
	first  byte
	peeked bool // first is yet to be read
}

func (c *peekedConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return c.Conn.Read(p)
	}
	c.mu.Lock()
	if c.peeked {
		c.peeked = false
		c.mu.Unlock()
		p[0] = c.first
		return 1, nil
	}
	c.mu.Unlock()
	return c.Conn.Read(p)
}

// muxStream is group g's stream layer.
type muxStream struct {
	m      *mux
	g      int
	header []byte        // written first on a dialed connection (none for group 0)
	conns  chan net.Conn // routed connections, handed to Accept
	closed chan struct{} // closed by Close
	once   sync.Once
}

// Accept returns the next connection for the stream's group.
func (s *muxStream) Accept() (net.Conn, error) {
	select {
	case c := <-s.conns:
		select {
		case <-s.closed:
			// Close and a routed connection raced: Close wins.
			_ = c.Close()
			return nil, s.closedErr()
		default:
			return c, nil
		}
	case <-s.closed:
		return nil, s.closedErr()
	case <-s.m.failed:
		return nil, fmt.Errorf("raftlock: Raft group %d: accept: %w", s.g, s.m.err)
	}
}

func (s *muxStream) closedErr() error {
	return fmt.Errorf("raftlock: Raft group %d: stream closed: %w", s.g, net.ErrClosed)
}

// Close ends the stream's Accepts; the last stream's Close closes base and
// returns its error. A second Close does nothing.
func (s *muxStream) Close() error {
	first := false
	s.once.Do(func() {
		first = true
		close(s.closed)
	})
	if !first {
		return nil
	}
	m := s.m
	m.mu.Lock()
	m.open--
	if m.open > 0 {
		m.mu.Unlock()
		return nil
	}
	m.stopped = true
	close(m.stop)
	reading := make([]net.Conn, 0, len(m.reading))
	for c := range m.reading {
		reading = append(reading, c)
	}
	m.mu.Unlock()
	err := m.base.Close()
	for _, c := range reading {
		_ = c.Close()
	}
	return err
}

func (s *muxStream) Addr() net.Addr { return s.m.base.Addr() }

// Dial dials addr through base and, for a group other than 0, writes the
// group's header, within timeout.
func (s *muxStream) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	c, err := s.m.base.Dial(addr, timeout)
	if err != nil || s.header == nil {
		return c, err
	}
	if timeout > 0 {
		if err := c.SetWriteDeadline(time.Now().Add(timeout)); err != nil {
			_ = c.Close()
			return nil, err
		}
	}
	if _, err := c.Write(s.header); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("raftlock: Raft group %d: header to %s: %w", s.g, addr, err)
	}
	if timeout > 0 {
		if err := c.SetWriteDeadline(time.Time{}); err != nil {
			_ = c.Close()
			return nil, err
		}
	}
	return c, nil
}
