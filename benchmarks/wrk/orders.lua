-- POST <path> with an order body, each request as the next buyer of a pool whose tokens were
-- minted before the run (benchmarks/http.py writes the file: "<buyer id>\t<JWT>" per line).
-- A buyer's request is formatted at its first use and then sent as is, so a request costs
-- wrk a table lookup (a first round a string build, as before the tokens). Each thread takes
-- every nthreads-th buyer, so no two threads send as the same buyer; a thread that runs out
-- starts its buyers again.
-- Arguments (after `--`): path, product id, the token file, the number of wrk threads, and
-- optionally the Content-Type (default application/json).
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "stats.lua")

local path, product, content_type
local buyers, tokens, prepared = {}, {}, {}
local i = 0

function init(args)
  path, product, content_type = args[1], args[2], args[5] or "application/json"
  local k, nthreads = 0, tonumber(args[4])
  for line in io.lines(args[3]) do
    if k % nthreads == id then
      local buyer, token = line:match("^([^\t]+)\t(.*)$")
      table.insert(buyers, buyer)
      table.insert(tokens, token)
    end
    k = k + 1
  end
  if #buyers == 0 then
    error("no buyer for thread " .. id .. " in " .. args[3])
  end
end

function request()
  i = i % #buyers + 1
  local req = prepared[i]
  if req == nil then
    req = wrk.format("POST", path,
                     {["Content-Type"] = content_type, ["Authorization"] = "Bearer " .. tokens[i]},
                     '{"product_id":' .. product .. ',"user_id":"' .. buyers[i] .. '","quantity":1}')
    prepared[i] = req
  end
  return req
end
