package cosmos

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"
)

// PartitionKeyPath is the partition key path of both containers: every
// document carries its partition key in the field "pk".
const PartitionKeyPath = "/pk"

// Account is an open connection to a Cosmos DB account: the SDK's client
// and Loom's database and containers there, created when missing.
// Safe for concurrent use.
type Account struct {
	Client   *azcosmos.Client
	Leases   *azcosmos.ContainerClient
	Journals *azcosmos.ContainerClient
	Meter    *Meter
	Options  Options

	db        *azcosmos.DatabaseClient
	transport *http.Transport
}

// Open connects to the account o names and creates the database and both
// containers if they are missing (idempotent: several nodes may open at
// once). Every request is counted by meter (a new one when nil). It fails
// with an error wrapping ErrOptions for bad options, and otherwise with
// the SDK's error, which NotApplied classifies.
func Open(ctx context.Context, o Options, meter *Meter) (*Account, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	tc, err := o.tlsConfig()
	if err != nil {
		return nil, err
	}
	if meter == nil {
		meter = new(Meter)
	}
	cred, err := azcosmos.NewKeyCredential(o.Key)
	if err != nil {
		return nil, fmt.Errorf("%w: key: %v", ErrOptions, err)
	}
	dialer := &net.Dialer{Timeout: o.connectTimeout(), KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         dialer.DialContext,
		TLSClientConfig:     tc,
		TLSHandshakeTimeout: o.connectTimeout(),
		ForceAttemptHTTP2:   true,
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
	}
	client, err := azcosmos.NewClientWithKey(o.Endpoint, cred, &azcosmos.ClientOptions{
		ClientOptions: azcore.ClientOptions{
			Transport: &http.Client{Transport: tr},
			// azcore's retry policy retries throttled (429) requests after
			// the delay Cosmos DB asks for, within the operation's
			// timeout. It would also resend a write answered 408 or 5xx
			// (which may have been applied); the adapters read the 409
			// or 412 such a resend can meet as "maybe ours", and check.
			Retry:            policy.RetryOptions{MaxRetries: 3, RetryDelay: 50 * time.Millisecond, MaxRetryDelay: time.Second},
			PerRetryPolicies: []policy.Policy{meter},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrOptions, err)
	}
	a := &Account{Client: client, Meter: meter, Options: o, transport: tr}
	if err := a.ensure(ctx); err != nil {
		a.Close()
		return nil, err
	}
	return a, nil
}

// ensure creates the database and containers, accepting 409 (they exist).
func (a *Account) ensure(ctx context.Context) error {
	o := a.Options
	ctx, cancel := context.WithTimeout(ctx, o.Timeout())
	defer cancel()
	if _, err := a.Client.CreateDatabase(ctx, azcosmos.DatabaseProperties{ID: o.DatabaseName()}, nil); err != nil && Status(err) != StatusConflict {
		return fmt.Errorf("create database %q: %w", o.DatabaseName(), err)
	}
	db, err := a.Client.NewDatabase(o.DatabaseName())
	if err != nil {
		return err
	}
	a.db = db
	for _, name := range []string{o.Leases(), o.Journals()} {
		props := azcosmos.ContainerProperties{
			ID:                     name,
			PartitionKeyDefinition: azcosmos.PartitionKeyDefinition{Paths: []string{PartitionKeyPath}},
		}
		if _, err := db.CreateContainer(ctx, props, nil); err != nil && Status(err) != StatusConflict {
			return fmt.Errorf("create container %q: %w", name, err)
		}
	}
	if a.Leases, err = db.NewContainer(o.Leases()); err != nil {
		return err
	}
	if a.Journals, err = db.NewContainer(o.Journals()); err != nil {
		return err
	}
	return nil
}

// Ping reads the database's properties and returns how long it took.
func (a *Account) Ping(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	_, err := a.db.Read(ctx, nil)
	return time.Since(start), err
}

// Addr is the endpoint's host:port.
func (a *Account) Addr() string { return a.Options.Addr() }

// ReadOptions are the options of every read: the configured consistency.
func (a *Account) ReadOptions() *azcosmos.ItemOptions {
	return &azcosmos.ItemOptions{ConsistencyLevel: a.Options.consistency()}
}

// QueryOptions are the options of every query: the configured consistency
// and params.
func (a *Account) QueryOptions(params ...azcosmos.QueryParameter) *azcosmos.QueryOptions {
	return &azcosmos.QueryOptions{ConsistencyLevel: a.Options.consistency(), QueryParameters: params}
}

// Close closes the client's idle connections. Requests in flight finish
// or fail on their own.
func (a *Account) Close() {
	a.transport.CloseIdleConnections()
}
