//! The operations routes in-process on an ephemeral port.
use arena::config::Config;
use arena::server::TestServer;

fn get(url: &str) -> (u16, String) {
    match ureq::get(url).call() {
        Ok(r) => (r.status(), r.into_string().unwrap()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap()),
        Err(e) => panic!("{url}: {e}"),
    }
}

fn app(instance: &str) -> TestServer {
    let mut config = Config::from_env();
    config.instance_name = instance.to_owned();
    TestServer::start(config)
}

#[test]
fn ping_names_the_instance() {
    let app = app("api-test");
    let (status, body) = get(&app.url("/ping"));
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["message"], "pong from api-test");
    assert_eq!(v["host"], "api-test");
    assert_eq!(v["instance"], "api-test");
}

#[test]
fn health_follows_the_liveness_switch() {
    let app = app("api-health");
    assert_eq!(get(&app.url("/health")).0, 200);
    app.shared.liveness.set(false);
    let (status, body) = get(&app.url("/health"));
    assert_eq!(status, 503);
    assert!(body.contains("\"active\":false"), "{body}");
    app.shared.liveness.set(true);
    assert_eq!(get(&app.url("/health")).0, 200);
}

#[test]
fn unknown_routes_and_methods_get_json_errors() {
    let app = app("api-errors");
    let (status, body) = get(&app.url("/nowhere"));
    assert_eq!(status, 404);
    assert_eq!(body, r#"{"error":"not found"}"#);
    let r = ureq::delete(&app.url("/ping")).call();
    match r {
        Err(ureq::Error::Status(405, r)) => assert_eq!(
            r.into_string().unwrap(),
            r#"{"error":"method not allowed"}"#
        ),
        other => panic!("expected 405, got {other:?}"),
    }
}

#[test]
fn a_test_server_left_with_the_environments_name_runs_under_a_name_of_its_own() {
    // Running as the environment's replica (api1 by default) would make the test server's
    // start-up cleanup delete that live replica's connected users.
    let live = Config::from_env().instance_name;
    let instance = |app: &TestServer| {
        let (status, body) = get(&app.url("/ping"));
        assert_eq!(status, 200);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["instance"].as_str().unwrap().to_owned()
    };
    let (a, b) = (
        TestServer::start(Config::from_env()),
        TestServer::start(Config::from_env()),
    );
    let (a, b) = (instance(&a), instance(&b));
    assert_ne!(a, live);
    assert_ne!(a, b, "each test server has its own name");
    assert!(a.starts_with("test-"), "{a}");
}
