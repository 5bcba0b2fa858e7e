package node

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/raft"

	"github.com/loom-mesh/loom/raftlock"
	"github.com/loom-mesh/loom/security/tlsconf"
)

// TLS (config tls section, when cert and key are set):
//
//   - the HTTP port serves HTTPS; it checks a client certificate that is
//     given, and asks for none (health checks, browsers);
//   - gRPC serves mutual TLS: with tls.verifyIncoming a peer needs a
//     certificate from tls.ca, and Coordinator.Forward a node certificate
//     (transport.NodeOnly); the node's pool dials the other nodes with its
//     own certificate, checking theirs with tls.verifyOutgoing;
//   - Raft runs over TLS: with tls.verifyIncoming only node certificates
//     from tls.ca may connect (a client certificate cannot vote nor
//     append), and a refused connection is logged with the reason;
//   - the files are polled every tlsPollInterval and read again by
//     ReloadTLS (SIGHUP in loom-node): new connections use the new
//     certificate, open ones stay.
//
// Bearer tokens on the APIs sit beside this (auth.go).

// tlsPollInterval is how often the node checks its TLS files for changes.
const tlsPollInterval = 3 * time.Second

// openTLS loads the node's certificates, when TLS is on.
func (n *Node) openTLS() error {
	t := n.cfg.TLS
	if !t.Enabled() {
		return nil
	}
	src, err := tlsconf.New(tlsconf.Options{
		CA: t.CA, Cert: t.Cert, Key: t.Key,
		VerifyIncoming: t.VerifyIncoming, VerifyOutgoing: t.VerifyOutgoing,
		ServerName: t.ServerName, MinVersion: tlsconf.ParseVersion(t.MinVersion),
		Logger: n.log.With("component", "tls"),
	})
	if err != nil {
		return fmt.Errorf("node: tls: %w", err)
	}
	leaf := src.Leaf()
	role, name, err := tlsconf.RoleOf(leaf)
	switch {
	case err != nil:
		return fmt.Errorf("node: tls.cert %s: %w", t.Cert, err)
	case role != tlsconf.RoleNode:
		return fmt.Errorf("node: tls.cert %s is a %s certificate (%s): a node needs a node certificate (loom-node tls cert create --node %s)", t.Cert, role, name, n.cfg.Node.ID)
	case name != n.cfg.Node.ID:
		n.log.Warn("the node certificate names another node", "cert", name, "node", n.cfg.Node.ID)
	}
	n.tls = src
	n.log.Info("TLS on", "cert", t.Cert, "expires", leaf.NotAfter.UTC().Format(time.RFC3339),
		"verifyIncoming", t.VerifyIncoming, "verifyOutgoing", t.VerifyOutgoing, "minVersion", t.MinVersion)
	return nil
}

// watchTLS reloads the TLS files when they change, until ctx ends.
func (n *Node) watchTLS(ctx context.Context) {
	if n.tls == nil {
		return
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.tls.Watch(ctx, tlsPollInterval, nil)
	}()
}

// ReloadTLS reads the node's TLS files again (loom-node calls it on
// SIGHUP): new connections present the new certificate and check peers
// against the new CA; open connections are not cut. On an error the old
// certificate stays in use. Without TLS it does nothing.
func (n *Node) ReloadTLS() error {
	if n.tls == nil {
		return nil
	}
	if err := n.tls.Reload(); err != nil {
		n.log.Error("TLS reload failed; the previous certificate stays in use", "err", err)
		return err
	}
	n.log.Info("TLS certificates reloaded", "expires", n.tls.Leaf().NotAfter.UTC().Format(time.RFC3339))
	return nil
}

// raftTLS is the wrapper that puts Raft's streams under TLS (nil without
// TLS).
func (n *Node) raftTLS(rc raftlock.Config) func(raft.StreamLayer) raft.StreamLayer {
	if n.tls == nil {
		return nil
	}
	return func(base raft.StreamLayer) raft.StreamLayer {
		var adv net.Addr
		if rc.AdvertiseAddr != "" {
			adv, _ = net.ResolveTCPAddr("tcp", rc.AdvertiseAddr)
		}
		return raftlock.TLSStreamLayer(base, adv, n.tls.ServerConfig("raft", tlsconf.RoleNode), n.tls.ClientConfig(), n.tls.Leaf, n.log.With("component", "raft"))
	}
}

// checkRaftPeer is the leader's check before it adds a member to Raft,
// when the node verifies outgoing connections: the member's Raft port
// must complete a TLS handshake presenting a node certificate from the
// cluster's CA. A gossip member that is not a node of this cluster (a
// certificate from another CA, in a cluster whose gossip is not
// encrypted) is then never added, not even as a non-voter. Without TLS
// verification there is nothing to check.
func (n *Node) checkRaftPeer(ctx context.Context, addr string) error {
	if n.tls == nil || !n.cfg.TLS.VerifyOutgoing {
		return nil
	}
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 2 * time.Second}, Config: n.tls.ClientConfig()}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return c.Close()
}
