//! The one driver that runs the sans-IO cores on real sockets and the real clock.
//!
//! ```text
//!  UDP datagrams (read here, a batch per wake-up) ┐
//!  Inbound channel (streams, hand-offs, failures) ┴─▶ rollover_txn::FrontDoor (parse,
//!            validate, stateless refusals, Via stamping, user.admit) ─▶ TxnLayer::handle_message
//!  one timer, moved when min(txn, user) deadline changes ─▶ TxnLayer::handle_timeout,
//!            user.handle_timeout
//!  after each: events ─▶ user; transmits ─▶ Transports::send
//! ```
//!
//! One task owns the transaction layer and the user, so one call's messages are handled in
//! order and never race. It reads its UDP sockets itself ([`Transports::claim_udp`]): a
//! datagram goes from the socket to the cores with no task or channel between; the
//! connection tasks only move bytes.
//!
//! With several workers, each runs this loop over its own queue: it screens what its
//! sockets received (parse, validation, flood and overload checks) and hands each message
//! it lets in to the worker its Call-ID hashes to ([`Inbound::Screened`]: what one turn let
//! in for a worker goes in one event, so that worker is woken once per turn). A call's
//! transactions and state live in one worker only: no lock on the per-message path.

use std::future::Future;
use std::time::Instant;

use rollover_sip::Limits;
use rollover_txn::{FrontDoor, Peer, TransactionUser, TxnLayer};
use tokio::sync::mpsc::Receiver;
use tracing::debug;

use crate::inner::{worker_for, Inbound};
use crate::transport::Transports;

/// Moves everything queued in the transaction layer: events to the user (which may queue
/// more), transmits to the sockets.
fn pump<U: TransactionUser>(
    now: Instant,
    user: &mut U,
    txn: &mut TxnLayer,
    transports: &Transports,
) {
    loop {
        let mut busy = false;
        while let Some(ev) = txn.poll_event() {
            busy = true;
            user.handle_txn_event(now, ev, txn);
        }
        while let Some(t) = txn.poll_transmit() {
            busy = true;
            transports.send(t.dest, t.bytes, t.txn);
        }
        if !busy {
            return;
        }
    }
}

/// Runs `user` over `transports` until `shutdown` completes.
pub async fn run<U: TransactionUser>(
    user: &mut U,
    txn: &mut TxnLayer,
    transports: &Transports,
    inbound: &mut Receiver<Inbound>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    // No commands: a channel whose sender stays alive never yields.
    let (_keep, mut none) = tokio::sync::mpsc::channel::<()>(1);
    run_with_commands(
        user,
        txn,
        transports,
        inbound,
        limits,
        &mut none,
        |_, _, (), _| {},
        shutdown,
    )
    .await;
}

/// Like [`run`], and also hands each command from `commands` to `on_command` (an
/// application's calls into a user agent), in the same task as everything else.
#[allow(clippy::too_many_arguments)]
pub async fn run_with_commands<U: TransactionUser, C>(
    user: &mut U,
    txn: &mut TxnLayer,
    transports: &Transports,
    inbound: &mut Receiver<Inbound>,
    limits: Limits,
    commands: &mut Receiver<C>,
    mut on_command: impl FnMut(&mut U, Instant, C, &mut TxnLayer),
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut door = FrontDoor::new(limits);
    // The driver reads its UDP sockets itself: no task and no channel per datagram.
    let mut udp = transports.claim_udp();
    // One timer, moved only when the next deadline changes (a new one per turn would be
    // registered and cancelled with the runtime's timer wheel for every message).
    let sleep = tokio::time::sleep(FAR);
    tokio::pin!(sleep);
    let mut armed: Option<Instant> = None;
    #[allow(clippy::disallowed_methods)] // the origin of the timer grid
    let grid = Instant::now();
    let tick = timer_tick(txn.config().t1);
    // What this turn let in for other workers, sent once the turn is over.
    let mut handoffs = HandOffs::new(transports.workers());
    loop {
        handoffs.send(transports);
        #[allow(clippy::disallowed_methods)] // the driver is where real time enters
        let now = Instant::now();
        pump(now, user, txn, transports);
        let mut deadline = next_deadline(user, txn);
        // Due timers fire here too, so a socket that never runs dry cannot starve them.
        if deadline.is_some_and(|d| d <= now) {
            txn.handle_timeout(now);
            user.handle_timeout(now, txn);
            pump(now, user, txn, transports);
            deadline = next_deadline(user, txn);
        }
        // Timers wake the driver on a grid of `tick`: the timers of calls a few
        // milliseconds apart (a call's lingering transactions, several calls' at a low
        // rate) cost one wake-up, not one each. A timer fires at most one tick late, or
        // earlier with the next message.
        let deadline = deadline.map(|d| on_grid(grid, d, tick));
        if deadline != armed {
            armed = deadline;
            let at = deadline.map_or_else(|| tokio::time::Instant::now() + FAR, Into::into);
            sleep.as_mut().reset(at);
        }
        tokio::select! {
            biased;
            _ = &mut shutdown => return,
            _ = udp.readable() => {
                udp.fill();
                while let Some((event, backlog)) = udp.take() {
                    #[allow(clippy::disallowed_methods)]
                    let now = Instant::now();
                    handle(now, user, txn, transports, &mut door, &mut handoffs, event, backlog);
                    pump(now, user, txn, transports);
                }
                // Then a share of the channel (streams, hand-offs), so a busy socket
                // cannot starve it.
                for _ in 0..FAIR_SHARE {
                    let Ok(event) = inbound.try_recv() else { break };
                    #[allow(clippy::disallowed_methods)]
                    let now = Instant::now();
                    let backlog = inbound.len();
                    handle(now, user, txn, transports, &mut door, &mut handoffs, event, backlog);
                    pump(now, user, txn, transports);
                }
            }
            msg = inbound.recv() => {
                #[allow(clippy::disallowed_methods)]
                let now = Instant::now();
                match msg {
                    None => return,
                    Some(event) => {
                        let backlog = inbound.len();
                        handle(now, user, txn, transports, &mut door, &mut handoffs, event, backlog);
                    }
                }
            }
            cmd = commands.recv() => {
                #[allow(clippy::disallowed_methods)]
                let now = Instant::now();
                match cmd {
                    Some(c) => on_command(user, now, c, txn),
                    None => return,
                }
            }
            _ = &mut sleep, if armed.is_some() => {
                #[allow(clippy::disallowed_methods)]
                let now = Instant::now();
                txn.handle_timeout(now);
                user.handle_timeout(now, txn);
            }
        }
    }
}

/// The earliest deadline of the transaction layer and the user.
fn next_deadline<U: TransactionUser>(user: &mut U, txn: &mut TxnLayer) -> Option<Instant> {
    [txn.poll_timeout(), user.poll_timeout()]
        .into_iter()
        .flatten()
        .min()
}

/// The timer grid's step: an eighth of T1, so SIP's shortest timer (T1) moves by at most
/// 12.5 %. At the default T1 (500 ms) that is 62.5 ms, the tick of Kamailio's timers (16 a
/// second). A coarser grid means fewer wake-ups for timers alone: on a 10 ms grid they were
/// about a tenth of the driver's wake-ups at 200 calls/s, on this grid about one in forty
/// (`docs/performance.md`).
fn timer_tick(t1: std::time::Duration) -> std::time::Duration {
    (t1 / 8).clamp(MIN_TICK, MAX_TICK)
}

/// The grid's bounds, whatever T1 is configured to.
const MIN_TICK: std::time::Duration = std::time::Duration::from_millis(1);
const MAX_TICK: std::time::Duration = std::time::Duration::from_millis(250);

/// `deadline` rounded up to the next point of the grid of `tick` that starts at `origin`.
fn on_grid(origin: Instant, deadline: Instant, tick: std::time::Duration) -> Instant {
    let since = deadline.saturating_duration_since(origin).as_nanos();
    let tick = tick.as_nanos().max(1);
    let ticks = since.div_ceil(tick);
    let rounded = u64::try_from(ticks.saturating_mul(tick)).unwrap_or(u64::MAX);
    origin
        .checked_add(std::time::Duration::from_nanos(rounded))
        .unwrap_or(deadline)
}

/// Channel events handled after each batch of datagrams.
const FAIR_SHARE: usize = 64;

/// A timer that is not armed sleeps this long (a year), never firing in practice.
const FAR: std::time::Duration = std::time::Duration::from_secs(365 * 24 * 3600);

/// The messages one turn of the driver let in for other workers, one list per worker.
struct HandOffs(Vec<Vec<(Peer, rollover_sip::Message)>>);

/// Most messages in one hand-off event: the other worker's queue is bounded in events, so
/// this bounds what it can hold (a turn reads up to two queues' worth of datagrams ahead).
const HAND_OFF_BATCH: usize = 64;

impl HandOffs {
    fn new(workers: usize) -> HandOffs {
        HandOffs((0..workers).map(|_| Vec::new()).collect())
    }

    fn push(
        &mut self,
        transports: &Transports,
        worker: usize,
        source: Peer,
        msg: rollover_sip::Message,
    ) {
        if let Some(list) = self.0.get_mut(worker) {
            list.push((source, msg));
            if list.len() >= HAND_OFF_BATCH {
                transports.hand_off(worker, std::mem::take(list));
            }
        }
    }

    /// Each worker's list in one event: a turn's hand-offs wake a worker once, where one
    /// event per message woke it about once per message (an `eventfd` write each).
    fn send(&mut self, transports: &Transports) {
        for (worker, list) in self.0.iter_mut().enumerate() {
            if !list.is_empty() {
                transports.hand_off(worker, std::mem::take(list));
            }
        }
    }
}

/// One inbound event: a received message is screened and given to the worker that owns
/// its call (this one, or another through a hand-off at the end of the turn).
#[allow(clippy::too_many_arguments)]
fn handle<U: TransactionUser>(
    now: Instant,
    user: &mut U,
    txn: &mut TxnLayer,
    transports: &Transports,
    door: &mut FrontDoor,
    handoffs: &mut HandOffs,
    event: Inbound,
    backlog: usize,
) {
    match event {
        Inbound::Message { source, bytes, .. } => {
            if let Some(msg) = door.screen(now, user, txn, source, bytes, backlog) {
                // One worker owns everything: no Call-ID to read.
                let n = transports.workers();
                let owner = match (n > 1).then(|| msg.call_id()) {
                    Some(Ok(id)) => worker_for(id, n),
                    _ => transports.worker(),
                };
                if owner == transports.worker() {
                    txn.handle_message(now, source, msg);
                } else {
                    door.note_handed_off(txn);
                    handoffs.push(transports, owner, source, msg);
                }
            }
        }
        Inbound::Screened { messages } => {
            for (source, message) in messages {
                txn.handle_message(now, source, message);
                pump(now, user, txn, transports);
            }
        }
        Inbound::SendFailed {
            txn: Some(r),
            error,
            dest,
        } => {
            debug!(%dest, "send failed: {error}");
            txn.handle_transport_error(r, error);
        }
        Inbound::SendFailed {
            txn: None,
            error,
            dest,
        } => debug!(%dest, "stateless send failed: {error}"),
        Inbound::BadStream { source, error } => door.note_bad_stream(now, txn, source, &error),
    }
}

#[cfg(test)]
mod grid_tests {
    use super::*;
    use std::time::Duration;

    const TICK: Duration = Duration::from_millis(10);

    #[test]
    fn the_tick_is_an_eighth_of_t1_within_bounds() {
        let ms = Duration::from_millis;
        assert_eq!(timer_tick(ms(500)), Duration::from_micros(62_500));
        assert_eq!(timer_tick(ms(100)), Duration::from_micros(12_500));
        assert_eq!(timer_tick(ms(4)), ms(1));
        assert_eq!(timer_tick(Duration::ZERO), ms(1));
        assert_eq!(timer_tick(Duration::from_secs(60)), ms(250));
    }

    #[test]
    fn a_deadline_moves_up_to_the_next_tick_and_never_earlier() {
        #[allow(clippy::disallowed_methods)]
        let origin = Instant::now();
        let ms = Duration::from_millis;
        for (after, want) in [
            (0, 0),
            (1, 10),
            (9, 10),
            (10, 10),
            (11, 20),
            (500, 500),
            (501, 510),
        ] {
            assert_eq!(
                on_grid(origin, origin + ms(after), TICK),
                origin + ms(want),
                "{after}"
            );
        }
        // Already past (a deadline before the grid began) fires at once.
        if let Some(before) = origin.checked_sub(ms(5)) {
            assert_eq!(on_grid(origin, before, TICK), origin);
        }
        for n in 0..1000u64 {
            let d = origin + Duration::from_micros(n * 7_919);
            let g = on_grid(origin, d, TICK);
            assert!(g >= d && g - d < TICK, "{n}");
        }
    }
}

#[cfg(test)]
mod hand_off_tests {
    use super::*;
    use crate::NetConfig;

    /// A turn's hand-offs reach the other worker in order, in events of at most
    /// [`HAND_OFF_BATCH`] messages, and nothing is sent for a worker with none.
    #[tokio::test]
    async fn a_turn_goes_over_in_bounded_events_in_order() {
        let cfg = NetConfig {
            listen: vec!["udp:127.0.0.1:0".parse().unwrap()],
            workers: 2,
            ..NetConfig::default()
        };
        let (t0, mut rx0, mut shares) = Transports::bind_workers(cfg).await.unwrap();
        let (_t1, mut rx1) = shares.remove(0).start().unwrap();
        let source = Peer {
            transport: rollover_txn::Transport::Udp,
            addr: "127.0.0.1:5090".parse().unwrap(),
        };
        let message = |n: usize| {
            let text = format!(
                "OPTIONS sip:a@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK{n}\r\nFrom: <sip:a@h>;tag=f\r\nTo: <sip:b@h>\r\nCall-ID: c{n}\r\nCSeq: {n} OPTIONS\r\n\r\n"
            );
            rollover_sip::Message::parse(text.into_bytes()).unwrap()
        };
        let mut handoffs = HandOffs::new(2);
        let total = 2 * HAND_OFF_BATCH + 22;
        for n in 0..total {
            handoffs.push(&t0, 1, source, message(n));
        }
        handoffs.send(&t0);
        handoffs.send(&t0);
        let mut sizes = Vec::new();
        let mut seqs = Vec::new();
        while let Ok(Inbound::Screened { messages }) = rx1.try_recv() {
            sizes.push(messages.len());
            seqs.extend(messages.iter().map(|(_, m)| m.cseq().unwrap().seq));
        }
        assert_eq!(sizes, [HAND_OFF_BATCH, HAND_OFF_BATCH, 22]);
        assert_eq!(seqs, (0..total as u32).collect::<Vec<_>>());
        assert!(rx0.try_recv().is_err(), "nothing for a worker with none");
        t0.shutdown();
    }
}
