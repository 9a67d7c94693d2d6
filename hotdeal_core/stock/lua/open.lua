-- Open a deal's state. Never overwrites live state.
-- KEYS: 1 state, 2 stock, 3 users, 4 res, 5 idem, 6 since, 7 entries, 8 tickets, 9 drawn
-- ARGV: 1 deal_id, 2 stock, 3 per-user limit, 4 epoch, 5 unit price, 6 opening window ms
-- (0: first come first served at once; else orders enter a draw held when it ends, by TIME)
-- Returns 1 opened, 0 state already present (refused).
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9])
redis.call('SET', KEYS[2], ARGV[2])
redis.call('HSET', KEYS[1], 'status', 'open', 'deal_id', ARGV[1], 'limit', ARGV[3],
           'epoch', ARGV[4], 'price', ARGV[5])
local window = tonumber(ARGV[6] or '0')
if window > 0 then
  local time = redis.call('TIME')
  redis.call('HSET', KEYS[1], 'draw_at',
             tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000) + window)
end
return 1
