-- release.lua for many orders of one deal in one call (the stock worker settles in batches):
-- each order's units go back exactly once, its reservation record being the token, and its
-- idempotency record goes with it. One call instead of one round trip per order, and
-- every key shares the deal's hash tag, so it stays one Redis Cluster slot.
-- KEYS: 1 state, 2 stock, 3 users, 4 res, 5 idem, 6 since
-- ARGV: order ids
-- Returns one code per order id, in ARGV order: 1 released, 0 no reservation,
--        -1 deal not open (closed for the flush, or state lost): the caller defers.
local out = {}
if redis.call('HGET', KEYS[1], 'status') ~= 'open' then
  for i = 1, #ARGV do out[i] = -1 end
  return out
end
for i = 1, #ARGV do
  local id = ARGV[i]
  local rec = redis.call('HGET', KEYS[4], id)
  if not rec then
    out[i] = 0
  else
    local user, qty, key = string.match(rec, '^([^\t]*)\t(%d+)\t%d*\t(.*)$')
    qty = tonumber(qty)
    redis.call('HDEL', KEYS[4], id)
    redis.call('ZREM', KEYS[6], id)
    redis.call('INCRBY', KEYS[2], qty)
    if redis.call('HINCRBY', KEYS[3], user, -qty) <= 0 then redis.call('HDEL', KEYS[3], user) end
    if key ~= '' then
      local field = user .. '\t' .. key
      if redis.call('HGET', KEYS[5], field) == id then redis.call('HDEL', KEYS[5], field) end
    end
    out[i] = 1
  end
end
return out
