package node

import (
	"context"
	"fmt"
	"time"

	"github.com/loom-mesh/loom/adapters/cosmos"
	"github.com/loom-mesh/loom/adapters/cosmos/cosmosjournal"
	"github.com/loom-mesh/loom/adapters/cosmos/cosmoslock"
	"github.com/loom-mesh/loom/config"
	"github.com/loom-mesh/loom/observability"
)

// cosmosOptions turns a config section into the adapters' options.
func cosmosOptions(cc config.CosmosConfig) cosmos.Options {
	return cosmos.Options{
		Endpoint: cc.Endpoint, Key: cc.Key, Database: cc.Database,
		LeaseContainer: cc.LeaseContainer, JournalContainer: cc.JournalContainer,
		CAFile: cc.CAFile, InsecureSkipVerify: cc.InsecureSkipVerify, Consistency: cc.Consistency,
		ConnectTimeout: cc.ConnectTimeout, RequestTimeout: cc.RequestTimeout,
	}
}

// openCosmosJournal opens the journal on journal.cosmos, creating its
// database and containers if missing.
func (n *Node) openCosmosJournal(ctx context.Context) (*cosmosjournal.Journal, error) {
	j, err := cosmosjournal.Open(ctx, cosmosjournal.Options{Cosmos: cosmosOptions(n.cfg.Journal.Cosmos)})
	if err != nil {
		return nil, fmt.Errorf("node: journal: %w", err)
	}
	return j, nil
}

// openCosmosCoordinator opens the coordinator on coordination.cosmos, or
// else on the journal's account.
func (n *Node) openCosmosCoordinator(ctx context.Context) (*cosmoslock.Coordinator, error) {
	co, err := cosmoslock.New(ctx, cosmoslock.Options{Cosmos: cosmosOptions(n.cfg.CoordinationCosmos())})
	if err != nil {
		return nil, fmt.Errorf("node: coordination: %w", err)
	}
	return co, nil
}

// cosmosPart is a part of the node kept in Cosmos DB
// (cosmoslock.Coordinator, cosmosjournal.Journal), as /health and
// /metrics see it.
type cosmosPart interface {
	Ping(ctx context.Context) (time.Duration, error)
	Addr() string
	CosmosStats() cosmos.Stats
}

// cosmosSource is p as the observability package reads it, under role.
func cosmosSource(role string, p cosmosPart) observability.CosmosSource {
	return observability.CosmosSource{
		Role: role,
		Addr: p.Addr(),
		Stats: func() observability.CosmosStats {
			st := p.CosmosStats()
			out := observability.CosmosStats{
				RoundTrips: st.RoundTrips, Answered: st.Answered, TransportErrors: st.TransportErrors,
				Throttled: st.Throttled, ServerErrors: st.ServerErrors, ClientErrors: st.ClientErrors,
				NotFound: st.NotFound, Conflicts: st.Conflicts, PreconditionFailed: st.PreconditionFailed,
				RequestCharge: st.RequestCharge, LatencySum: st.LatencySum, P50: st.P50, P99: st.P99,
			}
			for _, b := range st.Buckets {
				out.Buckets = append(out.Buckets, observability.LatencyBucket{UpperBound: b.UpperBound, Count: b.Count})
			}
			for _, op := range st.Ops {
				out.Ops = append(out.Ops, observability.CosmosOpStats{Op: op.Op, RoundTrips: op.RoundTrips, Errors: op.Errors, RequestCharge: op.RequestCharge})
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

// cosmosSources are the node's parts kept in Cosmos DB: the coordinator
// (role locks) and the journal (role journal).
func (n *Node) cosmosSources() []observability.CosmosSource {
	var out []observability.CosmosSource
	if p, ok := n.coord.(cosmosPart); ok {
		out = append(out, cosmosSource("locks", p))
	}
	if p, ok := n.journal.(cosmosPart); ok {
		out = append(out, cosmosSource("journal", p))
	}
	return out
}
