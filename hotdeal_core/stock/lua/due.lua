-- The reservations whose grace period started at least ARGV[1] ms ago, oldest first, at most
-- ARGV[2] of them: the orphan sweep reads these only, never the whole reservation hash.
-- "Ago" by Redis's clock (TIME), the one reserve.lua stamps with: no host's clock counts.
-- KEYS: 1 state, 2 res, 3 since   ARGV: 1 grace (ms), 2 limit
-- Returns {status or false, deal_id, {order_id, record, ...}, now (ms)}
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local st = redis.call('HMGET', KEYS[1], 'status', 'deal_id')
if not st[1] then return {false, 0, {}, now} end
local cutoff = now - tonumber(ARGV[1])
local ids = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', cutoff, 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, id in ipairs(ids) do
  local rec = redis.call('HGET', KEYS[2], id)
  if rec then
    out[#out + 1] = id
    out[#out + 1] = rec
  else
    redis.call('ZREM', KEYS[3], id)  -- a stale entry: its reservation is gone
  end
end
return {st[1], tonumber(st[2]), out, now}
