//! One open socket: ntex hands every client frame to [`Session::call`]. A request for a small
//! n is answered inline (microseconds); a larger one goes to the bounded [`ComputePool`] and is
//! answered when ready, so the socket keeps reading and the worker keeps ticking meanwhile.
//! Every answer goes through [`crate::ws::deliver`] and its send-buffer bound. A text message sent
//! in fragments is joined (up to [`MAX_MESSAGE_BYTES`]) and answered as one.
use std::cell::{Cell, RefCell};
use std::convert::Infallible;
use std::rc::Rc;

use crate::ws::Sink;
use ntex::service::{Service, ServiceCtx};
use ntex::util::{ByteString, BytesMut};
use ntex::web::ws::{Frame, Message};
use ntex::ws::Item;

use super::compute;
use super::model::{FibRequest, InvalidFrame};
use super::pool::ComputePool;
use super::sockets::{Membership, Sockets};
use crate::ops::metrics;

/// n up to this is computed on the event loop: fib(10 000) to decimal takes ~30 µs in a
/// release build, cheaper than a hop to another thread and back; fib(100 000) already takes
/// about a millisecond, which would show in other clients' tick delay.
pub const INLINE_MAX_N: u64 = 10_000;

/// Large requests one socket may have waiting at once; the next gets a "busy" error. Bounds
/// what one client can queue on the shared pool.
const MAX_IN_FLIGHT_PER_SOCKET: usize = 4;

/// The longest text message a client may send in fragments (ntex already caps one frame at
/// 64 KiB). A request is a number of at most a few dozen bytes, so this is generous, and it
/// bounds what a client can make the server hold for an unfinished message.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// A message arriving in fragments (a first frame with FIN=0, then continuation frames).
#[derive(Default)]
enum Fragments {
    /// No fragmented message in progress (the usual case: every message in one frame).
    #[default]
    None,
    /// A text message, its fragments so far joined.
    Text(BytesMut),
    /// A text message that passed [`MAX_MESSAGE_BYTES`]; the rest is dropped unread.
    TooLong,
    /// A binary message; dropped, answered with an error when it ends.
    Binary,
}

pub struct Session {
    sink: Sink,
    sockets: Sockets,
    pool: ComputePool,
    max_n: u64,
    in_flight: Rc<Cell<usize>>,
    fragments: RefCell<Fragments>,
    // Dropped with the session, however the connection ended: leaves the registry, deletes
    // the row.
    _membership: Membership,
    // Counts this socket in `arena_open_websockets{kind="fibonacci"}` while it lives.
    _open: metrics::Open,
    // Its place under WS_MAX_CONNECTIONS.
    _slot: crate::ws::Slot,
}

impl Session {
    pub fn new(
        sink: Sink,
        sockets: Sockets,
        pool: ComputePool,
        max_n: u64,
        membership: Membership,
        slot: crate::ws::Slot,
    ) -> Self {
        Self {
            sink,
            sockets,
            pool,
            max_n,
            in_flight: Rc::default(),
            fragments: RefCell::default(),
            _membership: membership,
            _open: metrics::websocket_open("fibonacci"),
            _slot: slot,
        }
    }

    fn send(&self, text: String) {
        crate::ws::deliver(
            &self.sink,
            Message::Text(ByteString::from(text)),
            self.sockets.max_pending(),
        );
    }

    /// Takes one fragment of a message; once the last has come, answers the whole message like
    /// an unfragmented one (SPEC §6 answers any text message, however the client framed it).
    fn fragment(&self, item: Item) {
        let mut fragments = self.fragments.borrow_mut();
        let (data, last) = match item {
            Item::FirstText(data) => {
                *fragments = Fragments::Text(BytesMut::new());
                (data, false)
            }
            Item::FirstBinary(_) => {
                *fragments = Fragments::Binary;
                return;
            }
            Item::Continue(data) => (data, false),
            Item::Last(data) => (data, true),
        };
        if let Fragments::Text(buf) = &mut *fragments {
            if buf.len() + data.len() > MAX_MESSAGE_BYTES {
                *fragments = Fragments::TooLong;
            } else {
                buf.extend_from_slice(&data);
            }
        }
        if !last {
            return;
        }
        // ntex's codec lets no fragment come without a first one, so the state is always set.
        let message = std::mem::take(&mut *fragments);
        drop(fragments);
        match message {
            Fragments::Text(message) => self.answer(&message),
            Fragments::TooLong => self.send(error_frame(&InvalidFrame::TooLong {
                max_bytes: MAX_MESSAGE_BYTES,
            })),
            Fragments::Binary | Fragments::None => self.send(error_frame(&InvalidFrame::Binary)),
        }
    }

    fn answer(&self, frame: &[u8]) {
        let request = match FibRequest::parse(frame, self.max_n) {
            Ok(request) => request,
            Err(invalid) => return self.send(error_frame(&invalid)),
        };
        if request.n <= INLINE_MAX_N {
            return self.send(compute::reply(request.n));
        }
        if self.in_flight.get() >= MAX_IN_FLIGHT_PER_SOCKET {
            return self.send(error_frame(&InvalidFrame::Busy));
        }
        let Ok(answer) = self.pool.submit(request.n) else {
            return self.send(error_frame(&InvalidFrame::Busy));
        };
        self.in_flight.set(self.in_flight.get() + 1);
        let (sink, in_flight, max_pending) = (
            self.sink.clone(),
            self.in_flight.clone(),
            self.sockets.max_pending(),
        );
        ntex::rt::spawn(async move {
            if let Ok(reply) = answer.await {
                crate::ws::deliver(&sink, Message::Text(ByteString::from(reply)), max_pending);
            }
            in_flight.set(in_flight.get() - 1);
        })
        .detach();
    }
}

/// `{"type":"error","error":…}` for a frame the session could not answer.
pub fn error_frame(invalid: &InvalidFrame) -> String {
    serde_json::json!({"type": "error", "error": invalid.to_string()}).to_string()
}

impl Service<Frame> for Session {
    type Response = Option<Message>;
    type Error = Infallible;

    async fn call(
        &self,
        frame: Frame,
        _: ServiceCtx<'_, Self>,
    ) -> Result<Option<Message>, Infallible> {
        Ok(match frame {
            Frame::Text(text) => {
                self.answer(&text);
                None
            }
            Frame::Continuation(item) => {
                self.fragment(item);
                None
            }
            Frame::Binary(_) => {
                self.send(error_frame(&InvalidFrame::Binary));
                None
            }
            Frame::Ping(payload) => Some(Message::Pong(payload)),
            Frame::Pong(_) => None,
            // Echoing the close completes the handshake; ntex then closes the connection.
            Frame::Close(reason) => Some(Message::Close(reason)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_frame_is_typed_json_with_the_reason() {
        let v: serde_json::Value =
            serde_json::from_str(&error_frame(&InvalidFrame::Negative)).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"], "n must not be negative");
    }
}
