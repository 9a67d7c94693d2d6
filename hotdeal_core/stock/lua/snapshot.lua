-- One consistent read of a deal's state.
-- KEYS: 1 state, 2 stock, 3 users, 4 res
-- Returns {status or false, epoch, deal_id, stock, {res field, value, ...}}
local st = redis.call('HMGET', KEYS[1], 'status', 'epoch', 'deal_id')
if not st[1] then return {false, 0, 0, 0, {}} end
return {st[1], tonumber(st[2]), tonumber(st[3]), tonumber(redis.call('GET', KEYS[2]) or '0'),
        redis.call('HGETALL', KEYS[4])}
