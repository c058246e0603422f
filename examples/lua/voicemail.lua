-- Voicemail on busy or no answer.
--
-- The call rings the dialled user for at most 20 s. If the user is busy (486), does not
-- answer in time (408), or is not available (480), the call goes to the voicemail server in
-- the same transaction: the caller never sees the failure, only the voicemail's answer.
-- The voicemail learns why through X-Voicemail-Reason (added in the failure route, so it is
-- on the request to the voicemail and on no reply).

local VOICEMAIL = "sip:vm@voicemail.example.com"

local REASONS = { [486] = "busy", [408] = "no-answer", [480] = "unavailable" }

function request_route(req)
  if req.method ~= "INVITE" then
    req:relay()
    return
  end
  req.vars.callee = req.ruri
  req:on_failure("voicemail")
  req:relay(req.ruri, { ring_timeout = 20, no_response_timeout = 5, on_response = "" })
end

function failure_route_voicemail(req, failed)
  local why = REASONS[failed.status]
  if why == nil then
    return -- any other failure goes to the caller as it is
  end
  req:append_header("X-Voicemail-Reason: " .. why)
  req:append_header("X-Voicemail-For: " .. req.vars.callee)
  req:relay(VOICEMAIL)
end
