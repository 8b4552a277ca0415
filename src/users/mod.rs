//! Users (SPEC §4), shared by the REST resource and chat: `/users`, `/users/{id}`, `/register`
//! and `/login`. A body is parsed into [`model`] types, its password hashed off the event loop
//! ([`password`]), the row written by [`store`]; `/login` checks the hash and answers a signed
//! token ([`token`]) that every replica accepts. [`Users::authenticate`] is how chat learns
//! which user is acting.
pub mod model;
pub mod password;
mod routes;
pub mod store;
pub mod token;

use ntex::http::{header, StatusCode};
use ntex::web::HttpRequest;

pub use model::{UserId, UsersError};
pub use routes::{configure, Api};
pub use store::RESET_SQL;

use crate::error::ApiError;

/// What every worker needs for users: the process's hasher and the token key.
#[derive(Clone, Debug)]
pub struct Users {
    pub hasher: password::Hasher,
    pub tokens: token::Tokens,
}

impl Users {
    pub fn new(config: &crate::config::Config) -> Self {
        let secret = config.token_secret.as_deref().filter(|s| !s.is_empty());
        Self {
            hasher: password::Hasher::default(),
            tokens: token::Tokens::new(
                secret.unwrap_or(token::DEVELOPMENT_SECRET),
                config.token_ttl_secs,
            ),
        }
    }

    /// The user whose token came with `req`: `Authorization: Bearer …`, or — where a client
    /// cannot set headers (browsers' WebSocket API, `EventSource`-style polls) and `in_query`
    /// says so — `?token=…`.
    pub fn authenticate(&self, req: &HttpRequest, in_query: bool) -> Result<UserId, UsersError> {
        let header = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let token = match header {
            Some(token) => token.trim().to_owned(),
            None if in_query => crate::json::query_pairs(req.query_string())
                .and_then(|pairs| pairs.into_iter().find(|(k, _)| k == "token"))
                .map(|(_, v)| v)
                .ok_or(UsersError::Unauthenticated)?,
            None => return Err(UsersError::Unauthenticated),
        };
        self.tokens.verify(&token, chrono::Utc::now().timestamp())
    }
}

impl From<UsersError> for ApiError {
    fn from(e: UsersError) -> Self {
        use UsersError as E;
        match e {
            E::Malformed(reason) => Self::bad_request(reason),
            E::Invalid(i) => {
                Self::named_field(StatusCode::UNPROCESSABLE_ENTITY, i.field, i.message)
            }
            E::BadQuery(i) => Self::named_field(StatusCode::BAD_REQUEST, i.field, i.message),
            E::UsernameTaken => Self::from_static(
                StatusCode::CONFLICT,
                r#"{"error":"username already taken","field":"username"}"#,
            ),
            E::EmailTaken => Self::from_static(
                StatusCode::CONFLICT,
                r#"{"error":"email already taken","field":"email"}"#,
            ),
            E::NotFound => {
                Self::from_static(StatusCode::NOT_FOUND, r#"{"error":"user not found"}"#)
            }
            E::BadCredentials => Self::from_static(
                StatusCode::UNAUTHORIZED,
                r#"{"error":"wrong username or password"}"#,
            ),
            E::Unauthenticated => Self::from_static(
                StatusCode::UNAUTHORIZED,
                r#"{"error":"missing, invalid or expired token"}"#,
            ),
            E::Forbidden => Self::from_static(
                StatusCode::FORBIDDEN,
                r#"{"error":"a user may only change or delete itself"}"#,
            ),
            E::Busy => Self::from_static(
                StatusCode::SERVICE_UNAVAILABLE,
                r#"{"error":"too many logins at once, retry shortly"}"#,
            ),
            E::Unavailable(ref cause) => Self::unavailable("users store", cause.as_ref()),
            E::Database(ref cause) => Self::internal("users query", cause),
        }
    }
}
