/**
 * The Lua scripts of RedisTopology: one script per read-modify-write, each atomic in Redis,
 * loaded as one Redis function library (FUNCTION LOAD; called with FCALL). They
 * implement policy.ts server-side (same predicates, same orderings; the contract suite checks
 * that both stores place identically). Every function takes ARGV[1] = key prefix, ARGV[2] = now
 * in ms or '' (then it reads the server's TIME), then its own arguments.
 * Results are JSON (cjson) so the client parses one shape. Key layout: docs/architecture.md.
 *
 * Scripts build key names from the prefix instead of receiving them in KEYS: which relays and
 * streams a placement or repair touches is only known while it runs. That is fine on one Redis
 * (or a Sentinel-managed primary) and is why RedisTopology does not support Redis Cluster yet,
 * although every stream's keys share one hash tag ({stream}) for that future.
 */
import { createHash } from 'node:crypto';

const LIB = String.raw`
-- Per-call state, set by begin() at the start of every function call (Redis runs one at a time).
local P, NOW, REG, EV, RC
local function begin(ARGV)
  P = ARGV[1]
  if ARGV[2] ~= '' then NOW = tonumber(ARGV[2]) else
    local t = redis.call('TIME'); NOW = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  REG = P .. '{reg}:'
  EV = {}
  RC = {}
end
local function rkey(id) return REG .. 'r:' .. id end
local function sk(s, name) return P .. '{' .. s .. '}:' .. name end
local function ev(kind, s, relay, parent, viewer, origin, depth)
  EV[#EV + 1] = {kind, s or '', relay or '', parent or '', viewer or '', origin or '', depth or -1}
end

-- Byte-wise string order (Lua's < uses the server locale's strcoll; JS and ZSET ties use bytes).
local function lt(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end
local function sorted(t) table.sort(t, lt); return t end

-- Relay records, cached for the call (RC); rel(id).x marks relays the current repair must not use.
local function rel(id)
  local r = RC[id]
  if r ~= nil then return r or nil end
  local f = redis.call('HMGET', rkey(id), 'region', 'cap', 'fan', 'v', 'ch', 'ns', 'up', 'dr', 'url', 'load', 'lease')
  if not f[2] then RC[id] = false; return nil end
  r = {id = id, region = f[1], cap = tonumber(f[2]), fan = tonumber(f[3]), v = tonumber(f[4]), ch = tonumber(f[5]),
       ns = tonumber(f[6]), up = (f[7] == '1'), dr = (f[8] == '1'), url = f[9], load = f[10], lease = f[11], x = false}
  r.t0 = r.up and (not r.dr) and r.cap - r.v - r.ns * r.fan >= 1
  RC[id] = r
  return r
end
local function usable(r) return r.up and (not r.dr) and (not r.x) end
local function headroom(r) return r.cap - r.v - r.ns * r.fan end
local function canTakeViewer(r) return usable(r) and headroom(r) >= 1 end
local function canJoinStream(r) return usable(r) and headroom(r) - r.fan >= 1 end
local function canFeedChild(r, kids) return usable(r) and kids < r.fan and r.v + r.ch < r.cap end
local function cmpLoad(a, b) return (a.v + a.ch) * b.cap - (b.v + b.ch) * a.cap end
local function regionRank(r, region) if region ~= '' and r.region == region then return 0 end return 1 end
local function betterViewer(a, da, b, db, region)
  local x = regionRank(a, region) - regionRank(b, region)
  if x ~= 0 then return x < 0 end
  if da ~= db then return da < db end
  x = cmpLoad(a, b)
  if x ~= 0 then return x < 0 end
  return lt(a.id, b.id)
end

-- Keep the relay's indexes current: the free-relay set (by load, ties by id) and the open set
-- of every stream it carries. Open sets are touched only when the relay's "can take a viewer"
-- flips (or when forced), which keeps a placement to a handful of commands. x (repair
-- exclusion) is deliberately ignored here: it only applies inside the current call.
local function index(r, force)
  if r.up and not r.dr then
    redis.call('ZADD', REG .. 'free', (r.v + r.ch) / r.cap, r.id)
  else
    redis.call('ZREM', REG .. 'free', r.id)
  end
  local take = r.up and (not r.dr) and headroom(r) >= 1
  if force or take ~= r.t0 then
    for _, s in ipairs(redis.call('SMEMBERS', REG .. 'rs:' .. r.id)) do
      if take then redis.call('SADD', sk(s, 'open'), r.id) else redis.call('SREM', sk(s, 'open'), r.id) end
    end
    r.t0 = take
  end
end
local function save(r)
  redis.call('HSET', rkey(r.id), 'v', r.v, 'ch', r.ch, 'ns', r.ns)
  index(r)
end
-- The relay as a flat field list (the placement reply), from the cached record.
local function relayFlat(r)
  return {'region', r.region, 'url', r.url, 'cap', tostring(r.cap), 'fan', tostring(r.fan), 'v', tostring(r.v),
    'ch', tostring(r.ch), 'ns', tostring(r.ns), 'up', r.up and '1' or '0', 'dr', r.dr and '1' or '0',
    'load', r.load or '0', 'lease', r.lease or '0'}
end
-- A relay that starts carrying stream s joins its open set if it has room.
local function openFor(s, r)
  if r.t0 then redis.call('SADD', sk(s, 'open'), r.id) end
end

local function kids(s, id) return tonumber(redis.call('HGET', sk(s, 'kid'), id) or '0') end
local function depth(s, id) return tonumber(redis.call('HGET', sk(s, 'dep'), id)) end
local function parentOf(s, id) return redis.call('HGET', sk(s, 'par'), id) end

-- Parent candidates: ZSETs by depth (ties by id, like policy.compareParents), all and per region.
local function feed(s, r, k, d)
  if r.up and not r.dr and k < r.fan then
    redis.call('ZADD', sk(s, 'feed'), d, r.id)
    redis.call('ZADD', sk(s, 'feed:' .. r.region), d, r.id)
  else
    redis.call('ZREM', sk(s, 'feed'), r.id)
    redis.call('ZREM', sk(s, 'feed:' .. r.region), r.id)
  end
end

local function touchIdle(s, id)
  local nv = redis.call('SCARD', sk(s, 'rv:' .. id))
  if nv == 0 and kids(s, id) == 0 then
    if redis.call('HEXISTS', sk(s, 'idle'), id) == 0 then redis.call('HSET', sk(s, 'idle'), id, NOW) end
  else
    redis.call('HDEL', sk(s, 'idle'), id)
  end
end

-- Is nodeId inside the subtree rooted at rootId (itself included)? Walks parent links.
local function inSubtree(s, nodeId, rootId)
  local cur = nodeId
  local guard = redis.call('HLEN', sk(s, 'par')) + 1
  while cur and cur ~= '' and guard > 0 do
    if cur == rootId then return true end
    cur = parentOf(s, cur)
    guard = guard - 1
  end
  return false
end

-- Children lists of a stream, from the parent hash.
local function childrenMap(s)
  local m = {}
  local flat = redis.call('HGETALL', sk(s, 'par'))
  for i = 1, #flat, 2 do
    local p = flat[i + 1]
    if p ~= '' then
      if not m[p] then m[p] = {} end
      table.insert(m[p], flat[i])
    end
  end
  return m
end
local function setSubtreeDepth(s, cm, root, d)
  local stack = {{root, d}}
  while #stack > 0 do
    local top = table.remove(stack)
    local id, dd = top[1], top[2]
    redis.call('HSET', sk(s, 'dep'), id, dd)
    local r = rel(id)
    if r then feed(s, r, kids(s, id), dd) end
    for _, k in ipairs(cm[id] or {}) do table.insert(stack, {k, dd + 1}) end
  end
end

-- policy.chooseNewRelay: scan free relays by load (ties by id); the first in the viewer's region
-- wins, else the first of any region.
local function pickNew(s, region)
  local start, fallback = 0, nil
  while true do
    local ids = redis.call('ZRANGE', REG .. 'free', start, start + 63)
    if #ids == 0 then return fallback end
    for _, id in ipairs(ids) do
      if redis.call('HEXISTS', sk(s, 'dep'), id) == 0 then
        local r = rel(id)
        if r and canJoinStream(r) then
          if region == '' or r.region == region then return r end
          if not fallback then fallback = r end
        end
      end
    end
    start = start + 64
  end
end

-- policy.chooseParent: the child's region first, then shallowest, then id; exclude(id) for cycles.
local function scanFeed(s, key, exclude)
  local start = 0
  while true do
    local flat = redis.call('ZRANGE', key, start, start + 31, 'WITHSCORES')
    if #flat == 0 then return nil end
    for i = 1, #flat, 2 do
      local id = flat[i]
      local r = rel(id)
      if r and canFeedChild(r, kids(s, id)) and not exclude(id) then return r, tonumber(flat[i + 1]) end
    end
    start = start + 32
  end
end
local function pickParent(s, region, exclude)
  if region ~= '' then
    local r, d = scanFeed(s, sk(s, 'feed:' .. region), exclude)
    if r then return r, d end
  end
  return scanFeed(s, sk(s, 'feed'), exclude)
end

-- Add relay r to stream s under parent p (depth pd). Counters, indexes, idle marks.
local function addNode(s, r, p, pd)
  redis.call('HSET', sk(s, 'par'), r.id, p.id)
  redis.call('HSET', sk(s, 'dep'), r.id, pd + 1)
  redis.call('HSET', sk(s, 'kid'), r.id, 0)
  redis.call('HSET', sk(s, 'idle'), r.id, NOW)
  local pk = redis.call('HINCRBY', sk(s, 'kid'), p.id, 1)
  redis.call('HDEL', sk(s, 'idle'), p.id)
  p.ch = p.ch + 1
  save(p)
  feed(s, p, pk, pd)
  r.ns = r.ns + 1
  redis.call('SADD', REG .. 'rs:' .. r.id, s)
  save(r)
  openFor(s, r)
  feed(s, r, 0, pd + 1)
end

-- Remove node id from stream s (its viewers already dropped). Parent loses a child.
local function removeNode(s, id)
  local r = rel(id)
  local p = parentOf(s, id)
  if p and p ~= '' and redis.call('HEXISTS', sk(s, 'par'), p) == 1 then
    local pk = redis.call('HINCRBY', sk(s, 'kid'), p, -1)
    local pr = rel(p)
    if pr then pr.ch = pr.ch - 1; save(pr); feed(s, pr, pk, depth(s, p)) end
  end
  local k = kids(s, id)
  for _, h in ipairs({'par', 'dep', 'kid', 'idle'}) do redis.call('HDEL', sk(s, h), id) end
  redis.call('SREM', sk(s, 'open'), id)
  redis.call('SREM', REG .. 'rs:' .. id, s)
  if r then
    redis.call('ZREM', sk(s, 'feed'), id)
    redis.call('ZREM', sk(s, 'feed:' .. r.region), id)
    r.ch = r.ch - k
    r.ns = r.ns - 1
    save(r)
  end
end

-- Drop the viewer reservations of node id; returns their ids in byte order.
local function dropViewers(s, id)
  local vs = sorted(redis.call('SMEMBERS', sk(s, 'rv:' .. id)))
  for _, v in ipairs(vs) do redis.call('HDEL', sk(s, 'v'), v) end
  redis.call('DEL', sk(s, 'rv:' .. id))
  local r = rel(id)
  if r then r.v = r.v - #vs; save(r) end
  return vs
end

-- Reserve viewer vid on relay r (depth d) in stream s.
local function assign(s, vid, r)
  redis.call('HSET', sk(s, 'v'), vid, r.id)
  redis.call('SADD', sk(s, 'rv:' .. r.id), vid)
  redis.call('HDEL', sk(s, 'idle'), r.id)
  r.v = r.v + 1
  save(r)
end

-- policy: place one viewer (chooseViewerRelay, else grow with chooseNewRelay + chooseParent).
-- Returns relay, depth, parentId ('' unless the tree grew), or nil when no room.
local function placeOne(s, region)
  local best, bd
  local stale = {}
  for _, id in ipairs(redis.call('SMEMBERS', sk(s, 'open'))) do
    local r = rel(id)
    local d = r and depth(s, id)
    if r and d and canTakeViewer(r) then
      if not best or betterViewer(r, d, best, bd, region) then best, bd = r, d end
    else
      stale[#stale + 1] = id
    end
  end
  for _, id in ipairs(stale) do redis.call('SREM', sk(s, 'open'), id) end
  if best then return best, bd, '' end
  if redis.call('EXISTS', sk(s, 'meta')) == 0 then return nil end
  local nr = pickNew(s, region)
  if not nr then return nil end
  local p, pd = pickParent(s, nr.region, function(id) return id == nr.id end)
  if not p then return nil end
  addNode(s, nr, p, pd)
  ev('RELAY_ATTACHED', s, nr.id, p.id, '', '', pd + 1)
  return nr, pd + 1, p.id
end

local function endStream(s)
  local origin = redis.call('HGET', sk(s, 'meta'), 'origin')
  if not origin then return end
  local flat = redis.call('HGETALL', sk(s, 'par'))
  local regions = {}
  for i = 1, #flat, 2 do
    local id = flat[i]
    local r = rel(id)
    local nv = redis.call('SCARD', sk(s, 'rv:' .. id))
    redis.call('DEL', sk(s, 'rv:' .. id))
    redis.call('SREM', REG .. 'rs:' .. id, s)
    if r then
      r.v = r.v - nv
      r.ch = r.ch - kids(s, id)
      r.ns = r.ns - 1
      save(r)
      regions[r.region] = true
    end
  end
  for reg, _ in pairs(regions) do redis.call('DEL', sk(s, 'feed:' .. reg)) end
  redis.call('DEL', sk(s, 'meta'), sk(s, 'par'), sk(s, 'dep'), sk(s, 'kid'), sk(s, 'idle'), sk(s, 'v'), sk(s, 'open'), sk(s, 'feed'))
  redis.call('SREM', REG .. 'streams', s)
  ev('STREAM_ENDED', s, '', '', '', origin)
end

-- Move viewers (ids in order) like new viewers, preferring region. Returns count moved.
local function moveViewers(s, vs, region)
  for _, v in ipairs(vs) do
    local r, d = placeOne(s, region)
    if r then
      assign(s, v, r)
      ev('VIEWER_MOVE', s, r.id, '', v, '', d)
    else
      ev('VIEWER_MOVE', s, '', '', v)
    end
  end
end

-- policy.planRepair, applied in place: take relay lost out of stream s.
-- why: 'down' | 'drain' | 'reconcile'. Returns moved viewers, moved relays (or nil if not in the tree).
local function evacuate(s, lost, why)
  local par = parentOf(s, lost)
  if not par then return nil end
  local lr = rel(lost)
  if par == '' then
    if why ~= 'drain' then endStream(s); return 0, 0 end
    -- A draining origin keeps feeding its subtree; only its viewers move.
    if lr then lr.x = true end
    local vs = dropViewers(s, lost)
    touchIdle(s, lost)
    moveViewers(s, vs, lr and lr.region or '')
    return #vs, 0
  end
  if lr then lr.x = true end
  local region = lr and lr.region or ''
  local moved = dropViewers(s, lost)
  -- Ancestors of the lost relay, nearest first.
  local ancestors = {}
  local a = par
  while a and a ~= '' and #ancestors <= redis.call('HLEN', sk(s, 'par')) do
    ancestors[#ancestors + 1] = a
    a = parentOf(s, a)
  end
  local cm = childrenMap(s)
  local queue = sorted(cm[lost] or {})
  cm[lost] = nil
  removeNode(s, lost)
  ev('RELAY_DETACHED', s, lost, par)
  local reparented = {}
  local movedRelays = 0
  local qi = 1
  while qi <= #queue do
    local c = queue[qi]
    qi = qi + 1
    local cr = rel(c)
    local exclude = function(id) return inSubtree(s, id, c) end
    local target, td
    for _, an in ipairs(ancestors) do
      local ar = rel(an)
      if ar and redis.call('HEXISTS', sk(s, 'par'), an) == 1 and canFeedChild(ar, kids(s, an)) and not exclude(an) then
        target, td = ar, depth(s, an)
        break
      end
    end
    if not target then target, td = pickParent(s, cr and cr.region or '', exclude) end
    movedRelays = movedRelays + 1
    if target then
      local pk = redis.call('HINCRBY', sk(s, 'kid'), target.id, 1)
      redis.call('HDEL', sk(s, 'idle'), target.id)
      target.ch = target.ch + 1
      save(target)
      feed(s, target, pk, td)
      redis.call('HSET', sk(s, 'par'), c, target.id)
      if not cm[target.id] then cm[target.id] = {} end
      table.insert(cm[target.id], c)
      setSubtreeDepth(s, cm, c, td + 1)
      reparented[#reparented + 1] = {c, target.id}
    else
      -- Nowhere to go: cut it off; its children become orphans in turn, its viewers move.
      local cut = dropViewers(s, c)
      for _, v in ipairs(cut) do moved[#moved + 1] = v end
      for _, k in ipairs(sorted(cm[c] or {})) do queue[#queue + 1] = k end
      cm[c] = nil
      if cr then cr.x = true end
      removeNode(s, c)
      ev('RELAY_DETACHED', s, c, '')
    end
  end
  for _, rp in ipairs(reparented) do ev('RELAY_REPARENTED', s, rp[1], rp[2], '', '', depth(s, rp[1])) end
  moveViewers(s, moved, region)
  for _, id in ipairs(redis.call('HKEYS', sk(s, 'par'))) do touchIdle(s, id) end
  return #moved, movedRelays
end

local function relayJson(id)
  local f = redis.call('HGETALL', rkey(id))
  local o = {id = id}
  for i = 1, #f, 2 do o[f[i]] = f[i + 1] end
  return o
end

local function treeJson(s)
  local origin = redis.call('HGET', sk(s, 'meta'), 'origin')
  if not origin then return nil end
  local nodes = {}
  local flat = redis.call('HGETALL', sk(s, 'par'))
  for i = 1, #flat, 2 do
    local id = flat[i]
    nodes[#nodes + 1] = {id, flat[i + 1], depth(s, id), redis.call('SCARD', sk(s, 'rv:' .. id)), kids(s, id),
      redis.call('HGET', sk(s, 'idle'), id) or ''}
  end
  return {origin = origin, nodes = nodes, viewers = redis.call('HLEN', sk(s, 'v'))}
end

local function createStream(s, r)
  redis.call('HSET', sk(s, 'meta'), 'origin', r.id, 'started', NOW)
  redis.call('HSET', sk(s, 'par'), r.id, '')
  redis.call('HSET', sk(s, 'dep'), r.id, 0)
  redis.call('HSET', sk(s, 'kid'), r.id, 0)
  redis.call('HSET', sk(s, 'idle'), r.id, NOW)
  redis.call('SADD', REG .. 'streams', s)
  redis.call('SADD', REG .. 'rs:' .. r.id, s)
  r.ns = r.ns + 1
  save(r)
  openFor(s, r)
  feed(s, r, 0, 0)
end

local function reply(o)
  o.ev = EV
  o.now = NOW
  return cjson.encode(o)
end
`;

/** registerRelay + reconcile. ARGV: P, now, id, region, url, cap, fan, leaseMs, carrying JSON or ''. */
const REGISTER = String.raw`
local id, region, url = ARGV[3], ARGV[4], ARGV[5]
local cap, fan, leaseMs = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local r = rel(id)
if r and not r.up then
  -- Declared down earlier: finish any repair another process left undone, then start clean.
  for _, s in ipairs(sorted(redis.call('SMEMBERS', REG .. 'rs:' .. id))) do evacuate(s, id, 'down') end
  redis.call('ZREM', REG .. 'free', id)
  redis.call('DEL', rkey(id), REG .. 'rs:' .. id)
  RC[id] = nil
  r = nil
end
redis.call('SREM', REG .. 'repair', id)
if not r then
  redis.call('HSET', rkey(id), 'region', region, 'url', url, 'cap', cap, 'fan', fan, 'v', 0, 'ch', 0, 'ns', 0,
    'up', 1, 'dr', 0, 'load', 0, 'leaseMs', leaseMs, 'lease', NOW + leaseMs)
  redis.call('SADD', REG .. 'relays', id)
else
  if r.region ~= region then
    for _, s in ipairs(redis.call('SMEMBERS', REG .. 'rs:' .. id)) do
      redis.call('ZREM', sk(s, 'feed:' .. r.region), id)
    end
  end
  redis.call('HSET', rkey(id), 'region', region, 'url', url, 'cap', cap, 'fan', fan, 'leaseMs', leaseMs, 'lease', NOW + leaseMs)
  RC[id] = nil
end
redis.call('ZADD', REG .. 'leases', NOW + leaseMs, id)
RC[id] = nil
r = rel(id)
index(r, true)
for _, s in ipairs(redis.call('SMEMBERS', REG .. 'rs:' .. id)) do feed(s, r, kids(s, id), depth(s, id)) end
local accepted, rejected = {}, {}
if ARGV[9] ~= '' then
  local carrying = cjson.decode(ARGV[9])
  local claimed = {}
  for _, c in ipairs(carrying) do claimed[c.stream] = true end
  for _, s in ipairs(sorted(redis.call('SMEMBERS', REG .. 'rs:' .. id))) do
    if not claimed[s] then evacuate(s, id, 'reconcile') end
  end
  for _, c in ipairs(carrying) do
    local s, pid = c.stream, c.parent
    local live = redis.call('EXISTS', sk(s, 'meta')) == 1
    local origin = live and redis.call('HGET', sk(s, 'meta'), 'origin') or nil
    local why = nil
    if pid == '' then
      if live and origin ~= id then why = 'stream is live with origin "' .. origin .. '"'
      elseif not live then createStream(s, r) end
    else
      if not live then why = 'stream is not live in the store (its origin has not re-registered yet)'
      elseif redis.call('HEXISTS', sk(s, 'par'), pid) == 0 then
        why = 'parent "' .. pid .. '" does not carry the stream in the store (re-register after it does)'
      elseif origin == id then why = 'relay is the origin of this stream'
      else
        local cur = parentOf(s, id)
        if cur then
          if cur ~= pid then
            if inSubtree(s, pid, id) then why = 'parent "' .. pid .. '" is in this relay\'s own subtree'
            else
              local ok = redis.call('HINCRBY', sk(s, 'kid'), cur, -1)
              local orr = rel(cur)
              if orr then orr.ch = orr.ch - 1; save(orr); feed(s, orr, ok, depth(s, cur)); touchIdle(s, cur) end
              local p = rel(pid)
              local pk = redis.call('HINCRBY', sk(s, 'kid'), pid, 1)
              redis.call('HDEL', sk(s, 'idle'), pid)
              if p then p.ch = p.ch + 1; save(p); feed(s, p, pk, depth(s, pid)) end
              redis.call('HSET', sk(s, 'par'), id, pid)
              setSubtreeDepth(s, childrenMap(s), id, depth(s, pid) + 1)
              ev('RELAY_REPARENTED', s, id, pid, '', '', depth(s, id))
            end
          end
        else
          addNode(s, r, rel(pid), depth(s, pid))
        end
      end
    end
    if why then
      rejected[#rejected + 1] = {stream = s, reason = why}
    else
      for _, v in ipairs(c.viewers) do
        if redis.call('HEXISTS', sk(s, 'v'), v) == 0 then assign(s, v, r) end
      end
      touchIdle(s, id)
      accepted[#accepted + 1] = s
    end
  end
end
return reply({relay = relayJson(id), accepted = accepted, rejected = rejected})
`;

/** heartbeat. ARGV: P, now, id, load. */
const HEARTBEAT = String.raw`
local id = ARGV[3]
local r = rel(id)
if not r or not r.up then return reply({err = 'unknown_relay'}) end
local leaseMs = tonumber(redis.call('HGET', rkey(id), 'leaseMs'))
redis.call('HSET', rkey(id), 'load', ARGV[4], 'lease', NOW + leaseMs)
redis.call('ZADD', REG .. 'leases', NOW + leaseMs, id)
return reply({})
`;

/** drainRelay. ARGV: P, now, id. */
const DRAIN = String.raw`
local id = ARGV[3]
local r = rel(id)
if not r or not r.up then return reply({err = 'unknown_relay'}) end
if not r.dr then
  r.dr = true
  redis.call('HSET', rkey(id), 'dr', 1)
  ev('RELAY_DRAINING', '', id)
end
index(r)
for _, s in ipairs(sorted(redis.call('SMEMBERS', REG .. 'rs:' .. id))) do
  feed(s, r, kids(s, id), depth(s, id))
  evacuate(s, id, 'drain')
end
return reply({})
`;

/** deregisterRelay. ARGV: P, now, id. */
const DEREGISTER = String.raw`
local id = ARGV[3]
local r = rel(id)
if not r then return reply({}) end
r.x = true
for _, s in ipairs(sorted(redis.call('SMEMBERS', REG .. 'rs:' .. id))) do evacuate(s, id, 'down') end
redis.call('ZREM', REG .. 'free', id)
redis.call('ZREM', REG .. 'leases', id)
redis.call('SREM', REG .. 'relays', id)
redis.call('SREM', REG .. 'repair', id)
redis.call('DEL', rkey(id), REG .. 'rs:' .. id)
return reply({})
`;

/** registerStream. ARGV: P, now, stream, origin. */
const STREAM = String.raw`
local s, id = ARGV[3], ARGV[4]
local r = rel(id)
if not r or not r.up then return reply({err = 'unknown_relay'}) end
local origin = redis.call('HGET', sk(s, 'meta'), 'origin')
if origin then
  if origin ~= id then return reply({err = 'stream_exists', origin = origin}) end
  return reply({tree = treeJson(s)})
end
if r.dr then return reply({err = 'relay_unavailable'}) end
createStream(s, r)
return reply({tree = treeJson(s)})
`;

/** endStream. ARGV: P, now, stream. */
const END = String.raw`
endStream(ARGV[3])
return reply({})
`;

/**
 * placeViewer. ARGV: P, now, stream, viewerId, region, check ('1' when the caller chose the
 * viewer id, so a retry must find its earlier reservation; random ids skip that read).
 */
const PLACE = String.raw`
local s, vid, region = ARGV[3], ARGV[4], ARGV[5]
-- Hot path: a flat array reply instead of JSON: {status, depth, parent, relay fields, events, now, relay id}.
if ARGV[6] == '1' then
  local cur = redis.call('HGET', sk(s, 'v'), vid)
  if cur then return {'ok', depth(s, cur), '', relayFlat(rel(cur)), EV, NOW, cur} end
end
local r, d, parent = placeOne(s, region)
if not r then
  -- placeOne found no open relay and could not grow: tell "no stream" from "no room".
  if redis.call('EXISTS', sk(s, 'meta')) == 0 then return {'no_stream', 0, '', {}, EV, NOW, ''} end
  return {'no_capacity', 0, '', {}, EV, NOW, ''}
end
assign(s, vid, r)
return {'ok', d, parent, relayFlat(r), EV, NOW, r.id}
`;

/**
 * placeViewers: a batch, one atomic step. ARGV: P, now, stream, n, then n pairs (viewerId, region).
 * Reply: {status, results {status, relayId, depth, parent}..., relays {id, flat}..., events, now}.
 */
const PLACE_MANY = String.raw`
local s, n = ARGV[3], tonumber(ARGV[4])
if redis.call('EXISTS', sk(s, 'meta')) == 0 then return {'no_stream', {}, {}, EV, NOW} end
local out, seen = {}, {}
for i = 1, n do
  local vid, region = ARGV[3 + 2 * i], ARGV[4 + 2 * i]
  local cur = redis.call('HGET', sk(s, 'v'), vid)
  if cur then
    out[i] = {'ok', cur, depth(s, cur), ''}
    seen[cur] = true
  else
    local r, d, parent = placeOne(s, region)
    if r then
      assign(s, vid, r)
      out[i] = {'ok', r.id, d, parent}
      seen[r.id] = true
    else
      out[i] = {'no_capacity', '', 0, ''}
    end
  end
end
local relays = {}
for id, _ in pairs(seen) do relays[#relays + 1] = {id, relayFlat(rel(id))} end
return {'ok', out, relays, EV, NOW}
`;

/** releaseViewer. ARGV: P, now, stream, viewerId. */
const RELEASE = String.raw`
local s, vid = ARGV[3], ARGV[4]
local id = redis.call('HGET', sk(s, 'v'), vid)
if not id then return reply({released = false}) end
redis.call('HDEL', sk(s, 'v'), vid)
redis.call('SREM', sk(s, 'rv:' .. id), vid)
local r = rel(id)
if r then r.v = r.v - 1; save(r) end
touchIdle(s, id)
return reply({released = true})
`;

/**
 * reap: declare every lease-expired relay down. The flip (up 1 -> 0, ZREM from leases) happens
 * here, atomically, so exactly one caller across all processes declares each relay down; the
 * relay joins the `repair` set until REPAIR has taken it out of every stream.
 * ARGV: P, now.
 */
const REAP = String.raw`
local down = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', REG .. 'leases', '-inf', NOW)) do
  redis.call('ZREM', REG .. 'leases', id)
  local r = rel(id)
  if r and r.up then
    r.up = false
    redis.call('HSET', rkey(id), 'up', 0)
    index(r)
    for _, s in ipairs(redis.call('SMEMBERS', REG .. 'rs:' .. id)) do feed(s, r, 0, 0) end
    redis.call('SADD', REG .. 'repair', id)
    ev('RELAY_DOWN', '', id)
    down[#down + 1] = id
  end
end
return reply({down = down})
`;

/** repair: take a down relay out of one stream (idempotent). ARGV: P, now, relayId, stream. */
const REPAIR = String.raw`
local id, s = ARGV[3], ARGV[4]
local mv, mr = evacuate(s, id, 'down')
redis.call('SREM', REG .. 'rs:' .. id, s)
if redis.call('SCARD', REG .. 'rs:' .. id) == 0 then redis.call('SREM', REG .. 'repair', id) end
return reply({done = mv ~= nil, viewers = mv or 0, relays = mr or 0})
`;

/** detach idle relays of one stream. ARGV: P, now, stream, graceMs. */
const IDLE = String.raw`
local s, grace = ARGV[3], tonumber(ARGV[4])
local detached = {}
local flat = redis.call('HGETALL', sk(s, 'idle'))
local due = {}
for i = 1, #flat, 2 do
  if NOW - tonumber(flat[i + 1]) >= grace then due[#due + 1] = flat[i] end
end
for _, id in ipairs(sorted(due)) do
  local p = parentOf(s, id)
  if p and p ~= '' and redis.call('SCARD', sk(s, 'rv:' .. id)) == 0 and kids(s, id) == 0 then
    removeNode(s, id)
    redis.call('DEL', sk(s, 'rv:' .. id))
    touchIdle(s, p)
    detached[#detached + 1] = id
    ev('RELAY_DETACHED', s, id, p)
  end
end
return reply({detached = detached})
`;

/** Read-only snapshots. ARGV: P, now, stream | relay id. */
const TREE = String.raw`
return reply({tree = treeJson(ARGV[3])})
`;
const RELAYS = String.raw`
local out = {}
for _, id in ipairs(sorted(redis.call('SMEMBERS', REG .. 'relays'))) do out[#out + 1] = relayJson(id) end
return reply({relays = out, streams = sorted(redis.call('SMEMBERS', REG .. 'streams'))})
`;

const BODIES = {
  register: REGISTER,
  heartbeat: HEARTBEAT,
  drain: DRAIN,
  deregister: DEREGISTER,
  stream: STREAM,
  end: END,
  place: PLACE,
  placeMany: PLACE_MANY,
  release: RELEASE,
  reap: REAP,
  repair: REPAIR,
  idle: IDLE,
  tree: TREE,
  relays: RELAYS,
} as const;

export type ScriptName = keyof typeof BODIES;

/** Version tag: a hash of the code, so processes running different versions never share functions. */
export const LIBRARY_VERSION = createHash('sha1')
  .update(LIB + Object.values(BODIES).join('\n'))
  .digest('hex')
  .slice(0, 10);

/** The FCALL name of each script. */
export const FUNCTION_NAMES: Record<ScriptName, string> = Object.fromEntries(
  Object.keys(BODIES).map((k) => [k, `canopy_topo_${k}_${LIBRARY_VERSION}`]),
) as Record<ScriptName, string>;

/**
 * The Redis function library (Redis >= 7.0, FUNCTION LOAD). Its helpers are created once when
 * the library loads, not on every call as with EVAL, which more than halves the cost of a
 * placement. Each function is one atomic read-modify-write.
 */
export const LIBRARY =
  `#!lua name=canopy_topology_${LIBRARY_VERSION}\n` +
  LIB +
  Object.entries(BODIES)
    .map(([k, body]) => `redis.register_function('${FUNCTION_NAMES[k as ScriptName]}', function(_keys, ARGV)\nbegin(ARGV)\n${body}\nend)\n`)
    .join('');
