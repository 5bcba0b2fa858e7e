package redisjournal

// The queue's scripts (queue.Store on Redis). They mirror internal/queuesm
// rule for rule; see queue.go for the key layout.
//
// Instants and sequence numbers never become Lua numbers: Go passes every
// instant as 8 bytes that sort bytewise in time order (the sign bit of the
// UnixNano flipped, big-endian: tb), and sequence numbers as 8 bytes
// big-endian (sb). The scripts compare them with lt8, a bytewise compare
// (Lua's < on strings goes through strcoll, which depends on the server's
// locale), select ranges of them with ZRANGE ... BYLEX on sorted sets whose
// scores are all 0, and take the next Seq by incrementing the 8 bytes with
// carry (nextseq). The only Lua numbers are counters (Stats), attempt
// counts (uint32, passed and stored as decimal strings) and lengths.
//
// Every write script answers {status, results, wakes}: status "ok" or a
// rule ("nf" not found/pending, "stale", "stalerem" the reminders changed
// since Release read them), and wakes the (actor, instant) pairs for
// queue.Notifier. A rule is found before the script writes anything.

// queueLib is the part every queue script shares. P, the key prefix, is
// set by each script before it calls any of these.
const queueLib = `
local P
local function lt8(a, b)
  for i = 1, 8 do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return false
end
local function lexlt(a, b)
  local n = #a
  if #b < n then n = #b end
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end
local function first(key)
  return redis.call('ZRANGE', key, '-', '+', 'BYLEX', 'LIMIT', 0, 1)[1]
end
local function nextseq()
  local s = redis.call('GET', P .. 'seq')
  local b = {0, 0, 0, 0, 0, 0, 0, 0}
  if s then b = {string.byte(s, 1, 8)} end
  local i = 8
  while i >= 1 and b[i] == 255 do b[i] = 0; i = i - 1 end
  if i == 0 then error('queue: the message sequence is exhausted') end
  b[i] = b[i] + 1
  local n = string.char(unpack(b))
  redis.call('SET', P .. 'seq', n)
  return n
end
local touched, gave = {}, {}
local function touch(actor, g)
  if gave[actor] == nil then touched[#touched + 1] = actor; gave[actor] = false end
  if g then gave[actor] = true end
end
local function typeof(actor)
  local i = string.find(actor, '/', 1, true)
  if i then return string.sub(actor, 1, i - 1) end
  return actor
end
local function count(actor, field, d)
  local t = typeof(actor)
  local key = P .. 'ty:' .. t
  redis.call('HINCRBY', key, field, d)
  local c = redis.call('HMGET', key, 'p', 's', 'd', 'r')
  for i = 1, 4 do
    if c[i] and c[i] ~= '0' then redis.call('ZADD', P .. 'types', 0, t); return end
  end
  redis.call('DEL', key)
  redis.call('ZREM', P .. 'types', t)
end
local function refreshWake(actor)
  local w = false
  for _, s in ipairs({'due:', 'sch:', 'tim:'}) do
    local f = first(P .. s .. actor)
    if f then
      local t = string.sub(f, 1, 8)
      if not w or lt8(t, w) then w = t end
    end
  end
  local old = redis.call('HGET', P .. 'wk', actor)
  if old then
    if w and old == w then return w end
    redis.call('ZREM', P .. 'wake', old .. actor)
  end
  if not w then redis.call('HDEL', P .. 'wk', actor); return false end
  redis.call('ZADD', P .. 'wake', 0, w .. actor)
  redis.call('HSET', P .. 'wk', actor, w)
  return w
end
local function prune(bound)
  if bound == '' then return end
  local g = redis.call('ZRANGE', P .. 'gone', '-', bound, 'BYLEX', 'LIMIT', 0, 64)
  for _, m in ipairs(g) do
    redis.call('ZREM', P .. 'gone', m)
    redis.call('DEL', P .. 'i:' .. string.sub(m, 9))
  end
end
local function finish(bound)
  local wakes = {}
  for _, a in ipairs(touched) do
    local w = refreshWake(a)
    if gave[a] and w then wakes[#wakes + 1] = a; wakes[#wakes + 1] = w end
  end
  prune(bound)
  return wakes
end
local function getrec(id)
  local v = redis.call('HMGET', P .. 'i:' .. id, 'st', 'a', 'seq', 'fseq', 'acc', 'at', 'att', 'next', 'ord')
  if not v[1] then return nil end
  return {st = v[1], a = v[2], seq = v[3], fseq = v[4], acc = v[5], at = v[6], att = v[7], next = v[8], ord = v[9]}
end
local function addPending(id, actor, ord, nxt, seq, acc)
  local due = true
  if ord == '1' then
    due = not first(P .. 'ord:' .. actor)
    redis.call('ZADD', P .. 'ord:' .. actor, 0, seq .. id)
  end
  if due then redis.call('ZADD', P .. 'due:' .. actor, 0, nxt .. seq .. id) end
  redis.call('ZADD', P .. 'old:' .. typeof(actor), 0, acc .. seq .. id)
  redis.call('HSET', P .. 'i:' .. id, 'st', 'p', 'seq', seq, 'next', nxt)
  touch(actor, true)
  count(actor, 'p', 1)
end
local function removePending(id, actor, r)
  local seq = r.seq
  local inDue = true
  if r.ord == '1' then
    local okey = P .. 'ord:' .. actor
    local h = redis.call('ZRANGE', okey, '-', '+', 'BYLEX', 'LIMIT', 0, 2)
    inDue = h[1] == seq .. id
    redis.call('ZREM', okey, seq .. id)
    if inDue and h[2] then
      local nid = string.sub(h[2], 9)
      local nn = redis.call('HGET', P .. 'i:' .. nid, 'next')
      redis.call('ZADD', P .. 'due:' .. actor, 0, nn .. string.sub(h[2], 1, 8) .. nid)
      touch(actor, true)
    end
  end
  if inDue then redis.call('ZREM', P .. 'due:' .. actor, r.next .. seq .. id) end
  redis.call('ZREM', P .. 'old:' .. typeof(actor), r.acc .. seq .. id)
  touch(actor, false)
  count(actor, 'p', -1)
end
local function forget(id, now)
  local key = P .. 'i:' .. id
  redis.call('HSET', key, 'st', 'g', 'at', now)
  redis.call('HDEL', key, 'seq', 'next', 'body', 'att', 'err', 'ord')
  redis.call('ZADD', P .. 'gone', 0, now .. id)
end
local function enqueue(id, actor, body, ord, sched, at, now, cutoff)
  local key = P .. 'i:' .. id
  local r = getrec(id)
  if r then
    if not (r.st == 'g' and cutoff ~= '' and not lt8(cutoff, r.at)) then
      return {r.fseq, r.acc, '1'}
    end
    redis.call('ZREM', P .. 'gone', r.at .. id)
    redis.call('DEL', key)
  end
  local seq = nextseq()
  redis.call('HSET', key, 'a', actor, 'fseq', seq, 'acc', now, 'body', body, 'att', '0', 'err', '', 'ord', ord, 'next', at)
  if sched == '1' then
    redis.call('ZADD', P .. 'sch:' .. actor, 0, at .. seq .. id)
    redis.call('HSET', key, 'st', 's', 'seq', seq, 'at', at)
    touch(actor, true)
    count(actor, 's', 1)
  else
    addPending(id, actor, ord, at, seq, now)
  end
  return {seq, now, ''}
end
local function checkAcks(actor, ids)
  local acked, seqs = {}, {}
  for i, id in ipairs(ids) do
    if acked[id] then return {'nf', id} end
    acked[id] = true
    local r = getrec(id)
    if not r or r.st ~= 'p' or r.a ~= actor then return {'nf', id} end
    seqs[r.seq] = true
    if r.ord == '1' then
      local before = redis.call('ZRANGE', P .. 'ord:' .. actor, '-', '(' .. r.seq, 'BYLEX', 'LIMIT', 0, i)
      for _, m in ipairs(before) do
        if not seqs[string.sub(m, 1, 8)] then return {'nh', id} end
      end
    end
  end
  return nil
end
local function selectDead(typ, actor, before, limit, ids)
  local out = {}
  local function take(m)
    if before ~= '' and not lt8(string.sub(m, 1, 8), before) then return false end
    local a = redis.call('HGET', P .. 'i:' .. string.sub(m, 17), 'a')
    if (actor == '' or a == actor) and (typ == '' or string.sub(a, 1, #typ + 1) == typ .. '/') then
      out[#out + 1] = m
    end
    return limit == 0 or #out < limit
  end
  if #ids == 0 then
    local lo, hi = '-', '+'
    if before ~= '' then hi = '(' .. before end
    while true do
      local page = redis.call('ZRANGE', P .. 'dead', lo, hi, 'BYLEX', 'LIMIT', 0, 256)
      for _, m in ipairs(page) do
        if not take(m) then return out end
      end
      if #page < 256 then return out end
      lo = '(' .. page[#page]
    end
  end
  local found, seen = {}, {}
  for _, id in ipairs(ids) do
    local v = redis.call('HMGET', P .. 'i:' .. id, 'st', 'at', 'seq')
    if v[1] == 'd' then
      local m = v[2] .. v[3] .. id
      if not seen[m] then seen[m] = true; found[#found + 1] = m end
    end
  end
  table.sort(found, lexlt)
  for _, m in ipairs(found) do
    if not take(m) then return out end
  end
  return out
end
`

// qWrite and qRead start the queue's write and read scripts.
const (
	qWrite = "#!lua\n" + queueLib
	qRead  = "#!lua flags=no-writes\n" + queueLib
)

// enqueueScript: ARGV = P, id, actor, body, ordered ("1"/""), scheduled
// ("1"/""), tb(NextAt), tb(now), cutoff (tb(now - retention), "" when
// nothing can have expired), prune bound. Results: sb(first Seq),
// tb(AcceptedAt), duplicate ("1"/"").
var enqueueScript = newScript(qWrite + `
P = ARGV[1]
local res = enqueue(ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9])
return {'ok', res, finish(ARGV[10])}
`)

// retryScript: ARGV = P, actor, id, attempts, new attempts, reason,
// tb(next), prune bound.
var retryScript = newScript(qWrite + `
P = ARGV[1]
local actor, id = ARGV[2], ARGV[3]
local r = getrec(id)
if not r or r.st ~= 'p' or r.a ~= actor then return {'nf', {}, {}} end
if r.att ~= ARGV[4] then return {'stale', {r.att}, {}} end
local nxt = ARGV[7]
local inDue = true
if r.ord == '1' then inDue = first(P .. 'ord:' .. actor) == r.seq .. id end
if inDue then
  redis.call('ZREM', P .. 'due:' .. actor, r.next .. r.seq .. id)
  redis.call('ZADD', P .. 'due:' .. actor, 0, nxt .. r.seq .. id)
end
redis.call('HSET', P .. 'i:' .. id, 'att', ARGV[5], 'err', ARGV[6], 'next', nxt)
touch(actor, true)
return {'ok', {}, finish(ARGV[8])}
`)

// deadScript: ARGV = P, actor, id, attempts, new attempts, reason,
// tb(deadAt), prune bound.
var deadScript = newScript(qWrite + `
P = ARGV[1]
local actor, id = ARGV[2], ARGV[3]
local r = getrec(id)
if not r or r.st ~= 'p' or r.a ~= actor then return {'nf', {}, {}} end
if r.att ~= ARGV[4] then return {'stale', {r.att}, {}} end
removePending(id, actor, r)
redis.call('HSET', P .. 'i:' .. id, 'st', 'd', 'at', ARGV[7], 'att', ARGV[5], 'err', ARGV[6])
redis.call('ZADD', P .. 'dead', 0, ARGV[7] .. r.seq .. id)
count(actor, 'd', 1)
return {'ok', {}, finish(ARGV[8])}
`)

// replayScript: ARGV = P, type, actor, before ("" or tb), limit, tb(now),
// then the ids.
var replayScript = newScript(qWrite + `
P = ARGV[1]
local ids = {}
for i = 7, #ARGV do ids[#ids + 1] = ARGV[i] end
local sel = selectDead(ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), ids)
local now = ARGV[6]
for _, m in ipairs(sel) do
  local id = string.sub(m, 17)
  local r = getrec(id)
  redis.call('ZREM', P .. 'dead', m)
  local seq = nextseq()
  redis.call('HSET', P .. 'i:' .. id, 'att', '0', 'err', '')
  count(r.a, 'd', -1)
  addPending(id, r.a, r.ord, now, seq, r.acc)
end
return {'ok', {#sel}, finish('')}
`)

// purgeScript: ARGV = P, type, actor, before, limit, tb(now), prune
// bound, then the ids.
var purgeScript = newScript(qWrite + `
P = ARGV[1]
local ids = {}
for i = 8, #ARGV do ids[#ids + 1] = ARGV[i] end
local sel = selectDead(ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), ids)
for _, m in ipairs(sel) do
  local id = string.sub(m, 17)
  local a = redis.call('HGET', P .. 'i:' .. id, 'a')
  redis.call('ZREM', P .. 'dead', m)
  count(a, 'd', -1)
  forget(id, ARGV[6])
end
return {'ok', {#sel}, finish(ARGV[7])}
`)

// setReminderScript: ARGV = P, actor, name, tb(DueAt) .. record, prune
// bound.
var setReminderScript = newScript(qWrite + `
P = ARGV[1]
local actor, name, val = ARGV[2], ARGV[3], ARGV[4]
local rk = P .. 'rem:' .. actor
local old = redis.call('HGET', rk, name)
if old then
  redis.call('ZREM', P .. 'tim:' .. actor, string.sub(old, 1, 8) .. name)
else
  count(actor, 'r', 1)
end
redis.call('HSET', rk, name, val)
redis.call('ZADD', P .. 'tim:' .. actor, 0, string.sub(val, 1, 8) .. name)
touch(actor, true)
return {'ok', {}, finish(ARGV[5])}
`)

// deleteReminderScript: ARGV = P, actor, name, prune bound.
var deleteReminderScript = newScript(qWrite + `
P = ARGV[1]
local actor, name = ARGV[2], ARGV[3]
local rk = P .. 'rem:' .. actor
local old = redis.call('HGET', rk, name)
if not old then return {'nf', {}, {}} end
redis.call('HDEL', rk, name)
redis.call('ZREM', P .. 'tim:' .. actor, string.sub(old, 1, 8) .. name)
count(actor, 'r', -1)
touch(actor, false)
return {'ok', {}, finish(ARGV[4])}
`)

// releaseScript: ARGV = P, actor, tb(now), "(" tb(now+1) (or "+"),
// cutoff, n, then per reminder due by now, in (DueAt, name) order as
// Release read them: name, its stored value, its new value ("" to delete
// it), the fired message's id, record and ordered flag. Go computes the
// next firing (int64 arithmetic); the script refuses with "stalerem" if
// the reminders due are not exactly those, so Release reads again.
var releaseScript = newScript(qWrite + `
P = ARGV[1]
local actor, now, bound, cutoff = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local tk, rk = P .. 'tim:' .. actor, P .. 'rem:' .. actor
local timers = redis.call('ZRANGE', tk, '-', bound, 'BYLEX')
local nr = tonumber(ARGV[6])
if #timers ~= nr then return {'stalerem', {}, {}} end
for i = 1, nr do
  local b = 6 + (i - 1) * 6
  local name, old = ARGV[b + 1], ARGV[b + 2]
  if timers[i] ~= string.sub(old, 1, 8) .. name or redis.call('HGET', rk, name) ~= old then
    return {'stalerem', {}, {}}
  end
end
local n = 0
local sk = P .. 'sch:' .. actor
for _, m in ipairs(redis.call('ZRANGE', sk, '-', bound, 'BYLEX')) do
  redis.call('ZREM', sk, m)
  local id = string.sub(m, 17)
  local r = getrec(id)
  local seq = nextseq()
  count(actor, 's', -1)
  addPending(id, actor, r.ord, r.next, seq, r.acc)
  n = n + 1
end
for i = 1, nr do
  local b = 6 + (i - 1) * 6
  local name, old, new = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  local res = enqueue(ARGV[b + 4], actor, ARGV[b + 5], ARGV[b + 6], '', now, now, cutoff)
  if res[3] == '' then n = n + 1 end
  redis.call('ZREM', tk, string.sub(old, 1, 8) .. name)
  if new == '' then
    redis.call('HDEL', rk, name)
    count(actor, 'r', -1)
  else
    redis.call('HSET', rk, name, new)
    redis.call('ZADD', tk, 0, string.sub(new, 1, 8) .. name)
  end
end
touch(actor, n > 0)
return {'ok', {n}, finish('')}
`)

// dueScript (read): ARGV = P, actor, upper bound, max. Per message: body,
// seq, attempts, last error, next.
var dueScript = newScript(qRead + `
P = ARGV[1]
local ms = redis.call('ZRANGE', P .. 'due:' .. ARGV[2], '-', ARGV[3], 'BYLEX', 'LIMIT', 0, tonumber(ARGV[4]))
local out = {}
for _, m in ipairs(ms) do
  out[#out + 1] = redis.call('HMGET', P .. 'i:' .. string.sub(m, 17), 'body', 'seq', 'att', 'err', 'next')
end
return out
`)

// listDeadScript (read): ARGV = P, type, actor, before, limit, then the
// ids. Per dead letter: body, seq, attempts, last error, next, deadAt.
var listDeadScript = newScript(qRead + `
P = ARGV[1]
local ids = {}
for i = 6, #ARGV do ids[#ids + 1] = ARGV[i] end
local out = {}
for _, m in ipairs(selectDead(ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), ids)) do
  out[#out + 1] = redis.call('HMGET', P .. 'i:' .. string.sub(m, 17), 'body', 'seq', 'att', 'err', 'next', 'at')
end
return out
`)

// timersScript (read): ARGV = P, actor, upper bound. The reminders due:
// name, stored value, in (DueAt, name) order.
var timersScript = newScript(qRead + `
P = ARGV[1]
local out = {}
for _, m in ipairs(redis.call('ZRANGE', P .. 'tim:' .. ARGV[2], '-', ARGV[3], 'BYLEX')) do
  local name = string.sub(m, 9)
  out[#out + 1] = name
  out[#out + 1] = redis.call('HGET', P .. 'rem:' .. ARGV[2], name) or ''
end
return out
`)

// statsScript (read): ARGV = P. Per type: name, pending, scheduled, dead,
// reminders, tb(oldest AcceptedAt) or "".
var statsScript = newScript(qRead + `
P = ARGV[1]
local out = {}
for _, t in ipairs(redis.call('ZRANGE', P .. 'types', '-', '+', 'BYLEX')) do
  local c = redis.call('HMGET', P .. 'ty:' .. t, 'p', 's', 'd', 'r')
  local o = first(P .. 'old:' .. t) or ''
  out[#out + 1] = {t, c[1] or '0', c[2] or '0', c[3] or '0', c[4] or '0', string.sub(o, 1, 8)}
end
return out
`)

// appendQueueScript is appendScript for an append that carries
// KindMessageAck, KindMessageDirect or KindMessageSend entries. ARGV =
// token, expectedSeq, new tail, n, the n entries (stream id, record), then
// P, actor, tb(now), cutoff, prune bound, the count and ids of the acks,
// the count of the sends and each send's id, actor, record, ordered,
// scheduled, tb(NextAt), then the count of the direct messages (at most
// one) and their ids. The journal's rules are checked first, then the
// direct messages' (queuesm.CheckDirect: "kid" a known id, "nh" an ordered
// message pending) and the acks' (queuesm.CheckAcks), before any write;
// the acks are applied after the entries, then the direct messages (their
// ids remembered as gone, first Seq 0), then the sends. It answers as appendScript, or {"ack", rule, id, ""}, and appends
// the wakes (actor, instant) to an "ok".
var appendQueueScript = newScript(scriptPrelude + queueLib + `
if lt(ARGV[1], token) or ARGV[2] ~= tail then
  return {'no', tail, token, snapseq}
end
local ne = tonumber(ARGV[4])
local q = 5 + 2 * ne
P = ARGV[q]
local actor, now, cutoff, bound = ARGV[q + 1], ARGV[q + 2], ARGV[q + 3], ARGV[q + 4]
local na = tonumber(ARGV[q + 5])
local ids = {}
for i = 1, na do ids[i] = ARGV[q + 5 + i] end
local s = q + 6 + na
local ns = tonumber(ARGV[s])
local d = s + 6 * ns + 1
local nd = tonumber(ARGV[d])
for i = 1, nd do
  local id = ARGV[d + i]
  local r = getrec(id)
  if r and not (r.st == 'g' and cutoff ~= '' and not lt8(cutoff, r.at)) then return {'ack', 'kid', id, ''} end
  if first(P .. 'ord:' .. actor) then return {'ack', 'nh', id, ''} end
end
local bad = checkAcks(actor, ids)
if bad then return {'ack', bad[1], bad[2], ''} end
for i = 5, 4 + 2 * ne, 2 do
  redis.call('XADD', KEYS[2], ARGV[i], 'e', ARGV[i + 1])
end
redis.call('HSET', KEYS[1], 'tail', ARGV[3], 'token', ARGV[1])
for _, id in ipairs(ids) do
  removePending(id, actor, getrec(id))
  forget(id, now)
end
for i = 1, nd do
  local id = ARGV[d + i]
  local key = P .. 'i:' .. id
  local r = getrec(id)
  if r then -- gone and forgotten, not yet pruned
    redis.call('ZREM', P .. 'gone', r.at .. id)
    redis.call('DEL', key)
  end
  redis.call('HSET', key, 'a', actor, 'fseq', string.rep('\0', 8), 'acc', now)
  forget(id, now)
end
for i = 1, ns do
  local b = s + (i - 1) * 6
  enqueue(ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4], ARGV[b + 5], ARGV[b + 6], now, cutoff)
end
local out = {'ok', tail, token, snapseq}
for _, w in ipairs(finish(bound)) do out[#out + 1] = w end
return out
`)

// queueScripts are loaded with the journal's.
var queueScripts = []*script{enqueueScript, retryScript, deadScript, replayScript, purgeScript,
	setReminderScript, deleteReminderScript, releaseScript, dueScript, listDeadScript, timersScript,
	statsScript, appendQueueScript}
