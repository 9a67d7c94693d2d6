-- Replace a deal's state with one rebuilt from Postgres (after Redis lost it), fenced by epoch:
-- only a strictly newer epoch replaces a state (an equal one may be an orphaned state whose
-- reservations Postgres never saw: orders reserved on it must stay fenced).
-- KEYS: 1 state, 2 stock, 3 users, 4 res, 5 idem, 6 since, 7 entries, 8 tickets, 9 drawn
-- ARGV: 1 deal_id, 2 stock, 3 limit, 4 epoch, 5 price, 6 n_users, 7 n_res, 8 n_idem,
--       then n_users pairs (user, units), n_res pairs (order_id, record), n_idem pairs (field, order_id)
-- Returns 1 rebuilt, 0 refused (an equal or newer epoch present).
local current = tonumber(redis.call('HGET', KEYS[1], 'epoch') or '0')
if current >= tonumber(ARGV[4]) then return 0 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8],
           KEYS[9])
redis.call('SET', KEYS[2], ARGV[2])
local i = 9
for _ = 1, tonumber(ARGV[6]) do redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1]); i = i + 2 end
for _ = 1, tonumber(ARGV[7]) do
  redis.call('HSET', KEYS[4], ARGV[i], ARGV[i + 1])
  redis.call('ZADD', KEYS[6], string.match(ARGV[i + 1], '^[^\t]*\t%d+\t(%d+)\t'), ARGV[i])
  i = i + 2
end
for _ = 1, tonumber(ARGV[8]) do redis.call('HSET', KEYS[5], ARGV[i], ARGV[i + 1]); i = i + 2 end
redis.call('HSET', KEYS[1], 'status', 'open', 'deal_id', ARGV[1], 'limit', ARGV[3],
           'epoch', ARGV[4], 'price', ARGV[5])
return 1
