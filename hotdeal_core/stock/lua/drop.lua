-- Delete a deal's keys, only if they still belong to that deal.
-- KEYS: 1 state, 2 stock, 3 users, 4 res, 5 idem, 6 since, 7 entries, 8 tickets, 9 drawn
-- ARGV: 1 deal_id   Returns 1 dropped, 0 not.
if redis.call('HGET', KEYS[1], 'deal_id') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8],
           KEYS[9])
return 1
