//! A small blocking WebSocket client for the Fibonacci and chat tests (tungstenite over plain TCP),
//! with a read timeout so a silent server fails the test instead of hanging it.
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;
pub use tungstenite::protocol::frame::coding::CloseCode;
pub use tungstenite::Message;

pub type Socket = tungstenite::WebSocket<TcpStream>;

/// Opens `ws://host:port/ws/fibonacci/{username}` on `base` (an `http://host:port` URL).
pub fn connect(base: &str, username: &str) -> Result<Socket, tungstenite::Error> {
    open(base, &format!("/ws/fibonacci/{username}"))
}

/// Opens the WebSocket at `path` (query included) on `base` (an `http://host:port` URL).
pub fn open(base: &str, path: &str) -> Result<Socket, tungstenite::Error> {
    let authority = base
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let stream = TcpStream::connect(&authority).map_err(tungstenite::Error::Io)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let url = format!("ws://{authority}{path}");
    match tungstenite::client(url, stream) {
        Ok((socket, _)) => Ok(socket),
        Err(tungstenite::HandshakeError::Failure(e)) => Err(e),
        Err(tungstenite::HandshakeError::Interrupted(_)) => {
            unreachable!("a blocking stream never interrupts the handshake")
        }
    }
}

/// The next text frame whose `type` is `kind`, skipping the others (clock ticks).
pub fn next_of(socket: &mut Socket, kind: &str) -> Value {
    loop {
        match socket.read().expect("a frame before the read timeout") {
            Message::Text(text) => {
                let v: Value = serde_json::from_str(&text).expect("frames are JSON");
                if v["type"] == kind {
                    return v;
                }
            }
            Message::Close(frame) => panic!("closed while waiting for {kind}: {frame:?}"),
            _ => {}
        }
    }
}

/// Sends `frame` and returns the next frame of type `kind`.
pub fn ask(socket: &mut Socket, frame: &str, kind: &str) -> Value {
    socket.send(Message::text(frame)).expect("send a frame");
    next_of(socket, kind)
}

/// How many of `username`'s sockets replica `i` (0-based, its own port) lists in
/// `/connected-users`.
pub fn listed_on(i: usize, username: &str) -> usize {
    let r = crate::get(&crate::stack().replica(i, "/connected-users"));
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["users"]
        .as_array()
        .expect("a users array")
        .iter()
        .filter(|u| u["username"] == username)
        .count()
}
