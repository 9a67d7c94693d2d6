-- A deal's status and stock in one read, whatever the number of live reservations.
-- KEYS: 1 state, 2 stock
-- Returns {status or false, epoch, deal_id, stock}
local st = redis.call('HMGET', KEYS[1], 'status', 'epoch', 'deal_id')
if not st[1] then return {false, 0, 0, 0} end
return {st[1], tonumber(st[2]), tonumber(st[3]), tonumber(redis.call('GET', KEYS[2]) or '0')}
