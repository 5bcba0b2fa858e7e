package node

import (
	"context"
	"fmt"
	"time"

	"github.com/loom-mesh/loom/adapters/postgres"
	"github.com/loom-mesh/loom/adapters/postgres/pgjournal"
	"github.com/loom-mesh/loom/adapters/postgres/pglock"
	"github.com/loom-mesh/loom/config"
	"github.com/loom-mesh/loom/observability"
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
		tc, err := backendTLS(key, pc.TLSCA, pc.TLSServerName)
		if err != nil {
			return o, err
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

// postgresPart is a part of the node kept in PostgreSQL
// (pglock.Coordinator, pgjournal.Journal), as /health and /metrics see it.
type postgresPart interface {
	Ping(ctx context.Context) (time.Duration, error)
	Addr() string
	PostgresStats() postgres.Stats
}

// postgresSource is p as the observability package reads it, under role.
func postgresSource(role string, p postgresPart) observability.PostgresSource {
	return observability.PostgresSource{
		Role: role,
		Addr: p.Addr(),
		Stats: func() observability.PostgresStats {
			st := p.PostgresStats()
			out := observability.PostgresStats{
				RoundTrips: st.RoundTrips, ConnErrors: st.ConnErrors, ErrorReplies: st.ErrorReplies,
				Conflicts: st.Conflicts, Dials: st.Dials, DialErrors: st.DialErrors,
				Answered: st.Answered, LatencySum: st.LatencySum, P50: st.P50, P99: st.P99,
			}
			for _, b := range st.Buckets {
				out.Buckets = append(out.Buckets, observability.LatencyBucket{UpperBound: b.UpperBound, Count: b.Count})
			}
			return out
		},
		Ping: func() (time.Duration, error) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			return p.Ping(ctx)
		},
	}
}

// postgresSources are the node's parts kept in PostgreSQL: the
// coordinator (role locks) and the journal with its queues (role
// journal).
func (n *Node) postgresSources() (locks, journal *observability.PostgresSource) {
	if p, ok := n.coord.(postgresPart); ok {
		s := postgresSource("locks", p)
		locks = &s
	}
	if p, ok := n.journal.(postgresPart); ok {
		s := postgresSource("journal", p)
		journal = &s
	}
	return locks, journal
}
