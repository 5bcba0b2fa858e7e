package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/hashicorp/memberlist"
)

// MaxNodeIDLen is the longest node id Config.Validate accepts, in bytes.
const MaxNodeIDLen = 128

// Config configures one node's membership. Build it from DefaultConfig (a
// LAN) or DevConfig (one machine, fast failure detection), set NodeID, and
// check it with Validate; New validates too. The timing knobs are passed to
// memberlist unchanged; their defaults are memberlist's.
type Config struct {
	// NodeID names this node in the cluster; it is memberlist's node name.
	// It must be unique among live members: a second node with the same id
	// is refused (ErrDuplicateID). Required; at most MaxNodeIDLen bytes of
	// printable UTF-8 without spaces.
	NodeID string

	// BindAddr is the IP address the gossip listener (UDP and TCP) binds.
	// Default 127.0.0.1, so a node is not reachable from other machines
	// unless you say so (memberlist's own default is 0.0.0.0).
	BindAddr string

	// BindPort is the gossip port, UDP and TCP. 0 picks a free port; the
	// port actually bound is in LocalNode().Addr after Start. Default 7946
	// (memberlist's); DevConfig uses 0.
	BindPort int

	// AdvertiseAddr and AdvertisePort are the address other nodes use to
	// reach this one, when it differs from the bind address (NAT,
	// containers). Empty / 0 means: the bound address and port. When
	// AdvertiseAddr is set and AdvertisePort is 0, the bound port is used.
	AdvertiseAddr string
	AdvertisePort int

	// Seeds are "host:port" gossip addresses of nodes to join through.
	// Start tries them all, in parallel, until one answers (see
	// JoinTimeout), and the rejoin loop keeps using them afterwards.
	// Seeds that are this node's own address are skipped, so one seed
	// list can be given to every node; a node whose seeds are all itself
	// (or that has none) starts alone.
	Seeds []string

	// Meta is what this node tells the others about itself. Meta.NodeID
	// may be left empty, meaning NodeID; if set it must equal NodeID.
	Meta Meta

	// JoinTimeout is how long Start keeps retrying the seeds, with
	// backoff, before it fails with ErrJoinFailed. Default 30s; DevConfig
	// 10s.
	JoinTimeout time.Duration

	// RejoinInterval is how often the rejoin loop joins the seeds and the
	// last known addresses of dead members, so that a partition that
	// outlasted GossipToTheDeadTime heals once the network does. Default
	// 10s; DevConfig 2s.
	RejoinInterval time.Duration

	// ReconnectTimeout is how long a dead or left member is kept in
	// Members() (and, if dead, retried by the rejoin loop) after memberlist
	// has forgotten it. Default 24h, like Serf's reconnect timeout.
	ReconnectTimeout time.Duration

	// LeaveTimeout bounds the graceful leave Close performs (and Leave's,
	// when its context has no deadline): time to gossip the leave intent
	// and the leave itself before shutting down. Default 5s; DevConfig 2s.
	LeaveTimeout time.Duration

	// TCPTimeout bounds each TCP exchange (join, push/pull, fallback
	// probe), both ways. A join attempt to an unresponsive seed takes up
	// to this long, so Start may return up to TCPTimeout after its
	// deadline. On the gossip port it is the deadline of a whole accepted
	// connection, from its accept (memberlist sets it before reading): a
	// peer that connects and sends nothing, or part of a message, is
	// disconnected then. memberlist: 10s LAN, 1s local.
	TCPTimeout time.Duration

	// IndirectChecks is how many other members are asked to probe a node
	// that did not answer a direct probe. memberlist: 3 LAN, 1 local.
	IndirectChecks int

	// RetransmitMult: each gossip message is retransmitted
	// RetransmitMult * log10(N+1) times. memberlist: 4 LAN, 2 local.
	RetransmitMult int

	// SuspicionMult: a suspected member is declared dead after
	// SuspicionMult * log10(N) * ProbeInterval (at least one
	// ProbeInterval's worth), shortened by confirmations from other
	// members. memberlist: 4 LAN, 3 local.
	SuspicionMult int

	// SuspicionMaxTimeoutMult caps the suspicion timeout, before
	// confirmations, at this multiple of the minimum. memberlist: 6.
	SuspicionMaxTimeoutMult int

	// PushPullInterval is how often a full state exchange (anti-entropy)
	// runs with one random live member. memberlist: 30s LAN, 15s local.
	PushPullInterval time.Duration

	// ProbeInterval is the failure-detection period: one member is probed
	// per interval. memberlist: 1s.
	ProbeInterval time.Duration

	// ProbeTimeout is how long a probe waits for an ack before asking
	// other members to probe indirectly; must be below ProbeInterval.
	// memberlist: 500ms LAN, 200ms local.
	ProbeTimeout time.Duration

	// GossipInterval is how often queued gossip is sent to GossipNodes
	// random members. memberlist: 200ms LAN, 100ms local.
	GossipInterval time.Duration

	// GossipNodes is how many members each gossip round goes to.
	// memberlist: 3.
	GossipNodes int

	// GossipToTheDeadTime is how long a member declared dead keeps
	// receiving gossip (a chance to refute) before memberlist forgets it.
	// After that, memberlist alone never contacts it again; the rejoin
	// loop does. memberlist: 30s LAN, 15s local.
	GossipToTheDeadTime time.Duration

	// DeadNodeReclaimTime: a member that has been dead for this long may
	// come back under the same id from a different address (a restarted
	// container with a new IP). 0 is memberlist's default: never, until
	// memberlist has forgotten it (GossipToTheDeadTime). Default 5s;
	// DevConfig 1s.
	DeadNodeReclaimTime time.Duration

	// Logger receives the cluster's logs and memberlist's (mapped to
	// levels, see NewMemberlistLogger). nil discards them.
	Logger *slog.Logger

	// Keys, when set, encrypt and authenticate gossip (memberlist's
	// keyring: AES-GCM): the first is the primary key, which encrypts
	// what this node sends; any of them decrypts what it receives. A
	// message that none decrypts is dropped, so a node without one of the
	// cluster's keys can neither join nor be heard. Each key is 16, 24 or
	// 32 bytes (AES-128, -192, -256). Rotate with InstallKey, UseKey and
	// RemoveKey. Empty: gossip in the clear.
	Keys [][]byte

	// Transport, if set, is the memberlist transport to use (for example
	// a fault-injecting wrapper around memberlist.NetTransport); BindAddr
	// and BindPort are then the transport's business, and AdvertiseAddr /
	// AdvertisePort, if empty, come from its FinalAdvertiseAddr. nil means
	// memberlist's NetTransport on BindAddr:BindPort. The Cluster shuts
	// the transport down when it stops.
	Transport memberlist.NodeAwareTransport
}

// DefaultConfig returns a configuration for a LAN, with memberlist's
// DefaultLANConfig timings. NodeID must still be set.
func DefaultConfig() Config {
	ml := memberlist.DefaultLANConfig()
	return Config{
		BindAddr:                "127.0.0.1",
		BindPort:                ml.BindPort,
		JoinTimeout:             30 * time.Second,
		RejoinInterval:          10 * time.Second,
		ReconnectTimeout:        24 * time.Hour,
		LeaveTimeout:            5 * time.Second,
		TCPTimeout:              ml.TCPTimeout,
		IndirectChecks:          ml.IndirectChecks,
		RetransmitMult:          ml.RetransmitMult,
		SuspicionMult:           ml.SuspicionMult,
		SuspicionMaxTimeoutMult: ml.SuspicionMaxTimeoutMult,
		PushPullInterval:        ml.PushPullInterval,
		ProbeInterval:           ml.ProbeInterval,
		ProbeTimeout:            ml.ProbeTimeout,
		GossipInterval:          ml.GossipInterval,
		GossipNodes:             ml.GossipNodes,
		GossipToTheDeadTime:     ml.GossipToTheDeadTime,
		DeadNodeReclaimTime:     5 * time.Second,
	}
}

// DevConfig returns a configuration for nodes on one machine (loopback,
// tests, `loom-node dev` and `loom-node cluster`): memberlist's
// DefaultLocalConfig timings, so a killed node is declared dead in a few
// seconds, BindPort 0 (a free port), and shorter join, rejoin and leave
// timeouts. NodeID must still be set.
func DevConfig() Config {
	ml := memberlist.DefaultLocalConfig()
	c := DefaultConfig()
	c.BindPort = 0
	c.JoinTimeout = 10 * time.Second
	c.RejoinInterval = 2 * time.Second
	c.LeaveTimeout = 2 * time.Second
	c.TCPTimeout = ml.TCPTimeout
	c.IndirectChecks = ml.IndirectChecks
	c.RetransmitMult = ml.RetransmitMult
	c.SuspicionMult = ml.SuspicionMult
	c.SuspicionMaxTimeoutMult = ml.SuspicionMaxTimeoutMult
	c.PushPullInterval = ml.PushPullInterval
	c.ProbeInterval = ml.ProbeInterval
	c.ProbeTimeout = ml.ProbeTimeout
	c.GossipInterval = ml.GossipInterval
	c.GossipNodes = ml.GossipNodes
	c.GossipToTheDeadTime = ml.GossipToTheDeadTime
	c.DeadNodeReclaimTime = time.Second
	return c
}

// Validate reports every problem with c, each wrapped with ErrInvalidConfig
// (ErrMetaTooLarge too, for an oversized Meta), joined with errors.Join. It
// never changes c.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...))
	}

	if err := validateNodeID(c.NodeID); err != nil {
		bad("NodeID: %v", err)
	}
	for i, k := range c.Keys {
		if err := checkKey(k); err != nil {
			bad("Keys[%d]: %v", i, err)
		}
	}
	if c.Transport == nil || c.BindAddr != "" {
		if net.ParseIP(c.BindAddr) == nil {
			bad("BindAddr %q is not an IP address", c.BindAddr)
		}
	}
	if c.BindPort < 0 || c.BindPort > 65535 {
		bad("BindPort %d is not in 0..65535", c.BindPort)
	}
	if c.AdvertiseAddr != "" && net.ParseIP(c.AdvertiseAddr) == nil {
		bad("AdvertiseAddr %q is not an IP address", c.AdvertiseAddr)
	}
	if c.AdvertisePort < 0 || c.AdvertisePort > 65535 {
		bad("AdvertisePort %d is not in 0..65535", c.AdvertisePort)
	}
	if c.Transport != nil && c.AdvertiseAddr != "" && c.AdvertisePort == 0 && c.BindPort == 0 {
		bad("AdvertisePort is required when AdvertiseAddr is set with a custom Transport and BindPort 0")
	}
	for _, s := range c.Seeds {
		if err := validateSeed(s); err != nil {
			bad("seed %q: %v", s, err)
		}
	}
	if c.Meta.NodeID != "" && c.Meta.NodeID != c.NodeID {
		bad("Meta.NodeID %q differs from NodeID %q (leave it empty)", c.Meta.NodeID, c.NodeID)
	}
	meta := c.Meta
	meta.NodeID = c.NodeID
	if err := checkMetaSize(meta); err != nil {
		errs = append(errs, fmt.Errorf("%w: Meta: %w", ErrInvalidConfig, err))
	}

	positive := []struct {
		name string
		d    time.Duration
	}{
		{"JoinTimeout", c.JoinTimeout},
		{"RejoinInterval", c.RejoinInterval},
		{"ReconnectTimeout", c.ReconnectTimeout},
		{"LeaveTimeout", c.LeaveTimeout},
		{"TCPTimeout", c.TCPTimeout},
		{"PushPullInterval", c.PushPullInterval},
		{"ProbeInterval", c.ProbeInterval},
		{"ProbeTimeout", c.ProbeTimeout},
		{"GossipInterval", c.GossipInterval},
		{"GossipToTheDeadTime", c.GossipToTheDeadTime},
	}
	for _, p := range positive {
		if p.d <= 0 {
			bad("%s is %v, want > 0", p.name, p.d)
		}
	}
	if c.DeadNodeReclaimTime < 0 {
		bad("DeadNodeReclaimTime is %v, want >= 0", c.DeadNodeReclaimTime)
	}
	if c.ProbeTimeout > 0 && c.ProbeInterval > 0 && c.ProbeTimeout >= c.ProbeInterval {
		bad("ProbeTimeout %v must be below ProbeInterval %v", c.ProbeTimeout, c.ProbeInterval)
	}
	atLeastOne := []struct {
		name string
		n    int
	}{
		{"IndirectChecks", c.IndirectChecks},
		{"RetransmitMult", c.RetransmitMult},
		{"SuspicionMult", c.SuspicionMult},
		{"SuspicionMaxTimeoutMult", c.SuspicionMaxTimeoutMult},
		{"GossipNodes", c.GossipNodes},
	}
	for _, p := range atLeastOne {
		if p.n < 1 {
			bad("%s is %d, want >= 1", p.name, p.n)
		}
	}
	return errors.Join(errs...)
}

func validateNodeID(id string) error {
	switch {
	case id == "":
		return errors.New("required")
	case len(id) > MaxNodeIDLen:
		return fmt.Errorf("%d bytes, at most %d", len(id), MaxNodeIDLen)
	case !utf8.ValidString(id):
		return errors.New("not valid UTF-8")
	}
	for _, r := range id {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return fmt.Errorf("%q contains a space or unprintable character", id)
		}
	}
	return nil
}

func validateSeed(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return err
	}
	if host == "" {
		return errors.New("no host")
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("port %q is not in 1..65535", port)
	}
	if strings.ContainsAny(host, " \t") {
		return errors.New("host contains a space")
	}
	return nil
}

// memberlistConfig translates c into memberlist's configuration, with the
// cluster's delegates installed.
func (c Config) memberlistConfig(d *delegate, logger *slog.Logger) *memberlist.Config {
	mc := memberlist.DefaultLANConfig()
	mc.Name = c.NodeID
	mc.BindAddr = c.BindAddr
	mc.BindPort = c.BindPort
	mc.AdvertiseAddr = c.AdvertiseAddr
	mc.AdvertisePort = c.AdvertisePort
	if c.AdvertiseAddr != "" && c.AdvertisePort == 0 {
		mc.AdvertisePort = c.BindPort // memberlist replaces it with the real port when BindPort is 0
	}
	mc.TCPTimeout = c.TCPTimeout
	mc.IndirectChecks = c.IndirectChecks
	mc.RetransmitMult = c.RetransmitMult
	mc.SuspicionMult = c.SuspicionMult
	mc.SuspicionMaxTimeoutMult = c.SuspicionMaxTimeoutMult
	mc.PushPullInterval = c.PushPullInterval
	mc.ProbeInterval = c.ProbeInterval
	mc.ProbeTimeout = c.ProbeTimeout
	mc.GossipInterval = c.GossipInterval
	mc.GossipNodes = c.GossipNodes
	mc.GossipToTheDeadTime = c.GossipToTheDeadTime
	mc.DeadNodeReclaimTime = c.DeadNodeReclaimTime
	mc.Logger = NewMemberlistLogger(logger)
	if len(c.Keys) > 0 {
		// Validate checked every key, so NewKeyring cannot fail.
		mc.Keyring, _ = memberlist.NewKeyring(c.Keys[1:], c.Keys[0])
		mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = true, true
	}
	if c.Transport != nil {
		mc.Transport = c.Transport
	}
	mc.Delegate = d
	mc.Events = d
	mc.Merge = d
	mc.Alive = d
	mc.Conflict = d
	return mc
}
