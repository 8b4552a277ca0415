//! `/`, `/ping`, `/health`, `/fall`, `/revive`, `/metrics`. The first three bodies depend only
//! on the instance name, so they are serialised once per worker and served as shared bytes.
//! Each handler carries its `#[utoipa::path]`, gathered by [`super::openapi`].
use ntex::http::{header, StatusCode};
use ntex::util::Bytes;
use ntex::web::{self, HttpRequest, HttpResponse};

use super::metrics;
use super::model::{self, Health, Info, Pong, Switched};
use crate::error::{ApiError, ErrorResponse, JSON};
use crate::server::{ops_resource, resource, AppState};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/").route(web::get().to(index)))
        .service(resource("/ping").route(web::get().to(ping)))
        .service(
            ops_resource("/health")
                .route(web::get().to(health))
                .route(web::head().to(health_head)),
        )
        .service(ops_resource("/fall").route(web::post().to(fall)))
        .service(ops_resource("/revive").route(web::post().to(revive)))
        .service(ops_resource("/metrics").route(web::get().to(metrics_text)));
}

/// Pre-rendered bodies for this replica.
#[derive(Debug)]
pub struct OpsBodies {
    index: Bytes,
    ping: Bytes,
    alive: Bytes,
    down: Bytes,
    fell: Bytes,
    revived: Bytes,
}

impl OpsBodies {
    pub fn new(instance: &str) -> Self {
        fn render(v: &impl serde::Serialize) -> Bytes {
            Bytes::from(serde_json::to_vec(v).expect("BUG: a plain struct always serialises"))
        }
        let pong = format!("pong from {instance}");
        Self {
            index: render(&Info {
                name: "arena",
                version: env!("CARGO_PKG_VERSION"),
                instance,
            }),
            ping: render(&Pong {
                message: &pong,
                host: instance,
                instance,
            }),
            alive: render(&Health {
                status: "alive",
                active: true,
                instance,
            }),
            down: render(&Health {
                status: "down",
                active: false,
                instance,
            }),
            fell: render(&model::FELL),
            revived: render(&model::REVIVED),
        }
    }
}

fn json(status: StatusCode, body: &Bytes) -> HttpResponse {
    HttpResponse::build(status)
        .content_type(JSON)
        .body(body.clone())
}

/// Names the service, its version and this replica.
#[utoipa::path(get, path = "/", tag = "operations",
    responses((status = 200, body = Info), (status = 503, description = "replica fallen", body = ErrorResponse)))]
async fn index(state: web::types::State<AppState>) -> HttpResponse {
    json(StatusCode::OK, &state.ops.index)
}

/// Answers with the replica's name: shows which replica nginx picked.
#[utoipa::path(get, path = "/ping", tag = "operations",
    responses((status = 200, body = Pong), (status = 503, description = "replica fallen", body = ErrorResponse)))]
async fn ping(state: web::types::State<AppState>) -> HttpResponse {
    json(StatusCode::OK, &state.ops.ping)
}

/// 200 while this replica is alive, 503 after `/fall` (nginx and compose health checks).
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, body = Health), (status = 503, description = "fallen", body = Health)))]
async fn health(state: web::types::State<AppState>) -> HttpResponse {
    if state.liveness.is_alive() {
        json(StatusCode::OK, &state.ops.alive)
    } else {
        json(StatusCode::SERVICE_UNAVAILABLE, &state.ops.down)
    }
}

// Its own handler only so the document gives HEAD its own operationId: one path attribute
// over two methods repeats the id, which OpenAPI forbids.
/// `/health` without a body, for probes: 200 alive, 503 fallen.
#[utoipa::path(head, path = "/health", operation_id = "health_head", tag = "operations",
    responses((status = 200, description = "alive"), (status = 503, description = "fallen")))]
async fn health_head(state: web::types::State<AppState>) -> HttpResponse {
    health(state).await
}

/// Fault injection: this replica answers 503 on every route but `/health`, `/fall`,
/// `/revive` and `/metrics` until `/revive`; nginx sends its share to the others.
#[utoipa::path(post, path = "/fall", tag = "operations", security(("admin" = [])),
    responses((status = 200, body = Switched),
        (status = 401, description = "missing or wrong bearer", body = ErrorResponse),
        (status = 403, description = "no ADMIN_TOKEN configured", body = ErrorResponse)))]
async fn fall(
    req: HttpRequest,
    state: web::types::State<AppState>,
) -> Result<HttpResponse, ApiError> {
    switch(&req, &state, false)
}

/// Brings a fallen replica back.
#[utoipa::path(post, path = "/revive", tag = "operations", security(("admin" = [])),
    responses((status = 200, body = Switched),
        (status = 401, description = "missing or wrong bearer", body = ErrorResponse),
        (status = 403, description = "no ADMIN_TOKEN configured", body = ErrorResponse)))]
async fn revive(
    req: HttpRequest,
    state: web::types::State<AppState>,
) -> Result<HttpResponse, ApiError> {
    switch(&req, &state, true)
}

fn switch(req: &HttpRequest, state: &AppState, alive: bool) -> Result<HttpResponse, ApiError> {
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    model::authorize(state.config.admin_token.as_deref(), bearer)?;
    if state.liveness.set(alive) {
        tracing::warn!(instance = %state.config.instance_name, alive, "liveness switched by an admin");
    }
    let body = if alive {
        &state.ops.revived
    } else {
        &state.ops.fell
    };
    Ok(json(StatusCode::OK, body))
}

/// Prometheus/OpenMetrics text: requests by route template and status, latency histograms,
/// pools, broker publishes, inserter batches, open WebSockets and long-polls.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text", body = String)))]
async fn metrics_text(state: web::types::State<AppState>) -> HttpResponse {
    crate::people::observe_backlog(&state).await;
    HttpResponse::Ok()
        .content_type(metrics::CONTENT_TYPE)
        .body(metrics::render())
}

/// This domain's part of the OpenAPI document (`server::openapi` merges every domain's).
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(index, ping, health, health_head, fall, revive, metrics_text),
    modifiers(&AdminBearer),
    tags((name = "operations", description = "Every replica: identity, health, fault injection, metrics, this document"))
)]
pub struct Api;

/// Declares the `admin` bearer scheme `/fall` and `/revive` use.
struct AdminBearer;

impl utoipa::Modify for AdminBearer {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "admin",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
    }
}
