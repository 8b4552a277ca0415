//! The chat domain's types (SPEC §5), parsed once at the edge, and the events fanned out to the
//! replicas. The status rule: a body that is not a JSON object is 400; a missing, null,
//! mistyped or out-of-range field is 422 naming it; a malformed query parameter is 400.
use chrono::{DateTime, Utc};
use ntex::util::ByteString;
use serde::Serialize;
use simd_json::borrowed::Object;
use utoipa::openapi::schema::{
    ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type,
};
use utoipa::openapi::RefOr;
use utoipa::ToSchema;

pub use crate::json::Invalid;
use crate::json::{self, text};
use crate::users::model::{body_id_schema, text_schema};
use crate::users::{UserId, UsersError};

/// Longest message, in characters (SPEC §5).
pub const CONTENT_MAX: usize = 2048;
/// Longest group name, in characters.
const GROUP_NAME_MAX: usize = 100;
/// Largest `maxMembers`: a cap is for rooms people talk in, not for broadcast lists.
pub const MAX_MEMBERS_CAP: i32 = 10_000;
/// Most usernames `/create-chat` takes in `members`.
pub const MEMBERS_MAX: usize = 1_000;
/// `GET /messages` page: default and largest (SPEC §5).
pub const PAGE_DEFAULT: i64 = 50;
pub const PAGE_MAX: i64 = 200;
/// Messages a woken `/subscribe/user` answers with (SPEC §5).
pub const RECENT_MESSAGES: i64 = 10;
/// Long-poll timeouts, seconds (SPEC §1, §5).
pub const POLL_DEFAULT_SECS: u64 = 25;
pub const POLL_MAX_SECS: u64 = 60;
/// Longest `/notify/{group}` and `/subscribe/status?group=` name.
const NOTIFY_GROUP_MAX: usize = 64;

/// What can go wrong in chat; `chat/mod.rs` gives each its answer.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// 400: the body is not one JSON object.
    #[error("malformed body: {0}")]
    Malformed(&'static str),
    /// 422: a body field is missing, mistyped or out of range.
    #[error("invalid {}: {}", .0.field, .0.message)]
    Invalid(Invalid),
    /// 400: a malformed query or path parameter.
    #[error("bad {}: {}", .0.field, .0.message)]
    BadQuery(Invalid),
    /// 401 (no valid token) and the other users answers.
    #[error(transparent)]
    Users(#[from] UsersError),
    /// 403: the user a body field or query parameter names (its name here) is not the token's.
    #[error("{0} is not the token's user")]
    NotYou(&'static str),
    /// 403: the acting user is not a member of the group.
    #[error("not a member of this group")]
    NotMember,
    /// 403: only a message's sender may delete it.
    #[error("only the sender may delete a message")]
    NotSender,
    /// 404: no such group.
    #[error("group not found")]
    UnknownGroup,
    /// 404: no such message.
    #[error("message not found")]
    UnknownMessage,
    /// 404: no such user.
    #[error("user not found")]
    UnknownUser,
    /// 409: the group has `maxMembers` members already.
    #[error("group is full")]
    Full,
    /// 409: the user is a member already.
    #[error("already a member")]
    AlreadyMember,
    /// 400: `/ws/updates/…` without a WebSocket handshake.
    #[error("not a WebSocket handshake")]
    Handshake,
    /// 503: this replica holds `WS_MAX_CONNECTIONS` sockets already.
    #[error("too many WebSocket connections")]
    TooManySockets,
    /// 503: the replica is stopping and takes no new sockets.
    #[error("shutting down")]
    ShuttingDown,
    /// 503: PostgreSQL could not be reached.
    #[error("chat store unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// 500: PostgreSQL answered something this code does not expect.
    #[error("chat query failed")]
    Database(#[source] tokio_postgres::Error),
}

impl From<ntex::ws::error::HandshakeError> for ChatError {
    fn from(_: ntex::ws::error::HandshakeError) -> Self {
        Self::Handshake
    }
}

const fn invalid(field: &'static str, message: &'static str) -> ChatError {
    ChatError::Invalid(Invalid { field, message })
}

const fn bad_query(field: &'static str, message: &'static str) -> ChatError {
    ChatError::BadQuery(Invalid { field, message })
}

const POSITIVE: &str = "must be a positive whole number";

/// A group id: a positive 64-bit number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupId(i64);

/// A message id: a positive 64-bit number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MessageId(i64);

macro_rules! id_type {
    ($t:ident, $missing:expr) => {
        impl $t {
            /// From a path segment: anything but a positive number names nothing (404).
            pub fn parse_path(s: &str) -> Result<Self, ChatError> {
                json::digits(s).filter(|&n| n > 0).map(Self).ok_or($missing)
            }

            /// From a query value: a malformed one is a 400 naming `field`.
            pub fn parse_query(s: &str, field: &'static str) -> Result<Self, ChatError> {
                json::digits(s)
                    .filter(|&n| n > 0)
                    .map(Self)
                    .ok_or(bad_query(field, POSITIVE))
            }

            pub const fn from_db(id: i64) -> Self {
                Self(id)
            }

            pub const fn get(self) -> i64 {
                self.0
            }
        }
    };
}
id_type!(GroupId, ChatError::UnknownGroup);
id_type!(MessageId, ChatError::UnknownMessage);

/// A required id field of a body.
fn id_field(fields: &Object<'_>, key: &'static str) -> Result<i64, ChatError> {
    match json::opt_id(fields, key) {
        Ok(Some(n)) if n > 0 => Ok(n),
        Ok(None) => Err(invalid(key, "is required")),
        _ => Err(invalid(key, POSITIVE)),
    }
}

fn user_field(fields: &Object<'_>, key: &'static str) -> Result<UserId, ChatError> {
    id_field(fields, key).map(UserId::from_db)
}

fn fields(body: &mut [u8]) -> Result<Object<'_>, ChatError> {
    json::object(body).map_err(ChatError::Malformed)
}

/// The acting user must be the one the request names in `field` (SPEC.md, users and chat: a
/// disagreeing `userId` is 403); the error names that field, body or query alike.
pub fn same_user(actor: UserId, named: UserId, field: &'static str) -> Result<(), ChatError> {
    if actor == named {
        Ok(())
    } else {
        Err(ChatError::NotYou(field))
    }
}

/// `POST /create-chat`: `{"groupName","creatorId","members":[usernames],"maxMembers"?}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewGroup {
    pub name: String,
    pub creator: UserId,
    /// Usernames besides the creator, without repeats, in the order given.
    pub members: Vec<String>,
    pub max_members: Option<i32>,
}

impl NewGroup {
    pub fn parse(body: &mut [u8]) -> Result<Self, ChatError> {
        let f = fields(body)?;
        let name = match json::opt_str(&f, "groupName") {
            Ok(Some(s)) if text(s, GROUP_NAME_MAX) => s.to_owned(),
            Ok(None) => return Err(invalid("groupName", "is required")),
            _ => return Err(invalid("groupName", "must be 1-100 characters, not blank")),
        };
        let creator = user_field(&f, "creatorId")?;
        let listed = json::opt_str_array(&f, "members")
            .map_err(|_| invalid("members", "must be an array of usernames"))?
            .unwrap_or_default();
        if listed.len() > MEMBERS_MAX {
            return Err(invalid("members", "lists more than 1000 usernames"));
        }
        let mut members: Vec<String> = Vec::with_capacity(listed.len());
        for username in listed {
            // PostgreSQL text cannot hold NUL: no user has such a name, and the lookup would
            // fail (500) instead of finding nobody.
            if username.contains('\0') {
                return Err(invalid(
                    "members",
                    "must be usernames without NUL characters",
                ));
            }
            if !members.iter().any(|m| m == username) {
                members.push(username.to_owned());
            }
        }
        let max_members = match json::opt_id(&f, "maxMembers") {
            Ok(None) => None,
            Ok(Some(n)) if (1..=i64::from(MAX_MEMBERS_CAP)).contains(&n) => Some(n as i32),
            _ => {
                return Err(invalid(
                    "maxMembers",
                    "must be a whole number from 1 to 10000",
                ))
            }
        };
        Ok(Self {
            name,
            creator,
            members,
            max_members,
        })
    }
}

/// `POST /chats/{groupId}/members`: `{"userId"}`.
pub fn parse_join(body: &mut [u8]) -> Result<UserId, ChatError> {
    user_field(&fields(body)?, "userId")
}

/// `POST /messages`: `{"userId","groupId","content"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    pub sender: UserId,
    pub group: GroupId,
    pub content: String,
}

impl NewMessage {
    pub fn parse(body: &mut [u8]) -> Result<Self, ChatError> {
        let f = fields(body)?;
        let sender = user_field(&f, "userId")?;
        let group = GroupId(id_field(&f, "groupId")?);
        let content = match json::opt_str(&f, "content") {
            // PostgreSQL text cannot hold NUL: refused here (422) rather than by the insert.
            Ok(Some(s)) if (1..=CONTENT_MAX).contains(&s.chars().count()) && !s.contains('\0') => {
                s.to_owned()
            }
            Ok(None) => return Err(invalid("content", "is required")),
            _ => return Err(invalid("content", "must be 1-2048 characters")),
        };
        Ok(Self {
            sender,
            group,
            content,
        })
    }
}

/// `DELETE /messages`: `{"messageId"}`.
pub fn parse_message_ref(body: &mut [u8]) -> Result<MessageId, ChatError> {
    id_field(&fields(body)?, "messageId").map(MessageId)
}

/// A query string's pairs, or a 400.
fn pairs(query: &str) -> Result<Vec<(String, String)>, ChatError> {
    json::query_pairs(query).ok_or(bad_query("query", "must be a URL-encoded query string"))
}

/// The value of `key` in a query string's pairs; given twice, the last one counts.
fn query_value<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// The value of a required id parameter.
fn required_query<T>(
    pairs: &[(String, String)],
    key: &'static str,
    parse: fn(&str, &'static str) -> Result<T, ChatError>,
) -> Result<T, ChatError> {
    let value = query_value(pairs, key).ok_or(bad_query(key, "is required"))?;
    parse(value, key)
}

fn user_query(s: &str, field: &'static str) -> Result<UserId, ChatError> {
    json::digits(s)
        .filter(|&n| n > 0)
        .map(UserId::from_db)
        .ok_or(bad_query(field, POSITIVE))
}

/// A resume cursor: the id of the last group event a client saw (a message's id, or a
/// deletion's `seq`); `0` replays everything kept. Events after it come first, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Since(i64);

impl Since {
    pub const fn new(id: i64) -> Self {
        Self(id)
    }

    pub const fn get(self) -> i64 {
        self.0
    }

    fn parse(s: &str) -> Option<Self> {
        json::digits(s).map(Self)
    }
}

const SINCE: &str = "must be a whole number from 0 (the id of the last event seen)";

fn optional_since(pairs: &[(String, String)]) -> Result<Option<Since>, ChatError> {
    match query_value(pairs, "since") {
        None => Ok(None),
        Some(v) => Since::parse(v).map(Some).ok_or(bad_query("since", SINCE)),
    }
}

/// `GET /ws/updates/{groupId}?since=&token=`: only `since` is ours to parse (the token is the
/// users domain's).
pub fn parse_room_query(query: &str) -> Result<Option<Since>, ChatError> {
    optional_since(&pairs(query)?)
}

/// A text frame a room client may send: `{"type":"resume","since":n}` restarts its stream from
/// event `n`, as `?since=` does on a new socket. Anything else is not a resume (`None`);
/// a resume with a bad `since` is `Some(Err(reason))`.
pub fn parse_resume(text: &str) -> Option<Result<Since, &'static str>> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    if value.get("type")?.as_str()? != "resume" {
        return None;
    }
    Some(
        value
            .get("since")
            .and_then(serde_json::Value::as_i64)
            .filter(|&n| n >= 0)
            .map(Since)
            .ok_or(SINCE),
    )
}

/// `GET /messages?groupId=&before=&limit=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessagesQuery {
    pub group: GroupId,
    pub before: Option<MessageId>,
    pub limit: i64,
}

impl MessagesQuery {
    pub fn parse(query: &str) -> Result<Self, ChatError> {
        let pairs = pairs(query)?;
        let mut q = Self {
            group: required_query(&pairs, "groupId", GroupId::parse_query)?,
            before: None,
            limit: PAGE_DEFAULT,
        };
        for (key, value) in &pairs {
            match key.as_str() {
                "before" => q.before = Some(MessageId::parse_query(value, "before")?),
                "limit" => {
                    q.limit = json::digits(value)
                        .filter(|n| (1..=PAGE_MAX).contains(n))
                        .ok_or(bad_query("limit", "must be a whole number from 1 to 200"))?
                }
                _ => {}
            }
        }
        Ok(q)
    }
}

/// `GET /chats?userId=`.
pub fn parse_chats_query(query: &str) -> Result<UserId, ChatError> {
    required_query(&pairs(query)?, "userId", user_query)
}

/// `GET /group-users?groupId=`.
pub fn parse_group_users_query(query: &str) -> Result<GroupId, ChatError> {
    required_query(&pairs(query)?, "groupId", GroupId::parse_query)
}

/// How long a long-poll waits: `timeout` in whole seconds, default 25; more than 60 waits 60
/// (SPEC: "max 60" — a client asking longer gets the longest there is, not an error).
fn timeout(pairs: &[(String, String)]) -> Result<std::time::Duration, ChatError> {
    let secs = match query_value(pairs, "timeout") {
        None => POLL_DEFAULT_SECS,
        Some(v) => json::digits(v)
            .and_then(|n| u64::try_from(n).ok())
            .filter(|n| *n >= 1)
            .ok_or(bad_query(
                "timeout",
                "must be whole seconds from 1 (at most 60 are waited)",
            ))?
            .min(POLL_MAX_SECS),
    };
    Ok(std::time::Duration::from_secs(secs))
}

/// `GET /subscribe/user?user_id=&timeout=&since=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserPoll {
    pub user: UserId,
    pub timeout: std::time::Duration,
    /// Answer at once with every event after this one (all the user's groups), if any.
    pub since: Option<Since>,
}

impl UserPoll {
    pub fn parse(query: &str) -> Result<Self, ChatError> {
        let pairs = pairs(query)?;
        Ok(Self {
            user: required_query(&pairs, "user_id", user_query)?,
            timeout: timeout(&pairs)?,
            since: optional_since(&pairs)?,
        })
    }
}

/// A notification group: `all`, a group id, or any name of 1–64 `[A-Za-z0-9_.-]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyGroup(Box<str>);

impl NotifyGroup {
    pub const ALL: &'static str = "all";

    pub fn parse(s: &str) -> Option<Self> {
        let ok = !s.is_empty()
            && s.len() <= NOTIFY_GROUP_MAX
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        ok.then(|| Self(s.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_all(&self) -> bool {
        &*self.0 == Self::ALL
    }

    /// The room a notification to `self` is for: its name when that is a group id written the
    /// one way ids are written (`7`, not `007`, which is just another name).
    pub fn room(&self) -> Option<GroupId> {
        json::digits(&self.0)
            .filter(|&id| id > 0 && id.to_string() == *self.0)
            .map(GroupId)
    }

    /// Whether a notification to `self` reaches a subscriber of `subscribed`.
    pub fn reaches(&self, subscribed: &str) -> bool {
        self.is_all() || &*self.0 == subscribed
    }
}

/// `GET /subscribe/status?group=&timeout=`; the group defaults to `all`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusPoll {
    pub group: NotifyGroup,
    pub timeout: std::time::Duration,
}

impl StatusPoll {
    pub fn parse(query: &str) -> Result<Self, ChatError> {
        let pairs = pairs(query)?;
        let group = match query_value(&pairs, "group") {
            None => NotifyGroup(NotifyGroup::ALL.into()),
            Some(g) => NotifyGroup::parse(g).ok_or(bad_query(
                "group",
                "must be 1-64 characters of A-Z a-z 0-9 _ . -",
            ))?,
        };
        Ok(Self {
            group,
            timeout: timeout(&pairs)?,
        })
    }
}

/// A user as chat shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Member {
    #[schema(example = 1)]
    pub id: i64,
    #[schema(example = "alice")]
    pub username: String,
}

/// A stored message.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Message {
    #[schema(example = 1)]
    pub id: i64,
    #[schema(example = 1)]
    pub group_id: i64,
    pub sender: Member,
    #[schema(example = "hello")]
    pub content: String,
    #[schema(value_type = String, format = DateTime, example = "2024-01-17T02:34:41.217753Z")]
    #[serde(serialize_with = "json::rfc3339_micros")]
    pub timestamp: DateTime<Utc>,
}

/// `POST /create-chat`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedGroup {
    #[schema(example = 1)]
    pub group_id: i64,
    #[schema(example = "general")]
    pub group_name: String,
    #[schema(example = 1)]
    pub creator_id: i64,
    pub members: Vec<Member>,
    /// Present when some listed usernames do not exist: `Users not found: x, y`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "Users not found: carol")]
    pub warning: Option<String>,
}

/// `POST /chats/{groupId}/members`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Joined {
    pub group_id: i64,
    pub user: Member,
}

/// One group in `GET /chats`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Chat {
    pub id: i64,
    pub name: String,
    pub members: Vec<Member>,
}

/// `GET /chats?userId=`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChatList {
    pub user_id: i64,
    pub chats: Vec<Chat>,
}

/// `GET /group-users?groupId=`.
#[derive(Debug, Serialize, ToSchema)]
pub struct GroupUsers {
    pub group_id: i64,
    pub users: Vec<Member>,
}

/// `GET /messages`: oldest first within the page; `next` is the `before` of the older page.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessagePage {
    pub group_id: i64,
    pub messages: Vec<Message>,
    pub next: Option<i64>,
}

/// A woken `/subscribe/user`.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserChange {
    pub change: bool,
    pub user_id: i64,
    pub notified_group: i64,
    /// Up to 10 newest messages of the notified group, oldest first.
    pub recent_messages: Vec<Message>,
    /// With `since`: the events after it in all the user's groups, in id order (at most
    /// 200), each exactly as a room socket gets it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub events: Option<Vec<Box<serde_json::value::RawValue>>>,
    /// With `since`: the `since` of the next call (every event up to it has been answered).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<i64>,
}

/// A woken `/subscribe/status`.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusChange<'a> {
    #[schema(example = "alive")]
    pub status: &'static str,
    pub active: bool,
    pub change: bool,
    #[schema(example = "all")]
    pub group: &'a str,
}

/// A fixed `{"message": …}` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Said {
    #[schema(example = "Mensagem removida")]
    pub message: String,
}

// ---- the request bodies as the OpenAPI document shows them ------------------------------------
// As in users: the parsers above read bodies by hand, and these structs only describe them, each
// rule built from the constant its parser checks. Ids take users' `body_id_schema`, since
// `json::opt_id` reads them the same way in every body.

impl utoipa::PartialSchema for GroupId {
    fn schema() -> RefOr<Schema> {
        body_id_schema(7).into()
    }
}
impl ToSchema for GroupId {}

impl utoipa::PartialSchema for MessageId {
    fn schema() -> RefOr<Schema> {
        body_id_schema(42).into()
    }
}
impl ToSchema for MessageId {}

fn group_name_schema() -> ObjectBuilder {
    text_schema(GROUP_NAME_MAX).examples(["team"])
}

/// What [`json::opt_str_array`] takes for `members`: an array of strings, or `null` for none.
fn members_schema() -> ArrayBuilder {
    ArrayBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(NO_NUL)),
        )
        .max_items(Some(MEMBERS_MAX))
        .description(Some(format!(
            "usernames to add besides the creator, at most {MEMBERS_MAX}; repeats are ignored, \
             unknown ones skipped and named in `warning`"
        )))
        .examples([serde_json::json!(["alice", "bob"])])
}

/// `maxMembers` as [`json::opt_id`] reads it: a whole number or a string of its digits, or
/// `null` for no cap.
fn max_members_schema() -> OneOfBuilder {
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(1))
                .maximum(Some(MAX_MEMBERS_CAP)),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(format!("^0*([1-9][0-9]{{0,3}}|{MAX_MEMBERS_CAP})$"))),
        )
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .description(Some(format!(
            "caps the group at this many members, 1–{MAX_MEMBERS_CAP}; no cap when absent"
        )))
        .examples([10])
}

fn content_schema() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(CONTENT_MAX))
        .pattern(Some(NO_NUL))
        .description(Some(format!("1–{CONTENT_MAX} characters, no NUL")))
        .examples(["hello"])
}

/// A string without NUL, which PostgreSQL text cannot hold.
const NO_NUL: &str = r"^[^\u0000]*$";

/// `POST /create-chat` body, for the OpenAPI document only: [`NewGroup::parse`] reads it.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct NewGroupBody {
    #[schema(schema_with = group_name_schema)]
    group_name: String,
    /// The token's user (else 403).
    creator_id: UserId,
    #[schema(schema_with = members_schema)]
    members: Option<Vec<String>>,
    #[schema(schema_with = max_members_schema)]
    max_members: Option<i32>,
}

/// `POST /chats/{groupId}/members` body, for the OpenAPI document only: [`parse_join`] reads
/// it.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct JoinBody {
    /// The token's user (else 403).
    user_id: UserId,
}

/// `POST /messages` body, for the OpenAPI document only: [`NewMessage::parse`] reads it.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct NewMessageBody {
    /// The token's user (else 403).
    user_id: UserId,
    group_id: GroupId,
    #[schema(schema_with = content_schema)]
    content: String,
}

/// `DELETE /messages` body, for the OpenAPI document only: [`parse_message_ref`] reads it.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct MessageRefBody {
    message_id: MessageId,
}

/// What happened, as every replica's subscribers hear it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    MessageCreated,
    MessageDeleted,
    MemberJoined,
}

impl EventKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::MessageCreated => "message.created",
            Self::MessageDeleted => "message.deleted",
            Self::MemberJoined => "member.joined",
        }
    }
}

/// Who an event is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The sockets of one group's room (and, for new messages, the user polls of its members).
    Group(GroupId, EventKind),
    /// `/notify/{group}`: status polls of that group, rooms of that group id, or everyone.
    Notify(NotifyGroup),
}

/// A number as [`Event::routing_key`] writes it (no leading zeros), so a key names one event.
fn canonical(s: &str) -> Option<i64> {
    json::digits(s).filter(|_| s == "0" || !s.starts_with('0'))
}

/// Where a message or deletion stands in its group's order: its own id (`seq`) and the id of
/// the group's event before it (`prev`, 0 for the first). Both are assigned under the group's
/// row lock (sql/V7), so a replica that holds `prev` as its last delivered event of the group
/// knows nothing was missed in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub seq: i64,
    pub prev: i64,
}

/// An event: whom it is for, and the JSON text frame its WebSocket subscribers get — which is
/// also the body of its RabbitMQ message, so no replica serialises it twice. Messages and
/// deletions carry their [`Position`]; `member.joined` and `notify` are live hints with none.
#[derive(Debug, Clone)]
pub struct Event {
    pub target: Target,
    pub frame: ByteString,
    pub position: Option<Position>,
}

impl Event {
    /// `{"type":"message.created","group_id":…,"seq":…,"message":{…}}` around an already
    /// serialised message (the 201's own body); `seq` is the message's id.
    pub fn message_created(group: GroupId, message_json: &str, at: Position) -> Self {
        let kind = EventKind::MessageCreated;
        let frame = format!(
            r#"{{"type":"{}","group_id":{},"seq":{},"message":{message_json}}}"#,
            kind.as_str(),
            group.get(),
            at.seq
        );
        Self::group(group, kind, frame, Some(at))
    }

    /// `{"type":"message.deleted","group_id":…,"id":<the message>,"seq":<the deletion>}`.
    pub fn message_deleted(group: GroupId, message: MessageId, at: Position) -> Self {
        let kind = EventKind::MessageDeleted;
        let frame = format!(
            r#"{{"type":"{}","group_id":{},"id":{},"seq":{}}}"#,
            kind.as_str(),
            group.get(),
            message.get(),
            at.seq
        );
        Self::group(group, kind, frame, Some(at))
    }

    pub fn member_joined(group: GroupId, user: &Member) -> Self {
        let kind = EventKind::MemberJoined;
        let user = serde_json::to_string(user).expect("BUG: a member always serialises");
        let frame = format!(
            r#"{{"type":"{}","group_id":{},"user":{user}}}"#,
            kind.as_str(),
            group.get()
        );
        Self::group(group, kind, frame, None)
    }

    pub fn notify(group: NotifyGroup) -> Self {
        // The name is [A-Za-z0-9_.-] only: nothing to escape.
        let frame = format!(r#"{{"type":"notify","group":"{}"}}"#, group.as_str());
        Self {
            target: Target::Notify(group),
            frame: ByteString::from(frame),
            position: None,
        }
    }

    fn group(group: GroupId, kind: EventKind, frame: String, position: Option<Position>) -> Self {
        Self {
            target: Target::Group(group, kind),
            frame: ByteString::from(frame),
            position,
        }
    }

    /// The RabbitMQ routing key: `group.<id>.<kind>[.<seq>.<prev>]` or `notify.<group>`, so a
    /// replica routes and orders an event it receives without parsing its body.
    pub fn routing_key(&self) -> String {
        match (&self.target, self.position) {
            (Target::Group(group, kind), Some(at)) => {
                format!(
                    "group.{}.{}.{}.{}",
                    group.get(),
                    kind.as_str(),
                    at.seq,
                    at.prev
                )
            }
            (Target::Group(group, kind), None) => {
                format!("group.{}.{}", group.get(), kind.as_str())
            }
            (Target::Notify(group), _) => format!("notify.{}", group.as_str()),
        }
    }

    /// An event received from the broker; `None` for a key or body this version does not know
    /// (a message or deletion without its position included).
    pub fn received(routing_key: &str, body: Vec<u8>) -> Option<Self> {
        let (target, position) = if let Some(rest) = routing_key.strip_prefix("group.") {
            let (id, rest) = rest.split_once('.')?;
            let id = canonical(id).filter(|&n| n > 0)?;
            let kind = [
                EventKind::MessageCreated,
                EventKind::MessageDeleted,
                EventKind::MemberJoined,
            ]
            .into_iter()
            .find(|k| rest.starts_with(k.as_str()))?;
            let tail = &rest[kind.as_str().len()..];
            let position = if tail.is_empty() {
                None
            } else {
                let (seq, prev) = tail.strip_prefix('.')?.split_once('.')?;
                let seq = canonical(seq).filter(|&n| n > 0)?;
                let prev = canonical(prev).filter(|&n| n < seq)?;
                Some(Position { seq, prev })
            };
            // Messages and deletions are ordered by their position: one without is not ours.
            if position.is_none() != (kind == EventKind::MemberJoined) {
                return None;
            }
            (Target::Group(GroupId(id), kind), position)
        } else {
            let group = NotifyGroup::parse(routing_key.strip_prefix("notify.")?)?;
            (Target::Notify(group), None)
        };
        let frame = ByteString::try_from(ntex::util::Bytes::from(body)).ok()?;
        Some(Self {
            target,
            frame,
            position,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    #[test]
    fn a_message_of_one_to_2048_characters_is_accepted() {
        for content in ["x", &"é".repeat(2048)] {
            let raw =
                serde_json::json!({"userId": 1, "groupId": "2", "content": content}).to_string();
            let m = NewMessage::parse(&mut body(&raw)).unwrap();
            assert_eq!(
                (m.sender.get(), m.group.get(), m.content.as_str()),
                (1, 2, content)
            );
        }
    }

    #[test]
    fn invalid_messages_name_their_field() {
        let cases = [
            (r#"{"userId":1,"groupId":2,"content":""}"#, "content"),
            (r#"{"userId":1,"groupId":2}"#, "content"),
            (r#"{"userId":1,"groupId":2,"content":7}"#, "content"),
            (
                r#"{"userId":1,"groupId":2,"content":"a\u0000b"}"#,
                "content",
            ),
            (r#"{"userId":0,"groupId":2,"content":"x"}"#, "userId"),
            (r#"{"groupId":2,"content":"x"}"#, "userId"),
            (r#"{"userId":1,"groupId":"x","content":"x"}"#, "groupId"),
            (r#"{"userId":1,"groupId":2.5,"content":"x"}"#, "groupId"),
        ];
        for (raw, field) in cases {
            match NewMessage::parse(&mut body(raw)) {
                Err(ChatError::Invalid(i)) => assert_eq!(i.field, field, "{raw}"),
                other => panic!("{raw}: {other:?}"),
            }
        }
        let long = serde_json::json!({"userId": 1, "groupId": 2, "content": "x".repeat(2049)});
        assert!(NewMessage::parse(&mut body(&long.to_string())).is_err());
    }

    #[test]
    fn a_body_that_is_not_a_json_object_is_malformed() {
        for raw in ["", "x", "[1]", "{"] {
            assert!(
                matches!(
                    NewMessage::parse(&mut body(raw)),
                    Err(ChatError::Malformed(_))
                ),
                "{raw}"
            );
        }
    }

    #[test]
    fn a_new_group_drops_repeated_members_and_bounds_its_cap() {
        let g = NewGroup::parse(&mut body(
            r#"{"groupName":"g","creatorId":3,"members":["bob","bob","carol"],"maxMembers":2}"#,
        ))
        .unwrap();
        assert_eq!(g.members, ["bob", "carol"]);
        assert_eq!(g.max_members, Some(2));
        for bad in [
            r#"{"groupName":"g","creatorId":3,"maxMembers":0}"#,
            r#"{"groupName":"g","creatorId":3,"maxMembers":10001}"#,
            r#"{"groupName":"","creatorId":3}"#,
            r#"{"groupName":"g","creatorId":3,"members":[1]}"#,
            r#"{"groupName":"g"}"#,
        ] {
            assert!(
                matches!(NewGroup::parse(&mut body(bad)), Err(ChatError::Invalid(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn timeouts_are_whole_seconds_from_one_to_sixty() {
        let secs = |q: &str| UserPoll::parse(q).map(|p| p.timeout.as_secs());
        assert_eq!(secs("user_id=1").unwrap(), 25);
        assert_eq!(secs("user_id=1&timeout=60").unwrap(), 60);
        assert_eq!(secs("user_id=1&timeout=1").unwrap(), 1);
        assert_eq!(secs("user_id=1&timeout=61").unwrap(), 60);
        assert_eq!(secs("user_id=1&timeout=99999999999").unwrap(), 60);
        for bad in [
            "user_id=1&timeout=0",
            "user_id=1&timeout=-1",
            "user_id=1&timeout=1.5",
            "timeout=5",
        ] {
            assert!(
                matches!(UserPoll::parse(bad), Err(ChatError::BadQuery(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn message_pages_default_to_fifty_and_refuse_more_than_two_hundred() {
        let q = MessagesQuery::parse("groupId=7").unwrap();
        assert_eq!((q.group.get(), q.before, q.limit), (7, None, 50));
        let q = MessagesQuery::parse("groupId=7&before=9&limit=200").unwrap();
        assert_eq!((q.before.map(MessageId::get), q.limit), (Some(9), 200));
        for bad in [
            "",
            "groupId=x",
            "groupId=7&limit=201",
            "groupId=7&limit=0",
            "groupId=7&before=-1",
        ] {
            assert!(
                matches!(MessagesQuery::parse(bad), Err(ChatError::BadQuery(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn notify_all_reaches_every_group_and_a_name_only_its_own() {
        let all = NotifyGroup::parse("all").unwrap();
        let ops = NotifyGroup::parse("ops").unwrap();
        assert!(all.reaches("ops") && all.reaches("all"));
        assert!(ops.reaches("ops") && !ops.reaches("all") && !ops.reaches("dev"));
        for bad in ["", "a b", "x/y", &"a".repeat(65)] {
            assert!(NotifyGroup::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn since_is_a_whole_number_from_zero_on_the_upgrade_and_in_a_resume_frame() {
        assert_eq!(parse_room_query("token=abc").unwrap(), None);
        assert_eq!(parse_room_query("since=0&token=x").unwrap(), Some(Since(0)));
        assert_eq!(parse_room_query("since=42").unwrap(), Some(Since(42)));
        for bad in [
            "since=-1",
            "since=",
            "since=1.5",
            "since=x",
            "since=99999999999999999999",
        ] {
            let e = parse_room_query(bad).unwrap_err();
            assert!(
                matches!(e, ChatError::BadQuery(Invalid { field: "since", .. })),
                "{bad}"
            );
        }
        assert_eq!(
            parse_resume(r#"{"type":"resume","since":7}"#),
            Some(Ok(Since(7)))
        );
        for bad in [
            r#"{"type":"resume"}"#,
            r#"{"type":"resume","since":-1}"#,
            r#"{"type":"resume","since":"7"}"#,
        ] {
            assert_eq!(parse_resume(bad), Some(Err(SINCE)), "{bad}");
        }
        for other in ["hello", "{}", r#"{"type":"ping"}"#, r#"["resume"]"#] {
            assert_eq!(parse_resume(other), None, "{other}");
        }
    }

    #[test]
    fn an_event_survives_its_trip_through_the_broker() {
        let member = Member {
            id: 5,
            username: "bob \"the\" builder".into(),
        };
        for sent in [
            Event::message_created(GroupId(9), r#"{"id":1}"#, Position { seq: 1, prev: 0 }),
            Event::message_deleted(GroupId(9), MessageId(3), Position { seq: 7, prev: 5 }),
            Event::member_joined(GroupId(9), &member),
            Event::notify(NotifyGroup::parse("all").unwrap()),
        ] {
            let frame: serde_json::Value = serde_json::from_str(&sent.frame).unwrap();
            assert!(frame["type"].is_string());
            let got = Event::received(&sent.routing_key(), sent.frame.as_bytes().to_vec()).unwrap();
            assert_eq!(
                (got.target, &*got.frame, got.position),
                (sent.target, &*sent.frame, sent.position)
            );
        }
        assert!(Event::received("group.x.message.created", b"{}".to_vec()).is_none());
        assert!(Event::received("group.1.unknown", b"{}".to_vec()).is_none());
        // A message without its position, or one that is not after its predecessor.
        assert!(Event::received("group.1.message.created", b"{}".to_vec()).is_none());
        assert!(Event::received("group.1.message.created.5.5", b"{}".to_vec()).is_none());
        assert!(Event::received("group.1.member.joined.5.4", b"{}".to_vec()).is_none());
        assert!(Event::received("people", b"{}".to_vec()).is_none());
        assert!(Event::received("notify.all", vec![0xff]).is_none());
    }
}

/// Hostile input for the chat parsers: any bytes are a request or a 400/422, bodies with the
/// right field names and values of every JSON type are a 422 naming a field of theirs, query
/// strings of every shape are a request or a 400, and broker deliveries of any key and body are
/// an event or dropped — never a panic.
#[cfg(test)]
mod proptests {
    use super::*;
    use crate::error::ApiError;
    use crate::json::proptests::{bytes, config, damaged, encode, object_of, query, string, value};
    use proptest::prelude::*;
    use serde_json::{json, Value};

    fn status(e: ChatError) -> u16 {
        ApiError::from(e).status().as_u16()
    }

    /// A parser's error: 400 (`Malformed`) or 422 naming one of `fields`; `object` says whether
    /// the body is one (`None`: either will do).
    fn check(e: ChatError, object: Option<bool>, fields: &[&str]) -> Result<(), TestCaseError> {
        match &e {
            ChatError::Malformed(_) => prop_assert!(object != Some(true), "{e:?}"),
            ChatError::Invalid(i) => {
                prop_assert!(object != Some(false), "{e:?}");
                prop_assert!(fields.contains(&i.field), "{e:?}");
            }
            other => prop_assert!(false, "a body parser answered {other:?}"),
        }
        let code = status(e);
        prop_assert!(matches!(code, 400 | 422), "{code}");
        Ok(())
    }

    /// A query parser's error: always a 400.
    fn check_query(e: ChatError) -> Result<(), TestCaseError> {
        prop_assert!(matches!(e, ChatError::BadQuery(_)), "{e:?}");
        prop_assert_eq!(status(e), 400);
        Ok(())
    }

    fn id() -> BoxedStrategy<Value> {
        prop_oneof![
            (1..=i64::MAX).prop_map(Value::from),
            (1..=i64::MAX).prop_map(|n| Value::from(n.to_string())),
            (i64::MIN..=0).prop_map(Value::from),
            "[0-9]{19,25}".prop_map(Value::from),
        ]
        .boxed()
    }

    fn group_like() -> BoxedStrategy<Value> {
        object_of(vec![
            (
                "groupName",
                prop_oneof![".{1,10}", string()]
                    .prop_map(Value::from)
                    .boxed(),
            ),
            ("creatorId", id()),
            (
                "members",
                prop::collection::vec(
                    prop_oneof![4 => string().prop_map(Value::from), 1 => value()],
                    0..6,
                )
                .prop_map(Value::Array)
                .boxed(),
            ),
            (
                "maxMembers",
                prop_oneof![(-2i64..=10_002).prop_map(Value::from), id()].boxed(),
            ),
        ])
    }

    fn message_like() -> BoxedStrategy<Value> {
        object_of(vec![
            ("userId", id()),
            ("groupId", id()),
            (
                "content",
                prop_oneof![string(), "x{2040,2056}", ".{1,20}"]
                    .prop_map(Value::from)
                    .boxed(),
            ),
        ])
    }

    fn any_body() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            bytes(),
            damaged(group_like()),
            damaged(message_like()),
            damaged(object_of(vec![("userId", id()), ("messageId", id())])),
        ]
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn any_bytes_are_a_request_or_a_400_or_422(raw in any_body()) {
            if let Err(e) = NewGroup::parse(&mut raw.clone()) {
                check(e, None, &["groupName", "creatorId", "members", "maxMembers"])?
            }
            if let Err(e) = NewMessage::parse(&mut raw.clone()) {
                check(e, None, &["userId", "groupId", "content"])?
            }
            if let Err(e) = parse_join(&mut raw.clone()) { check(e, None, &["userId"])? }
            if let Err(e) = parse_message_ref(&mut raw.clone()) { check(e, None, &["messageId"])? }
        }

        /// Any field types: a group within the rules, or a 422 naming a field.
        #[test]
        fn a_new_group_of_any_field_types_is_a_group_or_a_422(body in group_like()) {
            match NewGroup::parse(&mut serde_json::to_vec(&body).unwrap()) {
                Ok(g) => {
                    prop_assert!(text(&g.name, GROUP_NAME_MAX));
                    prop_assert!(g.creator.get() > 0);
                    prop_assert!(g.members.len() <= MEMBERS_MAX);
                    // PostgreSQL text cannot hold NUL: a lookup of such a name would be a 500.
                    prop_assert!(g.members.iter().all(|m| !m.contains('\0')));
                    prop_assert!(g.max_members.is_none_or(|m| (1..=MAX_MEMBERS_CAP).contains(&m)));
                    let mut seen = std::collections::HashSet::new();
                    prop_assert!(g.members.iter().all(|m| seen.insert(m)), "repeated members");
                }
                Err(e) => check(e, Some(true), &["groupName", "creatorId", "members", "maxMembers"])?,
            }
        }

        #[test]
        fn a_new_message_of_any_field_types_is_a_message_or_a_422(body in message_like()) {
            let raw = serde_json::to_vec(&body).unwrap();
            match NewMessage::parse(&mut raw.clone()) {
                Ok(m) => {
                    prop_assert!(m.sender.get() > 0 && m.group.get() > 0);
                    prop_assert!((1..=CONTENT_MAX).contains(&m.content.chars().count()));
                    prop_assert!(!m.content.contains('\0'));
                    prop_assert_eq!(Some(m.content.as_str()), body["content"].as_str());
                }
                Err(e) => check(e, Some(true), &["userId", "groupId", "content"])?,
            }
            if let Err(e) = parse_join(&mut raw.clone()) { check(e, Some(true), &["userId"])? }
            if let Err(e) = parse_message_ref(&mut raw.clone()) { check(e, Some(true), &["messageId"])? }
        }

        #[test]
        fn a_valid_message_round_trips(
            user in 1..=i64::MAX,
            group in 1..=i64::MAX,
            as_strings in any::<bool>(),
            content in prop::collection::vec(any::<char>().prop_map(|c| if c == '\0' { '0' } else { c }), 1..=CONTENT_MAX)
                .prop_map(|cs| cs.into_iter().collect::<String>()),
        ) {
            let body = if as_strings {
                json!({"userId": user.to_string(), "groupId": group.to_string(), "content": content})
            } else {
                json!({"userId": user, "groupId": group, "content": content})
            };
            let m = NewMessage::parse(&mut serde_json::to_vec(&body).unwrap()).unwrap();
            prop_assert_eq!((m.sender.get(), m.group.get(), m.content), (user, group, content));
        }

        #[test]
        fn a_valid_group_round_trips(
            name in "[a-zA-Z0-9][a-zA-Z0-9 _-]{0,99}",
            creator in 1..=i64::MAX,
            members in prop::collection::vec("[a-z]{1,6}", 0..8),
            max in prop::option::of(1..=MAX_MEMBERS_CAP),
        ) {
            let body = json!({"groupName": name, "creatorId": creator, "members": members, "maxMembers": max});
            let g = NewGroup::parse(&mut serde_json::to_vec(&body).unwrap()).unwrap();
            let mut unique: Vec<String> = Vec::new();
            for m in members {
                if !unique.contains(&m) {
                    unique.push(m);
                }
            }
            prop_assert_eq!(g, NewGroup { name, creator: UserId::from_db(creator), members: unique, max_members: max });
        }

        /// Every query parser: a request or a 400, whatever the string.
        #[test]
        fn any_query_is_a_request_or_a_400(q in prop_oneof![query(), string()]) {
            if let Err(e) = MessagesQuery::parse(&q) { check_query(e)? }
            if let Err(e) = UserPoll::parse(&q) { check_query(e)? }
            if let Err(e) = StatusPoll::parse(&q) { check_query(e)? }
            if let Err(e) = parse_chats_query(&q) { check_query(e)? }
            if let Err(e) = parse_group_users_query(&q) { check_query(e)? }
        }

        #[test]
        fn valid_queries_round_trip(
            id in 1..=i64::MAX,
            before in prop::option::of(1..=i64::MAX),
            limit in prop::option::of(1..=PAGE_MAX),
            timeout in prop::option::of(1..=POLL_MAX_SECS),
            group in prop::option::of("[A-Za-z0-9_.-]{1,64}"),
        ) {
            let mut q = format!("groupId={}", encode(&id.to_string()));
            if let Some(b) = before { q.push_str(&format!("&before={b}")) }
            if let Some(l) = limit { q.push_str(&format!("&limit={l}")) }
            let m = MessagesQuery::parse(&q).unwrap();
            prop_assert_eq!((m.group.get(), m.before.map(MessageId::get), m.limit), (id, before, limit.unwrap_or(PAGE_DEFAULT)));
            prop_assert_eq!(parse_group_users_query(&q).unwrap().get(), id);
            let mut poll = format!("user_id={id}");
            if let Some(t) = timeout { poll.push_str(&format!("&timeout={t}")) }
            let p = UserPoll::parse(&poll).unwrap();
            let secs = timeout.unwrap_or(POLL_DEFAULT_SECS);
            prop_assert_eq!((p.user.get(), p.timeout.as_secs()), (id, secs));
            prop_assert_eq!(parse_chats_query(&format!("userId={id}")).unwrap().get(), id);
            let mut status = format!("timeout={secs}");
            if let Some(g) = &group { status.push_str(&format!("&group={}", encode(g))) }
            let s = StatusPoll::parse(&status).unwrap();
            prop_assert_eq!(s.group.as_str(), group.as_deref().unwrap_or(NotifyGroup::ALL));
        }

        /// Huge, negative and overflowing ids: a 404 in a path, a 400 in a query.
        #[test]
        fn a_bad_id_is_a_404_in_a_path_and_a_400_in_a_query(
            s in prop_oneof![string(), "[1-9][0-9]{19,25}", "-[0-9]{1,20}", Just("0".to_owned())],
        ) {
            if json::digits(&s).is_some_and(|n| n > 0) {
                return Ok(());
            }
            prop_assert_eq!(status(GroupId::parse_path(&s).unwrap_err()), 404);
            prop_assert_eq!(status(MessageId::parse_path(&s).unwrap_err()), 404);
            let q = format!("groupId={}", encode(&s));
            check_query(MessagesQuery::parse(&q).unwrap_err())?;
            check_query(UserPoll::parse(&format!("user_id={}", encode(&s))).unwrap_err())?;
        }

        #[test]
        fn a_notify_group_is_accepted_exactly_within_its_rules(s in prop_oneof![string(), "[A-Za-z0-9_.-]{1,70}"]) {
            let ok = (1..=NOTIFY_GROUP_MAX).contains(&s.len())
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
            prop_assert_eq!(NotifyGroup::parse(&s).map(|g| g.as_str().to_owned()), ok.then(|| s.clone()));
        }

        /// A delivery with any routing key and body is an event or dropped; frames are UTF-8.
        #[test]
        fn any_broker_delivery_is_an_event_or_dropped(
            key in prop_oneof![
                string(),
                "group\\.[0-9-]{0,22}\\.(message\\.created|message\\.deleted|member\\.joined|.{0,8})(\\.[0-9]{1,4}\\.[0-9]{1,4})?",
                "notify\\..{0,70}",
            ],
            body in bytes(),
        ) {
            if let Some(event) = Event::received(&key, body.clone()) {
                prop_assert_eq!(event.frame.as_bytes(), &body[..]);
                prop_assert_eq!(event.routing_key(), key);
            }
        }

        #[test]
        fn an_event_round_trips_through_the_broker(group in 1..=i64::MAX, message in 1..=i64::MAX, prev in 0..i64::MAX, name in "[A-Za-z0-9_.-]{1,64}", username in ".{0,20}") {
            let member = Member { id: message, username };
            let at = Position { seq: prev + 1, prev };
            for sent in [
                Event::message_created(GroupId(group), r#"{"id":1}"#, at),
                Event::message_deleted(GroupId(group), MessageId(message), at),
                Event::member_joined(GroupId(group), &member),
                Event::notify(NotifyGroup::parse(&name).unwrap()),
            ] {
                let frame: Value = serde_json::from_str(&sent.frame).unwrap();
                prop_assert!(frame["type"].is_string());
                let got = Event::received(&sent.routing_key(), sent.frame.as_bytes().to_vec()).unwrap();
                prop_assert_eq!(
                    (got.target, &*got.frame, got.position),
                    (sent.target, &*sent.frame, sent.position)
                );
            }
        }
    }
}
