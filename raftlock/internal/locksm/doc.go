// Package locksm is raftlock's state machine for sessions and locks: the
// rules of lock.Coordinator (create, renew and end sessions, acquire and
// release locks with fencing tokens, expire lapsed sessions), applied to a
// few kv.Buckets and two counters, with no Raft, no network and no clock of
// its own. raftlock decodes each committed command and calls the Machine
// method of the same name; tests call them directly.
//
// # Guarantees
//
//   - Determinism: the outcome of every method (result, rule violation,
//     the records it writes) is a function of the state (the buckets and
//     Counters) and of the arguments, among them the stamped clock now
//     (and, for LeaderStart, prev): the leader's stamp, the same on every
//     replica. Nothing reads the local clock, a random source or a map's
//     order, so replicas that apply the same commands to the same state
//     reach the same state.
//   - A rule violation (a wrapped lock.ErrSessionExpired, lock.ErrNotHeld,
//     lock.ErrInvalid or a *lock.HeldError) is found before the command
//     writes anything of its own. The one effect a rejected command may
//     have is the expiry of a lapsed session it met (with its locks),
//     which any command would have done at that clock.
//   - A session has lapsed once its deadline is before now. A lapsed
//     session is deleted, with its locks, by the first command that meets
//     it, or by Reap.
//   - Tokens strictly increase: a grant's token is one more than the
//     larger of Counters.Token (every token granted so far) and the
//     highest token that has written the key's journal (Journals), so
//     tokens are never reused, never 0, and a new holder is never fenced
//     by the journal's history. A session re-acquiring its own lock gets
//     the same token.
//   - Holder and Lapsed change nothing: raftlock calls them on a read-only
//     view.
//
// The journals consult the locks through HeldToken (journalsm.Locks), the
// second fencing rule; the locks consult the journals through Journals.
// Neither reads the other's buckets.
package locksm
