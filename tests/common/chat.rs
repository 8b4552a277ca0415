//! Users, groups, posts and room sockets for the chat tests (tests/chat.rs,
//! tests/chat_delivery.rs), against in-process `TestServer`s.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use arena::server::TestServer;
use serde_json::{json, Value};
use tungstenite::{Message, WebSocket};

use super::{call, unique, user_with_token};

pub type Socket = WebSocket<TcpStream>;

/// A user with a token, on `app`.
pub struct Person {
    pub id: i64,
    pub name: String,
    pub token: String,
}

pub fn person(app: &TestServer, prefix: &str) -> Person {
    let name = unique(prefix);
    let (id, token) = user_with_token(&app.url(""), &name);
    Person { id, name, token }
}

/// Creates a group of `creator` with `members` (usernames); returns its id.
pub fn group(app: &TestServer, creator: &Person, members: &[&Person], max: Option<i32>) -> i64 {
    let mut body = json!({
        "groupName": unique("room"),
        "creatorId": creator.id,
        "members": members.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
    });
    if let Some(max) = max {
        body["maxMembers"] = json!(max);
    }
    let (status, created) = call(
        "POST",
        &app.url("/create-chat"),
        Some(&creator.token),
        Some(&body),
    );
    assert_eq!(status, 201, "{created}");
    created["group_id"].as_i64().unwrap()
}

pub fn post(app: &TestServer, who: &Person, group: i64, content: &str) -> (u16, Value) {
    post_at(&app.url(""), who, group, content)
}

/// [`post`] to the server at `base` (a URL can cross threads; a `TestServer` cannot).
pub fn post_at(base: &str, who: &Person, group: i64, content: &str) -> (u16, Value) {
    let body = json!({"userId": who.id, "groupId": group, "content": content});
    call(
        "POST",
        &format!("{base}/messages"),
        Some(&who.token),
        Some(&body),
    )
}

/// Posts and returns the new message's id (panics on anything but 201).
pub fn said(app: &TestServer, who: &Person, group: i64, content: &str) -> i64 {
    said_at(&app.url(""), who, group, content)
}

/// [`said`] to the server at `base`.
pub fn said_at(base: &str, who: &Person, group: i64, content: &str) -> i64 {
    let (status, message) = post_at(base, who, group, content);
    assert_eq!(status, 201, "{message}");
    message["id"].as_i64().unwrap()
}

/// Opens `/ws/updates/{group}` with the token in the query, or the handshake's error.
pub fn room(addr: SocketAddr, group: i64, token: &str) -> Result<Socket, tungstenite::Error> {
    room_with(addr, group, token, "")
}

/// As [`room`], with more query parameters (`"&since=5"`).
pub fn room_with(
    addr: SocketAddr,
    group: i64,
    token: &str,
    query: &str,
) -> Result<Socket, tungstenite::Error> {
    let stream = TcpStream::connect(addr).expect("the test server listens");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let url = format!("ws://{addr}/ws/updates/{group}?token={token}{query}");
    match tungstenite::client(url, stream) {
        Ok((socket, _)) => Ok(socket),
        Err(tungstenite::HandshakeError::Failure(e)) => Err(e),
        Err(tungstenite::HandshakeError::Interrupted(_)) => panic!("blocking handshake"),
    }
}

/// The next event frame on `socket` within `limit`.
pub fn next_event(socket: &mut Socket, limit: Duration) -> Value {
    try_next_event(socket, limit).expect("an event before the timeout")
}

/// The next event frame on `socket` within `limit`, or `None` if none came.
pub fn try_next_event(socket: &mut Socket, limit: Duration) -> Option<Value> {
    socket.get_ref().set_read_timeout(Some(limit)).unwrap();
    loop {
        match socket.read() {
            Ok(Message::Text(text)) => {
                return Some(serde_json::from_str(&text).expect("frames are JSON"))
            }
            Ok(Message::Close(frame)) => panic!("closed: {frame:?}"),
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return None
            }
            Err(e) => panic!("socket failed: {e}"),
        }
    }
}

pub fn http_status(e: tungstenite::Error) -> u16 {
    match e {
        tungstenite::Error::Http(response) => response.status().as_u16(),
        other => panic!("expected an HTTP refusal, got {other}"),
    }
}
