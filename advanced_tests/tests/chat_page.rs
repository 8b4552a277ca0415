//! The chat page (`GET /chat`) in a real browser. Two headless chromium processes, each with
//! its own profile and each opening the page on a different replica's own port, sign in, share
//! a group and see each other's messages arrive live over the room socket, also after one of
//! them lost its socket. The pages are driven through the Chrome DevTools Protocol: chromium
//! listens on a port it picks (`--remote-debugging-port=0`, written to `DevToolsActivePort` in
//! its profile), the test connects to the page's own DevTools WebSocket with tungstenite and
//! types, clicks and reads the DOM with `Runtime.evaluate`.
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use advanced_tests::chat::User;
use advanced_tests::{chromium, json, stack, unique, Value, CHROMIUM_HEADLESS};

/// How long a page may take to show what the test waits for: a message crosses RabbitMQ in
/// milliseconds, a reconnect after a drop waits its backoff (0.5 to 1 s the first time).
const PATIENCE: Duration = Duration::from_secs(20);

#[test]
fn the_page_and_its_files_are_served_with_their_types_and_revalidated_by_etag() {
    let s = stack();
    for (path, content_type) in [
        ("/chat", "text/html; charset=utf-8"),
        ("/chat/page.js", "application/javascript; charset=utf-8"),
        ("/chat/page.css", "text/css; charset=utf-8"),
    ] {
        let first = ureq::get(&s.at(path)).call().expect("200");
        assert_eq!(first.status(), 200, "{path}");
        assert_eq!(first.header("content-type"), Some(content_type), "{path}");
        assert_eq!(first.header("cache-control"), Some("no-cache"), "{path}");
        assert_eq!(first.header("x-content-type-options"), Some("nosniff"));
        let etag = first.header("etag").expect("an ETag").to_owned();
        assert!(first.into_string().unwrap().len() > 500, "{path}: a body");
        // Every replica of one build tags a file alike, so a browser's copy stays valid
        // whichever one nginx picks next.
        for i in 0..s.replica_count() {
            let direct = ureq::get(&s.replica(i, path)).call().expect("200");
            assert_eq!(
                direct.header("etag"),
                Some(etag.as_str()),
                "{path} on replica {i}"
            );
        }
        let again = ureq::get(&s.at(path))
            .set("if-none-match", &etag)
            .call()
            .expect("304");
        assert_eq!(again.status(), 304, "{path}");
        assert_eq!(again.into_string().unwrap(), "");
    }
    let page = ureq::get(&s.at("/chat")).call().unwrap();
    let csp = page.header("content-security-policy").expect("a CSP");
    assert!(csp.contains("default-src 'self'"), "{csp}");
    let html = page.into_string().unwrap();
    assert!(html.contains(r#"src="/chat/page.js""#), "{html}");
    assert!(html.contains(r#"href="/chat/page.css""#), "{html}");
    match ureq::get(&s.at("/chat/nope.js")).call() {
        Err(ureq::Error::Status(404, r)) => {
            assert_eq!(r.into_string().unwrap(), r#"{"error":"not found"}"#)
        }
        other => panic!("expected 404, got {other:?}"),
    }
}

#[test]
fn two_browsers_on_two_replicas_chat_live_through_the_page() {
    let s = stack();
    assert!(
        s.replica_count() >= 2,
        "two replicas are needed, the stack runs {}",
        s.replica_count()
    );
    let password = "pw-123456";
    let name_a = format!("page-a-{}", unique());
    // B exists before A names it as a member; it signs in through its page.
    let b = User::new("page-b");

    let mut page_a = Browser::launch("a");
    let mut page_b = Browser::launch("b");
    page_a.open(&s.replica(0, "/chat"));
    page_b.open(&s.replica(1, "/chat"));
    // Each page asks its own origin's /ping: on a replica's own port, that replica answers.
    for (page, i) in [(&mut page_a, 0), (&mut page_b, 1)] {
        let shown = page.wait_for("the replica shown", "text('replica')");
        assert_eq!(shown, format!("replica {}", s.replica_name(i)));
    }

    // A registers (which signs it in) and creates a group with B in it.
    page_a.fill("username", &name_a);
    page_a.fill("password", password);
    page_a.click("register");
    page_a.wait_for(
        "A signed in",
        &format!("text('whoami').startsWith({})", json!(name_a)),
    );
    page_a.fill("group-name", "browser test");
    page_a.fill("group-members", &b.name);
    page_a.click("create");
    let group = page_a
        .wait_for("A's room open and live", LIVE_GROUP)
        .as_i64()
        .expect("a group id");

    // A wrong password is said so on the page; then B signs in and opens the group.
    page_b.fill("username", &b.name);
    page_b.fill("password", "not-the-password");
    page_b.click("login");
    let error = page_b.wait_for("the failed login shown", "shown('error') && text('error')");
    assert!(
        error
            .as_str()
            .is_some_and(|e| e.contains("wrong username or password")),
        "{error}"
    );
    page_b.fill("password", password);
    page_b.click("login");
    // A join the API refuses shows its JSON error too.
    page_b.wait_for("B signed in", "shown('app')");
    page_b.fill("join-id", "9007199254740991");
    page_b.click("join");
    let error = page_b.wait_for("the failed join shown", "shown('error') && text('error')");
    assert!(
        error
            .as_str()
            .is_some_and(|e| e.starts_with("Joining the group failed: ")
                && e.contains("not found (HTTP 404)")),
        "{error}"
    );
    page_b.fill("join-id", "");
    page_b.wait_for(
        "B's group list",
        &format!("document.querySelector('#groups li[data-id=\"{group}\"] button')"),
    );
    page_b.eval(&format!(
        "document.querySelector('#groups li[data-id=\"{group}\"] button').click()"
    ));
    assert_eq!(
        page_b.wait_for("B's room open and live", LIVE_GROUP),
        json!(group)
    );
    assert!(!page_b.eval("shown('error')").as_bool().unwrap());

    // Live both ways: nothing but the room socket brings the other's message.
    let from_a = format!("hello from A, {}", unique());
    page_a.send(&from_a);
    page_b.wait_for_message(&from_a);
    let from_b = format!("hello from B, {}", unique());
    page_b.send(&from_b);
    page_a.wait_for_message(&from_a);
    page_a.wait_for_message(&from_b);
    // The sender has its message twice (its POST's answer, then the socket): shown once, and
    // in id order on both pages.
    for page in [&mut page_a, &mut page_b] {
        let shown = page.eval("messages()");
        let shown: Vec<&str> = shown
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_str().unwrap())
            .collect();
        assert_eq!(shown, [from_a.as_str(), from_b.as_str()]);
        assert_eq!(page.eval("idsAscending()"), json!(true));
    }

    // B's socket drops and stays down (the browser offline) while A posts one message and
    // deletes another: B retries with backoff, and once back on line reopens its socket with
    // `since` (the last event it had), which replays the post and the deletion.
    page_b.call("Network.enable", json!({}));
    page_b.offline(true);
    page_b.eval("statuses.length = 0; arenaChat.dropSocket()");
    let missed = format!("sent while B was away, {}", unique());
    page_a.send(&missed);
    page_a.wait_for_message(&missed);
    page_a.eval(&format!(
        "[...document.querySelectorAll('#messages li')] \
           .find((li) => li.querySelector('.text').textContent === {}) \
           .querySelector('.delete').click()",
        json!(from_a)
    ));
    page_a.wait_for(
        "A's message deleted on A's page",
        &format!("!messages().includes({})", json!(from_a)),
    );
    page_b.wait_for(
        "a reconnect refused while offline, and the next one scheduled",
        "statuses.filter((s) => s.startsWith('reconnecting in')).length >= 2",
    );
    assert_eq!(
        page_b.eval(&format!("messages().includes({})", json!(missed))),
        json!(false),
        "B got the message while offline: {}",
        page_b.eval("statuses")
    );
    page_b.offline(false);
    page_b.wait_for_message(&missed);
    page_b.wait_for("B live again", LIVE_GROUP);
    page_b.wait_for(
        "the deletion replayed on B's page",
        &format!("!messages().includes({})", json!(from_a)),
    );
    let shown = page_b.eval("messages()");
    assert_eq!(shown, json!([from_b, missed]));
    let url = page_b.eval("arenaChat.socketUrl()");
    assert!(
        url.as_str().is_some_and(|u| u.contains("&since=")),
        "B's socket was not reopened with since: {url}"
    );

    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("out");
    std::fs::create_dir_all(&out).unwrap();
    for (page, file) in [
        (&mut page_a, "chat-page-a.png"),
        (&mut page_b, "chat-page-b.png"),
    ] {
        let path = out.join(file);
        page.screenshot(&path);
        println!("screenshot: {}", path.display());
    }
}

/// The open group's id once its socket is live, else null.
const LIVE_GROUP: &str = "document.getElementById('status').dataset.state === 'live' \
    && Number(document.getElementById('room').dataset.group) || null";

/// Helpers every evaluated expression may use (the page's own code is left alone); `statuses`
/// records every text the room's status shows.
const HELPERS: &str = r#"
window.text = (id) => document.getElementById(id).textContent;
window.shown = (id) => !document.getElementById(id).hidden;
window.messages = () => [...document.querySelectorAll('#messages li .text')].map((p) => p.textContent);
window.statuses = [];
new MutationObserver(() => statuses.push(text('status')))
  .observe(document.getElementById('status'), { childList: true, characterData: true, subtree: true });
window.idsAscending = () => [...document.querySelectorAll('#messages li')]
  .map((li) => Number(li.dataset.id)).every((id, i, all) => i === 0 || all[i - 1] < id);
"#;

/// One headless chromium with its own profile (so its own sessionStorage and user), driven
/// over its page's DevTools socket. Dropping it ends the process and removes the profile.
struct Browser {
    name: &'static str,
    process: Child,
    profile: PathBuf,
    devtools: tungstenite::WebSocket<TcpStream>,
    next_id: u64,
}

impl Browser {
    fn launch(name: &'static str) -> Self {
        let profile = std::env::temp_dir().join(format!("arena-chat-page-{name}-{}", unique()));
        std::fs::create_dir_all(&profile).unwrap();
        let process = Command::new(chromium())
            .args(CHROMIUM_HEADLESS)
            .arg("--remote-debugging-port=0")
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run chromium");
        let port_file = profile.join("DevToolsActivePort");
        let port: u16 = poll(&format!("chromium {name}'s DevToolsActivePort"), || {
            std::fs::read_to_string(&port_file)
                .ok()?
                .lines()
                .next()?
                .parse()
                .ok()
        });
        // The page's own socket: on the browser's, every command would need a session of
        // Target.attachToTarget.
        let targets: Value = poll("chromium's page target", || {
            ureq::get(&format!("http://127.0.0.1:{port}/json/list"))
                .call()
                .ok()?
                .into_json()
                .ok()
        });
        let url = targets
            .as_array()
            .and_then(|t| t.iter().find(|t| t["type"] == "page"))
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .unwrap_or_else(|| panic!("no page target: {targets}"))
            .to_owned();
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to DevTools");
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        let (devtools, _) = tungstenite::client(url, stream).expect("DevTools handshake");
        let mut browser = Self {
            name,
            process,
            profile,
            devtools,
            next_id: 0,
        };
        // A fixed viewport, whatever headless makes of a window size: the same screenshots
        // every run.
        browser.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 1100, "height": 640, "deviceScaleFactor": 1, "mobile": false}),
        );
        browser
    }

    /// Sends one DevTools command and returns its result, skipping the events in between.
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let command = json!({"id": id, "method": method, "params": params});
        self.devtools
            .send(tungstenite::Message::text(command.to_string()))
            .expect("send to DevTools");
        loop {
            let frame = self.devtools.read().expect("DevTools answers");
            let tungstenite::Message::Text(text) = frame else {
                continue;
            };
            let reply: Value = serde_json::from_str(&text).expect("DevTools speaks JSON");
            if reply["id"] == id {
                assert!(reply["error"].is_null(), "{method}: {reply}");
                return reply["result"].clone();
            }
        }
    }

    /// The value of `expression` in the page (promises awaited).
    fn eval(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        if let Some(exception) = result.get("exceptionDetails") {
            panic!("{}: `{expression}` threw {exception}", self.name);
        }
        result["result"]["value"].clone()
    }

    /// Polls `expression` until it is truthy and returns it; fails with what the page shows.
    fn wait_for(&mut self, what: &str, expression: &str) -> Value {
        let started = Instant::now();
        loop {
            let value = self.eval(expression);
            if !matches!(&value, Value::Null | Value::Bool(false))
                && value != json!("")
                && value != json!(0)
            {
                return value;
            }
            if started.elapsed() > PATIENCE {
                let page = self.eval("document.body.innerText");
                panic!(
                    "{}: no {what} after {PATIENCE:?}; the page shows:\n{}",
                    self.name,
                    page.as_str().unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Loads `url` and waits until its script has run.
    fn open(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url}));
        self.wait_for(
            &format!("{url} loaded"),
            "document.readyState === 'complete' && !!window.arenaChat",
        );
        self.eval(HELPERS);
    }

    fn fill(&mut self, id: &str, value: &str) {
        self.eval(&format!(
            "document.getElementById({}).value = {}",
            json!(id),
            json!(value)
        ));
    }

    fn click(&mut self, id: &str) {
        self.eval(&format!("document.getElementById({}).click()", json!(id)));
    }

    fn send(&mut self, content: &str) {
        self.fill("content", content);
        self.click("send");
    }

    fn wait_for_message(&mut self, content: &str) {
        self.wait_for(
            &format!("message {content:?}"),
            &format!("messages().includes({})", json!(content)),
        );
    }

    /// Cuts the browser off the network (new connections fail), or back on.
    fn offline(&mut self, offline: bool) {
        self.call(
            "Network.emulateNetworkConditions",
            json!({"offline": offline, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1}),
        );
    }

    fn screenshot(&mut self, path: &std::path::Path) {
        let shot = self.call("Page.captureScreenshot", json!({"format": "png"}));
        let png = base64_decode(shot["data"].as_str().expect("base64 data"));
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        std::fs::write(path, png).expect("write the screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Asked to close, chromium ends its helper processes before it exits; killed, they may
        // still be writing to the profile while it is removed.
        let close = json!({"id": 0, "method": "Browser.close"}).to_string();
        let _ = self.devtools.send(tungstenite::Message::text(close));
        let asked = Instant::now();
        while !matches!(self.process.try_wait(), Ok(Some(_))) {
            if asked.elapsed() > Duration::from_secs(5) {
                let _ = self.process.kill();
                let _ = self.process.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Polls `probe` every 50 ms until it answers, for at most [`PATIENCE`].
fn poll<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(started.elapsed() < PATIENCE, "no {what} after {PATIENCE:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Standard base64 (DevTools' screenshots); the suite has no base64 crate and needs no more.
fn base64_decode(text: &str) -> Vec<u8> {
    let digit = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut bits, mut held) = (0u32, 0);
    for c in text.bytes().take_while(|&c| c != b'=') {
        bits = bits << 6 | u32::from(digit(c));
        held += 6;
        if held >= 8 {
            held -= 8;
            out.push((bits >> held) as u8);
            bits &= (1 << held) - 1;
        }
    }
    out
}

#[test]
fn base64_decodes_what_devtools_sends() {
    assert_eq!(base64_decode("iVBORw0KGgo="), b"\x89PNG\r\n\x1a\n");
    assert_eq!(base64_decode("aGk="), b"hi");
    assert_eq!(base64_decode(""), b"");
}
