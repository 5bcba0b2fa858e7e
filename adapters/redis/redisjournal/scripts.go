package redisjournal

import goredis "github.com/redis/go-redis/v9"

// The Lua scripts that mutate an actor. Each runs atomically on the server
// (a script is one step of Redis's single-threaded executor, and Redis
// writes its effects to the append-only file as one MULTI/EXEC block, which
// a restart either replays whole or drops), so checking the actor's head and
// writing to it cannot be interleaved with another writer.
//
// Every script takes KEYS[1] = the actor's head hash (and KEYS[2] = its log
// stream where it needs it) and ARGV[1] = the caller's token. It reads the
// head, evaluates the rules (fencing first) and, only if they all pass,
// writes. It answers {verdict, tail, token, snapseq}: verdict "ok" or "no",
// and the head as it found it (snapseq "" when there is no snapshot). On
// "no" the Go side rebuilds the journal.ActorState from the head and asks
// the journal's own rules (ActorState.CheckAppend, ...) for the error, so
// the error is the one every backend gives, and a disagreement between the
// script and the rules is caught rather than reported as a refusal.
//
// Numbers (sequence numbers, tokens) are uint64. Lua's numbers are doubles,
// exact only up to 2^53, so the scripts never do arithmetic on them: Go
// computes every new value (the ids of the new entries, the new tail) and
// passes it in, and the scripts compare canonical decimal strings (no sign,
// no leading zeros) with lt, which is exact over the whole uint64 range and
// does not depend on the server's locale.
//
// The "#!lua" line makes the script declare its flags (none, Redis 7.0 and
// later): the server then refuses it before it runs when it could not write
// (out of memory, a MISCONF disk error, a read-only replica) instead of
// failing at the first write, so a refusal never leaves a partial append.

// scriptPrelude is the start of every script: the decimal comparison and
// the reading of the head.
const scriptPrelude = `#!lua
local function lt(a, b)
  if #a ~= #b then return #a < #b end
  if #a <= 10 then return tonumber(a) < tonumber(b) end
  local ha, hb = tonumber(string.sub(a, 1, #a - 10)), tonumber(string.sub(b, 1, #b - 10))
  if ha ~= hb then return ha < hb end
  return tonumber(string.sub(a, -10)) < tonumber(string.sub(b, -10))
end
local h = redis.call('HMGET', KEYS[1], 'tail', 'token', 'snapseq')
local tail, token, snapseq = h[1] or '0', h[2] or '0', h[3] or ''
`

// appendScript: KEYS = head, log; ARGV = token, expectedSeq, new tail, then
// for each entry its stream id ("<seq>-0") and its record
// (journal.MarshalEntry, already stamped).
//
// An append that carries KindMessageAck or KindMessageSend entries runs
// appendQueueScript instead (queuescripts.go): this script with the
// queue's ack check before any write and the acks and sends applied after
// the entries, so an acknowledgement commits with its turn's entries or
// not at all.
var appendScript = newScript(scriptPrelude + `
if lt(ARGV[1], token) or ARGV[2] ~= tail then
  return {'no', tail, token, snapseq}
end
for i = 4, #ARGV, 2 do
  redis.call('XADD', KEYS[2], ARGV[i], 'e', ARGV[i + 1])
end
redis.call('HSET', KEYS[1], 'tail', ARGV[3], 'token', ARGV[1])
return {'ok', tail, token, snapseq}
`)

// snapshotScript: KEYS = head; ARGV = token, snapshot seq, record
// (journal.MarshalSnapshot, token stamped). The snapshot lives in the head
// hash, so that its Seq (snapseq) and its record change together.
var snapshotScript = newScript(scriptPrelude + `
if lt(ARGV[1], token) or lt(tail, ARGV[2]) or (snapseq ~= '' and lt(ARGV[2], snapseq)) then
  return {'no', tail, token, snapseq}
end
redis.call('HSET', KEYS[1], 'token', ARGV[1], 'snapseq', ARGV[2], 'snap', ARGV[3])
return {'ok', tail, token, snapseq}
`)

// truncateScript: KEYS = head, log; ARGV = token, throughSeq. Entries are
// "<seq>-0", so MINID "<through>-1" removes exactly those with seq <=
// through (MINID is exclusive of what it keeps) without computing
// through+1, which could overflow. The tail stays in the head.
var truncateScript = newScript(scriptPrelude + `
local covered = snapseq
if covered == '' then covered = '0' end
if lt(ARGV[1], token) or lt(covered, ARGV[2]) then
  return {'no', tail, token, snapseq}
end
if ARGV[2] ~= '0' then
  redis.call('XTRIM', KEYS[2], 'MINID', ARGV[2] .. '-1')
end
redis.call('HSET', KEYS[1], 'token', ARGV[1])
return {'ok', tail, token, snapseq}
`)

// scripts are loaded together (SCRIPT LOAD) by Open and after a NOSCRIPT
// reply: a restarted Redis (7.0 keeps no script cache across restarts) or a
// SCRIPT FLUSH has forgotten them.
var scripts = append([]*script{appendScript, snapshotScript, truncateScript}, queueScripts...)

// script is a go-redis Script (which knows the script's SHA-1 and sends
// EVALSHA) with its source, to load it with SCRIPT LOAD in a pipeline:
// goredis.Script.Load would record the digest of a reply not yet read.
type script struct {
	*goredis.Script
	src string
}

func newScript(src string) *script { return &script{Script: goredis.NewScript(src), src: src} }
