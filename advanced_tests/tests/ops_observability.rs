//! `/metrics` moves with traffic, and Swagger UI renders the route list in a real browser
//! (headless Debian `chromium`), offline: its files come from the arena binary itself.
use std::path::PathBuf;
use std::process::Command;

use advanced_tests::{chromium, get, post, stack, unique, CHROMIUM_HEADLESS};

fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn metrics_counters_move_when_requests_are_made() {
    let s = stack();
    let ping = r#"arena_http_requests_total{route="/ping",method="GET",status="200"}"#;
    let before = get(&s.replica(0, "/metrics"));
    assert_eq!(before.status, 200);
    assert!(before
        .content_type
        .as_deref()
        .unwrap_or("")
        .contains("openmetrics-text"));
    for _ in 0..25 {
        assert_eq!(get(&s.replica(0, "/ping")).status, 200);
    }
    let after = get(&s.replica(0, "/metrics")).body;
    assert!(
        value(&after, ping) >= value(&before.body, ping) + 25.0,
        "{after}"
    );
    assert!(
        after.contains(r#"arena_http_request_duration_seconds_bucket{le="0.005",route="/ping"}"#)
            || after.contains(
                r#"arena_http_request_duration_seconds_bucket{route="/ping",le="0.005"}"#
            ),
        "{after}"
    );
    assert!(
        after.contains(r#"arena_pool_connections{pool="postgres",state="max"}"#),
        "{after}"
    );
}

#[test]
fn the_inserters_own_metrics_are_served_through_nginx() {
    let s = stack();
    let batches = "arena_inserter_batch_rows_count";
    let before = get(&s.at("/metrics/inserter"));
    assert_eq!(before.status, 200, "{before:?}");
    assert!(
        before.body.contains("arena_inserter_flush_seconds"),
        "{}",
        before.body
    );
    // Stacks on one machine share RabbitMQ's people queue, so every stack's inserter consumes
    // it and RabbitMQ hands the messages to them in turn: one person may well be written by
    // another stack's inserter. Ten reach this one too.
    for _ in 0..10 {
        let apelido = unique();
        let created = post(
            &s.at("/pessoas"),
            &format!(
                r#"{{"apelido":"{apelido}","nome":"m","nascimento":"2000-01-01","stack":null}}"#
            ),
        );
        assert_eq!(created.status, 201, "{created:?}");
    }
    assert_eq!(get(&s.at("/contagem-pessoas?wait=20")).status, 200);
    let after = get(&s.at("/metrics/inserter")).body;
    assert!(
        value(&after, batches) >= value(&before.body, batches) + 1.0,
        "{after}"
    );
}

fn headless(url: &str, extra: &[&str]) -> std::process::Output {
    let profile = std::env::temp_dir().join(format!("arena-chromium-{}", std::process::id()));
    let out = Command::new(chromium())
        .args(CHROMIUM_HEADLESS)
        .arg("--virtual-time-budget=10000")
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .output()
        .expect("run chromium");
    let _ = std::fs::remove_dir_all(profile);
    out
}

#[test]
fn swagger_ui_renders_the_route_list_in_headless_chromium() {
    let s = stack();
    let url = s.at("/api/openapi");
    let dom = headless(&url, &["--dump-dom"]);
    let html = String::from_utf8_lossy(&dom.stdout);
    for path in [
        "/ping",
        "/health",
        "/fall",
        "/revive",
        "/metrics",
        "/api/openapi.json",
    ] {
        assert!(
            html.contains(&format!(r#"data-path="{path}""#)),
            "Swagger UI did not render {path}; chromium said: {}\n{html}",
            String::from_utf8_lossy(&dom.stderr)
        );
    }
    assert!(
        html.contains("opblock-summary-path"),
        "no operation rendered"
    );

    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("out");
    std::fs::create_dir_all(&dir).unwrap();
    let shot = dir.join("swagger.png");
    let _ = std::fs::remove_file(&shot);
    let out = headless(
        &url,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,1600",
        ],
    );
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(
        size > 10_000,
        "no screenshot ({size} bytes): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("Swagger UI screenshot: {}", shot.display());
}
