//! What every WebSocket of ours shares (Fibonacci sockets and chat rooms): the one way a frame
//! is written, under a bound on what a client may leave unread, and the close codes.
//!
//! Backpressure: every frame goes through [`deliver`], which looks at the bytes ntex still holds
//! unsent for that socket. Over `WS_MAX_PENDING_BYTES` the client is not keeping up: it is sent
//! close 1008 with a reason and closed, instead of the buffer (and memory) growing without end.
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
