//! `GET /api/openapi.json` (the OpenAPI 3 document `server::openapi` merges from every
//! domain's `Api`) and `GET /api/openapi` (Swagger UI). Swagger UI's files come from the
//! utoipa-swagger-ui crate (`vendored`: shipped inside the crate, so it works offline); the
//! document is rendered once per process.
use std::sync::{Arc, OnceLock};

use ntex::http::{header, StatusCode};
use ntex::util::Bytes;
use ntex::web::{self, HttpResponse};

use crate::error::{ErrorResponse, JSON};
use crate::server::resource;

/// Where the document is served; Swagger UI loads it from here.
pub const DOCUMENT_PATH: &str = "/api/openapi.json";
/// Where Swagger UI is served; its assets are below it.
pub const UI_PATH: &str = "/api/openapi";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource(DOCUMENT_PATH).route(web::get().to(document)))
        .service(resource(UI_PATH).route(web::get().to(ui_index)))
        .service(resource("/api/openapi/{file}").route(web::get().to(ui_file)));
}

/// The merged document as JSON, built on first use.
pub fn document_json() -> Bytes {
    static JSON_DOC: OnceLock<Bytes> = OnceLock::new();
    JSON_DOC
        .get_or_init(|| {
            let doc = crate::server::openapi();
            Bytes::from(doc.to_json().expect("BUG: the OpenAPI document serialises"))
        })
        .clone()
}

fn swagger_config() -> Arc<utoipa_swagger_ui::Config<'static>> {
    static CONFIG: OnceLock<Arc<utoipa_swagger_ui::Config<'static>>> = OnceLock::new();
    CONFIG
        .get_or_init(|| Arc::new(utoipa_swagger_ui::Config::new([DOCUMENT_PATH])))
        .clone()
}

/// The OpenAPI 3 document of every route this server registers.
#[utoipa::path(get, path = "/api/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3 document", content_type = "application/json")))]
async fn document() -> HttpResponse {
    HttpResponse::Ok().content_type(JSON).body(document_json())
}

/// Swagger UI for this document, served from the binary (works offline).
#[utoipa::path(get, path = "/api/openapi", tag = "operations",
    responses((status = 200, description = "Swagger UI", content_type = "text/html")))]
async fn ui_index() -> HttpResponse {
    // Its asset links are relative (`./swagger-ui.css`), which from `/api/openapi` would point
    // at `/api/`, so they are rewritten once to `/api/openapi/`.
    static PAGE: OnceLock<Option<Bytes>> = OnceLock::new();
    let page = PAGE.get_or_init(|| {
        let file = utoipa_swagger_ui::serve("index.html", swagger_config()).ok()??;
        let html = String::from_utf8_lossy(&file.bytes).replace("\"./", "\"/api/openapi/");
        Some(Bytes::from(html))
    });
    match page {
        Some(page) => HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .body(page.clone()),
        None => missing(),
    }
}

/// Swagger UI's assets (scripts, styles, its initializer pointing at the document).
#[utoipa::path(get, path = "/api/openapi/{file}", tag = "operations",
    params(("file" = String, Path, description = "an asset of Swagger UI, e.g. swagger-ui.css")),
    responses((status = 200, description = "the asset"), (status = 404, body = ErrorResponse)))]
async fn ui_file(path: web::types::Path<String>) -> HttpResponse {
    match utoipa_swagger_ui::serve(path.as_str(), swagger_config()) {
        Ok(Some(file)) => {
            let mut res = HttpResponse::Ok();
            res.content_type(file.content_type.as_str());
            if file.gzpipped {
                res.header(header::CONTENT_ENCODING, "gzip");
            }
            res.body(Bytes::from(file.bytes.into_owned()))
        }
        Ok(None) => crate::error::ApiError::not_found().into_response(),
        Err(e) => {
            tracing::error!(error = %e, file = %path.as_str(), "swagger ui asset failed");
            missing()
        }
    }
}

fn missing() -> HttpResponse {
    crate::error::ApiError::from_static(
        StatusCode::INTERNAL_SERVER_ERROR,
        r#"{"error":"swagger ui unavailable"}"#,
    )
    .into_response()
}

/// The document and Swagger UI, as OpenAPI paths.
#[derive(utoipa::OpenApi)]
#[openapi(paths(document, ui_index, ui_file))]
pub struct Api;
