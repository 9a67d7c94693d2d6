-- The reservation rule and the opening draw, shared by reserve.lua and draw.lua (each
-- says `-- #include reserve_core`; hotdeal_core/stock/redis_store.py splices it in).
-- KEYS: 1 state (hash: status, epoch, deal_id, limit, price, draw_at), 2 stock,
--       3 users (user -> units held), 4 res (order_id -> "user<TAB>qty<TAB>ms<TAB>idem"),
--       5 idem ("user<TAB>key" -> order_id), 6 since (order_id -> ms, the orphan sweep's),
--       7 entries (user -> "order_id<TAB>qty<TAB>idem": the opening draw's entrants),
--       8 tickets (sorted set: user -> random ticket), 9 drawn (user -> the draw's answer)

local function clock_ms()
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end

-- One reservation: {code, a, b, c, d} as reserve.lua documents; `deal.stock` follows it.
local function reserve_one(deal, order_id, user, qty, key)
  local idem_field = false
  if key ~= '' then
    idem_field = user .. '\t' .. key
    local first = redis.call('HGET', KEYS[5], idem_field)
    if first then return 2, first, 0, 0, 0 end
  end
  if deal.stock < qty then return 0, 0, deal.stock, 0, 0 end
  local held = tonumber(redis.call('HGET', KEYS[3], user) or '0')
  if held + qty > deal.limit then return -2, held, deal.limit, 0, 0 end
  deal.stock = deal.stock - qty
  redis.call('DECRBY', KEYS[2], qty)
  redis.call('HINCRBY', KEYS[3], user, qty)
  redis.call('HSET', KEYS[4], order_id, user .. '\t' .. qty .. '\t' .. deal.now .. '\t' .. key)
  redis.call('ZADD', KEYS[6], deal.now, order_id)
  if idem_field then redis.call('HSET', KEYS[5], idem_field, order_id) end
  return 1, deal.epoch, deal.stock, deal.deal_id, deal.price
end

local function split_entry(entry)
  return string.match(entry, '^([^\t]*)\t(%d+)\t(.*)$')
end

-- The opening draw: every entrant reserved in ticket order (one entry per buyer, tickets
-- drawn by the API at random), the answers kept for the waiting requests.
local function draw(deal)
  for _, user in ipairs(redis.call('ZRANGE', KEYS[8], 0, -1)) do
    local order_id, qty, key = split_entry(redis.call('HGET', KEYS[7], user))
    local code, a, b, c, d = reserve_one(deal, order_id, user, tonumber(qty), key)
    redis.call('HSET', KEYS[9], user, table.concat({order_id, code, a, b, c, d}, '\t'))
  end
  redis.call('DEL', KEYS[7], KEYS[8])
  redis.call('HDEL', KEYS[1], 'draw_at')
  deal.draw_at = 0
end

-- The deal if it is open (else nil), read once per call; a draw that is due runs first,
-- so no order after the window is served before the window's entrants.
local function open_deal()
  local st = redis.call('HMGET', KEYS[1], 'status', 'epoch', 'deal_id', 'price', 'limit',
                        'draw_at')
  if st[1] ~= 'open' then return nil end
  local deal = {epoch = tonumber(st[2]), deal_id = tonumber(st[3]), price = tonumber(st[4]),
                limit = tonumber(st[5]), stock = tonumber(redis.call('GET', KEYS[2]) or '0'),
                now = clock_ms(), draw_at = tonumber(st[6] or '0')}
  if deal.draw_at ~= 0 and deal.now >= deal.draw_at then draw(deal) end
  return deal
end
