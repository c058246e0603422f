-- Carrier failover on 5xx, with a header noting the attempt.
--
-- Calls to numbers go to the first carrier; a 5xx (or no answer from the carrier at all)
-- moves the call to the next one, in the same transaction. Each carrier sees which attempt
-- it is in X-Attempt (a branch route: that branch only). Any other failure (a 486, a 404)
-- goes back to the caller at once: the number is busy or wrong at every carrier.

local CARRIERS = {
  "carrier-a.example.net",
  "carrier-b.example.net",
  "carrier-c.example.net",
}

local function number(ruri)
  return ruri:match("^sips?:%+?(%d+)@")
end

local function to_carrier(req)
  local n = CARRIERS[req.vars.attempt]
  req:on_failure("next_carrier")
  req:relay("sip:" .. req.vars.number .. "@" .. n, { no_response_timeout = 3, on_response = "" })
end

function request_route(req)
  local n = number(req.ruri)
  if n == nil then
    req:reply(404, "Not A Number")
    return
  end
  req.vars.number = n
  req.vars.attempt = 1
  req:on_branch("note_attempt")
  to_carrier(req)
end

function branch_route_note_attempt(branch)
  branch:append_header("X-Attempt: " .. branch.vars.attempt .. "/" .. #CARRIERS)
end

function failure_route_next_carrier(req, failed)
  local retry = (failed.status >= 500 and failed.status < 600) or failed.status == 408
  if not retry or req.vars.attempt >= #CARRIERS then
    return
  end
  req.vars.attempt = req.vars.attempt + 1
  to_carrier(req)
end
