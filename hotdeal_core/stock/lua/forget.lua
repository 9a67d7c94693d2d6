-- A confirmed order keeps its units sold: drop its reservation record only.
-- KEYS: 1 res   ARGV: 1 order_id   Returns 1 dropped, 0 absent.
return redis.call('HDEL', KEYS[1], ARGV[1])
