-- mcp-ratelimit-service: takes or refuses every counter of one
-- ShouldRateLimit call, atomically (a script runs alone in Redis).
--
-- KEYS[i]: one per counter; ARGV: four values per key, by kind:
--   'w', window seconds, max, hits   fixed window aligned to the Unix epoch (a hash:
--                                    s = the window's start, n = the count)
--   'a', cap, member, lease ms       hold a slot in a sorted set of leases scored by expiry (ms)
--   'r', member, '', ''              give a lease's slot back
-- Returns {seconds, microseconds, limited, used_1, held_1, used_2, held_2, ...}:
-- Redis's clock, 1 if a counter lacked room (then nothing was taken), and per
-- key the count before this call (w), or the live leases before it and
-- whether the member already held one (a).
--
-- The clock is Redis's (TIME), the same for every service process. Work per
-- key is constant (HMGET, then HSET + PEXPIREAT or HINCRBY), or logarithmic
-- in the live leases plus the expired ones it removes (each lease is removed
-- once), whatever the count in the window.

if redis.replicate_commands then
  redis.replicate_commands()
end
local time = redis.call('TIME')
local sec = tonumber(time[1])
local usec = tonumber(time[2])
local now_ms = sec * 1000 + math.floor(usec / 1000)

local used = {}
local held = {}
local limited = 0
for i = 1, #KEYS do
  local kind = ARGV[4 * i - 3]
  local key = KEYS[i]
  used[i] = 0
  held[i] = 0
  if kind == 'w' then
    local window = tonumber(ARGV[4 * i - 2])
    local start = sec - sec % window
    local stored = redis.call('HMGET', key, 's', 'n')
    -- A count of another window (not yet expired, or about to be) is not this one's.
    if tonumber(stored[1]) == start then
      used[i] = tonumber(stored[2]) or 0
    end
    if used[i] + tonumber(ARGV[4 * i]) > tonumber(ARGV[4 * i - 1]) then
      limited = 1
    end
  elseif kind == 'a' then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now_ms)
    used[i] = redis.call('ZCARD', key)
    if redis.call('ZSCORE', key, ARGV[4 * i - 1]) then
      held[i] = 1
    elseif used[i] + 1 > tonumber(ARGV[4 * i - 2]) then
      limited = 1
    end
  else
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now_ms)
    redis.call('ZREM', key, ARGV[4 * i - 2])
    -- The set lives as long as its longest remaining lease (an empty one is gone).
    local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
    if last[2] then
      redis.call('PEXPIREAT', key, last[2])
    end
  end
end

if limited == 0 then
  for i = 1, #KEYS do
    local kind = ARGV[4 * i - 3]
    local key = KEYS[i]
    if kind == 'w' then
      local hits = tonumber(ARGV[4 * i])
      if hits > 0 then
        if used[i] == 0 then
          local window = tonumber(ARGV[4 * i - 2])
          local start = sec - sec % window
          redis.call('HSET', key, 's', start, 'n', hits)
          redis.call('PEXPIREAT', key, (start + window) * 1000)
        else
          redis.call('HINCRBY', key, 'n', hits)
        end
      end
    elseif kind == 'a' then
      redis.call('ZADD', key, now_ms + tonumber(ARGV[4 * i]), ARGV[4 * i - 1])
      -- The set lives as long as its longest lease.
      local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
      redis.call('PEXPIREAT', key, last[2])
    end
  end
end

local out = { sec, usec, limited }
for i = 1, #KEYS do
  out[#out + 1] = used[i]
  out[#out + 1] = held[i]
end
return out
