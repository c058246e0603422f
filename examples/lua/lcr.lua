-- Least-cost routing with a per-attempt prefix rewrite.
--
-- The cheapest carrier for a number is the one with the longest matching prefix in RATES,
-- then the others by price. Each carrier wants the number written its own way (a technical
-- prefix, an international format): the Request-URI of each attempt is rewritten for the
-- carrier it goes to. A carrier that fails with 5xx, 408 or 404 (no route at that carrier)
-- hands the call to the next cheapest.

local CARRIERS = {
  cheap = { host = "cheap.example.net", rewrite = function(n) return "1010" .. n end },
  mid = { host = "mid.example.net", rewrite = function(n) return "+" .. n end },
  premium = { host = "premium.example.net", rewrite = function(n) return "00" .. n end },
}

-- prefix → carriers, cheapest first
local RATES = {
  { prefix = "49", order = { "cheap", "mid", "premium" } },
  { prefix = "44", order = { "mid", "premium" } },
  { prefix = "", order = { "premium" } },
}

local function route_for(number)
  local best
  for _, r in ipairs(RATES) do
    if number:sub(1, #r.prefix) == r.prefix and (best == nil or #r.prefix > #best.prefix) then
      best = r
    end
  end
  return best.order
end

local function attempt(req)
  local order = route_for(req.vars.number)
  local c = CARRIERS[order[req.vars.attempt]]
  req.vars.carrier = order[req.vars.attempt]
  req:on_failure("next")
  req:relay("sip:" .. c.rewrite(req.vars.number) .. "@" .. c.host, { on_response = "" })
end

function request_route(req)
  local n = req.ruri:match("^sips?:%+?0*(%d+)@")
  if n == nil then
    req:reply(484, "Address Incomplete")
    return
  end
  req.vars.number = n
  req.vars.attempt = 1
  attempt(req)
end

function failure_route_next(req, failed)
  local s = failed.status
  local retry = (s >= 500 and s < 600) or s == 408 or s == 404
  if not retry or req.vars.attempt >= #route_for(req.vars.number) then
    return
  end
  req.vars.attempt = req.vars.attempt + 1
  attempt(req)
end
