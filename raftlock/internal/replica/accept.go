package replica

import (
	"errors"
	"io"
	"net"
	"os"
	"time"

	"github.com/hashicorp/raft"
)

// AcceptTimeout bounds how long a connection accepted by a Raft
// transport may stay silent before its first request: from the accept
// to the first bytes read (with TLS, the first bytes past the handshake,
// which must fit in it too). A peer that connects and sends nothing is
// disconnected then. hashicorp/raft reads with no deadline of its own,
// so such a connection would otherwise be held until the process ends.
//
// Raft's own clients send a request the moment they have dialed (its
// NetworkTransport dials only to send one), so the bound costs them
// nothing; 10 s is the Raft transport's RPC timeout (TransportTimeout)
// and the HTTP and gRPC ports' handshake bound.
//
// Only the first request is bounded. After it the connection has no
// read deadline: Raft pools connections and leaves them idle between
// requests for as long as nothing needs sending, and an InstallSnapshot
// streams for as long as the snapshot's size requires, and nothing at the
// transport's level tells those apart from a peer that stalls (the wire
// format has no framing to read a request's length from). So a peer that
// sends a byte and stops holds its connection; keeping strangers from
// getting that far is what mutual TLS with verifyIncoming is for.
const AcceptTimeout = 10 * time.Second

// BoundFirstRead starts a read deadline of d on c, an accepted
// connection, which the first read that returns data lifts (see
// AcceptTimeout). A first read that times out returns io.EOF: Raft logs
// any other error as a failed command, at ERROR, and a port scanner
// would fill the log.
func BoundFirstRead(c net.Conn, d time.Duration) net.Conn {
	_ = c.SetReadDeadline(time.Now().Add(d))
	return &firstRead{Conn: c}
}

// firstRead is an accepted connection until its first data. Raft reads a
// connection from one goroutine (its handler), so spoke needs no lock.
type firstRead struct {
	net.Conn
	spoke bool
}

func (c *firstRead) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if c.spoke {
		return n, err
	}
	if n > 0 {
		c.spoke = true
		if derr := c.Conn.SetReadDeadline(time.Time{}); derr != nil && err == nil {
			err = derr
		}
		return n, err
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return 0, io.EOF
	}
	return n, err
}

// tcpStream is the StreamLayer of Open's own TCP transport: raft's
// TCPStreamLayer, plus AcceptTimeout (timeout) on accepted connections.
type tcpStream struct {
	net.Listener
	advertise net.Addr
	timeout   time.Duration
}

func (s *tcpStream) Accept() (net.Conn, error) {
	c, err := s.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return BoundFirstRead(c, s.timeout), nil
}

func (s *tcpStream) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return net.DialTimeout("tcp", string(addr), timeout)
}

func (s *tcpStream) Addr() net.Addr {
	if s.advertise != nil {
		return s.advertise
	}
	return s.Listener.Addr()
}

// newTCPTransport listens on bind and builds the transport of cfg over
// it, refusing an address peers cannot dial, as
// raft.NewTCPTransportWithConfig does (with its errors' words).
func newTCPTransport(bind string, advertise net.Addr, acceptTimeout time.Duration, cfg *raft.NetworkTransportConfig) (*raft.NetworkTransport, error) {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, err
	}
	s := &tcpStream{Listener: ln, advertise: advertise, timeout: acceptTimeout}
	addr, ok := s.Addr().(*net.TCPAddr)
	switch {
	case !ok:
		_ = ln.Close()
		return nil, errors.New("local address is not a TCP address")
	case addr.IP == nil || addr.IP.IsUnspecified():
		_ = ln.Close()
		return nil, errors.New("local bind address is not advertisable")
	}
	cfg.Stream = s
	return raft.NewNetworkTransportWithConfig(cfg), nil
}
