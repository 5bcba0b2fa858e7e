package redislock

import goredis "github.com/redis/go-redis/v9"

// Every operation is one Lua script, so it runs atomically on the server.
// Each script is a clock (a Lua function now_ms, see serverClock), the
// prelude below, and a body. Keys the script knows before it runs are in
// KEYS; ARGV[1] is always the coordinator's key base (Options.Redis's key
// prefix + "lock:"), from which the prelude builds the keys it finds while
// running (the holder's session, the locks of a lapsed session).
//
// Layout, under base:
//
//	seq          string  last session number (INCR), never reset
//	sessions     zset    session id -> deadline (ms); 0 = destroyed, awaiting the sweep
//	s:<id>       hash    o owner, t TTL (ms), d deadline (ms on the coordinator's clock)
//	sl:<id>      set     the keys of the locks granted to session <id>
//	l:<key>      hash    s holding session id, t its token
//	t:<key>      string  the last token granted for <key> (INCR); never deleted
//
// A session is alive while its hash exists and now < d. A lock is held
// while its hash exists and its session is alive, so a lapsed or destroyed
// session frees all its locks at once, whatever is left of their keys;
// the sweep deletes those leftovers later, a bounded amount per call.
//
// Numbers are written with string.format('%d', n): Lua numbers are doubles
// and Redis would otherwise pick their text form. Milliseconds since 1970
// (about 1.8e12) and tokens stay far below 2^53, where doubles are exact.

// serverClock is the coordinator's clock in production: Redis's TIME, in
// milliseconds. Redis 7 replicates a script's effects, not the script, so
// a script may read TIME and then write.
const serverClock = `
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
`

const prelude = `
local base = ARGV[1]

local function num(n) return string.format('%d', n) end

-- alive returns the owner of session sid if it is alive at now, else nil.
local function alive(sid, now)
  local v = redis.call('HMGET', base .. 's:' .. sid, 'd', 'o')
  if v[1] and tonumber(v[1]) > now then return v[2] end
  return nil
end

-- sweep deletes what is left of lapsed and destroyed sessions: up to 16
-- sessions and budget lock keys per call, oldest deadline first. Only
-- garbage goes: every script already treats those sessions as gone.
local function sweep(now, budget)
  local zk = base .. 'sessions'
  local ids = redis.call('ZRANGEBYSCORE', zk, '-inf', num(now), 'LIMIT', 0, 16)
  for _, id in ipairs(ids) do
    if budget <= 0 then break end
    local sk = base .. 's:' .. id
    local d = redis.call('HGET', sk, 'd')
    if d and tonumber(d) > now then
      redis.call('ZADD', zk, d, id) -- alive: a stale score, put it right
    else
      local slk = base .. 'sl:' .. id
      local keys = redis.call('SPOP', slk, budget)
      for _, k in ipairs(keys) do
        local lk = base .. 'l:' .. k
        if redis.call('HGET', lk, 's') == id then redis.call('DEL', lk) end
      end
      budget = budget - #keys
      if redis.call('EXISTS', slk) == 0 then
        redis.call('DEL', sk)
        redis.call('ZREM', zk, id)
      end
    end
  end
end
`

// create: KEYS seq, sessions. ARGV base, owner, ttl (ms), nonce, sweep budget.
// Returns the new session id: "<number>-<nonce>".
const createBody = `
local now = now_ms()
sweep(now, tonumber(ARGV[5]))
local id = num(redis.call('INCR', KEYS[1])) .. '-' .. ARGV[4]
local d = num(now + tonumber(ARGV[3]))
redis.call('HSET', base .. 's:' .. id, 'o', ARGV[2], 't', ARGV[3], 'd', d)
redis.call('ZADD', KEYS[2], d, id)
return id
`

// renew: KEYS s:<id>, sessions. ARGV base, id, sweep budget.
// Returns 1, or 0 if the session is not alive.
const renewBody = `
local now = now_ms()
local v = redis.call('HMGET', KEYS[1], 'd', 't')
if not v[1] or tonumber(v[1]) <= now then return 0 end
local d = num(now + tonumber(v[2]))
redis.call('HSET', KEYS[1], 'd', d)
redis.call('ZADD', KEYS[2], d, ARGV[2])
sweep(now, tonumber(ARGV[3]))
return 1
`

// destroy: KEYS s:<id>, sessions. ARGV base, id, sweep budget.
// The session ends here; its locks are free from now on, and the sweep,
// which takes destroyed sessions first (score 0), deletes their keys.
const destroyBody = `
local now = now_ms()
if redis.call('DEL', KEYS[1]) == 1 then
  redis.call('ZADD', KEYS[2], 0, ARGV[2])
end
sweep(now, tonumber(ARGV[3]))
return 1
`

// acquire: KEYS s:<id>, sl:<id>, l:<key>, t:<key>. ARGV base, id, key.
// Returns {0} if the session is not alive, {1, token} when the lock is the
// session's (granted now or before), {2, token, owner} when another live
// session holds it. Only a grant raises t:<key>.
const acquireBody = `
local now = now_ms()
local d = redis.call('HGET', KEYS[1], 'd')
if not d or tonumber(d) <= now then return {0} end
local h = redis.call('HMGET', KEYS[3], 's', 't')
if h[1] then
  if h[1] == ARGV[2] then return {1, tonumber(h[2])} end
  local owner = alive(h[1], now)
  if owner then return {2, tonumber(h[2]), owner} end
  redis.call('SREM', base .. 'sl:' .. h[1], ARGV[3]) -- the lapsed holder's leftover
end
local tok = redis.call('INCR', KEYS[4])
redis.call('HSET', KEYS[3], 's', ARGV[2], 't', num(tok))
redis.call('SADD', KEYS[2], ARGV[3])
return {1, tok}
`

// release: KEYS s:<id>, sl:<id>, l:<key>. ARGV base, id, key.
// Returns 1, or 0 if the session does not hold the lock (or is not alive).
const releaseBody = `
local now = now_ms()
if redis.call('HGET', KEYS[3], 's') ~= ARGV[2] then return 0 end
local d = redis.call('HGET', KEYS[1], 'd')
if not d or tonumber(d) <= now then return 0 end
redis.call('DEL', KEYS[3])
redis.call('SREM', KEYS[2], ARGV[3])
return 1
`

// holder: KEYS l:<key>. ARGV base. Returns {} when the lock is free, else
// {session id, token, owner}. Writes nothing.
const holderBody = `
local now = now_ms()
local h = redis.call('HMGET', KEYS[1], 's', 't')
if not h[1] then return {} end
local owner = alive(h[1], now)
if not owner then return {} end
return {h[1], tonumber(h[2]), owner}
`

// endOwner: KEYS sessions. ARGV base, owner, keep (a session id or ""),
// sweep budget. Ends every alive session of owner but keep, as destroy
// does, and returns how many it ended. It reads the owner of each alive
// session: one per node, a handful in all.
const endOwnerBody = `
local now = now_ms()
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. num(now), '+inf')
local n = 0
for _, id in ipairs(ids) do
  if id ~= ARGV[3] and alive(id, now) == ARGV[2] then
    redis.call('DEL', base .. 's:' .. id)
    redis.call('ZADD', KEYS[1], 0, id)
    n = n + 1
  end
end
sweep(now, tonumber(ARGV[4]))
return n
`

// scripts are the compiled operations of one coordinator, on one clock.
type scripts struct {
	create, renew, destroy, acquire, release, holder, endOwner *goredis.Script
}

func newScripts(clock string) scripts {
	mk := func(body string) *goredis.Script { return goredis.NewScript(clock + prelude + body) }
	return scripts{
		create:  mk(createBody),
		renew:   mk(renewBody),
		destroy: mk(destroyBody),
		acquire: mk(acquireBody),
		release: mk(releaseBody),
		holder:  mk(holderBody),

		endOwner: mk(endOwnerBody),
	}
}
