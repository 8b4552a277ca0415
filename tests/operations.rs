//! Operations in-process: the admin switch and its auth, the fallen-replica gate, the metrics
//! text, and the OpenAPI document covering every route the server registers. Every TestServer
//! of this binary shares one metrics registry, so metric checks compare before and after.
use arena::config::Config;
use arena::server::{registered_paths, TestServer};

fn call(method: &str, url: &str, bearer: Option<&str>) -> (u16, String) {
    let mut req = ureq::request(method, url);
    if let Some(token) = bearer {
        req = req.set("authorization", &format!("Bearer {token}"));
    }
    match req.call() {
        Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
        Err(e) => panic!("{method} {url}: {e}"),
    }
}

fn app(token: Option<&str>) -> TestServer {
    let mut config = Config::from_env();
    config.instance_name = "api-ops".to_owned();
    config.admin_token = token.map(str::to_owned);
    TestServer::start(config)
}

const FALLEN: &str = r#"{"error":"system not available - not alive"}"#;

#[test]
fn fall_and_revive_answer_403_when_no_admin_token_is_configured() {
    let app = app(None);
    for path in ["/fall", "/revive"] {
        let (status, body) = call("POST", &app.url(path), Some("anything"));
        assert_eq!(status, 403, "{path}: {body}");
        assert!(body.contains("\"error\""), "{body}");
    }
    assert!(app.shared.liveness.is_alive());
}

#[test]
fn fall_and_revive_answer_401_without_the_right_bearer() {
    let app = app(Some("s3cret"));
    for bearer in [None, Some("wrong"), Some("s3cre")] {
        let (status, body) = call("POST", &app.url("/fall"), bearer);
        assert_eq!(status, 401, "{bearer:?}: {body}");
    }
    assert!(
        app.shared.liveness.is_alive(),
        "a refused /fall changed nothing"
    );
}

#[test]
fn a_fallen_replica_answers_503_everywhere_but_operations_until_revived() {
    let app = app(Some("s3cret"));
    let (status, body) = call("POST", &app.url("/fall"), Some("s3cret"));
    assert_eq!(
        (status, body.as_str()),
        (200, r#"{"status":"system down","active":false}"#)
    );
    assert!(!app.shared.liveness.is_alive());

    for (method, path) in [
        ("GET", "/ping"),
        ("GET", "/"),
        ("GET", "/nowhere"),
        ("POST", "/ping"),
        ("GET", "/api/openapi.json"),
    ] {
        assert_eq!(
            call(method, &app.url(path), None),
            (503, FALLEN.to_owned()),
            "{method} {path}"
        );
    }
    let (status, body) = call("GET", &app.url("/health"), None);
    assert_eq!(status, 503);
    assert!(body.contains(r#""active":false"#), "{body}");
    assert_eq!(call("GET", &app.url("/metrics"), None).0, 200);
    assert_eq!(
        call("POST", &app.url("/fall"), Some("s3cret")).0,
        200,
        "falling twice is fine"
    );

    let (status, body) = call("POST", &app.url("/revive"), Some("s3cret"));
    assert_eq!(
        (status, body.as_str()),
        (200, r#"{"status":"system revived","active":true}"#)
    );
    assert_eq!(call("GET", &app.url("/ping"), None).0, 200);
    assert_eq!(call("GET", &app.url("/health"), None).0, 200);
}

fn series(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn metrics_count_requests_by_route_template_and_status() {
    let app = app(None);
    let ping = r#"arena_http_requests_total{route="/ping",method="GET",status="200"}"#;
    let missing = r#"arena_http_requests_total{route="unmatched",method="GET",status="404"}"#;
    let (_, before) = call("GET", &app.url("/metrics"), None);
    for i in 0..3 {
        assert_eq!(call("GET", &app.url("/ping"), None).0, 200);
        assert_eq!(call("GET", &app.url(&format!("/no/such/{i}")), None).0, 404);
    }
    let (status, after) = call("GET", &app.url("/metrics"), None);
    assert_eq!(status, 200);
    assert!(
        series(&after, ping) >= series(&before, ping) + 3.0,
        "{after}"
    );
    assert!(
        series(&after, missing) >= series(&before, missing) + 3.0,
        "{after}"
    );
    assert!(
        !after.contains("/no/such"),
        "raw paths must never become labels"
    );
    for name in [
        "arena_http_request_duration_seconds_bucket{",
        r#"arena_pool_connections{pool="postgres",state="max"}"#,
        r#"arena_pool_connections{pool="redis",state="open"}"#,
        "# TYPE arena_inserter_batch_rows histogram",
        "# TYPE arena_inserter_flush_seconds histogram",
        "# TYPE arena_inserter_queue_depth gauge",
    ] {
        assert!(after.contains(name), "{name} missing from:\n{after}");
    }
    assert!(after.ends_with("# EOF\n"));
}

/// Methods a route may serve; a resource answers 405 to the ones it does not.
const METHODS: [&str; 6] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"];

#[test]
fn every_registered_route_and_method_is_in_the_openapi_document() {
    let app = app(None);
    let (status, body) = call("GET", &app.url("/api/openapi.json"), None);
    assert_eq!(status, 200);
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let documented = doc["paths"].as_object().expect("paths");
    let registered = registered_paths();
    assert!(registered.contains(&"/ping"), "{registered:?}");
    for path in &registered {
        let ops = documented
            .get(*path)
            .unwrap_or_else(|| panic!("{path} is registered but not in the OpenAPI document"));
        // Ask the server which methods the route serves: all but 405. Parameters get a
        // harmless value; a body-less request is refused by any handler before it acts.
        let concrete = path
            .split('/')
            .map(|seg| if seg.starts_with('{') { "0" } else { seg })
            .collect::<Vec<_>>()
            .join("/");
        for method in METHODS {
            let (status, _) = call(method, &app.url(&concrete), None);
            let in_doc = ops.get(method.to_lowercase()).is_some();
            assert_eq!(
                status != 405,
                in_doc,
                "{method} {path}: the server answers {status}, the document {}",
                if in_doc { "lists it" } else { "does not" }
            );
        }
    }
    for path in documented.keys() {
        assert!(
            registered.contains(&path.as_str()),
            "{path} is documented but no resource registers it"
        );
    }
}

#[test]
fn swagger_ui_and_its_assets_are_served_from_the_binary() {
    let app = app(None);
    let (status, page) = call("GET", &app.url("/api/openapi"), None);
    assert_eq!(status, 200);
    assert!(page.contains(r#"<base href="/api/openapi/">"#), "{page}");
    // Every asset the page links (href= and src=, however spelt) resolves under the base; and
    // the page answers with a trailing slash too.
    let links: Vec<&str> = page
        .split(['"'])
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[0].ends_with("href=") || w[0].ends_with("src="))
        .map(|w| w[1])
        .filter(|l| !l.starts_with('/'))
        .collect();
    assert!(links.len() >= 5, "{links:?}");
    for link in links {
        let asset = format!("/api/openapi/{}", link.trim_start_matches("./"));
        assert_eq!(call("GET", &app.url(&asset), None).0, 200, "{asset}");
    }
    assert_eq!(call("GET", &app.url("/api/openapi/"), None), (200, page));
    let (status, init) = call("GET", &app.url("/api/openapi/swagger-initializer.js"), None);
    assert_eq!(status, 200);
    assert!(init.contains("/api/openapi.json"), "{init}");
    assert_eq!(
        call("GET", &app.url("/api/openapi/swagger-ui.css"), None).0,
        200
    );
    assert_eq!(call("GET", &app.url("/api/openapi/nope.js"), None).0, 404);
}

#[test]
fn the_hooks_other_domains_call_show_in_the_metrics_text() {
    use arena::ops::metrics;
    use std::time::Duration;
    let app = app(None);
    metrics::publish_confirmed("people.test");
    metrics::publish_failed("people.test");
    metrics::inserter_batch(42, Duration::from_millis(7));
    metrics::pool_wait(metrics::Pool::Postgres, Duration::from_micros(300));
    let socket = metrics::websocket_open("hooks-test");
    let poll = metrics::long_poll_open("hooks-test");
    let (_, text) = call("GET", &app.url("/metrics"), None);
    for (name, at_least) in [
        (
            r#"arena_publish_total{queue="people.test",outcome="confirmed"}"#,
            1.0,
        ),
        (
            r#"arena_publish_total{queue="people.test",outcome="failed"}"#,
            1.0,
        ),
        ("arena_inserter_batch_rows_count", 1.0),
        (r#"arena_pool_wait_seconds_count{pool="postgres"}"#, 1.0),
        (r#"arena_open_websockets{kind="hooks-test"}"#, 1.0),
        (r#"arena_open_long_polls{kind="hooks-test"}"#, 1.0),
    ] {
        assert!(series(&text, name) >= at_least, "{name} in:\n{text}");
    }
    drop((socket, poll));
    let (_, text) = call("GET", &app.url("/metrics"), None);
    assert_eq!(
        series(&text, r#"arena_open_websockets{kind="hooks-test"}"#),
        0.0
    );
}

#[test]
fn operation_ids_are_unique_across_domains() {
    let doc = serde_json::to_value(arena::server::openapi()).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        for (method, op) in ops.as_object().expect("operations") {
            if let Some(id) = op.get("operationId").and_then(|v| v.as_str()) {
                assert!(
                    seen.insert(id.to_owned()),
                    "{method} {path}: operationId {id} repeats"
                );
            }
        }
    }
}
