-- Start the grace period of live reservations again from a later moment (their order is
-- PENDING: look again once it should have expired). Only reservations still held move.
-- KEYS: 1 since   ARGV: pairs (order_id, ms by Redis's clock, as `due` reads it)
-- Returns how many moved.
local moved = 0
for i = 1, #ARGV, 2 do
  moved = moved + redis.call('ZADD', KEYS[1], 'XX', 'CH', ARGV[i + 1], ARGV[i])
end
return moved
