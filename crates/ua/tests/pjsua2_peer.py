#!/usr/bin/env python3
"""A PJSUA2 peer for Rollover's interoperability tests (PJSIP's own user agent).

uas PORT [tcp]: accounts busy (486), redir (302 to answer), answer (200) on 127.0.0.1:PORT
    (over UDP, or TCP with "tcp"); prints CONFIRMED when the ACK arrived, DISCONNECTED on BYE.
uac PORT URI: calls URI (with PJSUA's normal SDP offer, about 1.2 KB), follows redirects,
    prints CONFIRMED when answered, hangs up.
uac_hold PORT URI: the same, but stays in the call until the other side hangs up (prints
    DISCONNECTED when its BYE arrived).
Exits by itself after at most 20 s.
"""
import sys
import time

import pjsua2 as pj


def main():
    mode, port = sys.argv[1], int(sys.argv[2])
    hold = mode == "uac_hold"
    if hold:
        mode = "uac"
    tcp = mode == "uas" and len(sys.argv) > 3 and sys.argv[3] == "tcp"
    ep = pj.Endpoint()
    ep.libCreate()
    cfg = pj.EpConfig()
    cfg.logConfig.level = 1
    cfg.logConfig.consoleLevel = 1
    cfg.uaConfig.threadCnt = 0
    cfg.uaConfig.mainThreadOnly = True
    ep.libInit(cfg)
    tcfg = pj.TransportConfig()
    tcfg.port = port
    tcfg.boundAddress = "127.0.0.1"
    ep.transportCreate(pj.PJSIP_TRANSPORT_TCP if tcp else pj.PJSIP_TRANSPORT_UDP, tcfg)
    ep.libStart()
    ep.audDevManager().setNullDev()
    keep = []
    pending = []
    state = {"done": False, "ok": False}

    class PeerCall(pj.Call):
        def onCallState(self, prm):
            ci = self.getInfo()
            if ci.state == pj.PJSIP_INV_STATE_CONFIRMED:
                print("CONFIRMED", ci.remoteUri, flush=True)
                state["ok"] = True
                if mode == "uac" and not hold:
                    self.hangup(pj.CallOpParam())
            if ci.state == pj.PJSIP_INV_STATE_DISCONNECTED:
                print("DISCONNECTED", ci.lastStatusCode, flush=True)
                if mode == "uac":
                    state["done"] = True

        def onCallRedirected(self, prm):
            print("REDIRECTED", prm.targetUri, flush=True)
            return pj.PJSIP_REDIRECT_ACCEPT

    class Peer(pj.Account):
        def __init__(self, role):
            pj.Account.__init__(self)
            self.role = role

        def onIncomingCall(self, prm):
            call = PeerCall(self, prm.callId)
            keep.append(call)
            # The role comes from the Request-URI's user part: PJSUA picks the account by
            # the To header, which a redirected caller may keep as it was.
            first_line = prm.rdata.wholeMsg.split("\r\n", 1)[0]
            user = first_line.split(" ")[1].split(":", 1)[1].split("@")[0]
            role = user if user in ("busy", "redir", "answer") else self.role
            # Answer from the main loop: a final response sent inside this callback trips an
            # assertion in PJSIP 2.15's Python bindings.
            pending.append((call, role))
            print("INCOMING", role, flush=True)

    def answer(call, role):
        op = pj.CallOpParam()
        if role == "busy":
            op.statusCode = 486
            call.hangup(op)
        elif role == "redir":
            op.statusCode = 302
            hdr = pj.SipHeader()
            hdr.hName = "Contact"
            hdr.hValue = "<sip:answer@127.0.0.1:%d%s>" % (port, ";transport=tcp" if tcp else "")
            op.txOption.headers.append(hdr)
            call.hangup(op)
        else:
            op.statusCode = 200
            call.answer(op)

    for role in ("busy", "redir", "answer"):
        acc = Peer(role)
        acfg = pj.AccountConfig()
        acfg.idUri = "sip:%s@127.0.0.1:%d%s" % (role, port, ";transport=tcp" if tcp else "")
        acc.create(acfg)
        keep.append(acc)
    print("READY", flush=True)

    if mode == "uac":
        call = PeerCall(keep[-1])
        keep.append(call)
        call.makeCall(sys.argv[3], pj.CallOpParam(True))

    end = time.time() + 20
    while time.time() < end and not state["done"]:
        ep.libHandleEvents(20)
        while pending:
            answer(*pending.pop(0))
    print("RESULT", "ok" if state["ok"] else "failed", flush=True)
    ep.libDestroy()
    sys.exit(0 if state["ok"] or mode == "uas" else 1)


if __name__ == "__main__":
    main()
