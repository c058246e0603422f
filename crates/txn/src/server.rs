//! Server transactions (RFC 3261 §17.2, with RFC 6026's Accepted state).
//!
//! INVITE server (Figure 7 + RFC 6026):
//! ```text
//!   INVITE ─▶ Proceeding ──TU 300-699: G (UDP), H──▶ Completed ──ACK: I──▶ Confirmed ──I──▶ Terminated
//!     │ 200 ms: 100 Trying      │ TU 2xx: L                │ G: resend final
//!     │ INVITE again: resend    ▼                          │ H: timeout (no ACK)
//!     │ last provisional     Accepted ──L──▶ Terminated    ▼
//!                              (TU 2xx retransmissions sent) Terminated
//! ```
//!
//! Non-INVITE server (Figure 8):
//! ```text
//!   Trying ──TU 1xx──▶ Proceeding ──TU 200-699: J──▶ Completed ──J──▶ Terminated
//!     request again: absorbed in Trying, last response resent after that
//! ```

use std::time::{Duration, Instant};

use bytes::Bytes;
use rollover_sip::Message;

use crate::client::Action;
use crate::config::Config;
use crate::timer::{Slot, Timers};
use crate::transport::TransportError;

/// Why the TU's response could not be sent through a server transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// A final response was already sent (only 2xx may follow a 2xx on an INVITE).
    #[error("a final response was already sent")]
    AlreadyFinal,
    /// The transaction no longer exists.
    #[error("no such transaction")]
    NoTransaction,
    /// The bytes are not a response.
    #[error("not a response")]
    NotAResponse,
}

/// The state of an INVITE server transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InviteServerState {
    /// INVITE received, no final yet.
    Proceeding,
    /// 300-699 sent; waiting for the ACK (G, H).
    Completed,
    /// ACK received (I).
    Confirmed,
    /// 2xx sent (L, RFC 6026).
    Accepted,
    /// Done.
    Terminated,
}

#[derive(Debug)]
pub(crate) struct InviteServer {
    pub state: InviteServerState,
    /// Kept only until a first response is sent (to build 100 Trying), then dropped.
    /// Boxed: a lingering transaction keeps a pointer's worth, not a message's.
    pub request: Option<Box<Message>>,
    pub reliable: bool,
    pub last_response: Option<Bytes>,
    pub interval: Duration,
    pub timers: Timers,
}

impl InviteServer {
    pub fn start(now: Instant, cfg: &Config, request: Message, reliable: bool) -> Self {
        let mut timers = Timers::default();
        timers.set(Slot::Trying, now + cfg.trying_delay);
        InviteServer {
            state: InviteServerState::Proceeding,
            request: Some(Box::new(request)),
            reliable,
            last_response: None,
            interval: cfg.t1,
            timers,
        }
    }

    pub fn on_retransmission(&mut self, out: &mut Vec<Action>) {
        if matches!(
            self.state,
            InviteServerState::Proceeding | InviteServerState::Completed
        ) {
            if let Some(r) = &self.last_response {
                out.push(Action::Send(r.clone()));
            }
        }
    }

    /// An ACK matched this transaction. Returns true when it is the ACK for our non-2xx
    /// (absorbed); false when the TU should see it (ACK in Accepted, RFC 6026).
    pub fn on_ack(&mut self, now: Instant, cfg: &Config) -> bool {
        match self.state {
            InviteServerState::Completed => {
                self.state = InviteServerState::Confirmed;
                // Confirmed only absorbs ACKs (Timer I): the final is not needed again.
                self.last_response = None;
                self.timers.clear(Slot::Retransmit);
                self.timers.clear(Slot::Timeout);
                let i = if self.reliable {
                    Duration::ZERO
                } else {
                    cfg.t4
                };
                self.timers.set(Slot::Linger, now + i);
                true
            }
            InviteServerState::Confirmed => true,
            _ => false,
        }
    }

    pub fn send(
        &mut self,
        now: Instant,
        cfg: &Config,
        code: u16,
        bytes: Bytes,
        out: &mut Vec<Action>,
    ) -> Result<(), SendError> {
        use InviteServerState::*;
        self.request = None;
        match (&self.state, code) {
            (Proceeding, 100..=199) => {
                self.timers.clear(Slot::Trying);
                self.last_response = Some(bytes.clone());
                out.push(Action::Send(bytes));
            }
            (Proceeding, 200..=299) => {
                self.state = Accepted;
                self.timers.clear(Slot::Trying);
                // Timer L (RFC 6026).
                self.timers
                    .set(Slot::Timeout, now + cfg.lingering(cfg.t1x64()));
                self.last_response = None;
                out.push(Action::Send(bytes));
            }
            (Accepted, 200..=299) => out.push(Action::Send(bytes)),
            (Proceeding, _) => {
                self.state = Completed;
                self.timers.clear(Slot::Trying);
                if !self.reliable {
                    self.timers.set(Slot::Retransmit, now + cfg.t1);
                }
                self.timers.set(Slot::Timeout, now + cfg.t1x64());
                self.last_response = Some(bytes.clone());
                out.push(Action::Send(bytes));
            }
            _ => return Err(SendError::AlreadyFinal),
        }
        Ok(())
    }

    pub fn on_timer(&mut self, slot: Slot, now: Instant, cfg: &Config, out: &mut Vec<Action>) {
        use InviteServerState::*;
        match (slot, &self.state) {
            (Slot::Trying, Proceeding) if self.last_response.is_none() => {
                // §17.2.1: the TU said nothing within 200 ms.
                if let Some(req) = self.request.take() {
                    let trying = req.response(100, "Trying").build();
                    self.last_response = Some(trying.clone());
                    out.push(Action::Send(trying));
                }
            }
            (Slot::Retransmit, Completed) => {
                // Timer G.
                if let Some(r) = &self.last_response {
                    out.push(Action::Send(r.clone()));
                }
                self.interval = (self.interval * 2).min(cfg.t2);
                self.timers.set(Slot::Retransmit, now + self.interval);
            }
            (Slot::Timeout, Completed) => {
                // Timer H: the ACK never came.
                self.terminate();
                out.push(Action::Timeout);
            }
            (Slot::Timeout, Accepted) | (Slot::Linger, Confirmed) => self.terminate(),
            _ => {}
        }
    }

    pub fn on_transport_error(&mut self, err: TransportError, out: &mut Vec<Action>) {
        if self.state != InviteServerState::Terminated {
            self.terminate();
            out.push(Action::TransportError(err));
        }
    }

    fn terminate(&mut self) {
        self.state = InviteServerState::Terminated;
        self.timers.clear_all();
    }

    pub fn is_terminated(&self) -> bool {
        self.state == InviteServerState::Terminated
    }
}

/// The state of a non-INVITE server transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NonInviteServerState {
    /// Request received.
    Trying,
    /// A provisional was sent.
    Proceeding,
    /// A final was sent (J).
    Completed,
    /// Done.
    Terminated,
}

#[derive(Debug)]
pub(crate) struct NonInviteServer {
    pub state: NonInviteServerState,
    pub reliable: bool,
    pub last_response: Option<Bytes>,
    pub timers: Timers,
}

impl NonInviteServer {
    pub fn start(reliable: bool) -> Self {
        NonInviteServer {
            state: NonInviteServerState::Trying,
            reliable,
            last_response: None,
            timers: Timers::default(),
        }
    }

    pub fn on_retransmission(&mut self, out: &mut Vec<Action>) {
        if let Some(r) = &self.last_response {
            out.push(Action::Send(r.clone()));
        }
    }

    pub fn send(
        &mut self,
        now: Instant,
        cfg: &Config,
        code: u16,
        bytes: Bytes,
        out: &mut Vec<Action>,
    ) -> Result<(), SendError> {
        use NonInviteServerState::*;
        match (&self.state, code) {
            (Trying | Proceeding, 100..=199) => self.state = Proceeding,
            (Trying | Proceeding, _) => {
                self.state = Completed;
                let j = if self.reliable {
                    Duration::ZERO
                } else {
                    cfg.lingering(cfg.t1x64())
                };
                self.timers.set(Slot::Linger, now + j);
            }
            _ => return Err(SendError::AlreadyFinal),
        }
        self.last_response = Some(bytes.clone());
        out.push(Action::Send(bytes));
        Ok(())
    }

    pub fn on_timer(&mut self, slot: Slot) {
        if slot == Slot::Linger && self.state == NonInviteServerState::Completed {
            self.terminate();
        }
    }

    pub fn on_transport_error(&mut self, err: TransportError, out: &mut Vec<Action>) {
        if self.state != NonInviteServerState::Terminated {
            self.terminate();
            out.push(Action::TransportError(err));
        }
    }

    fn terminate(&mut self) {
        self.state = NonInviteServerState::Terminated;
        self.timers.clear_all();
    }

    pub fn is_terminated(&self) -> bool {
        self.state == NonInviteServerState::Terminated
    }
}
