-- POST <path> with an order body whose buyer is new at every request (a per-user limit of 1
-- never refuses). Arguments (after `--`): path, product id, buyer prefix (unique per run),
-- and optionally the Content-Type (default application/json).
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "stats.lua")

local path, product, prefix
local n = 0
local headers = {["Content-Type"] = "application/json"}

function init(args)
  path, product = args[1], args[2]
  prefix = args[3] .. "-" .. id .. "-"
  headers["Content-Type"] = args[4] or "application/json"
end

function request()
  n = n + 1
  return wrk.format("POST", path, headers, '{"product_id":' .. product ..
                    ',"user_id":"' .. prefix .. n .. '","quantity":1}')
end
