package cosmos

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"
)

// Options say how to reach a Cosmos DB account and where Loom keeps its
// documents there.
type Options struct {
	// Endpoint is the account's URI, https://<account>.documents.azure.com:443/.
	Endpoint string
	// Key is the account's primary or secondary key (base64). It is never
	// printed: String and the config's printing redact it.
	Key string
	// Database holds Loom's containers, created when missing. Default
	// "loom".
	Database string
	// LeaseContainer holds the coordinator's sessions and leases;
	// JournalContainer the journals. Created when missing, partitioned on
	// /pk. They must differ. Defaults "leases" and "journal".
	LeaseContainer   string
	JournalContainer string

	// CAFile is a PEM file of the certificate authorities the endpoint's
	// certificate must chain to, instead of the system's. For a server
	// with a certificate of its own (the Cosmos DB emulator's).
	CAFile string
	// InsecureSkipVerify accepts any certificate: for the test server's
	// self-signed one only. Never set it against a real account.
	InsecureSkipVerify bool

	// Consistency is sent with every read: "Strong" or
	// "BoundedStaleness", or "" for the account's default (which must then
	// be one of the two). A request may only weaken the account's level,
	// so an account on Session or weaker cannot serve these adapters; see
	// the package doc for why they need it.
	Consistency string

	// ConnectTimeout bounds one connection attempt (dial and TLS
	// handshake); 0 means 5 s.
	ConnectTimeout time.Duration
	// RequestTimeout bounds each operation the adapters make (one or a
	// few requests), besides the caller's context; 0 means 10 s. An
	// operation cut short by it has an unknown outcome.
	RequestTimeout time.Duration
}

// Defaults of Options' zero fields.
const (
	DefaultDatabase         = "loom"
	DefaultLeaseContainer   = "leases"
	DefaultJournalContainer = "journal"
	DefaultConnectTimeout   = 5 * time.Second
	DefaultRequestTimeout   = 10 * time.Second
)

// Consistency levels Options.Consistency accepts.
const (
	ConsistencyStrong           = "Strong"
	ConsistencyBoundedStaleness = "BoundedStaleness"
)

// ErrOptions is wrapped by every error Validate and Open return for bad
// Options.
var ErrOptions = errors.New("cosmos: invalid options")

// String describes o with the key redacted.
func (o Options) String() string {
	key := ""
	if o.Key != "" {
		key = "REDACTED"
	}
	return fmt.Sprintf("cosmos.Options{Endpoint:%q Key:%s Database:%q LeaseContainer:%q JournalContainer:%q CAFile:%q InsecureSkipVerify:%v Consistency:%q}",
		o.Endpoint, key, o.DatabaseName(), o.Leases(), o.Journals(), o.CAFile, o.InsecureSkipVerify, o.Consistency)
}

// GoString is String, so that %#v redacts the key too.
func (o Options) GoString() string { return o.String() }

// DatabaseName is o.Database or DefaultDatabase.
func (o Options) DatabaseName() string { return or(o.Database, DefaultDatabase) }

// Leases is o.LeaseContainer or DefaultLeaseContainer.
func (o Options) Leases() string { return or(o.LeaseContainer, DefaultLeaseContainer) }

// Journals is o.JournalContainer or DefaultJournalContainer.
func (o Options) Journals() string { return or(o.JournalContainer, DefaultJournalContainer) }

// Timeout is o.RequestTimeout or DefaultRequestTimeout.
func (o Options) Timeout() time.Duration {
	if o.RequestTimeout <= 0 {
		return DefaultRequestTimeout
	}
	return o.RequestTimeout
}

func (o Options) connectTimeout() time.Duration {
	if o.ConnectTimeout <= 0 {
		return DefaultConnectTimeout
	}
	return o.ConnectTimeout
}

// Addr is the endpoint's host:port, for messages.
func (o Options) Addr() string {
	u, err := url.Parse(o.Endpoint)
	if err != nil || u.Host == "" {
		return o.Endpoint
	}
	if u.Port() == "" {
		return u.Host + ":443"
	}
	return u.Host
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Validate reports every problem with o, joined, each wrapping
// ErrOptions. It fills in nothing and reads no file.
func (o Options) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrOptions}, args...)...))
	}
	switch u, err := url.Parse(o.Endpoint); {
	case o.Endpoint == "":
		bad("no endpoint")
	case err != nil:
		bad("endpoint: %v", err)
	case u.Scheme != "https" || u.Host == "":
		bad("endpoint %q: want https://host[:port]/", o.Endpoint)
	}
	if o.Key == "" {
		bad("no key")
	} else if _, err := base64.StdEncoding.DecodeString(o.Key); err != nil {
		bad("key is not base64 (an account key is)")
	}
	for _, r := range []struct{ what, name string }{
		{"database", o.DatabaseName()}, {"lease container", o.Leases()}, {"journal container", o.Journals()},
	} {
		if err := checkResourceID(r.name); err != nil {
			bad("%s %q: %v", r.what, r.name, err)
		}
	}
	if o.Leases() == o.Journals() {
		bad("the lease and journal containers are both %q; they must differ", o.Leases())
	}
	if o.CAFile != "" && o.InsecureSkipVerify {
		bad("caFile and insecureSkipVerify both set: choose one")
	}
	switch o.Consistency {
	case "", ConsistencyStrong, ConsistencyBoundedStaleness:
	default:
		bad("consistency %q: want Strong or BoundedStaleness (or empty for the account's default); weaker levels can read a stale lease or journal head", o.Consistency)
	}
	if o.ConnectTimeout < 0 || o.RequestTimeout < 0 {
		bad("negative timeout")
	}
	return errors.Join(errs...)
}

// checkResourceID checks a database or container id as Cosmos DB does:
// 1 to 255 characters, none of / \ ? #, not ending with a space.
func checkResourceID(id string) error {
	switch {
	case id == "" || len(id) > 255:
		return errors.New("want 1 to 255 characters")
	case strings.ContainsAny(id, `/\?#`):
		return errors.New(`must not hold / \ ? or #`)
	case strings.HasSuffix(id, " "):
		return errors.New("must not end with a space")
	}
	return nil
}

// consistency is the level to send with reads; nil for the account's.
func (o Options) consistency() *azcosmos.ConsistencyLevel {
	switch o.Consistency {
	case ConsistencyStrong:
		return azcosmos.ConsistencyLevelStrong.ToPtr()
	case ConsistencyBoundedStaleness:
		return azcosmos.ConsistencyLevelBoundedStaleness.ToPtr()
	}
	return nil
}

// tlsConfig is the TLS configuration for the endpoint: the system's roots,
// or CAFile's, or no verification.
func (o Options) tlsConfig() (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	switch {
	case o.InsecureSkipVerify:
		tc.InsecureSkipVerify = true // the test server's self-signed certificate; Validate keeps it apart from CAFile
	case o.CAFile != "":
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%w: caFile: %v", ErrOptions, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: caFile %s holds no PEM certificate", ErrOptions, o.CAFile)
		}
		tc.RootCAs = pool
	}
	return tc, nil
}
