//! Client transactions (RFC 3261 §17.1, with RFC 6026's Accepted state).
//!
//! INVITE client (Figure 5 + RFC 6026):
//! ```text
//!            send INVITE; A (UDP), B
//!   Calling ──1xx──▶ Proceeding ──300-699: send ACK, D──▶ Completed ──D──▶ Terminated
//!      │ B: timeout        │ 2xx: M                           ▲ 300-699: resend ACK
//!      ▼                   ▼
//!  Terminated          Accepted ──M──▶ Terminated   (2xx retransmissions passed up)
//! ```
//! Timer B runs only in Calling: a target that rings is never timed out here (the proxy's
//! ring timer decides, RFC 3261 §17.1.1.2).
//!
//! Non-INVITE client (Figure 6):
//! ```text
//!   Trying ──1xx──▶ Proceeding ──200-699: K──▶ Completed ──K──▶ Terminated
//!     E: resend, interval doubles up to T2;  F: timeout in Trying or Proceeding
//! ```

use std::time::{Duration, Instant};

use bytes::Bytes;
use rollover_sip::Message;

use crate::config::Config;
use crate::timer::{Slot, Timers};
use crate::transport::TransportError;

/// What a transaction asks the layer to do.
#[derive(Debug)]
pub(crate) enum Action {
    /// Send bytes to the transaction's peer.
    Send(Bytes),
    /// Pass a response up to the TU.
    PassUp(Message),
    /// The transaction timed out (B, F or H).
    Timeout,
    /// The transport failed.
    TransportError(TransportError),
}

/// The state of an INVITE client transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InviteClientState {
    /// INVITE sent, nothing heard.
    Calling,
    /// A provisional arrived.
    Proceeding,
    /// A 300-699 arrived and was ACKed; absorbing retransmissions (Timer D).
    Completed,
    /// A 2xx arrived; further 2xx are passed up (Timer M, RFC 6026).
    Accepted,
    /// Done.
    Terminated,
}

#[derive(Debug)]
pub(crate) struct InviteClient {
    pub state: InviteClientState,
    /// For retransmissions, the ACK and a CANCEL; dropped at the final response, after
    /// which the transaction only lingers (Timer D or M) and needs at most the ACK.
    /// Boxed: a lingering transaction keeps a pointer's worth, not a message's.
    pub request: Option<Box<Message>>,
    pub reliable: bool,
    pub interval: Duration,
    pub timers: Timers,
    pub ack: Option<Bytes>,
    /// Retransmissions stopped by the TU (the proxy's no-response timer fired).
    pub abandoned: bool,
    /// A provisional has been received (a CANCEL may be sent, §9.1).
    pub provisional_seen: bool,
    /// CANCEL requested before any provisional, with its Reason: sent when one arrives.
    pub pending_cancel: Option<Option<Box<str>>>,
    /// A CANCEL went out: without a final within 64·T1 the transaction ends (§9.1).
    pub cancel_sent: bool,
}

impl InviteClient {
    pub fn start(
        now: Instant,
        cfg: &Config,
        request: Message,
        reliable: bool,
        out: &mut Vec<Action>,
    ) -> Self {
        let mut t = InviteClient {
            state: InviteClientState::Calling,
            request: Some(Box::new(request)),
            reliable,
            interval: cfg.t1,
            timers: Timers::default(),
            ack: None,
            abandoned: false,
            provisional_seen: false,
            pending_cancel: None,
            cancel_sent: false,
        };
        if let Some(r) = &t.request {
            out.push(Action::Send(r.as_bytes().clone()));
        }
        if !reliable {
            t.timers.set(Slot::Retransmit, now + cfg.t1);
        }
        t.timers.set(Slot::Timeout, now + cfg.t1x64());
        t
    }

    pub fn on_timer(&mut self, slot: Slot, now: Instant, out: &mut Vec<Action>) {
        use InviteClientState::*;
        match (slot, &self.state) {
            (Slot::Retransmit, Calling) if !self.abandoned => {
                // Timer A: resend, interval doubles (§17.1.1.2).
                if let Some(r) = &self.request {
                    out.push(Action::Send(r.as_bytes().clone()));
                }
                self.interval *= 2;
                self.timers.set(Slot::Retransmit, now + self.interval);
            }
            (Slot::Timeout, Calling) => {
                // Timer B.
                self.terminate();
                out.push(Action::Timeout);
            }
            (Slot::Timeout, Proceeding) if self.cancel_sent => {
                // §9.1: no final response 64·T1 after the CANCEL: consider it cancelled.
                self.terminate();
                out.push(Action::Timeout);
            }
            (Slot::Linger, Completed | Accepted) => self.terminate(),
            _ => {}
        }
    }

    pub fn on_response(
        &mut self,
        now: Instant,
        cfg: &Config,
        resp: Message,
        out: &mut Vec<Action>,
    ) {
        use InviteClientState::*;
        let Some(code) = resp.status() else { return };
        match (&self.state, code) {
            (Calling | Proceeding, 100..=199) => {
                self.state = Proceeding;
                self.provisional_seen = true;
                self.timers.clear(Slot::Retransmit);
                self.timers.clear(Slot::Timeout);
                out.push(Action::PassUp(resp));
            }
            (Calling | Proceeding, 200..=299) => {
                self.state = Accepted;
                self.request = None;
                self.timers.clear(Slot::Retransmit);
                self.timers.clear(Slot::Timeout);
                // Timer M (RFC 6026).
                self.timers
                    .set(Slot::Linger, now + cfg.lingering(cfg.t1x64()));
                out.push(Action::PassUp(resp));
            }
            (Accepted, 200..=299) => out.push(Action::PassUp(resp)),
            (Calling | Proceeding, _) => {
                self.state = Completed;
                self.timers.clear(Slot::Retransmit);
                self.timers.clear(Slot::Timeout);
                // ACK built here, with the response's To tag (§17.1.1.3).
                if let Some(Ok(ack)) = self.request.take().map(|r| r.ack_for(&resp)) {
                    out.push(Action::Send(ack.clone()));
                    // Kept for Timer D at its own size, not the builder's capacity.
                    self.ack = Some(Bytes::copy_from_slice(&ack));
                }
                let d = if self.reliable {
                    Duration::ZERO
                } else {
                    cfg.lingering(cfg.timer_d)
                };
                self.timers.set(Slot::Linger, now + d);
                out.push(Action::PassUp(resp));
            }
            // A 2xx after our ACKed non-2xx (a misbehaving or stateless hop downstream):
            // passed up so the call it answers is not lost.
            (Completed, 200..=299) => out.push(Action::PassUp(resp)),
            (Completed, 300..=699) => {
                if let Some(ack) = &self.ack {
                    out.push(Action::Send(ack.clone()));
                }
            }
            _ => {}
        }
    }

    pub fn on_transport_error(&mut self, err: TransportError, out: &mut Vec<Action>) {
        if matches!(
            self.state,
            InviteClientState::Calling | InviteClientState::Proceeding
        ) {
            self.terminate();
            out.push(Action::TransportError(err));
        }
    }

    /// Stops retransmitting (the TU gave up on this branch before any response). Timer B
    /// keeps running so a late response is still absorbed and passed up.
    pub fn abandon(&mut self) {
        self.abandoned = true;
        self.timers.clear(Slot::Retransmit);
    }

    /// A CANCEL was sent for this INVITE: arm the §9.1 guard.
    pub fn cancelled(&mut self, now: Instant, cfg: &Config) {
        self.cancel_sent = true;
        if self.state == InviteClientState::Proceeding {
            self.timers.set(Slot::Timeout, now + cfg.t1x64());
        }
    }

    fn terminate(&mut self) {
        self.state = InviteClientState::Terminated;
        self.timers.clear_all();
    }

    pub fn is_terminated(&self) -> bool {
        self.state == InviteClientState::Terminated
    }
}

/// The state of a non-INVITE client transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NonInviteClientState {
    /// Request sent.
    Trying,
    /// A provisional arrived.
    Proceeding,
    /// A final arrived; absorbing retransmissions (Timer K).
    Completed,
    /// Done.
    Terminated,
}

#[derive(Debug)]
pub(crate) struct NonInviteClient {
    pub state: NonInviteClientState,
    pub request: Bytes,
    pub reliable: bool,
    pub interval: Duration,
    pub timers: Timers,
}

impl NonInviteClient {
    pub fn start(
        now: Instant,
        cfg: &Config,
        request: Bytes,
        reliable: bool,
        out: &mut Vec<Action>,
    ) -> Self {
        let mut t = NonInviteClient {
            state: NonInviteClientState::Trying,
            request,
            reliable,
            interval: cfg.t1,
            timers: Timers::default(),
        };
        out.push(Action::Send(t.request.clone()));
        if !reliable {
            t.timers.set(Slot::Retransmit, now + cfg.t1);
        }
        t.timers.set(Slot::Timeout, now + cfg.t1x64());
        t
    }

    pub fn on_timer(&mut self, slot: Slot, now: Instant, cfg: &Config, out: &mut Vec<Action>) {
        use NonInviteClientState::*;
        match (slot, &self.state) {
            (Slot::Retransmit, Trying) => {
                // Timer E: doubles, capped at T2 (§17.1.2.2).
                out.push(Action::Send(self.request.clone()));
                self.interval = (self.interval * 2).min(cfg.t2);
                self.timers.set(Slot::Retransmit, now + self.interval);
            }
            (Slot::Retransmit, Proceeding) => {
                out.push(Action::Send(self.request.clone()));
                self.timers.set(Slot::Retransmit, now + cfg.t2);
            }
            (Slot::Timeout, Trying | Proceeding) => {
                // Timer F.
                self.terminate();
                out.push(Action::Timeout);
            }
            (Slot::Linger, Completed) => self.terminate(),
            _ => {}
        }
    }

    pub fn on_response(
        &mut self,
        now: Instant,
        cfg: &Config,
        resp: Message,
        out: &mut Vec<Action>,
    ) {
        use NonInviteClientState::*;
        let Some(code) = resp.status() else { return };
        match (&self.state, code) {
            (Trying | Proceeding, 100..=199) => {
                self.state = Proceeding;
                out.push(Action::PassUp(resp));
            }
            (Trying | Proceeding, _) => {
                self.state = Completed;
                // Only lingers now (Timer K): nothing left to resend.
                self.request = Bytes::new();
                self.timers.clear(Slot::Retransmit);
                self.timers.clear(Slot::Timeout);
                let k = if self.reliable {
                    Duration::ZERO
                } else {
                    cfg.t4
                };
                self.timers.set(Slot::Linger, now + k);
                out.push(Action::PassUp(resp));
            }
            _ => {}
        }
    }

    pub fn on_transport_error(&mut self, err: TransportError, out: &mut Vec<Action>) {
        if matches!(
            self.state,
            NonInviteClientState::Trying | NonInviteClientState::Proceeding
        ) {
            self.terminate();
            out.push(Action::TransportError(err));
        }
    }

    fn terminate(&mut self) {
        self.state = NonInviteClientState::Terminated;
        self.timers.clear_all();
    }

    pub fn is_terminated(&self) -> bool {
        self.state == NonInviteClientState::Terminated
    }
}
