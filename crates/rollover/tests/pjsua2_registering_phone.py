#!/usr/bin/env python3
"""A PJSUA2 phone for Rollover's registrar tests (PJSIP's own user agent).

PORT REGISTRAR USER@DOMAIN PASSWORD: registers USER@DOMAIN at REGISTRAR (a SIP URI) from
127.0.0.1:PORT over UDP, answering the digest challenge with PASSWORD; prints
REGISTERED <code> when the registrar accepted it (REGFAILED <code> otherwise), answers an
incoming call with 200 (CONFIRMED once the ACK arrived, DISCONNECTED on BYE).
Exits by itself after at most 20 s, or once a call ended.
"""
import sys
import time

import pjsua2 as pj


def main():
    port, registrar, aor, password = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    user, domain = aor.split("@", 1)
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
    ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tcfg)
    ep.libStart()
    ep.audDevManager().setNullDev()
    keep = []
    pending = []
    state = {"done": False}

    class PhoneCall(pj.Call):
        def onCallState(self, prm):
            ci = self.getInfo()
            if ci.state == pj.PJSIP_INV_STATE_CONFIRMED:
                print("CONFIRMED", ci.remoteUri, flush=True)
            if ci.state == pj.PJSIP_INV_STATE_DISCONNECTED:
                print("DISCONNECTED", ci.lastStatusCode, flush=True)
                state["done"] = True

    class Phone(pj.Account):
        def onRegState(self, prm):
            if prm.code == 200 and prm.expiration > 0:
                print("REGISTERED", prm.code, flush=True)
            elif prm.code >= 300:
                print("REGFAILED", prm.code, flush=True)

        def onIncomingCall(self, prm):
            call = PhoneCall(self, prm.callId)
            keep.append(call)
            # Answered from the main loop (a final response inside this callback trips an
            # assertion in PJSIP 2.15's Python bindings).
            pending.append(call)
            print("INCOMING", flush=True)

    acfg = pj.AccountConfig()
    acfg.idUri = "sip:%s@%s" % (user, domain)
    acfg.regConfig.registrarUri = registrar
    acfg.regConfig.timeoutSec = 300
    cred = pj.AuthCredInfo("digest", "*", user, 0, password)
    acfg.sipConfig.authCreds.append(cred)
    acc = Phone()
    acc.create(acfg)
    keep.append(acc)
    print("READY", flush=True)

    end = time.time() + 20
    while time.time() < end and not state["done"]:
        ep.libHandleEvents(20)
        while pending:
            op = pj.CallOpParam()
            op.statusCode = 200
            pending.pop(0).answer(op)
    print("RESULT", "done" if state["done"] else "timeout", flush=True)
    ep.libDestroy()


if __name__ == "__main__":
    main()
