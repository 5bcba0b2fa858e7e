package tlsconf

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Options name the PEM files and the checks of a Source.
type Options struct {
	// CA is the PEM file of the CA certificates peers are checked
	// against. Required when VerifyIncoming or VerifyOutgoing is set.
	CA string
	// Cert and Key are the PEM files of this side's certificate and key.
	// A node needs them; a client needs them when the nodes verify
	// incoming connections.
	Cert, Key string
	// VerifyIncoming makes ServerConfig require a certificate from CA of
	// every peer, with one of the roles ServerConfig is given.
	VerifyIncoming bool
	// VerifyOutgoing makes ClientConfig check that the server presents a
	// node certificate from CA.
	VerifyOutgoing bool
	// ServerName, when set, must also be a DNS SAN of every server's
	// certificate, and is sent as SNI.
	ServerName string
	// MinVersion is the oldest TLS version accepted (tls.VersionTLS12 or
	// tls.VersionTLS13); 0 means TLS 1.3.
	MinVersion uint16
	// Logger receives Watch's reloads and failed reloads, and refused
	// handshakes; nil discards.
	Logger *slog.Logger
	// Now is the clock certificates are checked with; nil is time.Now.
	Now func() time.Time
}

// Source holds the current CA pool and certificate, and builds tls.Configs
// that always use the current ones. See the package doc.
type Source struct {
	opts  Options
	log   *slog.Logger
	cur   atomic.Pointer[material]
	mu    sync.Mutex // serialises Reload
	cache tls.ClientSessionCache

	logMu  sync.Mutex
	logged map[string]time.Time // listener and reason → when last logged
}

// refusalLogEvery spaces the log lines of one refusal: a peer that is
// refused retries many times a second.
const refusalLogEvery = time.Minute

// refused logs a refused peer, once per listener and reason per
// refusalLogEvery.
func (s *Source) refused(listener string, err error) {
	key := listener + "\x00" + err.Error()
	now := time.Now()
	s.logMu.Lock()
	if s.logged == nil || len(s.logged) > 1000 {
		s.logged = map[string]time.Time{} // bounded: reasons name certificates
	}
	last, seen := s.logged[key]
	skip := seen && now.Sub(last) < refusalLogEvery
	if !skip {
		s.logged[key] = now
	}
	s.logMu.Unlock()
	if !skip {
		s.log.Warn("refused a TLS connection (repeats are not logged for a minute)", "listener", listener, "err", err)
	}
}

// material is one generation of what the files held.
type material struct {
	pool  *x509.CertPool         // nil without a CA
	cert  *tls.Certificate       // nil without Cert/Key
	leaf  *x509.Certificate      // cert's leaf
	stamp map[string]fileStamp   // the files as read, for Watch
	srv   map[string]*tls.Config // GetConfigForClient's per-name configs of this generation
	srvMu sync.Mutex
}

// fileStamp is what Watch compares to see a file changed.
type fileStamp struct {
	mod  time.Time
	size int64
}

// New reads the files and returns a Source, or an error that names the
// file at fault.
func New(o Options) (*Source, error) {
	if (o.VerifyIncoming || o.VerifyOutgoing) && o.CA == "" {
		return nil, errors.New("tlsconf: verifying peers needs a CA file")
	}
	if (o.Cert == "") != (o.Key == "") {
		return nil, errors.New("tlsconf: give both a certificate and a key file, or neither")
	}
	if o.MinVersion == 0 {
		o.MinVersion = tls.VersionTLS13
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Source{opts: o, log: o.Logger, cache: tls.NewLRUClientSessionCache(256)}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	m, err := s.load()
	if err != nil {
		return nil, err
	}
	s.cur.Store(m)
	return s, nil
}

// Options returns the options the Source was built with.
func (s *Source) Options() Options { return s.opts }

// load reads and checks the files.
func (s *Source) load() (*material, error) {
	m := &material{stamp: map[string]fileStamp{}, srv: map[string]*tls.Config{}}
	read := func(path string) ([]byte, error) {
		st, err := os.Stat(path)
		if err != nil {
			return nil, err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		m.stamp[path] = fileStamp{mod: st.ModTime(), size: st.Size()}
		return b, nil
	}
	if s.opts.CA != "" {
		b, err := read(s.opts.CA)
		if err != nil {
			return nil, fmt.Errorf("tlsconf: CA: %w", err)
		}
		m.pool = x509.NewCertPool()
		if !m.pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("tlsconf: CA: %s holds no PEM certificate", s.opts.CA)
		}
	}
	if s.opts.Cert != "" {
		cb, err := read(s.opts.Cert)
		if err != nil {
			return nil, fmt.Errorf("tlsconf: certificate: %w", err)
		}
		kb, err := read(s.opts.Key)
		if err != nil {
			return nil, fmt.Errorf("tlsconf: key: %w", err)
		}
		cert, err := tls.X509KeyPair(cb, kb)
		if err != nil {
			// crypto/tls never quotes the key in its errors.
			return nil, fmt.Errorf("tlsconf: %s and %s: %w", s.opts.Cert, s.opts.Key, err)
		}
		m.cert, m.leaf = &cert, cert.Leaf
		now := s.opts.Now()
		if now.After(m.leaf.NotAfter) {
			return nil, fmt.Errorf("tlsconf: certificate %s (%s) expired at %s: create a new one", s.opts.Cert, subject(m.leaf), m.leaf.NotAfter.UTC().Format(time.RFC3339))
		}
	}
	return m, nil
}

// Reload reads the files again. On success new handshakes use what they
// hold now; on an error the previous material stays in use.
func (s *Source) Reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.load()
	if err != nil {
		return err
	}
	s.cur.Store(m)
	return nil
}

// changed reports whether a file differs from when it was last loaded.
func (s *Source) changed() bool {
	for path, st := range s.cur.Load().stamp {
		fi, err := os.Stat(path)
		if err != nil || !fi.ModTime().Equal(st.mod) || fi.Size() != st.size {
			return true
		}
	}
	return false
}

// Watch reloads the files when one changes (checked every interval; 0
// means 3 s) or a value arrives on hup (SIGHUP; nil for none), until ctx
// ends. It logs every reload, and every failed one (the old material
// stays in use; a changed file that fails is retried each interval, so
// writing a certificate and then its key settles on the pair). It returns
// when ctx ends.
func (s *Source) Watch(ctx context.Context, interval time.Duration, hup <-chan os.Signal) {
	if interval <= 0 {
		interval = 3 * time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	var lastErr string
	for {
		why := ""
		select {
		case <-ctx.Done():
			return
		case <-hup:
			why = "signal"
		case <-t.C:
			if !s.changed() {
				continue
			}
			why = "files changed"
		}
		if err := s.Reload(); err != nil {
			if err.Error() != lastErr || why == "signal" {
				s.log.Error("TLS reload failed; the previous certificate stays in use", "reason", why, "err", err)
			}
			lastErr = err.Error()
			continue
		}
		lastErr = ""
		attrs := []any{"reason", why}
		if leaf := s.cur.Load().leaf; leaf != nil {
			attrs = append(attrs, "cert", subject(leaf), "expires", leaf.NotAfter.UTC().Format(time.RFC3339))
		}
		s.log.Info("TLS certificates reloaded", attrs...)
	}
}

// Leaf is the current certificate (nil without one).
func (s *Source) Leaf() *x509.Certificate { return s.cur.Load().leaf }

// ServerConfig is the configuration of a listener named name (in logs)
// whose peers, when they present a certificate (and they must with
// VerifyIncoming), must hold one of the roles accept. Accepting a
// certificate means: signed by the current CA, valid now, with a client
// (ClientAuth) key usage and an accepted role.
func (s *Source) ServerConfig(name string, accept ...Role) *tls.Config {
	return s.serverConfig(name, s.opts.VerifyIncoming, accept)
}

// AskingConfig is ServerConfig for a listener that asks for a client
// certificate and checks one that is given (node or client role), but
// does not require one, whatever VerifyIncoming says: an HTTPS gateway,
// whose /health a load balancer reads.
func (s *Source) AskingConfig(name string) *tls.Config {
	return s.serverConfig(name, false, []Role{RoleNode, RoleClient})
}

func (s *Source) serverConfig(name string, require bool, accept []Role) *tls.Config {
	base := &tls.Config{
		MinVersion: s.opts.MinVersion,
		ClientAuth: tls.RequestClientCert,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			if c := s.cur.Load().cert; c != nil {
				return c, nil
			}
			return nil, errors.New("tlsconf: this node has no certificate")
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			err := s.verifyClient(cs, require, accept)
			if err != nil {
				s.refused(name, err)
			}
			return err
		},
	}
	if require {
		base.ClientAuth = tls.RequireAnyClientCert
	}
	cfg := base.Clone()
	// A config per generation, so that the certificate request names the
	// current CA to the client; session tickets carry over (the
	// original's keys are used).
	cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		m := s.cur.Load()
		m.srvMu.Lock()
		defer m.srvMu.Unlock()
		if c := m.srv[name]; c != nil {
			return c, nil
		}
		c := base.Clone()
		c.ClientCAs = m.pool
		m.srv[name] = c
		return c, nil
	}
	return cfg
}

// verifyClient checks a client's certificate, if it gave one.
func (s *Source) verifyClient(cs tls.ConnectionState, require bool, accept []Role) error {
	if len(cs.PeerCertificates) == 0 {
		if require {
			return errors.New("the peer presented no certificate")
		}
		return nil
	}
	m := s.cur.Load()
	if m.pool == nil {
		return nil // nothing to check it against: not verifying
	}
	_, err := s.verify(m, cs.PeerCertificates, x509.ExtKeyUsageClientAuth, "", accept)
	return err
}

// ClientConfig is the configuration for dialing nodes: it presents this
// side's certificate when the server asks, and, with VerifyOutgoing,
// checks that the server holds a node certificate from the current CA
// (and ServerName, when set).
func (s *Source) ClientConfig() *tls.Config {
	return &tls.Config{
		MinVersion:         s.opts.MinVersion,
		ServerName:         s.opts.ServerName,
		ClientSessionCache: s.cache,
		// Verification is VerifyConnection's: against the current CA, by
		// role, on every handshake including resumed ones.
		InsecureSkipVerify: true, //nolint:gosec // verified in VerifyConnection
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if c := s.cur.Load().cert; c != nil {
				return c, nil
			}
			return &tls.Certificate{}, nil // none: the server decides
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			if !s.opts.VerifyOutgoing {
				return nil
			}
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the server presented no certificate")
			}
			_, err := s.verify(s.cur.Load(), cs.PeerCertificates, x509.ExtKeyUsageServerAuth, s.opts.ServerName, []Role{RoleNode})
			return err
		},
	}
}

// HTTPTransport is an HTTP transport with http.DefaultTransport's
// settings that dials https:// addresses with ClientConfig: for the
// clients of a node's HTTPS port. Its connections share the Source's
// session cache, so a new connection resumes the session of the last one
// to the same host.
func (s *Source) HTTPTransport() *http.Transport {
	t := &http.Transport{}
	if d, ok := http.DefaultTransport.(*http.Transport); ok {
		t = d.Clone()
	}
	t.TLSClientConfig = s.ClientConfig()
	return t
}

// verify checks chain[0] against m's CA for usage, the DNS name dns (if
// not empty) and one of the roles accept.
func (s *Source) verify(m *material, chain []*x509.Certificate, usage x509.ExtKeyUsage, dns string, accept []Role) (Role, error) {
	leaf := chain[0]
	now := s.opts.Now()
	if now.After(leaf.NotAfter) {
		return "", fmt.Errorf("certificate %q expired at %s (it is now %s)", subject(leaf), leaf.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if now.Before(leaf.NotBefore) {
		return "", fmt.Errorf("certificate %q is not valid before %s (it is now %s; check the clocks)", subject(leaf), leaf.NotBefore.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: m.pool, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{usage}, DNSName: dns}); err != nil {
		var ua x509.UnknownAuthorityError
		switch {
		case errors.As(err, &ua):
			return "", fmt.Errorf("certificate %q is signed by %q, not by this cluster's CA", subject(leaf), leaf.Issuer.CommonName)
		case usage == x509.ExtKeyUsageServerAuth && isUsageErr(err):
			return "", fmt.Errorf("certificate %q may not serve (no server key usage): is it a client certificate?", subject(leaf))
		}
		return "", fmt.Errorf("certificate %q: %w", subject(leaf), err)
	}
	role, name, err := RoleOf(leaf)
	if err != nil {
		return "", err
	}
	if !slices.Contains(accept, role) {
		return "", fmt.Errorf("certificate %q is a %s certificate (%s); only %s certificates are accepted here", subject(leaf), role, name, joinRoles(accept))
	}
	return role, nil
}

func isUsageErr(err error) bool {
	var ci x509.CertificateInvalidError
	return errors.As(err, &ci) && ci.Reason == x509.IncompatibleUsage
}

func joinRoles(rs []Role) string {
	out := ""
	for i, r := range rs {
		if i > 0 {
			out += " or "
		}
		out += string(r)
	}
	return out
}

// ParseVersion maps "1.2" and "1.3" to tls.VersionTLS12 and 13; anything
// else (the empty string included) is TLS 1.3.
func ParseVersion(v string) uint16 {
	if v == "1.2" {
		return tls.VersionTLS12
	}
	return tls.VersionTLS13
}
