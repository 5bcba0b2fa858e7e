// Package redis holds what Loom's Redis adapters share: how to reach a
// Redis server (Options) and the client made from them (NewClient); which
// failures prove that a command had no effect (NotApplied); and Meter, the
// go-redis hook that counts each adapter's round trips, failures and
// latency for /health and /metrics (each adapter's RedisStats, next to its
// Ping and Addr). The adapters themselves, each behind one of Loom's
// interfaces and passing its conformance suite against a real
// redis-server, are its subpackages.
//
// Durability is Redis's: with appendonly yes and appendfsync always on one
// primary, a write Redis acknowledged survives a crash of redis-server;
// with appendfsync everysec up to a second of writes can be lost; across a
// failover to a replica, acknowledged writes can be lost (replication is
// asynchronous). Loom's own tests run appendfsync always on one server.
package redis

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Options say how to reach a Redis server. Addr, or else Host and Port
// (default port 6379), names it; URL (redis:// or rediss://) may give
// everything at once instead.
type Options struct {
	URL      string
	Addr     string
	Host     string
	Port     int
	Username string
	Password string
	DB       int
	// TLS, when not nil, is used for every connection.
	TLS *tls.Config
	// KeyPrefix starts every key an adapter writes, so that several
	// clusters can share one server. Default "loom:".
	KeyPrefix string
	// Timeouts of one connection attempt and of one command's read and
	// write; 0 takes go-redis's defaults (5 s, 3 s, 3 s).
	DialTimeout, ReadTimeout, WriteTimeout time.Duration
	// PoolSize is the most connections kept; 0 takes go-redis's default
	// (10 per CPU).
	PoolSize int
}

// DefaultKeyPrefix is Options.KeyPrefix's default.
const DefaultKeyPrefix = "loom:"

// ErrOptions is wrapped by every error NewClient returns for bad Options.
var ErrOptions = errors.New("redis: invalid options")

// Prefix is o.KeyPrefix, or DefaultKeyPrefix when it is empty.
func (o Options) Prefix() string {
	if o.KeyPrefix == "" {
		return DefaultKeyPrefix
	}
	return o.KeyPrefix
}

// ClientOptions turns o into go-redis's options.
func (o Options) ClientOptions() (*goredis.Options, error) {
	var co *goredis.Options
	switch {
	case o.URL != "":
		if o.Addr != "" || o.Host != "" {
			return nil, fmt.Errorf("%w: give url or addr/host, not both", ErrOptions)
		}
		var err error
		if co, err = goredis.ParseURL(o.URL); err != nil {
			return nil, fmt.Errorf("%w: url: %w", ErrOptions, err)
		}
	default:
		addr := o.Addr
		if addr == "" {
			if o.Host == "" {
				return nil, fmt.Errorf("%w: no server: set addr, host or url", ErrOptions)
			}
			port := o.Port
			if port == 0 {
				port = 6379
			}
			addr = net.JoinHostPort(o.Host, strconv.Itoa(port))
		} else if o.Host != "" {
			return nil, fmt.Errorf("%w: give addr or host, not both", ErrOptions)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("%w: addr %q: %w", ErrOptions, addr, err)
		}
		co = &goredis.Options{Addr: addr}
	}
	if o.Port < 0 || o.Port > 65535 {
		return nil, fmt.Errorf("%w: port %d out of range", ErrOptions, o.Port)
	}
	if o.DB < 0 {
		return nil, fmt.Errorf("%w: negative db %d", ErrOptions, o.DB)
	}
	if o.PoolSize < 0 || o.DialTimeout < 0 || o.ReadTimeout < 0 || o.WriteTimeout < 0 {
		return nil, fmt.Errorf("%w: negative pool size or timeout", ErrOptions)
	}
	if strings.ContainsAny(o.KeyPrefix, " \t\r\n") {
		return nil, fmt.Errorf("%w: key prefix %q holds white space", ErrOptions, o.KeyPrefix)
	}
	if o.Username != "" {
		co.Username = o.Username
	}
	if o.Password != "" {
		co.Password = o.Password
	}
	if o.DB != 0 {
		co.DB = o.DB
	}
	if o.TLS != nil {
		co.TLSConfig = o.TLS
	}
	co.DialTimeout, co.ReadTimeout, co.WriteTimeout, co.PoolSize = o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.PoolSize
	// RESP2: the adapters use nothing of RESP3, and on a RESP3
	// connection go-redis looks for push notifications before every
	// reply, a read of the socket each time: 8% of a node's CPU in
	// durable calls on Redis.
	co.Protocol = 2
	return co, nil
}

// NewClient returns a client of the server o names. It does not connect
// until first used.
func NewClient(o Options) (*goredis.Client, error) {
	co, err := o.ClientOptions()
	if err != nil {
		return nil, err
	}
	return goredis.NewClient(co), nil
}
