-- The reservations whose grace period started at or before a cutoff, oldest first, at most
-- ARGV[2] of them: the orphan sweep reads these only, never the whole reservation hash.
-- KEYS: 1 state, 2 res, 3 since   ARGV: 1 cutoff (ms), 2 limit
-- Returns {status or false, deal_id, {order_id, record, ...}}
local st = redis.call('HMGET', KEYS[1], 'status', 'deal_id')
if not st[1] then return {false, 0, {}} end
local ids = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
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
return {st[1], tonumber(st[2]), out}
