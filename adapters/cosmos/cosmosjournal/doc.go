// Package cosmosjournal is a journal.Journal kept in Azure Cosmos DB. It
// passes journaltest, the conformance suite, against a Cosmos DB test
// server. It is not a queue.Store: entries of the message kinds
// (KindMessageAck, KindMessageSend, KindMessageDirect) are refused with
// an error wrapping journal.ErrInvalid, and a node whose journal is on
// Cosmos DB has no durable messaging (Send fails with
// runtime.ErrMessagingDisabled).
//
// # Documents
//
// Each actor is one logical partition of the journal container (its key,
// base64url-encoded, is the partition key), holding:
//
//   - the head, id "h": the tail (last seq assigned), the highest token
//     that wrote, the truncation point, the snapshot's seq, token and
//     document id, and a short list of epochs, each (fromSeq, nonce,
//     token), saying which entry documents hold the seqs from fromSeq on;
//   - one document per entry, id "e.<seq, 20 digits>.<nonce>", holding
//     the entry in journal's stable binary encoding (Seq, Actor and Token
//     stamped);
//   - the snapshot, id "s.<random>".
//
// The head is the truth, and its write is the commit: a reader reads the
// head, then the entry documents from the seqs it wants up to the head's
// tail, and takes for each seq the document whose nonce is the epoch's.
// Every number that may exceed 2^53 is a decimal string.
//
// # Append
//
// Append reads the head and applies the contract's rules to it
// (journal.ActorState: ErrFenced for a token below the head's highest,
// then ErrConflict for an expectedSeq that is not the tail). It then
// creates the entry documents (create-only) and replaces the head with
// If-Match on the etag it read (or creates it, for an actor's first
// write), raising the tail and the token and adding an epoch when the
// nonce differs from the last one's. A head that changed meanwhile (412,
// 409) is read again and the rules applied again: a higher token fences,
// a moved tail conflicts, and anything else (a snapshot, a truncation at
// an equal token) is committed over.
//
// Nothing depends on a transactional batch (the test server's is not
// atomic, and Cosmos DB's is limited to 100 operations): a crash between
// the two steps leaves entry documents that no head names, which no
// reader returns; an append that reported success has its head written,
// and its documents were written before it. An entry document is never
// written twice: the nonce is 64 random bits per Journal and actor, and
// is replaced after every failed append, so a retried append (after
// ErrUnknownOutcome) writes documents of a new name and cannot overwrite
// those a late-landing earlier attempt committed. A 409 on an entry
// document, or a head whose epoch names this attempt's nonce at the
// attempt's first seq after a 412, can only be this attempt's own write
// resent by the SDK after a lost answer, and is taken as success.
//
// Appends to one actor from one Journal are serialised (a mutex per
// actor): a node's runtime appends one turn at a time anyway. Appends to
// different actors run concurrently; there is no group commit (Cosmos DB
// has no transaction across partitions).
//
// # Snapshots and Truncate
//
// SaveSnapshot writes the snapshot as a new document, then points the
// head at it (If-Match) and deletes the one it replaced. Truncate writes
// the truncation point and the token into the head (readers skip the
// truncated entries from then on), drops the epochs below it, and then
// deletes the entry documents at or below it, orphans included, best
// effort: what a failure leaves, the next Truncate deletes. A snapshot is
// one document, so it is limited to Cosmos DB's document size (2 MB);
// a larger one is refused with ErrInvalid.
//
// # Errors
//
// A failure before the head's write (reading it, writing entries) means
// the operation had no effect: ErrUnavailable, whatever the request's
// fate. A failure of the head's write wraps ErrUnavailable when Cosmos
// DB refused it (4xx other than 408, nothing sent) and ErrUnknownOutcome
// otherwise: Tail tells.
//
// # Consistency and fencing
//
// Fencing is checked against the head this Journal read and enforced by
// the If-Match of the head's write: a writer whose read was stale loses
// the write. The account must serve reads at Strong or Bounded Staleness
// consistency (see package cosmos) so that a new owner's first read of
// the head sees every acknowledged append. Any coordinator whose tokens
// strictly increase per actor can fence this journal: it compares tokens
// as numbers.
package cosmosjournal
