//! HTTP for chat (SPEC §5): groups, members and messages over REST, and the room WebSocket
//! `/ws/updates/{groupId}`. Handlers authenticate (the acting user is always the token's),
//! parse, call the store, answer — and after a committed write, hand the event to the fan-out.
//! Nothing here writes SQL. The long-polls and `/notify` are in `subscribe.rs`.
use ntex::http::StatusCode;
use ntex::service::fn_factory_with_config;
use ntex::web::{self, HttpRequest, HttpResponse};

use super::model::{
    parse_chats_query, parse_group_users_query, parse_join, parse_message_ref, parse_room_query,
    same_user, ChatError, ChatList, CreatedGroup, Event, GroupId, GroupUsers, JoinBody, Joined,
    MessageId, MessagePage, MessageRefBody, MessagesQuery, NewGroup, NewGroupBody, NewMessage,
    NewMessageBody, Said,
};
use super::room::RoomSession;
use super::{store, BIND_WAIT};
use crate::error::{read_body, ApiError, ErrorChain, ErrorResponse, JSON};
use crate::json::respond;
use crate::server::{resource, AppState};
use crate::users::UserId;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/create-chat").route(web::post().to(create_chat)))
        .service(resource("/chats/{groupId}/members").route(web::post().to(join)))
        .service(resource("/chats").route(web::get().to(chats)))
        .service(resource("/group-users").route(web::get().to(group_users)))
        .service(
            resource("/messages")
                .route(web::post().to(post_message))
                .route(web::get().to(messages))
                .route(web::delete().to(delete_message)),
        )
        .service(resource("/messages/{id}").route(web::delete().to(delete_message_by_id)))
        .service(resource("/ws/updates/{groupId}").route(web::get().to(updates)));
}

/// What a deleted message is answered with (SPEC §5), as fixed bytes.
const REMOVED: &str = r#"{"message":"Mensagem removida"}"#;

fn actor(req: &HttpRequest, state: &AppState) -> Result<UserId, ChatError> {
    Ok(state.users.authenticate(req, false)?)
}

/// Creates a group with its creator and the listed users; `maxMembers` caps it.
#[utoipa::path(post, path = "/create-chat", tag = "chat", security(("user" = [])),
    request_body = NewGroupBody,
    responses((status = 201, body = CreatedGroup),
        (status = 400, description = "body is not a JSON object", body = ErrorResponse),
        (status = 401, description = "missing, invalid or expired token", body = ErrorResponse),
        (status = 403, description = "creatorId is not the token's user", body = ErrorResponse),
        (status = 404, description = "the creator no longer exists", body = ErrorResponse),
        (status = 409, description = "more members than maxMembers", body = ErrorResponse),
        (status = 422, description = "missing or invalid field", body = ErrorResponse),
        (status = 503, description = "PostgreSQL unavailable, or replica fallen", body = ErrorResponse)))]
#[tracing::instrument(skip_all)]
async fn create_chat(
    req: HttpRequest,
    payload: web::types::Payload,
    state: web::types::State<AppState>,
) -> Result<HttpResponse, ApiError> {
    let actor = actor(&req, &state)?;
    let mut body = read_body(&req, payload).await?;
    let new = NewGroup::parse(&mut body)?;
    same_user(actor, new.creator, "creatorId")?;
    let created = store::create_group(&state.pg, &new).await?;
    Ok(respond(StatusCode::CREATED, &created))
}

/// Joins the token's user to a group; 409 when it is full or the user is in it already.
#[utoipa::path(post, path = "/chats/{groupId}/members", operation_id = "join_chat", tag = "chat", security(("user" = [])),
    params(("groupId" = i64, Path, minimum = 1, description = "group id; anything but a positive whole number is 404")),
    request_body = JoinBody,
    responses((status = 201, body = Joined),
        (status = 400, description = "body is not a JSON object", body = ErrorResponse),
        (status = 401, description = "missing, invalid or expired token", body = ErrorResponse),
        (status = 403, description = "userId is not the token's user", body = ErrorResponse),
        (status = 404, description = "no such group or user", body = ErrorResponse),
        (status = 409, description = "group full (maxMembers), or already a member", body = ErrorResponse),
        (status = 422, description = "missing or invalid userId", body = ErrorResponse),
        (status = 503, description = "PostgreSQL unavailable, or replica fallen", body = ErrorResponse)))]
#[tracing::instrument(skip_all)]
async fn join(
    req: HttpRequest,
    payload: web::types::Payload,
    state: web::types::State<AppState>,
) -> Result<HttpResponse, ApiError> {
    let actor = actor(&req, &state)?;
    let group = GroupId::parse_path(req.match_info().get("groupId").unwrap_or(""))?;
    let mut body = read_body(&req, payload).await?;
    let user = parse_join(&mut body)?;
    same_user(actor, user, "userId")?;
    let member = store::join(&state.pg, group, user).await?;
    state
        .chat
        .fanout()
        .publish(Event::member_joined(group, &member));
    Ok(respond(
        StatusCode::CREATED,
        &Joined {
            group_id: group.get(),
            user: member,
        },
    ))
}

/// The groups a user is in, each with its members.
#[utoipa::path(get, path = "/chats", operation_id = "list_chats", tag = "chat",
    params(("userId" = i64, Query, minimum = 1, description = "user id")),
    responses((status = 200, body = ChatList),
        (status = 400, description = "userId missing or malformed", body = ErrorResponse),
        (status = 404, description = "no such user", body = ErrorResponse),
        (status = 503, description = "PostgreSQL unavailable, or replica fallen", body = ErrorResponse)))]
#[tracing::instrument(skip_all)]
async fn chats(
    req: HttpRequest,
    state: web::types::State<AppState>,
) -> Result<HttpResponse, ApiError> {
    let user = parse_chats_query(req.query_string())?;
    let chats = store::chats(&state.pg, user).await?;
    Ok(respond(
        StatusCode::OK,
        &ChatList {
            user_id: user.get(),
            chats,
        },
    ))
}

/// A group's members.
#[utoipa::path(get, path = "/group-users", tag = "chat",
    params(("groupId" = i64, Query, minimum = 1, description = "group id")),
    responses((status = 200, body = GroupUsers),
        (status = 400, description = "groupId missing or malformed", body = ErrorResponse),
        (status = 404, description = "no such group", body = ErrorResponse),
        (status = 503, description = "PostgreSQL unavailable, or replica fallen", body = ErrorResponse)))]
#[tracing::instrument(skip_all)]
async fn group_users(
    req: HttpRequest,
    state: web::types::State<AppState>,
) -> Result<HttpResponse, ApiError> {
    let group = parse_group_users_query(req.query_string())?;
    let users = store::group_users(&state.pg, group).await?;
    Ok(respond(
        StatusCode::OK,
        &GroupUsers {
            group_id: group.get(),
            users,
        },
    ))
}

/// Posts a message to a group the token's user is in; every subscriber of the group, on any
/// replica, hears `message.created`.
#[utoipa::path(post, path = "/messages", operation_id = "post_message", tag = "chat", security(("user" = [])),
    request_body = NewMessageBody,
    responses((status = 201, body = super::model::Message),
        (status = 400, description = "body is not a JSON object", body = ErrorResponse),
        (status = 401, description = "missing, invalid or expired token", body = ErrorResponse),
        (status = 403, description = "userId is not the token's user, or not a member", body = ErrorResponse),
        (status = 404, description = "no such group", body = ErrorResponse),
        (status = 422, description = "missing or invalid field (content 1–2048 characters)", body = ErrorResponse),
        (status = 503, description = "PostgreSQL unavailable, or replica fallen", body = ErrorResponse)))]
#[tracing::instrument(skip_all)]
async fn post_message(
    req: HttpRequest,
    payload: web::types::Payload,
    state: web::types::State<AppState>,
) -> Result<HttpResponse, ApiError> {
    let actor = actor(&req, &state)?;
    let mut body = read_body(&req, payload).await?;
    let new = NewMessage::parse(&mut body)?;
    same_user(actor, new.sender, "userId")?;
    let (message, at) = store::post(&state.pg, &new).await?;
    // Serialised once: the 201's body and the event's payload.
    let json = serde_json::to_string(&message).expect("BUG: a message always serialises");
    state
        .chat
        .fanout()
        .publish(Event::message_created(new.group, &json, at));
    Ok(HttpResponse::Created().content_type(JSON).body(json))
}

/// A page of a group's messages, oldest first; members only.
#[utoipa::path(get, path = "/messages", operation_id = "list_messages", tag = "chat", security(("user" = [])),
    params(("groupId" = i64, Query, minimum = 1, description = "group id"),
        ("before" = Option<i64>, Query, minimum = 1, description = "the previous page's `next`: only older messages"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 200, description = "page size, default 50")),
    responses((status = 200, body = MessagePage),
        (status = 400, description = "groupId, before or limit malformed", body = ErrorResponse),
        (status = 401, description = "missing, invalid or expired token", body = ErrorResponse),
        (status = 403, description = "not a member of the group", body = ErrorResponse),
        (status = 404, description = "no such group", body = ErrorResponse),
        (status = 503, description = "PostgreSQL unavailable, or replica fallen", body = ErrorResponse)))]
#[tracing::instrument(skip_all)]
async fn messages(
    req: HttpRequest,
    state: web::types::State<AppState>,
) -> Result<HttpResponse, ApiError> {
    let actor = actor(&req, &state)?;
    let q = MessagesQuery::parse(req.query_string())?;
    let (messages, next) = store::page(&state.pg, &q, actor).await?;
    Ok(respond(
        StatusCode::OK,
        &MessagePage {
            group_id: q.group.get(),
            messages,
            next,
        },
    ))
}

async fn remove(
    state: &AppState,
    message: MessageId,
    actor: UserId,
) -> Result<HttpResponse, ApiError> {
    let (group, at) = store::delete(&state.pg, message, actor).await?;
    state
        .chat
        .fanout()
        .publish(Event::message_deleted(group, message, at));
    Ok(HttpResponse::Ok().content_type(JSON).body(REMOVED))
}

/// Deletes a message named in the body; only its sender may.
#[utoipa::path(delete, path = "/messages", operation_id = "delete_message", tag = "chat", security(("user" = [])),
    request_body = MessageRefBody,
    responses((status = 200, body = Said),
        (status = 400, description = "body is not a JSON object", body = ErrorResponse),
        (status = 401, description = "missing, invalid or expired token", body = ErrorResponse),
        (status = 403, description = "not the sender", body = ErrorResponse),
        (status = 404, description = "no such message", body = ErrorResponse),
        (status = 422, description = "messageId missing or invalid", body = ErrorResponse),
        (status = 503, description = "PostgreSQL unavailable, or replica fallen", body = ErrorResponse)))]
#[tracing::instrument(skip_all)]
async fn delete_message(
    req: HttpRequest,
    payload: web::types::Payload,
    state: web::types::State<AppState>,
) -> Result<HttpResponse, ApiError> {
    let actor = actor(&req, &state)?;
    let mut body = read_body(&req, payload).await?;
    let message = parse_message_ref(&mut body)?;
    remove(&state, message, actor).await
}

/// Deletes message `{id}`; only its sender may.
#[utoipa::path(delete, path = "/messages/{id}", operation_id = "delete_message_by_id", tag = "chat", security(("user" = [])),
    params(("id" = i64, Path, minimum = 1, description = "message id; anything but a positive whole number is 404")),
    responses((status = 200, body = Said),
        (status = 401, description = "missing, invalid or expired token", body = ErrorResponse),
        (status = 403, description = "not the sender", body = ErrorResponse),
        (status = 404, description = "no such message", body = ErrorResponse),
        (status = 503, description = "PostgreSQL unavailable, or replica fallen", body = ErrorResponse)))]
#[tracing::instrument(skip_all)]
async fn delete_message_by_id(
    req: HttpRequest,
    state: web::types::State<AppState>,
) -> Result<HttpResponse, ApiError> {
    let actor = actor(&req, &state)?;
    let message = MessageId::parse_path(req.match_info().get("id").unwrap_or(""))?;
    remove(&state, message, actor).await
}

/// Opens a group's event socket (members only; token as `?token=` or bearer header).
///
/// The server sends a JSON text frame per event of the group, from whichever replica it
/// happened on: `message.created`, `message.deleted`, `member.joined`, `notify`. Messages and
/// deletions carry `seq` and arrive in `seq` order, each once. With `?since=<seq>` the socket
/// first gets every message and deletion after that one (read from PostgreSQL, no window),
/// then the live ones with no gap and no duplicate; a client frame
/// `{"type":"resume","since":<seq>}` does the same on an open socket. Other client frames
/// than ping, close and resume are ignored.
#[utoipa::path(get, path = "/ws/updates/{groupId}", tag = "chat", security(("user" = [])),
    params(("groupId" = i64, Path, minimum = 1, description = "group id; anything but a positive whole number is 404"),
        ("since" = Option<i64>, Query, minimum = 0, description = "the `seq` of the last event seen (a message's id): replay everything after it first"),
        ("token" = Option<String>, Query, description = "the login token, for clients that cannot set headers")),
    responses((status = 101, description = "switching to the WebSocket protocol"),
        (status = 400, description = "not a WebSocket upgrade, or since malformed", body = ErrorResponse),
        (status = 401, description = "missing, invalid or expired token", body = ErrorResponse),
        (status = 403, description = "not a member of the group", body = ErrorResponse),
        (status = 404, description = "no such group", body = ErrorResponse),
        (status = 503, description = "PostgreSQL unavailable, WS_MAX_CONNECTIONS sockets open, replica stopping or fallen", body = ErrorResponse)))]
async fn updates(
    req: HttpRequest,
    state: web::types::State<AppState>,
) -> Result<HttpResponse, ApiError> {
    let group = GroupId::parse_path(req.match_info().get("groupId").unwrap_or(""))?;
    let since = parse_room_query(req.query_string())?;
    let user = state
        .users
        .authenticate(&req, true)
        .map_err(ChatError::from)?;
    if state.shutdown.is_stopping() {
        return Err(ChatError::ShuttingDown.into());
    }
    ntex::ws::verify_handshake(req.head()).map_err(|_| ChatError::Handshake)?;
    let slot = state.ws_slots.take().ok_or(ChatError::TooManySockets)?;
    let newest = store::require_member(&state.pg, group, user).await?;
    // On a replica that just started, wait (bounded) for its queue: a socket open before the
    // binding would miss the events published meanwhile.
    state.chat.fanout().bound(BIND_WAIT).await;
    let hub = state.chat.clone();
    // ntex's factory is an `Fn` but makes one session per upgrade.
    let slot = std::cell::Cell::new(Some(slot));
    crate::ws::start(
        req,
        fn_factory_with_config(async move |sink: crate::ws::Sink| {
            let slot = slot
                .take()
                .expect("BUG: ntex makes one session per upgrade");
            Ok::<_, ChatError>(RoomSession::new(
                hub.join_room(group, sink, newest, since),
                slot,
            ))
        }),
    )
    .await
    .map_err(|e: ChatError| {
        tracing::warn!(error = %ErrorChain(&e), "WebSocket upgrade failed");
        e.into()
    })
}
