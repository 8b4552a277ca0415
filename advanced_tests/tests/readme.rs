//! The documentation's try-it examples, run as a reader would paste them, against the stack.
//!
//! Every ```` ```sh ```` block right after a `<!-- try -->` line of README.md or docs/API.md runs
//! in `bash` with `set -eo pipefail` (`localhost:9999` pointed at the stack under test's nginx,
//! `localhost:9001`/`9002` at its first two replicas), and any
//! non-zero exit fails the test. The examples carry their own expectations the way a reader's
//! shell would show them: `curl -f` where the answer must be 2xx, `| grep ' 422$'` where an example
//! shows a refusal, `jq -e` where a field must be there. So a route, a field or a status that
//! changes breaks the test, and the README cannot drift from the code again.
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use advanced_tests::{request, stack};

/// The marker a tested block follows.
const MARKER: &str = "<!-- try -->";
/// Longest an example may take (the chat one listens on a WebSocket for a few seconds).
const LIMIT: Duration = Duration::from_secs(90);

#[derive(Debug)]
struct Example {
    /// 1-based line of the block's opening fence.
    line: usize,
    code: String,
}

/// The blocks that follow a marker. A marker not followed by a `sh` block is a mistake in the
/// document, not something to skip quietly.
fn examples(doc: &str, name: &str) -> Vec<Example> {
    let lines: Vec<&str> = doc.lines().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim() != MARKER {
            i += 1;
            continue;
        }
        let fence = i + 1;
        assert!(
            lines.get(fence).is_some_and(|l| l.trim_end() == "```sh"),
            "{name}:{}: {MARKER} must be followed by a ```sh block",
            i + 1
        );
        let end = (fence + 1..lines.len())
            .find(|&j| lines[j].trim_end() == "```")
            .unwrap_or_else(|| panic!("{name}:{}: the block never closes", fence + 1));
        found.push(Example {
            line: fence + 1,
            code: lines[fence + 1..end].join("\n"),
        });
        i = end + 1;
    }
    found
}

/// Where the documents' addresses are on the stack under test: nginx at `localhost:9999`, api1
/// and api2 at 9001 and 9002 (`scripts/up`'s), and the admin token `arena-admin`.
struct Target {
    nginx: String,
    replicas: Vec<String>,
    admin_token: String,
}

impl Target {
    fn of_stack() -> Self {
        let s = stack();
        let host = |url: &str| {
            url.trim_start_matches("http://")
                .trim_end_matches('/')
                .to_owned()
        };
        Self {
            nginx: host(&s.url),
            replicas: (0..s.replica_count())
                .map(|i| host(&s.replica(i, "")))
                .collect(),
            admin_token: s.admin_token.clone(),
        }
    }

    fn apply(&self, code: &str) -> String {
        let mut code = code.replace("localhost:9999", &self.nginx);
        for (i, replica) in self.replicas.iter().enumerate().take(2) {
            code = code.replace(&format!("localhost:{}", 9001 + i), replica);
        }
        code.replace(
            "Bearer arena-admin",
            &format!("Bearer {}", self.admin_token),
        )
    }
}

/// Runs one example; Err carries what a reader would have seen.
fn run(code: &str, target: &Target) -> Result<String, String> {
    use std::os::unix::process::CommandExt;
    let script = format!("set -eo pipefail\n{}", target.apply(code));
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a timeout also stops what the example put in the background.
        .process_group(0)
        .spawn()
        .map_err(|e| format!("bash: {e}"))?;
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break Some(status);
        }
        if start.elapsed() > LIMIT {
            let group = format!("-{}", child.id());
            let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    let shown = format!("--- stdout\n{out}--- stderr\n{err}");
    match status {
        Some(s) if s.success() => Ok(out),
        Some(s) => Err(format!("exited with {s}\n{shown}")),
        None => Err(format!("still running after {LIMIT:?}\n{shown}")),
    }
}

fn doc(path: &str) -> String {
    std::fs::read_to_string(stack().root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// One test for both documents: the examples touch shared state (account 1's balance, the
/// people count), so they run one after another, never beside each other.
#[test]
fn every_try_it_example_runs_as_pasted() {
    let target = Target::of_stack();
    let mut failures = Vec::new();
    let mut ran = 0;
    for (path, at_least) in [("README.md", 6), ("docs/API.md", 1)] {
        let found = examples(&doc(path), path);
        assert!(
            found.len() >= at_least,
            "{path}: {} try-it examples, expected at least {at_least} (a {MARKER} line lost?)",
            found.len()
        );
        for ex in found {
            ran += 1;
            let start = Instant::now();
            match run(&ex.code, &target) {
                Ok(_) => println!("{path}:{} ran in {:?}", ex.line, start.elapsed()),
                Err(e) => failures.push(format!("{path}:{}\n{}\n{e}", ex.line, ex.code)),
            }
        }
    }
    // docs/API.md's /fall example stops half-way if it fails: never leave a replica fallen for
    // the tests that run after this one.
    let s = stack();
    let admin = format!("Bearer {}", s.admin_token);
    for i in 0..s.replica_count() {
        request(
            "POST",
            &s.replica(i, "/revive"),
            &[("authorization", &admin)],
            None,
        );
    }
    assert!(
        failures.is_empty(),
        "{} of {ran} examples failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// The harness itself: a wrong route, a wrong status and a missing field each fail.
#[test]
fn a_broken_example_fails() {
    let target = Target::of_stack();
    for broken in [
        "curl -fsS localhost:9999/no-such-route",
        "curl -s -o /dev/null -w ' %{http_code}\\n' localhost:9999/ping | grep ' 422$'",
        "curl -fsS localhost:9999/health | jq -e .no_such_field",
    ] {
        assert!(run(broken, &target).is_err(), "passed: {broken}");
    }
    assert!(run("curl -fsS localhost:9999/ping", &target).is_ok());
}

#[test]
fn a_marker_without_its_block_is_refused() {
    let ok = examples("a\n<!-- try -->\n```sh\necho hi\n```\nb\n", "t");
    assert_eq!(ok.len(), 1);
    assert_eq!((ok[0].line, ok[0].code.as_str()), (3, "echo hi"));
    let lost = std::panic::catch_unwind(|| examples("<!-- try -->\n\n```sh\nx\n```\n", "t"));
    assert!(lost.is_err());
}
