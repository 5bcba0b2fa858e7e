// Package auth checks the bearer tokens of Loom's APIs: the HTTP gateway
// and the gRPC services cluster clients call. It uses the standard
// library only.
//
// # Tokens and scopes
//
// A token is a secret string an operator hands to a caller, with a name
// (for logs and errors: the secret itself is never printed) and scopes,
// each one a thing the holder may do:
//
//	actors:call          call or send a message to an actor of any type
//	actors:call:<type>   the same, for actors of that type only
//	tasks:run            run a stateless task
//	admin                journals, dead letters, reminders, members, the
//	                     gossip keyring, traces
//	metrics              /metrics and /health
//
// A scope grants nothing beyond what it names: admin does not imply
// actors:call, so an operator's console can be given read access to the
// cluster's internals without the power to change an actor. A token may
// hold several scopes.
//
// # What a Tokens guarantees
//
//   - Constant time. A presented secret is hashed (SHA-256) and compared
//     with every configured token's hash with crypto/subtle, all of them,
//     whichever matches: how long a check takes says nothing of how much
//     of a secret was right, nor of which token it was.
//   - No secret in errors. Errors name the token (its configured name) and
//     the scope it lacks, never a secret, presented or configured.
//   - Two answers. A request without a token or with one no configured
//     token matches is ErrUnauthenticated (HTTP 401, gRPC
//     Unauthenticated); a known token without the scope is
//     ErrPermissionDenied (HTTP 403, gRPC PermissionDenied).
//   - Replacement is atomic. Set swaps the whole table: a check sees the
//     old tokens or the new ones, never a mix, and an invalid table is
//     refused whole, leaving the old one in place.
package auth
