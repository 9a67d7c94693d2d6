-- Open a deal's state. Never overwrites live state.
-- KEYS: 1 state, 2 stock, 3 users, 4 res, 5 idem, 6 since
-- ARGV: 1 deal_id, 2 stock, 3 per-user limit, 4 epoch, 5 unit price
-- Returns 1 opened, 0 state already present (refused).
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6])
redis.call('SET', KEYS[2], ARGV[2])
redis.call('HSET', KEYS[1], 'status', 'open', 'deal_id', ARGV[1], 'limit', ARGV[3],
           'epoch', ARGV[4], 'price', ARGV[5])
return 1
