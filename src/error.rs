//! What every error becomes on its way to the client: an [`ApiError`], a status SPEC.md names
//! and a JSON body `{"error": …}`; driver and broker text goes to the log, never to the client.
//! Each domain converts its own error type into it (`impl From<PeopleError> for ApiError` in
//! `people/mod.rs`, and so on), so this module stays at the bottom and imports no domain.
use std::borrow::Cow;

use ntex::http::{header, StatusCode};
use ntex::util::{Bytes, BytesMut};
use ntex::web::{self, HttpRequest, HttpResponse};

/// Request bodies above this many bytes get 413 (SPEC: 64 KiB).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

pub const JSON: &str = "application/json";

/// An error on its way to the client: a status and a ready JSON body.
#[derive(Debug, Clone)]
pub struct ApiError {
    status: StatusCode,
    body: Bytes,
}

impl ApiError {
    /// An error with a fixed message; the body is built once per call site.
    pub fn new(status: StatusCode, message: impl Into<Cow<'static, str>>) -> Self {
        let message = message.into();
        let body = serde_json::to_vec(&ErrorBody {
            error: &message,
            field: None,
        })
        .expect("BUG: a string always serialises");
        Self {
            status,
            body: Bytes::from(body),
        }
    }

    /// A validation error that names the offending field.
    pub fn field(
        status: StatusCode,
        field: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        let message = message.into();
        let body = serde_json::to_vec(&ErrorBody {
            error: &message,
            field: Some(field),
        })
        .expect("BUG: a string always serialises");
        Self {
            status,
            body: Bytes::from(body),
        }
    }

    /// A validation error whose message starts with the field's name (`email must be …`).
    pub fn named_field(status: StatusCode, field: &'static str, rule: &'static str) -> Self {
        Self::field(status, field, format!("{field} {rule}"))
    }

    /// A body that is already JSON (fixed errors kept as `static` bytes).
    pub const fn from_static(status: StatusCode, body: &'static str) -> Self {
        Self {
            status,
            body: Bytes::from_static(body.as_bytes()),
        }
    }

    pub fn not_found() -> Self {
        Self::from_static(StatusCode::NOT_FOUND, r#"{"error":"not found"}"#)
    }

    pub fn method_not_allowed() -> Self {
        Self::from_static(
            StatusCode::METHOD_NOT_ALLOWED,
            r#"{"error":"method not allowed"}"#,
        )
    }

    pub fn payload_too_large() -> Self {
        Self::from_static(
            StatusCode::PAYLOAD_TOO_LARGE,
            r#"{"error":"request body over 64 KiB"}"#,
        )
    }

    /// 503 for an upgrade past `WS_MAX_CONNECTIONS` (both kinds of socket answer the same).
    pub fn too_many_sockets() -> Self {
        Self::from_static(
            StatusCode::SERVICE_UNAVAILABLE,
            r#"{"error":"too many WebSocket connections on this replica"}"#,
        )
    }

    pub fn body_timeout() -> Self {
        Self::from_static(
            StatusCode::REQUEST_TIMEOUT,
            r#"{"error":"the request body did not arrive in time"}"#,
        )
    }

    pub fn bad_request(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// A dependency (PostgreSQL, Redis, RabbitMQ) failed: the cause is logged here, the client
    /// gets a 503 it may retry.
    pub fn unavailable(what: &'static str, cause: &dyn std::error::Error) -> Self {
        tracing::warn!(error = %ErrorChain(cause), "{what} unavailable");
        Self::from_static(
            StatusCode::SERVICE_UNAVAILABLE,
            r#"{"error":"service temporarily unavailable"}"#,
        )
    }

    /// A failure that is our bug or an unexpected driver answer: logged, 500 to the client.
    pub fn internal(what: &'static str, cause: &dyn std::error::Error) -> Self {
        tracing::error!(error = %ErrorChain(cause), "{what} failed");
        Self::from_static(
            StatusCode::INTERNAL_SERVER_ERROR,
            r#"{"error":"internal error"}"#,
        )
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn into_response(self) -> HttpResponse {
        HttpResponse::build(self.status)
            .content_type(JSON)
            .body(self.body)
    }
}

#[derive(serde::Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'static str>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, String::from_utf8_lossy(&self.body))
    }
}

impl web::error::WebResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self, _: &HttpRequest) -> HttpResponse {
        self.clone().into_response()
    }
}

/// The shape of every error body, for the OpenAPI document (the bodies themselves are built
/// by [`ApiError`]).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ErrorResponse {
    /// A human readable message.
    #[schema(example = "not found")]
    error: String,
    /// The offending field, for validation errors.
    field: Option<String>,
}

/// Formats an error with its whole `source()` chain on one line, for the logs.
pub struct ErrorChain<'a>(pub &'a dyn std::error::Error);

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(c) = cause {
            write!(f, ": {c}")?;
            cause = c.source();
        }
        Ok(())
    }
}

/// Reads a request body, refusing anything over [`MAX_BODY_BYTES`] with 413 before buffering it.
pub async fn read_body(
    req: &HttpRequest,
    mut payload: web::types::Payload,
) -> Result<BytesMut, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
        discard(payload).await;
        return Err(ApiError::payload_too_large());
    }
    let mut body = BytesMut::with_capacity(declared.unwrap_or(512));
    let read = async {
        while let Some(chunk) = payload.recv().await {
            let chunk =
                chunk.map_err(|_| ApiError::bad_request("could not read the request body"))?;
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                discard(payload).await;
                return Err(ApiError::payload_too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(())
    };
    // ntex's payload read rate (server.rs) only starts with the first byte of the body: a
    // client that sends its headers and then nothing would otherwise hold the request for good.
    tokio::time::timeout(BODY_READ_LIMIT, read)
        .await
        .map_err(|_| ApiError::body_timeout())??;
    Ok(body)
}

/// The longest a request body may take to arrive, whole (64 KiB at most: a second on any link).
pub const BODY_READ_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Reads and drops up to [`MAX_DISCARDED_BYTES`] more of a refused body. A client that writes
/// its whole body before reading gets a broken pipe instead of our 413 when the connection is
/// closed under it; draining a modest body lets it read the answer. Nothing is kept.
async fn discard(mut payload: web::types::Payload) {
    let mut seen = 0;
    while seen < MAX_DISCARDED_BYTES {
        match payload.recv().await {
            Some(Ok(chunk)) => seen += chunk.len(),
            _ => return,
        }
    }
}

/// How much of a refused body is drained before the connection is given up on (nginx in front
/// refuses bodies over 128 KiB itself, so only direct clients get this far).
const MAX_DISCARDED_BYTES: usize = 1024 * 1024;

/// JSON 404 for every path no domain claims.
pub async fn not_found() -> HttpResponse {
    ApiError::not_found().into_response()
}

/// JSON 405 for a known path with a method it does not serve.
pub async fn method_not_allowed() -> HttpResponse {
    ApiError::method_not_allowed().into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_body_is_json_with_the_message() {
        let e = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "apelido \"x\" taken");
        let v: serde_json::Value = serde_json::from_slice(&e.body).unwrap();
        assert_eq!(v["error"], "apelido \"x\" taken");
        assert!(v.get("field").is_none());
    }

    #[test]
    fn a_field_error_names_the_field() {
        let e = ApiError::field(StatusCode::UNPROCESSABLE_ENTITY, "nome", "too long");
        let v: serde_json::Value = serde_json::from_slice(&e.body).unwrap();
        assert_eq!(v["field"], "nome");
    }

    #[test]
    fn static_errors_are_valid_json() {
        for e in [
            ApiError::not_found(),
            ApiError::method_not_allowed(),
            ApiError::payload_too_large(),
        ] {
            let v: serde_json::Value = serde_json::from_slice(&e.body).unwrap();
            assert!(v["error"].is_string());
        }
    }
}
