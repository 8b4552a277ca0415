//! SPEC §6 through nginx: the clock, fib replies, errors that keep the socket, and
//! `/connected-users` as each replica sees it (asked on each replica's own port).
use std::time::{Duration, Instant};

use advanced_tests::ws::{ask, connect, next_of};
use advanced_tests::{get, stack, Value};

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// Rows of `username` as replica `i` reports them: (instance, count).
fn rows_seen_by(i: usize, username: &str) -> Vec<Value> {
    let r = get(&stack().replica(i, "/connected-users"));
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(
        v["count"].as_u64(),
        v["users"].as_array().map(|u| u.len() as u64)
    );
    v["users"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["username"] == username)
        .cloned()
        .collect()
}

fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    check()
}

#[test]
fn a_socket_through_nginx_gets_at_least_two_ticks_in_two_and_a_half_seconds() {
    let mut socket = connect(&stack().url, &unique("ticks")).expect("upgrade through nginx");
    socket
        .get_mut()
        .set_read_timeout(Some(Duration::from_millis(2500)))
        .unwrap();
    let start = Instant::now();
    let mut ticks = 0;
    while ticks < 2 && start.elapsed() < Duration::from_millis(2500) {
        let v = next_of(&mut socket, "time");
        chrono::DateTime::parse_from_rfc3339(v["now"].as_str().unwrap()).expect("RFC 3339");
        ticks += 1;
    }
    assert!(ticks >= 2, "{ticks} ticks in {:?}", start.elapsed());
}

#[test]
fn fib_replies_through_nginx_are_correct_and_errors_keep_the_socket() {
    let mut socket = connect(&stack().url, &unique("fib")).expect("upgrade through nginx");
    assert_eq!(
        ask(&mut socket, "10", "fib"),
        serde_json::json!({"type": "fib", "n": 10, "value": "55"})
    );
    assert_eq!(ask(&mut socket, r#"{"n":0}"#, "fib")["value"], "0");
    assert_eq!(
        ask(&mut socket, "100", "fib")["value"],
        "354224848179261915075"
    );
    for bad in ["ten", "-3", "1000001", "2.5", r#"{"n":"7"}"#] {
        let e = ask(&mut socket, bad, "error");
        assert!(e["error"].is_string(), "{bad}: {e}");
    }
    let v = ask(&mut socket, "1000000", "fib");
    assert_eq!(v["value"].as_str().unwrap().len(), 208_988);
    assert_eq!(ask(&mut socket, "7", "fib")["value"], "13");
}

#[test]
fn a_bad_username_is_refused_before_the_upgrade() {
    match connect(&stack().url, "not%20ok") {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 400),
        other => panic!("expected a 400, got {:?}", other.map(|_| "a socket")),
    }
}

#[test]
fn connect_and_disconnect_show_in_connected_users_on_the_other_replica() {
    let s = stack();
    assert!(s.replica_count() >= 2, "needs two replicas");
    let instances: Vec<Value> = (0..s.replica_count())
        .map(|i| get(&s.replica(i, "/ping")).json()["instance"].clone())
        .collect();
    let username = unique("presence");
    let mut socket = connect(&s.url, &username).expect("upgrade through nginx");
    // The row names the replica that holds the socket; ask another one.
    let mut holder = None;
    assert!(
        eventually(Duration::from_secs(5), || {
            holder = rows_seen_by(0, &username)
                .first()
                .map(|u| u["instance"].clone());
            holder.is_some()
        }),
        "the open socket is listed"
    );
    let holder = holder.unwrap();
    let other = instances
        .iter()
        .position(|i| *i != holder)
        .expect("a replica other than the holder");
    let rows = rows_seen_by(other, &username);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["instance"], holder);
    socket.close(None).unwrap();
    while socket.read().is_ok() {}
    assert!(
        eventually(Duration::from_secs(5), || rows_seen_by(other, &username)
            .is_empty()),
        "the closed socket left /connected-users on the other replica"
    );
}
