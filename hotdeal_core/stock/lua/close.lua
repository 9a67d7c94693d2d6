-- Stop intake: after this no reservation and no release touches the deal's stock.
-- KEYS: 1 state   ARGV: 1 deal_id   Returns 1 closed (or already), 0 no state for this deal.
if redis.call('HGET', KEYS[1], 'deal_id') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'status', 'closed')
return 1
