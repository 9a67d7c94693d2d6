-- Give an order's reserved units back to the deal, exactly once (the reservation record is
-- the token: whoever deletes it returns the units). The idempotency record of the
-- reservation goes with it, so that a retry with the same key is served anew instead of
-- being told "in progress" forever (the order was never written, or is cancelled: then
-- Postgres's unique key returns the cancelled order as the first answer).
-- KEYS: 1 state, 2 stock, 3 users, 4 res, 5 idem, 6 since
-- ARGV: 1 order_id
-- Returns 1 released, 0 no reservation (already released, or never held here),
--        -1 deal not open (closed for the flush, or state lost): the caller defers.
if redis.call('HGET', KEYS[1], 'status') ~= 'open' then return -1 end
local rec = redis.call('HGET', KEYS[4], ARGV[1])
if not rec then return 0 end
local user, qty, key = string.match(rec, '^([^\t]*)\t(%d+)\t%d*\t(.*)$')
qty = tonumber(qty)
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('ZREM', KEYS[6], ARGV[1])
redis.call('INCRBY', KEYS[2], qty)
if redis.call('HINCRBY', KEYS[3], user, -qty) <= 0 then redis.call('HDEL', KEYS[3], user) end
if key ~= '' then
  local field = user .. '\t' .. key
  if redis.call('HGET', KEYS[5], field) == ARGV[1] then redis.call('HDEL', KEYS[5], field) end
end
return 1
