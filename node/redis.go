package node

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/loom-mesh/loom/adapters/redis"
	"github.com/loom-mesh/loom/adapters/redis/redisjournal"
	"github.com/loom-mesh/loom/adapters/redis/redislock"
	"github.com/loom-mesh/loom/config"
	"github.com/loom-mesh/loom/observability"
)

// redisOptions turns a config section into the adapters' options, reading
// the TLS CA file it names. key names the section in errors.
func redisOptions(key string, rc config.RedisConfig) (redis.Options, error) {
	o := redis.Options{
		URL: rc.URL, Addr: rc.Addr, Host: rc.Host, Port: rc.Port,
		Username: rc.Username, Password: rc.Password, DB: rc.Database,
		KeyPrefix:   rc.KeyPrefix,
		DialTimeout: rc.DialTimeout, ReadTimeout: rc.ReadTimeout, WriteTimeout: rc.WriteTimeout,
		PoolSize: rc.PoolSize,
	}
	if rc.TLS {
		tc, err := backendTLS(key, rc.TLSCA, rc.TLSServerName)
		if err != nil {
			return o, err
		}
		o.TLS = tc
	}
	return o, nil
}

// redisLog routes go-redis's own log lines (a pool that cannot dial while
// Redis is down, a pub/sub reconnecting) to the node's logger at debug
// level: the adapters report each failure as an error of the operation it
// failed, and /health says when Redis does not answer.
type redisLog struct{ log *slog.Logger }

func (l redisLog) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, fmt.Sprintf(format, v...), "component", "redis")
}

var redisLogOnce sync.Once

// routeRedisLog sends go-redis's log (a process-wide setting) to the
// logger of the first node that uses Redis.
func (n *Node) routeRedisLog() {
	redisLogOnce.Do(func() { goredis.SetLogger(redisLog{n.log}) })
}

// openRedisJournal opens the journal (and message queues) on journal.redis.
func (n *Node) openRedisJournal(ctx context.Context) (*redisjournal.Journal, error) {
	ro, err := redisOptions("journal.redis", n.cfg.Journal.Redis)
	if err != nil {
		return nil, err
	}
	n.routeRedisLog()
	jo := redisjournal.DefaultOptions()
	jo.Redis = ro
	jo.QueueRetention = n.cfg.Messaging.IDRetention
	j, err := redisjournal.Open(ctx, jo)
	if err != nil {
		return nil, fmt.Errorf("node: journal: %w", err)
	}
	return j, nil
}

// openRedisCoordinator opens the coordinator on coordination.redis, or
// else on the journal's Redis.
func (n *Node) openRedisCoordinator() (*redislock.Coordinator, error) {
	key := "coordination.redis"
	if !n.cfg.Coordination.Redis.Set() {
		key = "journal.redis"
	}
	ro, err := redisOptions(key, n.cfg.CoordinationRedis())
	if err != nil {
		return nil, err
	}
	n.routeRedisLog()
	co, err := redislock.New(redislock.Options{Redis: ro})
	if err != nil {
		return nil, fmt.Errorf("node: coordination: %w", err)
	}
	return co, nil
}

// redisPart is a part of the node kept in Redis (redislock.Coordinator,
// redisjournal.Journal), as /health and /metrics see it.
type redisPart interface {
	Ping(ctx context.Context) (time.Duration, error)
	Addr() string
	RedisStats() redis.Stats
}

// redisSource is p as the observability package reads it, under role.
func redisSource(role string, p redisPart) observability.RedisSource {
	return observability.RedisSource{
		Role: role,
		Addr: p.Addr(),
		Stats: func() observability.RedisStats {
			st := p.RedisStats()
			out := observability.RedisStats{
				RoundTrips: st.RoundTrips, ConnErrors: st.ConnErrors, ErrorReplies: st.ErrorReplies, ScriptErrors: st.ScriptErrors,
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

// redisSources are the node's parts kept in Redis: the coordinator
// (role locks) and the journal with its queues (role journal).
func (n *Node) redisSources() (locks, journal *observability.RedisSource) {
	if p, ok := n.coord.(redisPart); ok {
		s := redisSource("locks", p)
		locks = &s
	}
	if p, ok := n.journal.(redisPart); ok {
		s := redisSource("journal", p)
		journal = &s
	}
	return locks, journal
}
