-- The opening draw's answers for the buyers given, the draw run first if it is due.
-- #include reserve_core
-- ARGV: the buyers. Returns {wait_ms, then per buyer "order_id<TAB>code<TAB>a<TAB>b<TAB>c<TAB>d"
-- (reserve.lua's answer for the entry's order) or false (no entry: none made, or the state
-- was rebuilt)}; wait_ms > 0: the draw is not due yet, ask again then.
local deal = open_deal()
local out = {0}
if deal and deal.draw_at ~= 0 then
  out[1] = deal.draw_at - deal.now
  return out
end
if #ARGV > 0 then
  for _, answer in ipairs(redis.call('HMGET', KEYS[9], unpack(ARGV))) do
    out[#out + 1] = answer
  end
end
return out
