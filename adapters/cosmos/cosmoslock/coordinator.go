package cosmoslock

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"

	"github.com/loom-mesh/loom/adapters/cosmos"
	"github.com/loom-mesh/loom/lock"
)

var _ lock.Coordinator = (*Coordinator)(nil)

// Sentinel errors of cosmoslock, besides those of the lock contract. Every
// error from Cosmos DB or from the way to it wraps one of them and the
// cause, and says which operation failed. Test with errors.Is.
var (
	// ErrUnavailable: the operation was not carried out: no connection
	// could be made, or Cosmos DB refused the request before doing
	// anything (throttled, unauthorized, forbidden, ...). Nothing
	// changed; retry. It wraps lock.ErrUnavailable.
	ErrUnavailable = fmt.Errorf("cosmoslock: cosmos unavailable: %w", lock.ErrUnavailable)
	// ErrUnknownOutcome: the operation may have been carried out: a
	// request was, or may have been, sent and no answer came (a
	// connection lost, a timeout, the context ended), or Cosmos DB
	// answered 408 or 5xx. It wraps lock.ErrUnknownOutcome.
	ErrUnknownOutcome = fmt.Errorf("cosmoslock: outcome unknown: %w", lock.ErrUnknownOutcome)
)

// Options configure a Coordinator.
type Options struct {
	// Cosmos says how to reach the account and which container holds the
	// sessions and leases (Cosmos.LeaseContainer).
	Cosmos cosmos.Options
	// Meter, when not nil, counts the coordinator's requests; nil: the
	// coordinator makes its own.
	Meter *cosmos.Meter
}

// Validate reports every problem with o, or nil.
func (o Options) Validate() error { return o.Cosmos.Validate() }

// sessionsPK is the partition of every session document: one logical
// partition, so that the sessions of an owner are found by a
// single-partition query. Each node writes it once per renewal interval.
const sessionsPK = "sessions"

// maxAttempts bounds the read-decide-write rounds of one operation that
// keeps losing races on an etag.
const maxAttempts = 16

// Coordinator is a lock.Coordinator kept in Cosmos DB. See the package
// doc. It is safe for concurrent use. Its state, guarded by mu: the
// sessions it opened (own) and what it has observed of every session it
// judged (seen). Every operation holds ops (shared) for its duration, so
// Close waits for operations in flight.
type Coordinator struct {
	acct    *cosmos.Account
	c       *azcosmos.ContainerClient
	now     func() time.Time
	timeout time.Duration

	mu   sync.Mutex
	own  map[lock.SessionID]*ownSession
	seen map[lock.SessionID]observation

	ops    sync.RWMutex
	closed bool
}

// ownSession is a session this coordinator opened: the etag of its
// document as last written here, and the lease rule's reckoning.
type ownSession struct {
	etag     azcore.ETag // "" when unknown: read it before writing
	owner    string
	ttl      time.Duration
	renewals uint64
	lease    lock.Lease // margin 0: the coordinator's own view is the full TTL
}

// observation is the etag of a session document as this coordinator
// first saw it, and when (on this coordinator's monotonic clock).
type observation struct {
	etag  azcore.ETag
	since time.Time
}

// sessionDoc is a session's document.
type sessionDoc struct {
	ID    string `json:"id"`
	PK    string `json:"pk"`
	Type  string `json:"type"` // "session"
	Owner string `json:"owner"`
	TTLMs int64  `json:"ttlMs"`
	// Renewal counts renewals, so that every renewal changes the body
	// (Cosmos DB changes the etag on every write anyway).
	Renewal uint64 `json:"renewal"`
	ETag    string `json:"_etag,omitempty"`
}

// leaseDoc is a lock's document. It is never deleted: Token must keep
// increasing across grants.
type leaseDoc struct {
	ID      string `json:"id"`
	PK      string `json:"pk"`
	Type    string `json:"type"` // "lease"
	Key     string `json:"key"`
	Session string `json:"session"` // "" when free
	Owner   string `json:"owner"`
	// Token is a decimal string: Cosmos DB (and its test server) keep JSON
	// numbers as doubles, exact only up to 2^53.
	Token string `json:"token"`
	ETag  string `json:"_etag,omitempty"`
}

func (d leaseDoc) token() uint64 { n, _ := strconv.ParseUint(d.Token, 10, 64); return n }

// New returns a coordinator on the account o names, creating the
// database and containers if missing.
func New(ctx context.Context, o Options) (*Coordinator, error) {
	return newCoordinator(ctx, o, time.Now)
}

func newCoordinator(ctx context.Context, o Options, now func() time.Time) (*Coordinator, error) {
	acct, err := cosmos.Open(ctx, o.Cosmos, o.Meter)
	if err != nil {
		if errors.Is(err, cosmos.ErrOptions) {
			return nil, fmt.Errorf("cosmoslock: %w", err)
		}
		return nil, fmt.Errorf("cosmoslock: cosmos at %s: %w: %w", o.Cosmos.Addr(), wrapKind(err), err)
	}
	return &Coordinator{
		acct: acct, c: acct.Leases, now: now, timeout: o.Cosmos.Timeout(),
		own: map[lock.SessionID]*ownSession{}, seen: map[lock.SessionID]observation{},
	}, nil
}

// wrapKind is the sentinel a failed request's error maps to.
func wrapKind(err error) error {
	if cosmos.NotApplied(err) {
		return ErrUnavailable
	}
	return ErrUnknownOutcome
}

// fail wraps a request's error with the operation and its kind.
func fail(op string, err error) error {
	return fmt.Errorf("cosmoslock: %s: %w: %w", op, wrapKind(err), err)
}

// Account is the coordinator's connection to Cosmos DB.
func (c *Coordinator) Account() *cosmos.Account { return c.acct }

// Addr is the endpoint's host:port.
func (c *Coordinator) Addr() string { return c.acct.Addr() }

// Ping reads the database's properties, timing it.
func (c *Coordinator) Ping(ctx context.Context) (time.Duration, error) { return c.acct.Ping(ctx) }

// CosmosStats is what the coordinator's Meter has counted.
func (c *Coordinator) CosmosStats() cosmos.Stats { return c.acct.Meter.Snapshot() }

// begin starts an operation: ErrClosed after Close, ctx's error if it has
// ended; else a context bounded by the request timeout and a func to end
// the operation.
func (c *Coordinator) begin(ctx context.Context, op string) (context.Context, func(), error) {
	c.ops.RLock()
	if c.closed {
		c.ops.RUnlock()
		return nil, nil, fmt.Errorf("cosmoslock: %s: %w", op, lock.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		c.ops.RUnlock()
		return nil, nil, fmt.Errorf("cosmoslock: %s: %w", op, err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	return ctx, func() { cancel(); c.ops.RUnlock() }, nil
}

// Close implements lock.Coordinator: it waits for operations in flight.
func (c *Coordinator) Close() error {
	c.ops.Lock()
	defer c.ops.Unlock()
	if !c.closed {
		c.closed = true
		c.acct.Close()
	}
	return nil
}

// sessionDocID is the document id of session s. Ids are opaque strings
// the caller may have made up; base64url keeps them inside Cosmos DB's id
// alphabet (no / \ ? #).
func sessionDocID(s lock.SessionID) string { return "s." + encodeID(string(s)) }

// leaseDocID is the document id, and partition key, of the lock named key.
func leaseDocID(key string) string { return "l." + encodeID(key) }

func encodeID(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// maxKeyLen is the longest lock key: its document id must fit in Cosmos
// DB's 255 characters.
const maxKeyLen = 189 // 2 + ceil(189*4/3) = 254

// CreateSession implements lock.Coordinator.
func (c *Coordinator) CreateSession(ctx context.Context, owner string, ttl time.Duration) (lock.SessionID, error) {
	switch {
	case owner == "":
		return "", fmt.Errorf("cosmoslock: create session: empty owner: %w", lock.ErrInvalid)
	case ttl <= 0:
		return "", fmt.Errorf("cosmoslock: create session: TTL %v: %w", ttl, lock.ErrInvalid)
	case ttl.Milliseconds() == 0:
		return "", fmt.Errorf("cosmoslock: create session: TTL %v is under a millisecond: %w", ttl, lock.ErrInvalid)
	}
	ctx, end, err := c.begin(ctx, "create session")
	if err != nil {
		return "", err
	}
	defer end()
	var b [16]byte
	_, _ = rand.Read(b[:])
	s := lock.SessionID(hex.EncodeToString(b[:]))
	doc := sessionDoc{ID: sessionDocID(s), PK: sessionsPK, Type: "session", Owner: owner, TTLMs: ttl.Milliseconds()}
	body, _ := json.Marshal(doc)
	sent := c.now()
	resp, err := c.c.CreateItem(ctx, azcosmos.NewPartitionKeyString(sessionsPK), body, nil)
	if err != nil {
		return "", fail("create session", err)
	}
	lease := lock.NewLease(ttl, 0)
	lease.Renewed(sent)
	c.mu.Lock()
	c.own[s] = &ownSession{etag: resp.ETag, owner: owner, ttl: ttl, lease: lease}
	c.seen[s] = observation{etag: resp.ETag, since: sent}
	c.mu.Unlock()
	return s, nil
}

// readSession reads session s's document; ok is false when there is none.
func (c *Coordinator) readSession(ctx context.Context, s lock.SessionID) (doc sessionDoc, ok bool, err error) {
	resp, err := c.c.ReadItem(ctx, azcosmos.NewPartitionKeyString(sessionsPK), sessionDocID(s), c.acct.ReadOptions())
	if cosmos.Status(err) == cosmos.StatusNotFound {
		return doc, false, nil
	}
	if err != nil {
		return doc, false, err
	}
	if err := json.Unmarshal(resp.Value, &doc); err != nil {
		return doc, false, fmt.Errorf("session document %s: %w", sessionDocID(s), err)
	}
	doc.ETag = string(resp.ETag)
	return doc, true, nil
}

// ownLive reports what this coordinator knows of s from having opened it:
// mine is false if it did not (or forgot it); live is whether its lease,
// counted from the send time of its last successful renewal, still runs.
func (c *Coordinator) ownLive(s lock.SessionID) (mine, live bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	o, ok := c.own[s]
	if !ok {
		return false, false
	}
	return true, o.lease.Valid(c.now())
}

// judge decides whether the session whose document is doc has lapsed, as
// an observer: it has if its etag has not changed for its TTL, measured
// on this coordinator's clock from when it first saw that etag.
func (c *Coordinator) judge(s lock.SessionID, doc sessionDoc) (lapsed bool) {
	now := c.now()
	ttl := time.Duration(doc.TTLMs) * time.Millisecond
	c.mu.Lock()
	defer c.mu.Unlock()
	ob, ok := c.seen[s]
	if !ok || ob.etag != azcore.ETag(doc.ETag) {
		c.seen[s] = observation{etag: azcore.ETag(doc.ETag), since: now}
		return false
	}
	return now.Sub(ob.since) >= ttl
}

// forget drops what this coordinator keeps of session s.
func (c *Coordinator) forget(s lock.SessionID) {
	c.mu.Lock()
	delete(c.own, s)
	delete(c.seen, s)
	c.mu.Unlock()
}

// alive reports whether session s is alive, as far as this coordinator
// can tell, ending it in Cosmos DB when it finds it lapsed: a session it
// opened by its own lease; another by its document, judged as an
// observer. A lapsed session's document is deleted with If-Match on the
// etag judged stale, so a renewal that got in first wins and the session
// is then alive. It returns the owner recorded in the document when it
// read it.
func (c *Coordinator) alive(ctx context.Context, s lock.SessionID) (bool, error) {
	if s == "" {
		return false, nil
	}
	if mine, live := c.ownLive(s); mine {
		if live {
			return true, nil
		}
		c.endOwn(ctx, s)
		return false, nil
	}
	for range maxAttempts {
		doc, ok, err := c.readSession(ctx, s)
		if err != nil {
			return false, err
		}
		if !ok {
			c.forget(s)
			return false, nil
		}
		if !c.judge(s, doc) {
			return true, nil
		}
		etag := azcore.ETag(doc.ETag)
		_, err = c.c.DeleteItem(ctx, azcosmos.NewPartitionKeyString(sessionsPK), sessionDocID(s), &azcosmos.ItemOptions{IfMatchEtag: &etag})
		switch cosmos.Status(err) {
		case 0:
			if err != nil {
				return false, err
			}
			c.forget(s)
			return false, nil
		case cosmos.StatusNotFound:
			c.forget(s)
			return false, nil
		case cosmos.StatusPreconditionFailed:
			continue // renewed meanwhile: judge again
		default:
			return false, err
		}
	}
	return false, fmt.Errorf("session %s: its document kept changing", s)
}

// endOwn ends a session this coordinator opened whose lease has run out:
// its document is deleted if it is still as this coordinator last wrote
// it (best effort: a failure leaves it to lapse for observers).
func (c *Coordinator) endOwn(ctx context.Context, s lock.SessionID) {
	c.mu.Lock()
	o, ok := c.own[s]
	c.mu.Unlock()
	if !ok {
		return
	}
	etag := o.etag
	if etag == "" {
		c.forget(s) // moved by a lost renewal: observers will judge it
		return
	}
	_, err := c.c.DeleteItem(ctx, azcosmos.NewPartitionKeyString(sessionsPK), sessionDocID(s), &azcosmos.ItemOptions{IfMatchEtag: &etag})
	if err == nil || cosmos.Status(err) == cosmos.StatusNotFound || cosmos.Status(err) == cosmos.StatusPreconditionFailed {
		c.forget(s)
	}
}

// Renew implements lock.Coordinator. A renewal is one conditional
// replace of the session's document (If-Match on the etag this
// coordinator last wrote), which changes its etag: what observers watch.
func (c *Coordinator) Renew(ctx context.Context, s lock.SessionID) error {
	ctx, end, err := c.begin(ctx, "renew")
	if err != nil {
		return err
	}
	defer end()
	expired := fmt.Errorf("cosmoslock: renew session %s: %w", s, lock.ErrSessionExpired)
	mine, live := c.ownLive(s)
	if mine && !live {
		c.endOwn(ctx, s)
		return expired
	}
	if !mine {
		// A session opened by another coordinator (a restarted process's
		// Keeper, say): alive as an observer judges it, then adopted.
		ok, err := c.alive(ctx, s)
		if err != nil {
			return fail("renew", err)
		}
		if !ok {
			return expired
		}
	}
	for range maxAttempts {
		c.mu.Lock()
		o := c.own[s]
		var doc sessionDoc
		var etag azcore.ETag
		if o != nil {
			etag = o.etag
			doc = sessionDoc{ID: sessionDocID(s), PK: sessionsPK, Type: "session", Owner: o.owner, TTLMs: o.ttl.Milliseconds(), Renewal: o.renewals + 1}
		}
		c.mu.Unlock()
		if etag == "" {
			// Not known here (adopted), or it moved: read it.
			stored, ok, err := c.readSession(ctx, s)
			if err != nil {
				return fail("renew", err)
			}
			if !ok {
				c.forget(s)
				return expired
			}
			doc, etag = stored, azcore.ETag(stored.ETag)
			doc.ETag = ""
			doc.Renewal++
		}
		body, _ := json.Marshal(doc)
		sent := c.now()
		resp, err := c.c.ReplaceItem(ctx, azcosmos.NewPartitionKeyString(sessionsPK), doc.ID, body, &azcosmos.ItemOptions{IfMatchEtag: &etag})
		switch cosmos.Status(err) {
		case 0:
			if err != nil {
				return fail("renew", err)
			}
			c.mu.Lock()
			o, ok := c.own[s]
			if !ok {
				ttl := time.Duration(doc.TTLMs) * time.Millisecond
				o = &ownSession{owner: doc.Owner, ttl: ttl, lease: lock.NewLease(ttl, 0)}
				c.own[s] = o
			}
			o.etag, o.renewals = resp.ETag, doc.Renewal
			o.lease.Renewed(sent)
			c.seen[s] = observation{etag: resp.ETag, since: sent}
			c.mu.Unlock()
			return nil
		case cosmos.StatusNotFound:
			c.forget(s)
			return expired // deleted: destroyed, or judged lapsed by an observer
		case cosmos.StatusPreconditionFailed:
			// Only the session's holder writes a live version of its
			// document, and observers only delete it: so it is there,
			// changed by a renewal of this session whose answer was lost
			// (an SDK resend). Read it and renew again.
			c.mu.Lock()
			if o, ok := c.own[s]; ok {
				o.etag = ""
			}
			c.mu.Unlock()
		default:
			return fail("renew", err)
		}
	}
	return fail("renew", errors.New("the session document kept changing"))
}

// DestroySession implements lock.Coordinator.
func (c *Coordinator) DestroySession(ctx context.Context, s lock.SessionID) error {
	ctx, end, err := c.begin(ctx, "destroy session")
	if err != nil {
		return err
	}
	defer end()
	_, err = c.c.DeleteItem(ctx, azcosmos.NewPartitionKeyString(sessionsPK), sessionDocID(s), nil)
	if err != nil && cosmos.Status(err) != cosmos.StatusNotFound {
		return fail("destroy session", err)
	}
	c.forget(s)
	return nil
}

// readLease reads the lease document of key; ok is false when there is none.
func (c *Coordinator) readLease(ctx context.Context, key string) (doc leaseDoc, ok bool, err error) {
	id := leaseDocID(key)
	resp, err := c.c.ReadItem(ctx, azcosmos.NewPartitionKeyString(id), id, c.acct.ReadOptions())
	if cosmos.Status(err) == cosmos.StatusNotFound {
		return doc, false, nil
	}
	if err != nil {
		return doc, false, err
	}
	if err := json.Unmarshal(resp.Value, &doc); err != nil {
		return doc, false, fmt.Errorf("lease document %s: %w", id, err)
	}
	doc.ETag = string(resp.ETag)
	return doc, true, nil
}

func checkKey(op, key string) error {
	switch {
	case key == "":
		return fmt.Errorf("cosmoslock: %s: empty key: %w", op, lock.ErrInvalid)
	case len(key) > maxKeyLen:
		return fmt.Errorf("cosmoslock: %s: key of %d bytes exceeds %d: %w", op, len(key), maxKeyLen, lock.ErrInvalid)
	}
	return nil
}

// Acquire implements lock.Coordinator.
func (c *Coordinator) Acquire(ctx context.Context, s lock.SessionID, key string) (uint64, error) {
	if err := checkKey("acquire", key); err != nil {
		return 0, err
	}
	ctx, end, err := c.begin(ctx, "acquire")
	if err != nil {
		return 0, err
	}
	defer end()
	expired := fmt.Errorf("cosmoslock: acquire %q: session %s: %w", key, s, lock.ErrSessionExpired)
	live, err := c.alive(ctx, s)
	if err != nil {
		return 0, fail("acquire", err)
	}
	if !live {
		return 0, expired
	}
	owner, err := c.ownerOf(ctx, s)
	if err != nil {
		return 0, fail("acquire", err)
	}
	id := leaseDocID(key)
	pk := azcosmos.NewPartitionKeyString(id)
	for range maxAttempts {
		doc, ok, err := c.readLease(ctx, key)
		if err != nil {
			return 0, fail("acquire", err)
		}
		if !ok {
			doc = leaseDoc{ID: id, PK: id, Type: "lease", Key: key, Session: string(s), Owner: owner, Token: "1"}
			body, _ := json.Marshal(doc)
			_, err := c.c.CreateItem(ctx, pk, body, nil)
			switch cosmos.Status(err) {
			case 0:
				if err != nil {
					return 0, fail("acquire", err)
				}
				return 1, nil
			case cosmos.StatusConflict:
				continue // created meanwhile (perhaps by a resend of ours): read it
			default:
				return 0, fail("acquire", err)
			}
		}
		if doc.Session == string(s) {
			return doc.token(), nil
		}
		if doc.Session != "" {
			held, err := c.alive(ctx, lock.SessionID(doc.Session))
			if err != nil {
				return 0, fail("acquire", err)
			}
			if held {
				return 0, fmt.Errorf("cosmoslock: acquire: %w", &lock.HeldError{Key: key, Holder: doc.Owner, Token: doc.token()})
			}
		}
		etag := azcore.ETag(doc.ETag)
		tok := doc.token() + 1
		doc.Session, doc.Owner, doc.Token, doc.ETag = string(s), owner, strconv.FormatUint(tok, 10), ""
		body, _ := json.Marshal(doc)
		_, err = c.c.ReplaceItem(ctx, pk, id, body, &azcosmos.ItemOptions{IfMatchEtag: &etag})
		switch cosmos.Status(err) {
		case 0:
			if err != nil {
				return 0, fail("acquire", err)
			}
			return tok, nil
		case cosmos.StatusPreconditionFailed, cosmos.StatusNotFound:
			continue // another grant or release got in first: decide again
		default:
			return 0, fail("acquire", err)
		}
	}
	return 0, fail("acquire", fmt.Errorf("lease %q kept changing", key))
}

// ownerOf is the owner of session s, which is alive.
func (c *Coordinator) ownerOf(ctx context.Context, s lock.SessionID) (string, error) {
	c.mu.Lock()
	o, ok := c.own[s]
	c.mu.Unlock()
	if ok {
		return o.owner, nil
	}
	doc, ok, err := c.readSession(ctx, s)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", errors.New("the session's document vanished")
	}
	return doc.Owner, nil
}

// Release implements lock.Coordinator.
func (c *Coordinator) Release(ctx context.Context, s lock.SessionID, key string) error {
	if err := checkKey("release", key); err != nil {
		return err
	}
	ctx, end, err := c.begin(ctx, "release")
	if err != nil {
		return err
	}
	defer end()
	notHeld := fmt.Errorf("cosmoslock: release %q by session %s: %w", key, s, lock.ErrNotHeld)
	for range maxAttempts {
		doc, ok, err := c.readLease(ctx, key)
		if err != nil {
			return fail("release", err)
		}
		if !ok || doc.Session != string(s) {
			return notHeld
		}
		live, err := c.alive(ctx, s)
		if err != nil {
			return fail("release", err)
		}
		if !live {
			return notHeld
		}
		etag := azcore.ETag(doc.ETag)
		doc.Session, doc.Owner, doc.ETag = "", "", ""
		body, _ := json.Marshal(doc)
		_, err = c.c.ReplaceItem(ctx, azcosmos.NewPartitionKeyString(doc.ID), doc.ID, body, &azcosmos.ItemOptions{IfMatchEtag: &etag})
		switch cosmos.Status(err) {
		case 0:
			if err != nil {
				return fail("release", err)
			}
			return nil
		case cosmos.StatusPreconditionFailed:
			continue
		default:
			return fail("release", err)
		}
	}
	return fail("release", fmt.Errorf("lease %q kept changing", key))
}

// Holder implements lock.Coordinator.
func (c *Coordinator) Holder(ctx context.Context, key string) (lock.LockInfo, bool, error) {
	if err := checkKey("holder", key); err != nil {
		return lock.LockInfo{}, false, err
	}
	ctx, end, err := c.begin(ctx, "holder")
	if err != nil {
		return lock.LockInfo{}, false, err
	}
	defer end()
	doc, ok, err := c.readLease(ctx, key)
	if err != nil {
		return lock.LockInfo{}, false, fail("holder", err)
	}
	if !ok || doc.Session == "" {
		return lock.LockInfo{}, false, nil
	}
	live, err := c.alive(ctx, lock.SessionID(doc.Session))
	if err != nil {
		return lock.LockInfo{}, false, fail("holder", err)
	}
	if !live {
		return lock.LockInfo{}, false, nil
	}
	return lock.LockInfo{Key: key, Session: lock.SessionID(doc.Session), Owner: doc.Owner, Token: doc.token()}, true, nil
}

// EndSessionsOf ends every session whose owner is owner except keep (""
// keeps none), freeing their locks at once, and returns how many it
// ended. A node calls it when it starts, for the sessions of its previous
// incarnation (a crash, a kill -9): their locks would otherwise stay held
// until observers judge them lapsed. Node ids are unique in a cluster, so
// no other live node owns them.
func (c *Coordinator) EndSessionsOf(ctx context.Context, owner string, keep lock.SessionID) (int, error) {
	if owner == "" {
		return 0, fmt.Errorf("cosmoslock: end sessions: empty owner: %w", lock.ErrInvalid)
	}
	ctx, end, err := c.begin(ctx, "end sessions")
	if err != nil {
		return 0, err
	}
	defer end()
	pk := azcosmos.NewPartitionKeyString(sessionsPK)
	q := c.c.NewQueryItemsPager("SELECT c.id FROM c WHERE c.type = 'session' AND c.owner = @owner", pk,
		c.acct.QueryOptions(azcosmos.QueryParameter{Name: "@owner", Value: owner}))
	var ids []string
	for q.More() {
		page, err := q.NextPage(ctx)
		if err != nil {
			return 0, fail("end sessions", err)
		}
		for _, it := range page.Items {
			var d struct {
				ID string `json:"id"`
			}
			if err := json.Unmarshal(it, &d); err == nil && d.ID != sessionDocID(keep) {
				ids = append(ids, d.ID)
			}
		}
	}
	n := 0
	for _, id := range ids {
		_, err := c.c.DeleteItem(ctx, pk, id, nil)
		switch {
		case err == nil:
			n++
		case cosmos.Status(err) == cosmos.StatusNotFound:
		default:
			return n, fail("end sessions", err)
		}
	}
	return n, nil
}
