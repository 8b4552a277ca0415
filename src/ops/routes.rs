//! `/`, `/ping`, `/health`. Their bodies depend only on the instance name, so they are
//! serialised once per worker and served as shared bytes.
use ntex::http::StatusCode;
use ntex::util::Bytes;
use ntex::web::{self, HttpResponse};

use crate::error::JSON;
use crate::server::{resource, AppState};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/").route(web::get().to(index)))
        .service(resource("/ping").route(web::get().to(ping)))
        .service(
            resource("/health")
                .route(web::get().to(health))
                .route(web::head().to(health)),
        );
}

/// Pre-rendered bodies for this replica.
#[derive(Debug)]
pub struct OpsBodies {
    index: Bytes,
    ping: Bytes,
    alive: Bytes,
    down: Bytes,
}

impl OpsBodies {
    pub fn new(instance: &str) -> Self {
        let render = |v: serde_json::Value| Bytes::from(v.to_string());
        Self {
            index: render(serde_json::json!({
                "name": "arena", "version": env!("CARGO_PKG_VERSION"), "instance": instance,
            })),
            ping: render(serde_json::json!({
                "message": format!("pong from {instance}"), "host": instance, "instance": instance,
            })),
            alive: render(
                serde_json::json!({"status": "alive", "active": true, "instance": instance}),
            ),
            down: render(
                serde_json::json!({"status": "down", "active": false, "instance": instance}),
            ),
        }
    }
}

async fn index(state: web::types::State<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(JSON)
        .body(state.ops.index.clone())
}

async fn ping(state: web::types::State<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(JSON)
        .body(state.ops.ping.clone())
}

async fn health(state: web::types::State<AppState>) -> HttpResponse {
    if state.liveness.is_alive() {
        HttpResponse::Ok()
            .content_type(JSON)
            .body(state.ops.alive.clone())
    } else {
        HttpResponse::build(StatusCode::SERVICE_UNAVAILABLE)
            .content_type(JSON)
            .body(state.ops.down.clone())
    }
}
