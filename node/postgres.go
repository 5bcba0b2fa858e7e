package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"github.com/loom-mesh/loom/adapters/postgres"
	"github.com/loom-mesh/loom/adapters/postgres/pgjournal"
	"github.com/loom-mesh/loom/adapters/postgres/pglock"
	"github.com/loom-mesh/loom/config"
)

// postgresOptions turns a config section into the adapters' options,
// reading the TLS CA file it names. key names the section in errors.
func postgresOptions(key string, pc config.PostgresConfig) (postgres.Options, error) {
	o := postgres.Options{
		URL: pc.URL, Host: pc.Host, Port: pc.Port, User: pc.User, Password: pc.Password,
		Database: pc.Database, Schema: pc.Schema, PoolSize: pc.PoolSize,
		ConnectTimeout: pc.ConnectTimeout, QueryTimeout: pc.QueryTimeout,
	}
	if pc.TLS {
		tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: pc.TLSServerName}
		if pc.TLSCA != "" {
			pem, err := os.ReadFile(pc.TLSCA)
			if err != nil {
				return o, fmt.Errorf("node: %s.tlsCA: %w", key, err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return o, fmt.Errorf("node: %s.tlsCA: %s holds no PEM certificate", key, pc.TLSCA)
			}
			tc.RootCAs = pool
		}
		o.TLS = tc
	}
	return o, nil
}

// openPostgresJournal opens the journal (and message queues) on
// journal.postgres, bringing its schema up to date.
func (n *Node) openPostgresJournal(ctx context.Context) (*pgjournal.Journal, error) {
	po, err := postgresOptions("journal.postgres", n.cfg.Journal.Postgres)
	if err != nil {
		return nil, err
	}
	jo := pgjournal.DefaultOptions()
	jo.Postgres = po
	jo.QueueRetention = n.cfg.Messaging.IDRetention
	j, err := pgjournal.Open(ctx, jo)
	if err != nil {
		return nil, fmt.Errorf("node: journal: %w", err)
	}
	return j, nil
}

// openPostgresCoordinator opens the coordinator on coordination.postgres,
// or else on the journal's server, bringing its schema up to date.
func (n *Node) openPostgresCoordinator(ctx context.Context) (*pglock.Coordinator, error) {
	key := "coordination.postgres"
	if !n.cfg.Coordination.Postgres.Set() {
		key = "journal.postgres"
	}
	po, err := postgresOptions(key, n.cfg.CoordinationPostgres())
	if err != nil {
		return nil, err
	}
	co, err := pglock.New(ctx, pglock.Options{Postgres: po})
	if err != nil {
		return nil, fmt.Errorf("node: coordination: %w", err)
	}
	return co, nil
}
