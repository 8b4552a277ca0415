//! `GET /ws/fibonacci/{username}` (the WebSocket) and `GET /connected-users`. The upgrade
//! handler parses the username, records the connection (`Sockets::record`), then hands the
//! socket to a [`Session`]; nothing here computes or writes SQL. Each handler carries its
//! `#[utoipa::path]`, gathered into [`Api`].
use std::cell::Cell;

use ntex::service::fn_factory_with_config;
use ntex::web::{self, HttpRequest, HttpResponse};

use super::model::{ConnectedUser, ConnectedUsers, FibError, Username};
use super::session::Session;
use super::store::{self, Row};
use crate::error::{ApiError, ErrorChain, ErrorResponse, JSON};
use crate::server::{resource, AppState};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/ws/fibonacci/{username}").route(web::get().to(open)))
        .service(resource("/connected-users").route(web::get().to(connected_users)));
}

/// Opens the Fibonacci WebSocket.
///
/// After the upgrade the server sends `{"type":"time","now":…}` every second; a text frame
/// holding n (`10` or `{"n":10}`) gets `{"type":"fib","n":10,"value":"55"}`, anything else
/// `{"type":"error","error":…}`, and the socket stays open.
#[utoipa::path(get, path = "/ws/fibonacci/{username}", tag = "fibonacci",
    params(("username" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,32}$", description = "1–32 characters of A-Z a-z 0-9 _ . -")),
    responses((status = 101, description = "switching to the WebSocket protocol"),
        (status = 400, description = "bad username, or not a WebSocket upgrade", body = ErrorResponse),
        (status = 503, description = "PostgreSQL unavailable, WS_MAX_CONNECTIONS sockets open, replica stopping or fallen", body = ErrorResponse)))]
async fn open(
    req: HttpRequest,
    username: web::types::Path<String>,
    state: web::types::State<AppState>,
) -> Result<HttpResponse, ApiError> {
    let username = Username::parse(&username)?;
    if state.shutdown.is_stopping() {
        return Err(FibError::ShuttingDown.into());
    }
    ntex::ws::verify_handshake(req.head()).map_err(|_| FibError::Handshake)?;
    let slot = state.ws_slots.take().ok_or(FibError::TooManySockets)?;
    let fib = state.fib.clone();
    let recorded = fib.sockets.record(Row::new(username)).await?;
    // ntex's factory is an `Fn` but makes one session per upgrade; if it never runs (the
    // upgrade failed), the `Recorded` is dropped with it and deletes the row.
    let recorded = Cell::new(Some((recorded, slot)));
    let max_n = state.config.fib_max_n;
    crate::ws::start(
        req,
        fn_factory_with_config(async move |sink: crate::ws::Sink| {
            let (recorded, slot) = recorded
                .take()
                .expect("BUG: ntex makes one session per upgrade");
            let membership = fib.sockets.join(sink.clone(), recorded);
            Ok::<_, FibError>(Session::new(
                sink,
                fib.sockets.clone(),
                fib.pool.clone(),
                max_n,
                membership,
                slot,
            ))
        }),
    )
    .await
    .map_err(|e: FibError| {
        tracing::warn!(error = %ErrorChain(&e), "WebSocket upgrade failed");
        e.into()
    })
}

/// Lists the open Fibonacci WebSockets of every replica seen in the last 30 s.
#[utoipa::path(get, path = "/connected-users", tag = "fibonacci",
    responses((status = 200, body = ConnectedUsers),
        (status = 503, description = "PostgreSQL unavailable, or replica fallen", body = ErrorResponse)))]
async fn connected_users(state: web::types::State<AppState>) -> Result<HttpResponse, ApiError> {
    let users = store::list_fresh(&state.pg).await.map_err(FibError::from)?;
    let body = ConnectedUsers {
        count: users.len(),
        users,
    };
    let body = serde_json::to_vec(&body).expect("BUG: connected users always serialise");
    Ok(HttpResponse::Ok().content_type(JSON).body(body))
}

/// This domain's part of the OpenAPI document (`server::openapi` merges every domain's).
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(open, connected_users),
    components(schemas(ConnectedUser)),
    tags((name = "fibonacci", description = "Fibonacci over WebSocket with a 1-second clock; connected users"))
)]
pub struct Api;
