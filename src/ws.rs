//! What every WebSocket of ours shares (Fibonacci sockets and chat rooms): the one way a frame
//! is written, under a bound on what a client may leave unread, and the close codes.
//!
//! Admission: every upgrade first takes a [`Slot`] from the process's [`Slots`]; past
//! `WS_MAX_CONNECTIONS` open sockets the upgrade is refused with 503.
//!
//! Upgrade: [`start`] is ntex's `web::ws::start` with our own I/O buffer sizes. ntex gives every
//! socket 16 KiB read and write pages; our frames are a few dozen bytes (a tick, a fib request, a
//! chat event), and the clock writes to every socket in the same instant, so 16 KiB pages made
//! ~30 KiB of RSS a socket. Larger frames still pass: the buffers grow on demand.
//!
//! Backpressure: every frame goes through [`deliver`], which looks at the bytes ntex still holds
//! unsent for that socket. Over `WS_MAX_PENDING_BYTES` the client is not keeping up: it is sent
//! close 1008 with a reason and closed, instead of the buffer (and memory) growing without end.
use std::fmt;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use ntex::http::body::BodySize;
use ntex::http::h1;
use ntex::io::IoRef;
use ntex::io::{DispatchItem, Dispatcher, IoConfig, Reason};
use ntex::service::{
    chain_factory, fn_factory_with_config, IntoServiceFactory, Service, ServiceCtx, ServiceFactory,
};
use ntex::time::Seconds;
use ntex::util::BytePageSize;
use ntex::web::ws::{CloseCode, CloseReason, Frame, Message};
use ntex::web::{HttpRequest, HttpResponse};
use ntex::ws::error::{HandshakeError, WsError};
use ntex::SharedCfg;

/// Read and write buffer size of an open socket (ntex's default: 16 KiB). A buffer that must
/// hold more (a fib(1 000 000) answer is 200 KB) grows for that frame and is not kept.
const SOCKET_BUF: usize = 1024;

thread_local! {
    static SOCKET_CFG: SharedCfg = SharedCfg::new("WS")
        .add(
            IoConfig::new()
                // The sockets' own clocks (ticks, close on shutdown) keep them alive; ntex's
                // HTTP keep-alive must not close an idle socket.
                .set_keepalive_timeout(Seconds::ZERO)
                .set_read_buf(SOCKET_BUF, SOCKET_BUF / 4, 16)
                .set_write_buf(SOCKET_BUF, SOCKET_BUF / 4, 16)
                .set_write_page_size(BytePageSize::Size4),
        )
        .into();
}

/// Answers the upgrade (101) and runs the socket with `factory`'s service on this worker: ntex's
/// `web::ws::start` with [`SOCKET_CFG`]'s buffers (see the module's notes). The service gets
/// every frame and answers with an optional message; a close frame ends the socket after it.
pub async fn start<T, F, Err>(req: HttpRequest, factory: F) -> Result<HttpResponse, Err>
where
    T: ServiceFactory<Frame, Sink, Response = Option<Message>> + 'static,
    T::Error: fmt::Debug,
    F: IntoServiceFactory<T, Frame, Sink>,
    Err: From<T::InitError> + From<HandshakeError>,
{
    let response = ntex::ws::handshake(req.head())?.finish().into_parts().0;
    let (io, codec) = req
        .head()
        .take_io()
        .ok_or(HandshakeError::NoWebsocketUpgrade)?;
    io.encode(h1::Message::Item((response, BodySize::Empty)), &codec)
        .map_err(|_| HandshakeError::NoWebsocketUpgrade)?;

    let codec = ntex::ws::Codec::new();
    let sink = Sink(Rc::new((io.get_ref(), codec.clone())));
    let inner = Rc::new(chain_factory(factory).map_err(WsError::Service));
    let service = fn_factory_with_config(async move |sink: Sink| {
        let service = inner.create(sink.clone()).await?;
        Ok::<_, T::InitError>(Frames { service, sink })
    })
    .create(sink)
    .await?;
    io.set_config(SOCKET_CFG.with(Clone::clone));
    // The HTTP dispatcher may have started a header-read timer on this connection; the socket's
    // dispatcher must not inherit it.
    io.stop_timer();
    ntex::rt::spawn(async move {
        let outcome = Dispatcher::new(io, codec, service).await;
        tracing::trace!(?outcome, "WebSocket closed");
    });
    Ok(HttpResponse::new(ntex::http::StatusCode::OK))
}

/// Hands the socket's frames to the service and turns the dispatcher's stop reasons into errors
/// (what ntex's own `start` does with its private wrapper).
struct Frames<S> {
    service: S,
    sink: Sink,
}

/// Writes frames to one socket (ntex's `WsSink`, whose constructor ntex keeps to itself).
#[derive(Clone, Debug)]
pub struct Sink(Rc<(IoRef, ntex::ws::Codec)>);

impl Sink {
    pub fn io(&self) -> &IoRef {
        &self.0 .0
    }

    /// Encodes `message` into the socket's write buffer; ntex flushes it. A close frame that
    /// answers the client's own close also starts closing the connection.
    fn send(&self, message: Message) -> Result<(), ntex::ws::error::ProtocolError> {
        let (io, codec) = &*self.0;
        let answers_close = matches!(message, Message::Close(_)) && codec.is_closed();
        io.encode(message, codec)?;
        if answers_close {
            io.close();
        }
        Ok(())
    }
}

impl<S, E> Service<DispatchItem<ntex::ws::Codec>> for Frames<S>
where
    S: Service<Frame, Response = Option<Message>, Error = WsError<E>>,
    E: fmt::Debug,
{
    type Response = Option<Message>;
    type Error = WsError<E>;

    ntex::forward_ready!(service);
    ntex::forward_poll!(service);
    ntex::forward_shutdown!(service);

    async fn call(
        &self,
        item: DispatchItem<ntex::ws::Codec>,
        ctx: ServiceCtx<'_, Self>,
    ) -> Result<Self::Response, Self::Error> {
        match item {
            DispatchItem::Item(frame) => {
                let closing = matches!(frame, Frame::Close(_));
                let answer = ctx.call(&self.service, frame).await;
                if closing {
                    // After the answer (the echoed close) is queued.
                    let sink = self.sink.clone();
                    ntex::rt::spawn(async move { sink.io().close() });
                }
                answer
            }
            DispatchItem::Control(_) => Ok(None),
            DispatchItem::Stop(Reason::KeepAliveTimeout) => Err(WsError::KeepAlive),
            DispatchItem::Stop(Reason::ReadTimeout) => Err(WsError::ReadTimeout),
            DispatchItem::Stop(Reason::Decoder(e) | Reason::Encoder(e)) => {
                Err(WsError::Protocol(e))
            }
            DispatchItem::Stop(Reason::Io(e)) => Err(WsError::Disconnected(e)),
        }
    }
}

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
pub fn deliver(sink: &Sink, message: Message, max_pending: usize) -> Delivery {
    let Ok(pending) = sink.io().with_write_buf(|buf| buf.len()) else {
        return Delivery::Closed;
    };
    if pending > max_pending {
        tracing::info!(pending, "closing a WebSocket client that does not keep up");
        close(sink, CloseCode::Policy, TOO_SLOW);
        return Delivery::TooSlow;
    }
    match sink.send(message) {
        Ok(()) => Delivery::Queued,
        Err(_) => Delivery::Closed,
    }
}

/// Sends a close frame with `code` and `reason`, then starts ntex's graceful close (it flushes
/// what it can within its disconnect timeout, then drops the connection).
pub fn close(sink: &Sink, code: CloseCode, reason: &str) {
    let reason = CloseReason {
        code,
        description: Some(reason.to_owned()),
    };
    let _ = sink.send(Message::Close(Some(reason)));
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
