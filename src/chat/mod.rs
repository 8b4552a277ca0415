//! Chat (SPEC §5) and the real-time half of operations (SPEC §1's `/subscribe/status` and
//! `/notify/{group}`): groups, members and messages in PostgreSQL, delivered live to WebSocket
//! rooms and long-polls on every replica.
//!
//! Flow: a write is authenticated by its token (`users`), parsed into [`model`] types, committed
//! by [`store`] in one transaction, answered — and its [`model::Event`] handed to the process's
//! [`Fanout`] (RabbitMQ topic exchange, one queue per replica). What the fan-out receives, every
//! worker's [`Hub`] delivers to its own room sockets ([`room`]) and polls ([`subscribe`]).
//! `GET /chat` ([`page`]) is a browser client of these same routes.
mod fanout;
mod hub;
pub mod model;
mod page;
mod room;
mod routes;
pub mod store;
mod subscribe;

use std::time::Duration;

use ntex::http::StatusCode;
use ntex::web;

pub use fanout::Fanout;
pub use hub::Hub;
pub use model::ChatError;

use crate::error::ApiError;

/// How long a new subscriber waits for a just-started replica's fan-out queue to be bound
/// (a bound replica does not wait at all; a broker that is down costs a subscriber this once).
const BIND_WAIT: Duration = Duration::from_millis(500);

pub fn configure(cfg: &mut web::ServiceConfig) {
    routes::configure(cfg);
    subscribe::configure(cfg);
    page::configure(cfg);
}

/// This domain's part of the OpenAPI document (`server::openapi` merges every domain's).
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        routes::create_chat, routes::join, routes::chats, routes::group_users,
        routes::post_message, routes::messages, routes::delete_message,
        routes::delete_message_by_id, routes::updates,
        subscribe::user, subscribe::status, subscribe::notify,
        page::page, page::asset
    ),
    components(schemas(
        model::Member, model::Message, model::Chat,
        model::NewGroupBody, model::JoinBody, model::NewMessageBody, model::MessageRefBody
    )),
    tags((name = "chat", description = "Groups, members and messages; WebSocket rooms and long-polls on every replica"))
)]
pub struct Api;

impl From<ChatError> for ApiError {
    fn from(e: ChatError) -> Self {
        use ChatError as E;
        let forbidden = |body| Self::from_static(StatusCode::FORBIDDEN, body);
        match e {
            E::Malformed(reason) => Self::bad_request(reason),
            E::Invalid(i) => {
                Self::named_field(StatusCode::UNPROCESSABLE_ENTITY, i.field, i.message)
            }
            E::BadQuery(i) => Self::named_field(StatusCode::BAD_REQUEST, i.field, i.message),
            E::Users(e) => e.into(),
            E::NotYou(field) => {
                Self::named_field(StatusCode::FORBIDDEN, field, "is not the token's user")
            }
            E::NotMember => forbidden(r#"{"error":"not a member of this group"}"#),
            E::NotSender => forbidden(r#"{"error":"only the sender may delete a message"}"#),
            E::UnknownGroup => {
                Self::from_static(StatusCode::NOT_FOUND, r#"{"error":"group not found"}"#)
            }
            E::UnknownMessage => {
                Self::from_static(StatusCode::NOT_FOUND, r#"{"error":"message not found"}"#)
            }
            E::UnknownUser => {
                Self::from_static(StatusCode::NOT_FOUND, r#"{"error":"user not found"}"#)
            }
            E::Full => Self::from_static(StatusCode::CONFLICT, r#"{"error":"group is full"}"#),
            E::AlreadyMember => Self::from_static(
                StatusCode::CONFLICT,
                r#"{"error":"already a member of this group"}"#,
            ),
            E::Handshake => Self::from_static(
                StatusCode::BAD_REQUEST,
                r#"{"error":"expected a WebSocket upgrade request"}"#,
            ),
            E::TooManySockets => Self::too_many_sockets(),
            E::ShuttingDown => Self::from_static(
                StatusCode::SERVICE_UNAVAILABLE,
                r#"{"error":"server shutting down"}"#,
            ),
            E::Unavailable(ref cause) => Self::unavailable("chat store", cause.as_ref()),
            E::Database(ref cause) => Self::internal("chat query", cause),
        }
    }
}
