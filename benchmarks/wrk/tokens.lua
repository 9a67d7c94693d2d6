-- POST <path> as buyers with bearer tokens, rotating over a file of "user<TAB>token" lines
-- (thread t sends lines t, t+threads, ...). Arguments (after `--`): path, product id, the
-- token file, the wrk thread count, and "1" to put the buyer in the body as `user_id` too
-- (the API before buyer tokens needs it), "0" not to.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "stats.lua")

local path, product, users, tokens, stride, with_user
local n = 0

function init(args)
  path, product, stride, with_user = args[1], args[2], tonumber(args[4]), args[5] == "1"
  users, tokens = {}, {}
  for line in io.lines(args[3]) do
    local user, token = line:match("^([^\t]+)\t(.+)$")
    table.insert(users, user)
    table.insert(tokens, token)
  end
  n = id  -- this thread's first line (0-based)
end

function request()
  local i = n % #users + 1
  n = n + stride
  local body = '{"product_id":' .. product
  if with_user then body = body .. ',"user_id":"' .. users[i] .. '"' end
  return wrk.format("POST", path, {["Content-Type"] = "application/json",
                                   ["Authorization"] = "Bearer " .. tokens[i]},
                    body .. ',"quantity":1}')
end
