-- Reserve units of a hot deal for one or more orders, atomically, in the order given (a
-- buyer's second request in the same call sees the first one's effect, exactly as two
-- calls in a row would).
-- KEYS: 1 state (hash: status, epoch, deal_id, limit, price), 2 stock, 3 users (user -> units held),
--       4 res (order_id -> "user<TAB>qty<TAB>ms<TAB>idem"), 5 idem ("user<TAB>key" -> order_id),
--       6 since (sorted set: order_id -> ms from which the orphan sweep's grace period runs)
-- ARGV: 4 per order: order_id, user_id, qty, idempotency key or ''
-- A reservation is stamped with Redis's clock (TIME), the one the orphan sweep judges by
-- (due.lua), never an API host's.
-- Returns 5 values per order, {code, a, b, c, d}:
--   { 1, epoch, remaining, deal_id, price }  reserved
--   { 2, first_order_id, 0, 0, 0 }           duplicate idempotency key: nothing reserved
--   { 0, 0, remaining, 0, 0 }                sold out
--   {-1, 0, 0, 0, 0 }                        deal not active (no state, or closed)
--   {-2, held, limit, 0, 0 }                 per-user limit exceeded
local out = {}
local function answer(code, a, b, c, d)
  out[#out + 1] = code; out[#out + 1] = a; out[#out + 1] = b; out[#out + 1] = c
  out[#out + 1] = d
end

local st = redis.call('HMGET', KEYS[1], 'status', 'epoch', 'deal_id', 'price', 'limit')
local n = #ARGV / 4
if st[1] ~= 'open' then
  for _ = 1, n do answer(-1, 0, 0, 0, 0) end
  return out
end
local epoch, deal_id, price, limit = tonumber(st[2]), tonumber(st[3]), tonumber(st[4]),
                                     tonumber(st[5])
local time = redis.call('TIME')
local now = tostring(tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000))
local stock = tonumber(redis.call('GET', KEYS[2]) or '0')

for i = 1, #ARGV, 4 do
  local order_id, user, qty, key = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), ARGV[i + 3]
  local idem_field = false
  local first = false
  if key ~= '' then
    idem_field = user .. '\t' .. key
    first = redis.call('HGET', KEYS[5], idem_field)
  end
  if first then
    answer(2, first, 0, 0, 0)
  elseif stock < qty then
    answer(0, 0, stock, 0, 0)
  else
    local held = tonumber(redis.call('HGET', KEYS[3], user) or '0')
    if held + qty > limit then
      answer(-2, held, limit, 0, 0)
    else
      stock = stock - qty
      redis.call('DECRBY', KEYS[2], qty)
      redis.call('HINCRBY', KEYS[3], user, qty)
      redis.call('HSET', KEYS[4], order_id, user .. '\t' .. qty .. '\t' .. now .. '\t' .. key)
      redis.call('ZADD', KEYS[6], now, order_id)
      if idem_field then redis.call('HSET', KEYS[5], idem_field, order_id) end
      answer(1, epoch, stock, deal_id, price)
    end
  end
end
return out
