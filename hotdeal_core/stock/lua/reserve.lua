-- Reserve units of a hot deal for one order, atomically.
-- KEYS: 1 state (hash: status, epoch, deal_id, limit, price), 2 stock, 3 users (user -> units held),
--       4 res (order_id -> "user<TAB>qty<TAB>ms<TAB>idem"), 5 idem ("user<TAB>key" -> order_id),
--       6 since (sorted set: order_id -> ms from which the orphan sweep's grace period runs)
-- ARGV: 1 order_id, 2 user_id, 3 qty, 4 idempotency key or '', 5 now (ms)
-- Returns {code, a, b, c, d}:
--   { 1, epoch, remaining, deal_id, price }  reserved
--   { 2, first_order_id, 0, 0, 0 }           duplicate idempotency key: nothing reserved
--   { 0, 0, remaining, 0, 0 }                sold out
--   {-1, 0, 0, 0, 0 }                        deal not active (no state, or closed)
--   {-2, held, limit, 0, 0 }                 per-user limit exceeded
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'open' then return {-1, 0, 0, 0, 0} end

local qty = tonumber(ARGV[3])
local idem_field = false
if ARGV[4] ~= '' then
  idem_field = ARGV[2] .. '\t' .. ARGV[4]
  local first = redis.call('HGET', KEYS[5], idem_field)
  if first then return {2, first, 0, 0, 0} end
end

local stock = tonumber(redis.call('GET', KEYS[2]) or '0')
if stock < qty then return {0, 0, stock, 0, 0} end

local limit = tonumber(redis.call('HGET', KEYS[1], 'limit'))
local held = tonumber(redis.call('HGET', KEYS[3], ARGV[2]) or '0')
if held + qty > limit then return {-2, held, limit, 0, 0} end

redis.call('DECRBY', KEYS[2], qty)
redis.call('HINCRBY', KEYS[3], ARGV[2], qty)
redis.call('HSET', KEYS[4], ARGV[1], ARGV[2] .. '\t' .. qty .. '\t' .. ARGV[5] .. '\t' .. ARGV[4])
redis.call('ZADD', KEYS[6], ARGV[5], ARGV[1])
if idem_field then redis.call('HSET', KEYS[5], idem_field, ARGV[1]) end
local st = redis.call('HMGET', KEYS[1], 'epoch', 'deal_id', 'price')
return {1, tonumber(st[1]), stock - qty, tonumber(st[2]), tonumber(st[3])}
