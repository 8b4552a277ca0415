//! One open room socket (`/ws/updates/{groupId}`): the server speaks, the client listens. Every
//! event of the group reaches it through the worker's [`Hub`](super::hub::Hub). A client may
//! send `{"type":"resume","since":n}` to replay from event `n` on the same socket; other client
//! frames than ping and close are ignored (SPEC §5).
use std::convert::Infallible;

use ntex::service::{Service, ServiceCtx};
use ntex::web::ws::{Frame, Message};

use super::hub::RoomSeat;
use super::model::parse_resume;

pub struct RoomSession {
    // Dropped with the session, however the connection ended: leaves the room and gives back
    // its place under WS_MAX_CONNECTIONS.
    seat: RoomSeat,
    _slot: crate::ws::Slot,
}

impl RoomSession {
    pub fn new(seat: RoomSeat, slot: crate::ws::Slot) -> Self {
        Self { seat, _slot: slot }
    }
}

impl Service<Frame> for RoomSession {
    type Response = Option<Message>;
    type Error = Infallible;

    async fn call(
        &self,
        frame: Frame,
        _: ServiceCtx<'_, Self>,
    ) -> Result<Option<Message>, Infallible> {
        Ok(match frame {
            Frame::Ping(payload) => Some(Message::Pong(payload)),
            // Echoing the close completes the handshake; ntex then closes the connection.
            Frame::Close(reason) => Some(Message::Close(reason)),
            Frame::Text(text) => match std::str::from_utf8(&text).ok().and_then(parse_resume) {
                Some(Ok(since)) => {
                    self.seat.resume(since);
                    None
                }
                Some(Err(reason)) => Some(Message::Text(
                    format!(r#"{{"type":"error","field":"since","error":"{reason}"}}"#).into(),
                )),
                None => None,
            },
            Frame::Binary(_) | Frame::Continuation(_) | Frame::Pong(_) => None,
        })
    }
}
