-- Reserve units of a hot deal for one or more orders, atomically, in the order given (a
-- buyer's second request in the same call sees the first one's effect, exactly as two
-- calls in a row would). During a deal's opening window an order enters the draw instead.
-- #include reserve_core
-- ARGV: 5 per order: order_id, user_id, qty, idempotency key or '', draw ticket
-- Reservations are stamped with Redis's clock (TIME), the one the orphan sweep judges by.
-- Returns 5 values per order, {code, a, b, c, d}:
--   { 1, epoch, remaining, deal_id, price }  reserved
--   { 2, first_order_id, 0, 0, 0 }           duplicate idempotency key: nothing reserved
--   { 0, 0, remaining, 0, 0 }                sold out
--   {-1, 0, 0, 0, 0 }                        deal not active (no state, or closed)
--   {-2, held, limit, 0, 0 }                 per-user limit exceeded
--   { 3, wait_ms, entry_order_id, 0, 0 }     in the opening draw (entered now, or a retry
--                                            with the entry's key): ask draw.lua at the draw
--   {-3, wait_ms, 0, 0, 0 }                  the buyer already entered with another request
local out = {}
local function answer(code, a, b, c, d)
  out[#out + 1] = code; out[#out + 1] = a; out[#out + 1] = b; out[#out + 1] = c
  out[#out + 1] = d
end

local deal = open_deal()
if not deal then
  for _ = 1, #ARGV / 5 do answer(-1, 0, 0, 0, 0) end
  return out
end
for i = 1, #ARGV, 5 do
  local order_id, user, qty, key = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  if deal.draw_at == 0 then
    answer(reserve_one(deal, order_id, user, tonumber(qty), key))
  else
    local wait = deal.draw_at - deal.now
    local entry = redis.call('HGET', KEYS[7], user)
    if not entry then
      redis.call('HSET', KEYS[7], user, order_id .. '\t' .. qty .. '\t' .. key)
      redis.call('ZADD', KEYS[8], ARGV[i + 4], user)
      answer(3, wait, order_id, 0, 0)
    else
      local first, _, first_key = split_entry(entry)
      if key ~= '' and key == first_key then
        answer(3, wait, first, 0, 0)
      else
        answer(-3, wait, 0, 0, 0)
      end
    end
  end
end
return out
