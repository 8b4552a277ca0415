//! What every WebSocket of ours shares (Fibonacci sockets and chat rooms): the one way a frame
//! is written, under a bound on what a client may leave unread, and the close codes.
//!
//! Admission: every upgrade first takes a [`Slot`] from the process's [`Slots`]; past
//! `WS_MAX_CONNECTIONS` open sockets the upgrade is refused with 503.
//!
//! Backpressure: every frame goes through [`deliver`], which looks at the bytes ntex still holds
//! unsent for that socket. Over `WS_MAX_PENDING_BYTES` the client is not keeping up: it is sent
//! close 1008 with a reason and closed, instead of the buffer (and memory) growing without end.
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures_util::FutureExt as _;
use ntex::web::ws::{CloseCode, CloseReason, Message, WsSink};

/// The close reason a client that cannot keep up gets (code 1008).
pub const TOO_SLOW: &str = "client too slow: send buffer full";
/// The close reason every socket gets when the replica stops (code 1001).
pub const GOING_AWAY: &str = "server shutting down";

/// Whether a frame was queued for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Queued,
    /// The socket is closing or closed; the frame was dropped.
    Closed,
    /// The client had too much unsent; it is being closed with [`TOO_SLOW`].
    TooSlow,
}

/// Queues `message` on `sink` unless the client already has more than `max_pending` bytes
/// unsent. The check comes first, so a socket holds at most `max_pending` plus one frame.
pub fn deliver(sink: &WsSink, message: Message, max_pending: usize) -> Delivery {
    let Ok(pending) = sink.io().with_write_buf(|buf| buf.len()) else {
        return Delivery::Closed;
    };
    if pending > max_pending {
        tracing::info!(pending, "closing a WebSocket client that does not keep up");
        close(sink, CloseCode::Policy, TOO_SLOW);
        return Delivery::TooSlow;
    }
    // WsSink::send encodes into the write buffer at once; its future is already complete.
    match sink.send(message).now_or_never() {
        Some(Ok(())) => Delivery::Queued,
        _ => Delivery::Closed,
    }
}

/// Sends a close frame with `code` and `reason`, then starts ntex's graceful close (it flushes
/// what it can within its disconnect timeout, then drops the connection).
pub fn close(sink: &WsSink, code: CloseCode, reason: &str) {
    let reason = CloseReason {
        code,
        description: Some(reason.to_owned()),
    };
    let _ = sink.send(Message::Close(Some(reason))).now_or_never();
    sink.io().close();
}

/// The process's WebSocket slots: at most `max` sockets open at once, whatever their kind.
#[derive(Clone, Debug)]
pub struct Slots(Arc<SlotCount>);

#[derive(Debug)]
struct SlotCount {
    open: AtomicUsize,
    max: usize,
}

impl Slots {
    pub fn new(max: usize) -> Self {
        Self(Arc::new(SlotCount {
            open: AtomicUsize::new(0),
            max,
        }))
    }

    /// A slot for one more socket, or `None` when `max` are open. The slot is given back when
    /// dropped, however the socket (or its upgrade) ended.
    pub fn take(&self) -> Option<Slot> {
        self.0
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < self.0.max).then_some(open + 1)
            })
            .ok()
            .map(|_| Slot(self.0.clone()))
    }
}

/// One open socket's place under the cap; see [`Slots::take`].
#[derive(Debug)]
pub struct Slot(Arc<SlotCount>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_refused_past_the_cap_and_given_back_on_drop() {
        let slots = Slots::new(2);
        let a = slots.take().expect("first");
        let _b = slots.take().expect("second");
        assert!(slots.take().is_none());
        drop(a);
        assert!(slots.take().is_some());
    }
}
