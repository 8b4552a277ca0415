//! The process's metrics, served as Prometheus text by `GET /metrics`. One registry per process
//! (a `static`), shared by every ntex worker and — in tests — by every `TestServer` of the test
//! binary, so counters only ever move forward: tests compare before and after.
//!
//! Every HTTP request is counted by the route middleware ([`super::observe`]) under its route
//! *template* (`/pessoas/{id}`, never the raw path). Other domains report through the small API
//! below, one call each, after their own work:
//!
//! | call | metric |
//! |---|---|
//! | [`publish_confirmed`] / [`publish_failed`]`(queue)` | `arena_publish_total{queue,outcome}` |
//! | [`inserter_batch`]`(rows, flush_time)` | `arena_inserter_batch_rows`, `arena_inserter_flush_seconds` |
//! | [`inserter_queue_depth`]`(n)` | `arena_inserter_queue_depth` (set by `/metrics` itself) |
//! | `let _open = `[`websocket_open`]`("fibonacci")` | `arena_open_websockets{kind}` while held |
//! | `let _open = `[`long_poll_open`]`("status")` | `arena_open_long_polls{kind}` while held |
//! | [`pool_wait`]`(Pool::Postgres, waited)` | `arena_pool_wait_seconds{pool}` |
//! | [`chat_event`]`("published")` | `arena_chat_events_total{outcome}` (published, received, local_only) |
//! | [`chat_events_lost`]`(n)` | `arena_chat_events_total{outcome="lost"}` (a worker fell behind) |
//! | [`chat_broker_connected`]`(up)` | `arena_chat_broker_connected` (1 while the fan-out queue is bound) |
//! | [`apelido_rebuild`]`("started")` | `arena_apelido_rebuilds_total{outcome}` (started, completed, gave_up, failed) |
//! | [`apelido_keys_restored`]`(n)` | `arena_apelido_keys_restored_total` |
//!
//! Pool sizes (`arena_pool_connections{pool,state}`) are read from deadpool at scrape time from
//! every live worker's pools ([`register_pools`], called by `Shared::worker_state`).
//!
//! `arena inserter` is its own process: it serves this same rendering of its own registry on
//! `INSERTER_METRICS_PORT` (nginx: `/metrics/inserter`), where its batch histograms are. Its
//! backlog is read by the replicas instead: `/metrics` reads the pending set people keep in
//! Redis (`people::backlog`) and sets the queue-depth gauge just before rendering.
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use ntex::http::Method;
use prometheus_client::encoding::{text, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The route label of a request no resource matched (404s, and 503s of a fallen replica for
/// unknown paths). One fixed value, so scanners probing random paths add no series.
pub const UNMATCHED: &str = "unmatched";

/// Request latency buckets in seconds: 0.5 ms to 5 s. The contest's p99 goal sits in the low
/// milliseconds, so most buckets are there; long-polls are counted but land in the top ones.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 30.0,
];
/// Inserter batch sizes: powers of two up to the largest batch worth one INSERT … unnest.
const BATCH_BUCKETS: [f64; 11] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];
/// Pool waits and flushes: 0.1 ms (a free connection) to 1 s (a starved pool).
const WAIT_BUCKETS: [f64; 10] = [
    0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// A connection pool, as named in the `pool` label.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Pool {
    Postgres,
    Redis,
}

impl Pool {
    fn label(self) -> &'static str {
        match self {
            Pool::Postgres => "postgres",
            Pool::Redis => "redis",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PublishLabels {
    queue: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabel {
    pool: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolStateLabels {
    pool: &'static str,
    state: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Reads one worker's pool; `None` once that worker (and its pool) is gone.
type PoolProbe = Box<dyn Fn() -> Option<deadpool_postgres::Status> + Send + Sync>;

struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: HistogramFamily<RouteLabel>,
    publish: Family<PublishLabels, Counter>,
    batch_rows: Histogram,
    flush_seconds: Histogram,
    queue_depth: Gauge,
    websockets: Family<KindLabel, Gauge>,
    long_polls: Family<KindLabel, Gauge>,
    chat_events: Family<OutcomeLabel, Counter>,
    chat_broker: Gauge,
    apelido_rebuilds: Family<OutcomeLabel, Counter>,
    apelido_keys_restored: Counter,
    pool_wait: HistogramFamily<PoolLabel>,
    pool_connections: Family<PoolStateLabels, Gauge>,
    pools: Mutex<Vec<(Pool, PoolProbe)>>,
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

fn wait_histogram() -> Histogram {
    Histogram::new(WAIT_BUCKETS)
}

fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let mut m = Metrics {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            publish: Family::default(),
            batch_rows: Histogram::new(BATCH_BUCKETS),
            flush_seconds: wait_histogram(),
            queue_depth: Gauge::default(),
            websockets: Family::default(),
            long_polls: Family::default(),
            chat_events: Family::default(),
            chat_broker: Gauge::default(),
            apelido_rebuilds: Family::default(),
            apelido_keys_restored: Counter::default(),
            pool_wait: Family::new_with_constructor(wait_histogram),
            pool_connections: Family::default(),
            pools: Mutex::new(Vec::new()),
            registry: Registry::with_prefix("arena"),
        };
        let registry = &mut m.registry;
        registry.register(
            "http_requests",
            "HTTP requests answered, by route template, method and status",
            m.requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time from routing to response, by route template",
            m.latency.clone(),
        );
        registry.register(
            "publish",
            "RabbitMQ publishes by queue and outcome (confirmed or failed)",
            m.publish.clone(),
        );
        registry.register(
            "inserter_batch_rows",
            "Rows per batch the inserter wrote",
            m.batch_rows.clone(),
        );
        registry.register(
            "inserter_flush_seconds",
            "Time to write and commit one inserter batch",
            m.flush_seconds.clone(),
        );
        registry.register(
            "inserter_queue_depth",
            "People answered 201 and not yet inserted into PostgreSQL (queued or in the inserter's batch), read at scrape",
            m.queue_depth.clone(),
        );
        registry.register(
            "open_websockets",
            "WebSocket connections open now, by kind",
            m.websockets.clone(),
        );
        registry.register(
            "open_long_polls",
            "Long-poll requests waiting now, by kind",
            m.long_polls.clone(),
        );
        registry.register(
            "chat_events",
            "Chat events by outcome: published to RabbitMQ, received from it, delivered on this replica only (broker down), lost (a worker fell behind)",
            m.chat_events.clone(),
        );
        registry.register(
            "chat_broker_connected",
            "1 while this process's chat fan-out queue is bound in RabbitMQ, 0 while it reconnects",
            m.chat_broker.clone(),
        );
        registry.register(
            "apelido_rebuilds",
            "Rebuilds of Redis's apelido keys from PostgreSQL after Redis lost its data, by outcome: started, completed, gave_up (the queue did not drain in time), failed",
            m.apelido_rebuilds.clone(),
        );
        registry.register(
            "apelido_keys_restored",
            "Apelido keys the rebuilds found missing in Redis and set again from PostgreSQL",
            m.apelido_keys_restored.clone(),
        );
        registry.register(
            "pool_wait_seconds",
            "Time spent waiting for a pooled connection",
            m.pool_wait.clone(),
        );
        registry.register(
            "pool_connections",
            "Pooled connections summed over this process's workers: max, open, idle, waiting",
            m.pool_connections.clone(),
        );
        m
    })
}

/// Text name of a method for the label; unusual methods share one value.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// Counts one answered request (the route middleware calls it for every request).
pub fn observe_request(route: &'static str, method: &Method, status: u16, elapsed: Duration) {
    let m = metrics();
    m.requests
        .get_or_create(&RequestLabels {
            route,
            method: method_label(method),
            status,
        })
        .inc();
    m.latency
        .get_or_create(&RouteLabel { route })
        .observe(elapsed.as_secs_f64());
}

/// A label value that comes from configuration (a queue name) as `'static`: each distinct
/// value is leaked once per process (a handful), never per call.
pub fn intern(value: &str) -> &'static str {
    static VALUES: Mutex<std::collections::BTreeSet<&'static str>> =
        Mutex::new(std::collections::BTreeSet::new());
    let mut values = VALUES.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(known) = values.get(value) {
        return known;
    }
    let leaked: &'static str = Box::leak(value.to_owned().into_boxed_str());
    values.insert(leaked);
    leaked
}

/// A publish RabbitMQ confirmed (call after the confirm arrives).
pub fn publish_confirmed(queue: &'static str) {
    metrics()
        .publish
        .get_or_create(&PublishLabels {
            queue,
            outcome: "confirmed",
        })
        .inc();
}

/// A publish that failed or was nacked.
pub fn publish_failed(queue: &'static str) {
    metrics()
        .publish
        .get_or_create(&PublishLabels {
            queue,
            outcome: "failed",
        })
        .inc();
}

/// One inserter batch written: its row count and how long the write and commit took.
pub fn inserter_batch(rows: usize, flush: Duration) {
    let m = metrics();
    m.batch_rows.observe(rows as f64);
    m.flush_seconds.observe(flush.as_secs_f64());
}

/// People accepted (201) and not yet in PostgreSQL: in the queue or in the inserter's batch.
pub fn inserter_queue_depth(depth: usize) {
    metrics()
        .queue_depth
        .set(i64::try_from(depth).unwrap_or(i64::MAX));
}

/// Time a handler waited for a pooled connection.
pub fn pool_wait(pool: Pool, waited: Duration) {
    metrics()
        .pool_wait
        .get_or_create(&PoolLabel { pool: pool.label() })
        .observe(waited.as_secs_f64());
}

/// One chat event: `published`, `received` or `local_only`.
pub fn chat_event(outcome: &'static str) {
    metrics()
        .chat_events
        .get_or_create(&OutcomeLabel { outcome })
        .inc();
}

/// Chat events a worker skipped because it fell behind the process's fan-out.
pub fn chat_events_lost(missed: u64) {
    metrics()
        .chat_events
        .get_or_create(&OutcomeLabel { outcome: "lost" })
        .inc_by(missed);
}

/// Whether the chat fan-out queue is bound (1) or reconnecting (0).
pub fn chat_broker_connected(up: bool) {
    metrics().chat_broker.set(i64::from(up));
}

/// One step of a rebuild of the apelido keys: `started`, `completed`, `gave_up` or `failed`.
pub fn apelido_rebuild(outcome: &'static str) {
    metrics()
        .apelido_rebuilds
        .get_or_create(&OutcomeLabel { outcome })
        .inc();
}

/// Apelido keys a rebuild set again (they were missing from Redis).
pub fn apelido_keys_restored(keys: u64) {
    metrics().apelido_keys_restored.inc_by(keys);
}

/// Counts something open (a WebSocket, a long-poll) for as long as it is held.
#[must_use = "the count drops when this guard does"]
#[derive(Debug)]
pub struct Open(Gauge);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Hold the result for the life of a WebSocket connection: `let _open = websocket_open("fib");`.
pub fn websocket_open(kind: &'static str) -> Open {
    let gauge = metrics()
        .websockets
        .get_or_create(&KindLabel { kind })
        .clone();
    gauge.inc();
    Open(gauge)
}

/// Hold the result while a long-poll waits: `let _open = long_poll_open("status");`.
pub fn long_poll_open(kind: &'static str) -> Open {
    let gauge = metrics()
        .long_polls
        .get_or_create(&KindLabel { kind })
        .clone();
    gauge.inc();
    Open(gauge)
}

/// Makes one worker's pools visible in `arena_pool_connections`; they drop out by themselves
/// when the worker (and so its pools) is gone.
pub fn register_pools(pg: &deadpool_postgres::Pool, redis: &deadpool_redis::Pool) {
    let pg = pg.weak();
    let redis = redis.weak();
    let mut pools = metrics()
        .pools
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    pools.retain(|(_, probe)| probe().is_some());
    pools.push((
        Pool::Postgres,
        Box::new(move || pg.upgrade().map(|p| p.status())),
    ));
    pools.push((
        Pool::Redis,
        Box::new(move || redis.upgrade().map(|p| p.status())),
    ));
}

fn refresh_pools(m: &Metrics) {
    let mut totals = [[0usize; 4]; 2];
    let pools = m
        .pools
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    for (pool, probe) in pools.iter() {
        if let Some(s) = probe() {
            let t = &mut totals[*pool as usize];
            t[0] += s.max_size;
            t[1] += s.size;
            t[2] += s.available;
            t[3] += s.waiting;
        }
    }
    for (pool, t) in [(Pool::Postgres, totals[0]), (Pool::Redis, totals[1])] {
        for (state, v) in ["max", "open", "idle", "waiting"].into_iter().zip(t) {
            m.pool_connections
                .get_or_create(&PoolStateLabels {
                    pool: pool.label(),
                    state,
                })
                .set(i64::try_from(v).unwrap_or(i64::MAX));
        }
    }
}

/// The Content-Type of [`render`]'s output: OpenMetrics text, which Prometheus reads natively.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every metric in the OpenMetrics text format, pool gauges read just now.
pub fn render() -> String {
    let m = metrics();
    refresh_pools(m);
    let mut out = String::with_capacity(16 * 1024);
    if text::encode(&mut out, &m.registry).is_err() {
        // Writing to a String cannot fail; keep the scrape parseable if it ever does.
        out.clear();
        let _ = writeln!(out, "# EOF");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value_of(text: &str, series: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or(0.0)
    }

    #[test]
    fn a_request_is_counted_under_its_template_and_status() {
        let series = r#"arena_http_requests_total{route="/unit/{id}",method="GET",status="200"}"#;
        let before = value_of(&render(), series);
        observe_request("/unit/{id}", &Method::GET, 200, Duration::from_millis(3));
        let text = render();
        assert_eq!(value_of(&text, series), before + 1.0, "{text}");
        assert!(
            text.contains(
                r#"arena_http_request_duration_seconds_bucket{le="0.005",route="/unit/{id}"}"#
            ) || text.contains(
                r#"arena_http_request_duration_seconds_bucket{route="/unit/{id}",le="0.005"}"#
            ),
            "{text}"
        );
    }

    #[test]
    fn an_open_guard_counts_while_held() {
        let series = r#"arena_open_websockets{kind="unit"}"#;
        let open = websocket_open("unit");
        assert_eq!(value_of(&render(), series), 1.0);
        drop(open);
        assert_eq!(value_of(&render(), series), 0.0);
    }

    #[test]
    fn the_text_ends_with_the_openmetrics_eof() {
        assert!(render().ends_with("# EOF\n"));
    }
}
