//! Pieces several integration-test binaries share (each `mod common;`s it in).

pub mod chat;

use std::time::{Duration, Instant};

/// Waits until some other session is blocked on a lock `tx` holds, so a test knows the request
/// it started has reached the database and queued there; panics after 10 s naming `what`.
/// `pg_locks`, not `pg_stat_activity`: the latter is a snapshot per transaction.
#[allow(dead_code)]
pub async fn until_blocked_by(tx: &tokio_postgres::Transaction<'_>, what: &str) {
    let me: i32 = tx
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: i64 = tx
            .query_one(
                "SELECT count(*) FROM pg_locks WHERE NOT granted \
                 AND $1 = ANY(pg_blocking_pids(pid))",
                &[&me],
            )
            .await
            .unwrap()
            .get(0);
        if waiting > 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{what} never queued");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The environment's configuration, after the migrations have run once for this test binary
/// (the tests may run on a fresh database).
#[allow(dead_code)]
pub fn migrated_config() -> arena::config::Config {
    static MIGRATED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    let config = arena::config::Config::from_env();
    MIGRATED.get_or_init(|| {
        arena::infra::block_on(arena::infra::postgres::migrate(&config.database_url))
            .expect("migrate")
    });
    config
}

/// One HTTP request: `bearer` as `Authorization: Bearer …`, `body` as JSON. Every status comes
/// back as a value, with the body as JSON (`Null` when empty, a string when not JSON).
#[allow(dead_code)]
pub fn call(
    method: &str,
    url: &str,
    bearer: Option<&str>,
    body: Option<&serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut req = ureq::request(method, url);
    if let Some(token) = bearer {
        req = req.set("authorization", &format!("Bearer {token}"));
    }
    let answer = match body {
        Some(b) => req
            .set("content-type", "application/json")
            .send_string(&b.to_string()),
        None => req.call(),
    };
    let (status, text) = match answer {
        Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
        Err(e) => panic!("{method} {url}: {e}"),
    };
    let json = if text.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
    };
    (status, json)
}

/// A name no other test (or earlier run) has used.
#[allow(dead_code)]
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// Registers a fresh user through `/register` and logs in: `(id, token)`.
#[allow(dead_code)]
pub fn user_with_token(base: &str, username: &str) -> (i64, String) {
    let credentials = serde_json::json!({"username": username, "password": "pw-123456"});
    let (status, body) = call(
        "POST",
        &format!("{base}/register"),
        None,
        Some(&credentials),
    );
    assert_eq!(status, 201, "{body}");
    let (status, body) = call("POST", &format!("{base}/login"), None, Some(&credentials));
    assert_eq!(status, 200, "{body}");
    (
        body["user_id"].as_i64().expect("a user id"),
        body["token"].as_str().expect("a token").to_owned(),
    )
}
