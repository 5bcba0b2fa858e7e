package postgres

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Options say how to reach a PostgreSQL server and where Loom keeps its
// tables there. Host (and Port, default 5432), or else URL, names the
// server.
type Options struct {
	// URL is a postgres:// URL or a keyword/value connection string
	// ("host=... dbname=..."), an alternative to Host, Port, User,
	// Password and Database; TLS is then what the URL's sslmode says,
	// unless TLS below is set. PostgreSQL's PG* environment variables
	// fill in what it leaves out, as with libpq.
	URL string

	Host     string
	Port     int    // 0: 5432
	User     string // required without URL
	Password string // may be empty (trust, peer or ~/.pgpass)
	Database string // "": the user's name, as PostgreSQL does

	// TLS, when not nil, is used for every connection (ServerName
	// defaults to Host). nil, and no URL: TLS is off (sslmode=disable).
	TLS *tls.Config

	// Schema holds every table, sequence and function Loom makes, so
	// that several clusters (or tests) share a database without meeting.
	// A lower-case SQL identifier: letters, digits and underscores, not
	// starting with a digit, at most 63 bytes. Default "loom".
	Schema string

	// PoolSize is the most connections kept; 0 takes pgxpool's default
	// (4, or the number of CPUs if more).
	PoolSize int

	// ConnectTimeout bounds one connection attempt; 0 means 5 s.
	ConnectTimeout time.Duration

	// QueryTimeout bounds one round trip the adapters make (a statement,
	// a batch, a transaction), besides the caller's context; 0 means
	// 10 s. A round trip cut short by it has an unknown outcome.
	QueryTimeout time.Duration
}

// Defaults of Options' zero fields.
const (
	DefaultPort           = 5432
	DefaultSchema         = "loom"
	DefaultConnectTimeout = 5 * time.Second
	DefaultQueryTimeout   = 10 * time.Second
)

// ErrOptions is wrapped by every error Validate, PoolConfig and NewPool
// return for bad Options.
var ErrOptions = errors.New("postgres: invalid options")

var schemaRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// SchemaName is o.Schema, or DefaultSchema when it is empty.
func (o Options) SchemaName() string {
	if o.Schema == "" {
		return DefaultSchema
	}
	return o.Schema
}

// Timeout is o.QueryTimeout, or DefaultQueryTimeout when it is 0.
func (o Options) Timeout() time.Duration {
	if o.QueryTimeout == 0 {
		return DefaultQueryTimeout
	}
	return o.QueryTimeout
}

// Validate reports every problem with o, joined, each wrapping
// ErrOptions. It fills in nothing.
func (o Options) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrOptions}, args...)...))
	}
	if o.URL != "" {
		if o.Host != "" || o.User != "" || o.Database != "" || o.Password != "" || o.Port != 0 {
			bad("give url or host, port, user, password and database, not both")
		} else if _, err := pgx.ParseConfig(o.URL); err != nil {
			bad("url: %v", err)
		}
	} else {
		if o.Host == "" {
			bad("no server: set host or url")
		}
		if o.User == "" {
			bad("no user")
		}
	}
	if o.Port < 0 || o.Port > 65535 {
		bad("port %d out of range", o.Port)
	}
	if o.Schema != "" && !schemaRE.MatchString(o.Schema) {
		bad("schema %q is not a lower-case identifier of at most 63 bytes", o.Schema)
	}
	if o.PoolSize < 0 || o.PoolSize > 1<<20 {
		bad("pool size %d out of range", o.PoolSize)
	}
	if o.ConnectTimeout < 0 || o.QueryTimeout < 0 {
		bad("negative timeout")
	}
	return errors.Join(errs...)
}

// Addr is host:port of the server o names (the URL's first host), for
// display.
func (o Options) Addr() string {
	if o.URL != "" {
		if c, err := pgx.ParseConfig(o.URL); err == nil {
			return net.JoinHostPort(c.Host, strconv.Itoa(int(c.Port)))
		}
		return "?"
	}
	port := o.Port
	if port == 0 {
		port = DefaultPort
	}
	return net.JoinHostPort(o.Host, strconv.Itoa(port))
}

// quote is a value of a keyword/value connection string.
func quote(v string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

// PoolConfig turns o into pgxpool's configuration, with m (if not nil) as
// the tracer of every connection.
func (o Options) PoolConfig(m *Meter) (*pgxpool.Config, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	cs := o.URL
	if cs == "" {
		port := o.Port
		if port == 0 {
			port = DefaultPort
		}
		db := o.Database
		if db == "" {
			db = o.User
		}
		cs = fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", quote(o.Host), port, quote(o.User), quote(db))
	}
	cfg, err := pgxpool.ParseConfig(cs)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrOptions, err)
	}
	cc := cfg.ConnConfig
	if o.URL == "" && o.Password != "" {
		cc.Password = o.Password
	}
	if o.TLS != nil {
		t := o.TLS.Clone()
		if t.ServerName == "" && !t.InsecureSkipVerify {
			t.ServerName = cc.Host
		}
		cc.TLSConfig = t
		cc.Fallbacks = nil // no falling back to plain text
	}
	cc.ConnectTimeout = o.ConnectTimeout
	if cc.ConnectTimeout == 0 {
		cc.ConnectTimeout = DefaultConnectTimeout
	}
	if cc.RuntimeParams == nil {
		cc.RuntimeParams = map[string]string{}
	}
	if cc.RuntimeParams["application_name"] == "" {
		cc.RuntimeParams["application_name"] = "loom"
	}
	if m != nil {
		cc.Tracer = m
	}
	if o.PoolSize > 0 {
		cfg.MaxConns = int32(o.PoolSize)
	}
	return cfg, nil
}

// NewPool returns a connection pool for the server o names, counted by m
// (nil: not counted). It does not connect until first used.
func NewPool(o Options, m *Meter) (*pgxpool.Pool, error) {
	cfg, err := o.PoolConfig(m)
	if err != nil {
		return nil, err
	}
	p, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrOptions, err)
	}
	return p, nil
}

// Expand returns sql with every "{s}" replaced by schema, quoted as an
// SQL identifier. The adapters write their statements with "{s}." before
// each name of theirs.
func Expand(sql, schema string) string {
	return strings.ReplaceAll(sql, "{s}", pgx.Identifier{schema}.Sanitize())
}
