-- forget.lua for many confirmed orders of one deal in one call: their units stay sold (and
-- their idempotency records stay); only the reservation records go.
-- KEYS: 1 res, 2 since   ARGV: order ids
-- Returns one code per order id, in ARGV order: 1 dropped, 0 absent.
local out = {}
for i = 1, #ARGV do
  redis.call('ZREM', KEYS[2], ARGV[i])
  out[i] = redis.call('HDEL', KEYS[1], ARGV[i])
end
return out
