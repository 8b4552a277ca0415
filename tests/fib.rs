//! The Fibonacci WebSocket in-process on an ephemeral port, with a real WebSocket client
//! (tungstenite) against the real PostgreSQL: ticks, replies, errors that keep the socket,
//! connected-users rows on open and close, the slow-client close and the shutdown close.
//! Each test uses its own instance name, so its rows are its own.
mod common;

use std::io::Write as _;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use arena::config::Config;
use arena::server::TestServer;
use serde_json::Value;
use tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tungstenite::protocol::frame::Frame;
use tungstenite::{Message, WebSocket};

type Socket = WebSocket<TcpStream>;

/// Applies the migrations once per test binary (the tests may run on a fresh database).
fn migrated() {
    static MIGRATED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    MIGRATED.get_or_init(|| {
        let url = Config::from_env().database_url;
        arena::infra::block_on(arena::infra::postgres::migrate(&url)).expect("migrate")
    });
}

fn app_with(config: impl FnOnce(&mut Config)) -> (TestServer, String) {
    migrated();
    let mut c = Config::from_env();
    c.instance_name = format!("fibtest-{}", uuid::Uuid::new_v4().simple());
    config(&mut c);
    let instance = c.instance_name.clone();
    (TestServer::start(c), instance)
}

fn app() -> (TestServer, String) {
    app_with(|_| {})
}

fn try_connect(app: &TestServer, username: &str) -> Result<Socket, tungstenite::Error> {
    try_connect_to(app.addr, username)
}

/// Like [`try_connect`], by address, for a thread of its own.
fn try_connect_to(
    addr: std::net::SocketAddr,
    username: &str,
) -> Result<Socket, tungstenite::Error> {
    let stream = TcpStream::connect(addr).expect("the test server listens");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let url = format!("ws://{addr}/ws/fibonacci/{username}");
    match tungstenite::client(url, stream) {
        Ok((socket, _)) => Ok(socket),
        Err(tungstenite::HandshakeError::Failure(e)) => Err(e),
        Err(tungstenite::HandshakeError::Interrupted(_)) => panic!("blocking handshake"),
    }
}

fn connect(app: &TestServer, username: &str) -> Socket {
    try_connect(app, username).expect("WebSocket upgrade")
}

/// The next text frame whose `type` is `kind`, skipping others (clock ticks), within 30 s:
/// ticks alone must not keep a test waiting for an answer that never comes.
fn next_of(socket: &mut Socket, kind: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "no {kind} frame within 30 s"
        );
        match socket.read().expect("a frame before the read timeout") {
            Message::Text(text) => {
                let v: Value = serde_json::from_str(&text).expect("frames are JSON");
                if v["type"] == kind {
                    return v;
                }
            }
            Message::Close(frame) => panic!("closed while waiting for {kind}: {frame:?}"),
            _ => {}
        }
    }
}

fn ask(socket: &mut Socket, frame: &str) -> Value {
    socket.send(Message::text(frame)).unwrap();
    next_of(socket, "fib")
}

fn ask_error(socket: &mut Socket, frame: &str) -> Value {
    socket.send(Message::text(frame)).unwrap();
    next_of(socket, "error")
}

fn connected_users(app: &TestServer, instance: &str) -> Vec<Value> {
    let body = ureq::get(&app.url("/connected-users"))
        .call()
        .expect("GET /connected-users answers 200")
        .into_string()
        .unwrap();
    let v: Value = serde_json::from_str(&body).unwrap();
    let users = v["users"].as_array().expect("users is a list").clone();
    assert_eq!(v["count"].as_u64(), Some(users.len() as u64));
    users
        .into_iter()
        .filter(|u| u["instance"] == instance)
        .collect()
}

/// Runs `statement` with `$1` = `instance` on a connection of its own; the rows it touched.
fn sql(statement: &'static str, instance: &str) -> u64 {
    let url = Config::from_env().database_url;
    let instance = instance.to_owned();
    arena::infra::block_on(async move {
        let pg = arena::infra::postgres::connect(&url).await.unwrap();
        pg.execute(statement, &[&instance]).await.unwrap()
    })
}

/// Rows of `instance` in `connected_users`, fresh or not.
fn rows_of(instance: &str) -> u64 {
    sql(
        "SELECT 1 FROM connected_users WHERE instance = $1",
        instance,
    )
}

/// Polls `check` until it holds or `limit` passes.
fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    check()
}

#[test]
fn a_socket_receives_at_least_two_ticks_in_two_and_a_half_seconds() {
    let (app, _) = app();
    let mut socket = connect(&app, "ticker");
    let start = Instant::now();
    let mut ticks = Vec::new();
    socket
        .get_mut()
        .set_read_timeout(Some(Duration::from_millis(2500)))
        .unwrap();
    while ticks.len() < 2 && start.elapsed() < Duration::from_millis(2500) {
        let v = next_of(&mut socket, "time");
        ticks.push(v["now"].as_str().unwrap().to_owned());
    }
    assert!(
        ticks.len() >= 2,
        "{} ticks in {:?}",
        ticks.len(),
        start.elapsed()
    );
    for now in &ticks {
        let at = chrono::DateTime::parse_from_rfc3339(now).expect("RFC 3339");
        assert_eq!(at.offset().local_minus_utc(), 0, "{now} is UTC");
        assert!(now.ends_with('Z'), "{now}");
    }
}

#[test]
fn numbers_get_their_fibonacci_value_in_decimal() {
    let (app, _) = app();
    let mut socket = connect(&app, "asker");
    assert_eq!(
        ask(&mut socket, "10"),
        serde_json::json!({"type": "fib", "n": 10, "value": "55"})
    );
    assert_eq!(ask(&mut socket, r#"{"n":0}"#)["value"], "0");
    assert_eq!(ask(&mut socket, "1")["value"], "1");
    let v = ask(&mut socket, "1000");
    assert_eq!(v["n"], 1000);
    assert_eq!(
        v["value"].as_str().unwrap(),
        arena::fib::fib(1000).to_string()
    );
    // Above the inline threshold: computed on the pool, same answer.
    let v = ask(&mut socket, "200000");
    assert_eq!(v["n"], 200000);
    assert_eq!(v["value"].as_str().unwrap().len(), 41_798);
}

#[test]
fn the_largest_allowed_n_is_answered_and_one_more_is_an_error() {
    let (app, _) = app_with(|c| c.fib_max_n = 50_000);
    let mut socket = connect(&app, "edge");
    assert_eq!(
        ask(&mut socket, "50000")["value"].as_str().unwrap(),
        arena::fib::fib(50_000).to_string()
    );
    let e = ask_error(&mut socket, "50001");
    assert_eq!(e["error"], "n must be at most 50000");
}

#[test]
fn bad_frames_get_an_error_and_the_socket_stays_open() {
    let (app, _) = app();
    let mut socket = connect(&app, "clumsy");
    for frame in ["abc", "-1", "1.5", "1000001", r#"{"m":1}"#, ""] {
        let e = ask_error(&mut socket, frame);
        assert!(e["error"].as_str().is_some_and(|s| !s.is_empty()), "{e}");
    }
    socket.send(Message::binary(vec![1u8, 2, 3])).unwrap();
    assert_eq!(
        next_of(&mut socket, "error")["error"],
        "binary frames are not understood; send text"
    );
    assert_eq!(ask(&mut socket, "12")["value"], "144");
}

/// Sends one raw data frame: `opcode` Text or Binary opens a message, Continue carries on.
fn send_fragment(socket: &mut Socket, data: &str, opcode: Data, fin: bool) {
    socket
        .send(Message::Frame(Frame::message(
            data.as_bytes().to_vec(),
            OpCode::Data(opcode),
            fin,
        )))
        .unwrap();
}

#[test]
fn a_text_message_sent_in_fragments_is_answered_whole() {
    let (app, _) = app();
    let mut socket = connect(&app, "fragments");
    send_fragment(&mut socket, "1", Data::Text, false);
    send_fragment(&mut socket, "0", Data::Continue, true);
    assert_eq!(
        next_of(&mut socket, "fib"),
        serde_json::json!({"type": "fib", "n": 10, "value": "55"})
    );
    // Three fragments, with a ping between them (control frames may interleave).
    send_fragment(&mut socket, r#"{"n""#, Data::Text, false);
    socket.send(Message::Ping(vec![7u8].into())).unwrap();
    send_fragment(&mut socket, ":1", Data::Continue, false);
    send_fragment(&mut socket, "2}", Data::Continue, true);
    assert_eq!(next_of(&mut socket, "fib")["value"], "144");
    // A fragmented binary message is one error, like an unfragmented one.
    send_fragment(&mut socket, "12", Data::Binary, false);
    send_fragment(&mut socket, "34", Data::Continue, true);
    assert_eq!(
        next_of(&mut socket, "error")["error"],
        "binary frames are not understood; send text"
    );
    assert_eq!(ask(&mut socket, "11")["value"], "89");
}

#[test]
fn a_fragmented_message_over_64_kib_is_an_error_and_the_socket_stays_open() {
    let (app, _) = app();
    let mut socket = connect(&app, "chatterbox");
    // Whitespace around a number is valid JSON: only the size makes this one wrong.
    let padding = " ".repeat(40 * 1024);
    send_fragment(&mut socket, &padding, Data::Text, false);
    send_fragment(&mut socket, &padding, Data::Continue, false);
    send_fragment(&mut socket, "10", Data::Continue, true);
    assert_eq!(
        next_of(&mut socket, "error")["error"],
        "message longer than 65536 bytes"
    );
    assert_eq!(ask(&mut socket, "12")["value"], "144");
    // Just under the cap is answered.
    send_fragment(&mut socket, &padding, Data::Text, false);
    send_fragment(
        &mut socket,
        &" ".repeat(24 * 1024 - 2),
        Data::Continue,
        false,
    );
    send_fragment(&mut socket, "10", Data::Continue, true);
    assert_eq!(next_of(&mut socket, "fib")["value"], "55");
}

#[test]
fn a_bad_username_gets_400_and_no_socket() {
    let (app, _) = app();
    for bad in ["a%20b", &"x".repeat(33), "caf%C3%A9"] {
        match try_connect(&app, bad) {
            Err(tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status(), 400, "{bad}");
                let body = String::from_utf8(resp.body().clone().unwrap_or_default()).unwrap();
                let v: Value = serde_json::from_str(&body).expect("a JSON error body");
                assert!(v["error"].is_string(), "{body}");
            }
            other => panic!("{bad}: expected 400, got {:?}", other.map(|_| "a socket")),
        }
    }
}

#[test]
fn a_plain_get_without_upgrade_is_a_400() {
    let (app, _) = app();
    match ureq::get(&app.url("/ws/fibonacci/ana")).call() {
        Err(ureq::Error::Status(400, _)) => {}
        other => panic!("expected 400, got {other:?}"),
    }
}

#[test]
fn an_open_socket_is_a_connected_user_until_it_closes() {
    let (app, instance) = app();
    let mut first = connect(&app, "ana");
    let second = connect(&app, "ana");
    let users = connected_users(&app, &instance);
    assert_eq!(users.len(), 2, "two tabs are two rows: {users:?}");
    for u in &users {
        assert_eq!(u["username"], "ana");
        chrono::DateTime::parse_from_rfc3339(u["connected_at"].as_str().unwrap()).unwrap();
    }
    first.close(None).unwrap();
    // Read until the server's close reply arrives.
    while first.read().is_ok() {}
    assert!(
        eventually(Duration::from_secs(5), || connected_users(&app, &instance)
            .len()
            == 1),
        "a closed socket's row was deleted"
    );
    // An abnormal close: the TCP connection just goes away.
    drop(second);
    assert!(
        eventually(Duration::from_secs(5), || connected_users(&app, &instance)
            .is_empty()),
        "a dropped connection's row was deleted"
    );
}

#[test]
fn rows_left_by_an_earlier_run_of_the_same_replica_are_deleted_at_start() {
    let instance = format!("fibtest-{}", uuid::Uuid::new_v4().simple());
    migrated();
    sql(
        "INSERT INTO connected_users (id, username, instance) \
         VALUES (gen_random_uuid(), 'ghost', $1)",
        &instance,
    );
    assert_eq!(rows_of(&instance), 1);
    let mut config = Config::from_env();
    config.instance_name = instance.clone();
    let _app = TestServer::start(config);
    assert!(
        eventually(Duration::from_secs(5), || rows_of(&instance) == 0),
        "the ghost row of a previous run is gone"
    );
}

#[test]
fn the_refresh_writes_back_the_row_of_a_live_socket_that_vanished() {
    let (app, instance) = app();
    let mut socket = connect(&app, "phoenix");
    let before = connected_users(&app, &instance);
    assert_eq!(before.len(), 1);
    // What a PostgreSQL crash does to the UNLOGGED table, or another process's start-up
    // cleanup under the same instance name.
    assert_eq!(
        sql("DELETE FROM connected_users WHERE instance = $1", &instance),
        1
    );
    assert!(connected_users(&app, &instance).is_empty());
    // The refresh runs every REFRESH_EVERY (10) ticks; 25 s leaves room for slow ticks on a
    // busy machine. Reading the ticks keeps the socket's buffers drained meanwhile.
    let back = eventually(Duration::from_secs(25), || {
        next_of(&mut socket, "time");
        !connected_users(&app, &instance).is_empty()
    });
    assert!(
        back,
        "the live socket's row was written back by the refresh"
    );
    assert_eq!(
        connected_users(&app, &instance),
        before,
        "the same row: username, instance and connected_at"
    );
}

#[test]
fn a_client_that_stops_reading_is_closed_as_too_slow() {
    // A small bound so the kernel's socket buffers fill long before memory matters.
    let (app, _) = app_with(|c| c.ws_max_pending_bytes = 4096);
    let mut socket = connect(&app, "sloth");
    // Each reply is ~2 KB; 10 000 of them overflow the kernel's buffers in both directions.
    for _ in 0..10_000 {
        if socket.send(Message::text("10000")).is_err() {
            break;
        }
    }
    let mut close = None;
    loop {
        match socket.read() {
            Ok(Message::Close(frame)) => {
                close = frame;
                break;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let frame = close.expect("a close frame with a reason");
    assert_eq!(frame.code, CloseCode::Policy);
    assert_eq!(frame.reason.as_str(), arena::fib::TOO_SLOW);
}

#[test]
fn shutdown_closes_every_socket_with_1001_and_forgets_its_rows() {
    let (app, instance) = app();
    let mut socket = connect(&app, "leaver");
    assert_eq!(connected_users(&app, &instance).len(), 1);
    // The clock has started (it does on the first socket); wait for one tick to be sure.
    next_of(&mut socket, "time");
    app.shared.shutdown.signal();
    let frame = close_frame(&mut socket);
    assert_eq!(frame.code, CloseCode::Away);
    assert_eq!(frame.reason.as_str(), arena::fib::GOING_AWAY);
    // A stopping replica answers its routes with 503 (nginx asks another): read the table.
    assert!(
        eventually(Duration::from_secs(5), || rows_of(&instance) == 0),
        "rows deleted at shutdown"
    );
    assert!(
        arena::infra::block_on(app.shared.shutdown.tasks_done(Duration::from_secs(5))),
        "the clock released its shutdown guard"
    );
}

/// Reads until the server's close frame; panics if the connection ends without one.
fn close_frame(socket: &mut Socket) -> tungstenite::protocol::CloseFrame {
    loop {
        match socket.read() {
            Ok(Message::Close(frame)) => return frame.expect("a close frame with a code"),
            Ok(_) => {}
            Err(e) => panic!("connection ended without a close frame: {e}"),
        }
    }
}

#[test]
fn a_socket_whose_open_is_overtaken_by_shutdown_is_closed_with_1001_and_forgotten() {
    // One pooled connection, so the test can hold a socket's insert back: a transaction
    // request blocked on an account row lock the test holds keeps that connection busy.
    let (app, instance) = app_with(|c| c.pg_pool_size = 1);
    let mut early = connect(&app, "early");
    next_of(&mut early, "time"); // the worker's clock runs
    let (base, addr) = (app.url(""), app.addr);
    let url = Config::from_env().database_url;
    arena::infra::block_on(async {
        let pool = arena::infra::postgres::pool(&url, 1).unwrap();
        let account = arena::accounts::store::open_account(&pool, 0)
            .await
            .unwrap()
            .get();
        let mut pg = arena::infra::postgres::connect(&url).await.unwrap();
        let lock = pg.transaction().await.unwrap();
        lock.execute(
            "SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE",
            &[&account],
        )
        .await
        .unwrap();
        let post = std::thread::spawn(move || {
            ureq::post(&format!("{base}/clientes/{account}/transacoes"))
                .send_json(serde_json::json!({"valor": 1, "tipo": "c", "descricao": "espera"}))
                .map_or_else(|e| format!("{e}"), |r| r.status().to_string())
        });
        common::until_blocked_by(&lock, "the transaction").await;
        // This socket's open now waits for the pool (2 s at most). Nothing outside shows that
        // it has got there, hence a short pause rather than a readiness check.
        let late = std::thread::spawn(move || try_connect_to(addr, "late"));
        tokio::time::sleep(Duration::from_millis(300)).await;
        app.shared.shutdown.signal();
        // The clock has closed every socket it knew of, before the late one's insert ran.
        assert_eq!(close_frame(&mut early).code, CloseCode::Away);
        lock.commit().await.unwrap();
        assert_eq!(post.join().unwrap(), "200");
        let mut late = late.join().unwrap().expect("the upgrade went through");
        let frame = close_frame(&mut late);
        assert_eq!(frame.code, CloseCode::Away);
        assert_eq!(frame.reason.as_str(), arena::fib::GOING_AWAY);
    });
    assert!(
        eventually(Duration::from_secs(5), || rows_of(&instance) == 0),
        "no row outlives the shutdown"
    );
}

#[test]
fn a_client_that_hangs_up_while_its_row_is_being_written_leaves_no_row() {
    // One pooled connection, and a first socket, so the insert statement is already prepared
    // there: the insert below is then blocked in its execution, as it would be in a busy
    // replica, not in its preparation.
    let (app, instance) = app_with(|c| c.pg_pool_size = 1);
    let mut first = connect(&app, "first");
    first.close(None).unwrap();
    while first.read().is_ok() {}
    assert!(eventually(Duration::from_secs(5), || rows_of(&instance) == 0));
    let url = Config::from_env().database_url;
    arena::infra::block_on(async {
        let mut pg = arena::infra::postgres::connect(&url).await.unwrap();
        // Holds back every insert into the table (other tests' too, for a moment) while
        // letting reads through.
        let lock = pg.transaction().await.unwrap();
        lock.batch_execute("LOCK TABLE connected_users IN SHARE MODE")
            .await
            .unwrap();
        let mut client = TcpStream::connect(app.addr).unwrap();
        client
            .write_all(
                b"GET /ws/fibonacci/quitter HTTP/1.1\r\nHost: arena\r\nUpgrade: websocket\r\n\
                  Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                  Sec-WebSocket-Version: 13\r\n\r\n",
            )
            .unwrap();
        common::until_blocked_by(&lock, "the insert").await;
        // The client gives up mid-upgrade; give the server a moment to notice before the
        // insert may go on. (ntex 3.12 lets this handler finish and drops the session it made;
        // were the handler dropped instead, `Sockets::record`'s task deletes the row.)
        client.shutdown(std::net::Shutdown::Both).unwrap();
        drop(client);
        tokio::time::sleep(Duration::from_millis(300)).await;
        lock.commit().await.unwrap();
    });
    assert!(
        eventually(Duration::from_secs(5), || rows_of(&instance) == 0),
        "the row of a socket that never opened was deleted"
    );
}

#[test]
fn large_requests_run_off_the_event_loop_while_small_ones_and_ticks_go_on() {
    // Four 209 kB replies at once: room for all of them, so this test is about the event loop,
    // not about the slow-client limit (tested on its own).
    let (app, _) = app_with(|c| c.ws_max_pending_bytes = 4 << 20);
    let mut busy = connect(&app, "busy");
    let mut other = connect(&app, "bystander");
    // Every request in one write, the fifth large one included: sent one by one (or after a
    // round trip), Nagle's algorithm or a loaded machine could space them out until one of the
    // four had finished, and then the fifth would rightly be accepted.
    for _ in 0..4 {
        busy.write(Message::text("1000000")).unwrap();
    }
    busy.write(Message::text("999999")).unwrap();
    busy.write(Message::text("10")).unwrap();
    busy.flush().unwrap();
    // A fifth large request while four are in flight is refused, not queued...
    assert_eq!(
        next_of(&mut busy, "error")["error"],
        "too many large fib requests in flight on this socket; wait for a reply"
    );
    // ...and the small one is answered before any of the large ones.
    assert_eq!(next_of(&mut busy, "fib")["n"], 10);
    // Meanwhile the other socket keeps ticking.
    next_of(&mut other, "time");
    let big: Vec<Value> = (0..4).map(|_| next_of(&mut busy, "fib")).collect();
    for v in big {
        assert_eq!(v["n"], 1_000_000);
        assert_eq!(v["value"].as_str().unwrap().len(), 208_988);
    }
}
