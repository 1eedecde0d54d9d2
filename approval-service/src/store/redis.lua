-- Shared head of every script of the Redis store (store/redis.rs appends one
-- body). ARGV[1] key prefix, ARGV[2] history length, ARGV[3] grace (ms) a
-- record is kept after its expiry. Keys, all under the prefix:
--   a:<id>      hash: one approval (id digest call summary status created
--               expires ttl gkey approver dreason decided used)
--   d:<digest>  string: the id checks of that digest see
--   pending     zset: pending ids by creation (ms)
--   expiry      zset: pending ids by expiry (ms)
--   <gkey>      zset: one grant's pending ids by expiry (name from the service)
--   history     list: JSON lines, newest first, at most ARGV[2]
-- Time is Redis's own (TIME), so every service process agrees on it.
local prefix = ARGV[1]
local history_max = tonumber(ARGV[2])
local grace = tonumber(ARGV[3])
local pending_key = prefix .. 'pending'
local expiry_key = prefix .. 'expiry'
local history_key = prefix .. 'history'
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local function int(x)
  return string.format('%d', x)
end

local function push_history(id, event, at, approver, reason, summary)
  local entry = '{"id":' .. cjson.encode(id) .. ',"event":' .. cjson.encode(event)
    .. ',"at_ms":' .. int(at)
    .. ',"approver":' .. (approver and cjson.encode(approver) or 'null')
    .. ',"reason":' .. (reason and cjson.encode(reason) or 'null')
    .. ',"summary":' .. summary .. '}'
  redis.call('LPUSH', history_key, entry)
  redis.call('LTRIM', history_key, 0, history_max - 1)
end

-- One pending approval past its expiry becomes expired, with a history line.
local function expire(id)
  redis.call('ZREM', expiry_key, id)
  redis.call('ZREM', pending_key, id)
  local key = prefix .. 'a:' .. id
  local f = redis.call('HMGET', key, 'status', 'summary', 'gkey', 'digest', 'expires')
  if f[1] == 'pending' then
    redis.call('HSET', key, 'status', 'expired')
    if f[3] then
      redis.call('ZREM', f[3], id)
    end
    local dkey = prefix .. 'd:' .. f[4]
    if redis.call('GET', dkey) == id then
      redis.call('DEL', dkey)
    end
    push_history(id, 'expired', tonumber(f[5]), nil, nil, f[2])
  end
end

-- Pending approvals past their expiry become expired, at most 100 a call
-- (a script blocks Redis while it runs): a script that reads one approval
-- checks its expiry itself rather than rely on this having reached it.
local function prune()
  local ids = redis.call('ZRANGEBYSCORE', expiry_key, '-inf', now, 'LIMIT', 0, 100)
  for _, id in ipairs(ids) do
    expire(id)
  end
end
