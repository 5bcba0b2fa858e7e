// Package cosmos holds what Loom's Azure Cosmos DB adapters share: how to
// reach an account and where Loom's documents live there (Options, Open,
// on github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos); which failures
// prove that a request had no effect (NotApplied); and Meter, the
// pipeline policy that counts each adapter's requests, request units,
// failures and latency for /health and /metrics. The adapters themselves,
// each behind one of Loom's interfaces and passing its conformance suite
// against a Cosmos DB test server, are its subpackages: cosmoslock (a
// lock.Coordinator) and cosmosjournal (a journal.Journal). There is no
// Cosmos DB message queue: a node whose journal is on Cosmos DB has no
// durable messaging.
//
// # Layout
//
// One database (Options.Database, default "loom"), created when missing,
// holds two containers, created when missing, both partitioned on /pk:
//
//   - the lease container (default "leases"): one document per node
//     session, all in the logical partition "sessions", and one document
//     per lock, each its own partition;
//   - the journal container (default "journal"): per actor, one logical
//     partition (the actor's key) holding its head document, its entry
//     documents and its snapshot.
//
// Two containers rather than one with a type field: their traffic differs
// (small, hot documents renewed every few seconds; an append-mostly log),
// so each can be given its own throughput, and an actor named like a
// lease's partition cannot meet it.
//
// Every decision is a conditional write on one document: a create
// (which fails with 409 if the id exists) or a replace or delete with
// If-Match on the etag read before (412 if the document changed). Nothing
// uses transactional batches, stored procedures or the server's clock.
// Numbers that may exceed 2^53 (fencing tokens, sequence numbers) are
// stored as decimal strings: Cosmos DB keeps JSON numbers as doubles.
//
// # Consistency
//
// The adapters decide on what they read: a new owner must read the
// latest lease and journal head (and their etags). With Strong or
// Bounded Staleness consistency a read in the write region sees every
// acknowledged write; with Session, Consistent Prefix or Eventual a read
// from another client may return an older version. A conditional write
// on a stale etag still fails (412), so fencing holds, but a lease could
// be reported held or free wrongly, and a reader could see an old head.
// Options.Consistency asks for Strong or Bounded Staleness on every read;
// a request can only weaken the account's level, so the account's default
// must be one of the two.
//
// # Errors
//
// A failed request is one of two kinds, which each adapter reports by
// wrapping its contract's ErrUnavailable (NotApplied: Cosmos DB refused it
// with a 4xx other than 408, or nothing was sent) or ErrUnknownOutcome
// (408, 5xx, a connection lost after sending, a timeout). The SDK retries
// throttled requests (429) a few times within the request timeout; a
// resent write that meets its own earlier success (409, 412) is
// recognised by the adapters.
//
// # TLS
//
// The endpoint's certificate is checked against the system's roots, or
// Options.CAFile's. Options.InsecureSkipVerify accepts any certificate:
// for the test server's self-signed one, never the default.
package cosmos
