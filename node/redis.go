package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"github.com/loom-mesh/loom/adapters/redis"
	"github.com/loom-mesh/loom/adapters/redis/redisjournal"
	"github.com/loom-mesh/loom/adapters/redis/redislock"
	"github.com/loom-mesh/loom/config"
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
		tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: rc.TLSServerName}
		if rc.TLSCA != "" {
			pem, err := os.ReadFile(rc.TLSCA)
			if err != nil {
				return o, fmt.Errorf("node: %s.tlsCA: %w", key, err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return o, fmt.Errorf("node: %s.tlsCA: %s holds no PEM certificate", key, rc.TLSCA)
			}
			tc.RootCAs = pool
		}
		o.TLS = tc
	}
	return o, nil
}

// openRedisJournal opens the journal (and message queues) on journal.redis.
func (n *Node) openRedisJournal(ctx context.Context) (*redisjournal.Journal, error) {
	ro, err := redisOptions("journal.redis", n.cfg.Journal.Redis)
	if err != nil {
		return nil, err
	}
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
	co, err := redislock.New(redislock.Options{Redis: ro})
	if err != nil {
		return nil, fmt.Errorf("node: coordination: %w", err)
	}
	return co, nil
}
