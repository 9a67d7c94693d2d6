-- POST /payments/webhook with pre-signed callbacks read from a file, one per line:
-- "<X-Payment-Signature>\t<raw body>". Each thread takes every nthreads-th line, so no two
-- threads pay the same order; a thread that runs out starts its lines again (replays).
-- Arguments (after `--`): the file, the number of wrk threads.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "stats.lua")

local sigs, bodies = {}, {}
local i = 0

function init(args)
  local k, nthreads = 0, tonumber(args[2])
  for line in io.lines(args[1]) do
    if k % nthreads == id then
      local sig, body = line:match("^([^\t]+)\t(.*)$")
      table.insert(sigs, sig)
      table.insert(bodies, body)
    end
    k = k + 1
  end
end

function request()
  i = i % #bodies + 1
  return wrk.format("POST", "/payments/webhook",
                    {["Content-Type"] = "application/json", ["X-Payment-Signature"] = sigs[i]},
                    bodies[i])
end
