-- A confirmed order keeps its units sold (and its idempotency record): drop its reservation
-- record only.
-- KEYS: 1 res, 2 since   ARGV: 1 order_id   Returns 1 dropped, 0 absent.
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('HDEL', KEYS[1], ARGV[1])
