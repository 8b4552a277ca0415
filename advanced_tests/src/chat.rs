//! What the chat black-box tests share: users registered and logged in through nginx, groups,
//! posts, and the room socket of a group on any base URL (nginx or one replica's own port).
use serde_json::{json, Value};

use crate::{request, stack, unique, Resp};

/// A registered user and its login token.
#[derive(Debug, Clone)]
pub struct User {
    pub id: i64,
    pub name: String,
    pub token: String,
}

impl User {
    /// Registers `prefix-<unique>` through nginx and logs it in.
    pub fn new(prefix: &str) -> Self {
        let name = format!("{prefix}-{}", unique());
        let credentials = json!({"username": name, "password": "pw-123456"}).to_string();
        let r = request("POST", &stack().at("/register"), &[], Some(&credentials));
        assert_eq!(r.status, 201, "{r:?}");
        let r = request("POST", &stack().at("/login"), &[], Some(&credentials));
        assert_eq!(r.status, 200, "{r:?}");
        let body = r.json();
        Self {
            id: body["user_id"].as_i64().expect("a user id"),
            name,
            token: body["token"].as_str().expect("a token").to_owned(),
        }
    }

    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }

    /// `method url` with this user's token.
    pub fn call(&self, method: &str, url: &str, body: Option<&Value>) -> Resp {
        let body = body.map(Value::to_string);
        request(
            method,
            url,
            &[("authorization", &self.bearer())],
            body.as_deref(),
        )
    }

    /// Creates a group with `members`; returns its id.
    pub fn group(&self, members: &[&User], max_members: Option<i64>) -> i64 {
        let mut body = json!({
            "groupName": format!("room-{}", unique()),
            "creatorId": self.id,
            "members": members.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(),
        });
        if let Some(max) = max_members {
            body["maxMembers"] = json!(max);
        }
        let r = self.call("POST", &stack().at("/create-chat"), Some(&body));
        assert_eq!(r.status, 201, "{r:?}");
        r.json()["group_id"].as_i64().expect("a group id")
    }

    /// Posts `content` to `group` through `base` (nginx, or a replica's own URL).
    pub fn post(&self, base: &str, group: i64, content: &str) -> Resp {
        let body = json!({"userId": self.id, "groupId": group, "content": content});
        self.call("POST", &format!("{base}/messages"), Some(&body))
    }

    /// Opens the room socket of `group` on `base`.
    pub fn room(&self, base: &str, group: i64) -> Result<crate::ws::Socket, tungstenite::Error> {
        crate::ws::open(base, &format!("/ws/updates/{group}?token={}", self.token))
    }

    /// Opens the room socket of `group` on `base`, resuming after event `since`.
    pub fn room_since(
        &self,
        base: &str,
        group: i64,
        since: i64,
    ) -> Result<crate::ws::Socket, tungstenite::Error> {
        let path = format!("/ws/updates/{group}?token={}&since={since}", self.token);
        crate::ws::open(base, &path)
    }
}

/// The next event frame of a room socket within `limit`.
pub fn next_event(socket: &mut crate::ws::Socket, limit: std::time::Duration) -> Value {
    socket.get_ref().set_read_timeout(Some(limit)).unwrap();
    loop {
        match socket.read().expect("an event before the timeout") {
            tungstenite::Message::Text(text) => {
                return serde_json::from_str(&text).expect("frames are JSON")
            }
            tungstenite::Message::Close(frame) => panic!("closed: {frame:?}"),
            _ => {}
        }
    }
}
