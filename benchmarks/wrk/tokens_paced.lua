-- benchmarks/wrk/tokens.lua with a pause before each request: a sixth argument, the pause in
-- ms, paces each connection (connections x 1000 / pause requests/s at most).
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "tokens.lua")

local pause = 0
local tokens_init = init

function init(args)
  tokens_init(args)
  pause = tonumber(args[6]) or 0
end

function delay()
  return pause
end
