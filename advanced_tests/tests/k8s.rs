//! deploy/k8s cannot be applied here (no cluster), and `scripts/check-k8s` only proves each
//! manifest is a well-formed Kubernetes object. What would still break silently once applied is
//! checked here as data, against the code and docker-compose.yml: a setting of src/config.rs
//! nobody set, a probe on a route that does not exist or that restarts a fallen replica, a
//! budget or an image that drifted from compose, a grace period shorter than the shutdown, a
//! file kustomize never applies. Needs no running stack.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_yaml::Value;

/// Settings the manifests leave unset on purpose, each with the reason. A name here must not be
/// set anywhere (so the list cannot go stale); a new setting goes into the manifests or here.
const UNSET_ON_PURPOSE: &[(&str, &str)] = &[(
    "SOCKET_PATH",
    "pods listen on TCP; a Unix socket serves an nginx on the same host, and an empty value \
     would be read as a socket path",
)];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("advanced_tests sits in the repository")
        .to_path_buf()
}

fn k8s_dir() -> PathBuf {
    repo().join("deploy/k8s")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every file under `dir` (recursively) whose name ends with one of `suffixes`, sorted.
fn files_under(dir: &Path, suffixes: &[&str]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                todo.push(path);
            } else if suffixes.iter().any(|s| path.to_string_lossy().ends_with(s)) {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

fn is_kustomization(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n == "kustomization.yaml")
}

/// The Kubernetes objects under deploy/k8s (every YAML document but the kustomizations).
fn objects() -> Vec<(PathBuf, Value)> {
    let mut all = Vec::new();
    for path in files_under(&k8s_dir(), &[".yaml", ".yml"]) {
        if is_kustomization(&path) {
            continue;
        }
        let text = read(&path);
        // Documents are separated by `---` lines (the manifests hold one each today).
        let mut docs = vec![String::new()];
        for line in text.lines() {
            if line.trim_end() == "---" {
                docs.push(String::new());
            } else {
                let doc = docs.last_mut().unwrap();
                doc.push_str(line);
                doc.push('\n');
            }
        }
        for doc in docs {
            let value: Value = serde_yaml::from_str(&doc)
                .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()));
            if !value.is_null() {
                all.push((path.clone(), value));
            }
        }
    }
    assert!(!all.is_empty(), "no manifests under deploy/k8s");
    all
}

/// The one object of `kind` named `name`.
fn object(kind: &str, name: &str) -> Value {
    let matches: Vec<Value> = objects()
        .into_iter()
        .map(|(_, v)| v)
        .filter(|v| v["kind"] == kind && v["metadata"]["name"] == name)
        .collect();
    assert_eq!(matches.len(), 1, "expected exactly one {kind} {name}");
    matches.into_iter().next().unwrap()
}

fn str_of<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {v:?}"))
}

fn seq<'a>(v: &'a Value, what: &str) -> &'a [Value] {
    v.as_sequence()
        .map(|s| s.as_slice())
        .unwrap_or_else(|| panic!("{what} is not a list: {v:?}"))
}

fn api() -> Value {
    object("Deployment", "arena-api")
}

fn inserter() -> Value {
    object("Deployment", "arena-inserter")
}

fn migrate() -> Value {
    object("Job", "arena-migrate")
}

/// The container named `arena` of a Deployment or Job.
fn arena_container(workload: &Value) -> Value {
    seq(
        &workload["spec"]["template"]["spec"]["containers"],
        "containers",
    )
    .iter()
    .find(|c| c["name"] == "arena")
    .cloned()
    .expect("a container named arena")
}

// ---------------------------------------------------------------------------------------------
// What the code says

/// One `#[arg(... env = "X" ...)]` of src/config.rs.
#[derive(Debug)]
struct Setting {
    name: String,
    /// clap hides its value (`hide_env_values = true`): a secret.
    secret: bool,
}

fn settings() -> Vec<Setting> {
    let text = read(&repo().join("src/config.rs"));
    let found: Vec<Setting> = text
        .split("#[arg(")
        .skip(1)
        .filter_map(|chunk| {
            let attr = &chunk[..chunk.find(")]")?];
            let name = attr.split("env = \"").nth(1)?.split('"').next()?;
            Some(Setting {
                name: name.to_string(),
                secret: attr.contains("hide_env_values = true"),
            })
        })
        .collect();
    // The scan must not lose a setting it cannot parse.
    assert_eq!(
        found.len(),
        text.matches("env = \"").count(),
        "every `env = \"X\"` of src/config.rs sits in an #[arg(...)] the scan understands"
    );
    assert!(
        found.iter().any(|s| s.name == "DATABASE_URL") && found.len() >= 20,
        "the scan found the settings: {found:?}"
    );
    found
}

/// The default src/config.rs gives setting `name` (`default_value_t = N` or `default_value = "x"`).
fn default_of(name: &str) -> String {
    let text = read(&repo().join("src/config.rs"));
    let marker = format!("env = \"{name}\"");
    let at = text
        .find(&marker)
        .unwrap_or_else(|| panic!("{name} in src/config.rs"));
    let attr = &text[at..at + text[at..].find(")]").unwrap()];
    let raw = attr
        .split("default_value_t = ")
        .nth(1)
        .or_else(|| attr.split("default_value = ").nth(1))
        .unwrap_or_else(|| panic!("{name} has no default"));
    raw.split(',')
        .next()
        .unwrap()
        .trim()
        .trim_matches('"')
        .replace('_', "")
}

/// Each route template registered in src/**/routes.rs, and whether it is gated (answers 503
/// while the replica is fallen or stopping: `resource`) or never (`ops_resource`).
fn routes() -> BTreeMap<String, bool> {
    let mut routes = BTreeMap::new();
    let files: Vec<PathBuf> = files_under(&repo().join("src"), &["routes.rs"]);
    assert!(!files.is_empty(), "src has routes.rs files");
    for path in files {
        let text = read(&path);
        let mut rest = text.as_str();
        while let Some(at) = rest.find("resource(\"") {
            let gated = !rest[..at].ends_with("ops_");
            let after = &rest[at + "resource(\"".len()..];
            let template = &after[..after.find('"').expect("a closing quote")];
            routes.insert(template.to_string(), gated);
            rest = after;
        }
    }
    assert!(
        routes.contains_key("/health"),
        "the scan found the ops routes: {routes:?}"
    );
    routes
}

// ---------------------------------------------------------------------------------------------
// What the manifests say

/// Where a variable's value comes from.
#[derive(Debug, Clone, PartialEq)]
enum Source {
    Literal(String),
    ConfigMap(String),
    Secret(String),
    Field(String),
}

/// The environment a container gets: envFrom first, explicit `env` over it (Kubernetes' order).
fn env_of(container: &Value) -> BTreeMap<String, Source> {
    let mut env = BTreeMap::new();
    if let Some(from) = container["envFrom"].as_sequence() {
        for source in from {
            if let Some(name) = source["configMapRef"]["name"].as_str() {
                let map = object("ConfigMap", name);
                for (k, v) in map["data"].as_mapping().expect("ConfigMap data") {
                    let value = str_of(v, "a ConfigMap value (quote numbers)").to_string();
                    env.insert(str_of(k, "key").to_string(), Source::ConfigMap(value));
                }
            } else if let Some(name) = source["secretRef"]["name"].as_str() {
                let secret = object("Secret", name);
                for field in ["stringData", "data"] {
                    if let Some(m) = secret[field].as_mapping() {
                        for (k, v) in m {
                            let value = str_of(v, "a Secret value").to_string();
                            env.insert(str_of(k, "key").to_string(), Source::Secret(value));
                        }
                    }
                }
            } else {
                panic!("envFrom entry neither a ConfigMap nor a Secret: {source:?}");
            }
        }
    }
    if let Some(vars) = container["env"].as_sequence() {
        for var in vars {
            let name = str_of(&var["name"], "env name").to_string();
            let source = if let Some(v) = var["value"].as_str() {
                Source::Literal(v.to_string())
            } else if let Some(path) = var["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                Source::Field(path.to_string())
            } else if let Some(key) = var["valueFrom"]["configMapKeyRef"]["key"].as_str() {
                let map = object(
                    "ConfigMap",
                    str_of(&var["valueFrom"]["configMapKeyRef"]["name"], "name"),
                );
                Source::ConfigMap(str_of(&map["data"][key], key).to_string())
            } else if let Some(key) = var["valueFrom"]["secretKeyRef"]["key"].as_str() {
                let secret = object(
                    "Secret",
                    str_of(&var["valueFrom"]["secretKeyRef"]["name"], "name"),
                );
                let value = secret["stringData"][key]
                    .as_str()
                    .unwrap_or_else(|| panic!("{key} in the Secret's stringData"));
                Source::Secret(value.to_string())
            } else {
                panic!("env {name} has no value this test understands: {var:?}");
            };
            env.insert(name, source);
        }
    }
    env
}

/// The value a variable resolves to from a literal, the ConfigMap or the Secret.
fn value_of(env: &BTreeMap<String, Source>, name: &str) -> String {
    match env.get(name) {
        Some(Source::Literal(v) | Source::ConfigMap(v) | Source::Secret(v)) => v.clone(),
        other => panic!("{name} has no static value: {other:?}"),
    }
}

/// A number of a container port, by its name or as a number.
fn container_port(container: &Value, port: &Value) -> u64 {
    if let Some(n) = port.as_u64() {
        return n;
    }
    let name = str_of(port, "a port");
    seq(&container["ports"], "ports")
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p["containerPort"].as_u64())
        .unwrap_or_else(|| panic!("no container port named {name}"))
}

/// CPUs of a Kubernetes quantity ("300m", "0.3", "1").
fn k8s_cpus(q: &str) -> f64 {
    match q.strip_suffix('m') {
        Some(milli) => milli.parse::<f64>().expect("millicpu") / 1000.0,
        None => q.parse().unwrap_or_else(|_| panic!("cpu quantity {q:?}")),
    }
}

/// Bytes of a Kubernetes memory quantity ("60Mi", "60M", "1Gi", "1000").
fn k8s_bytes(q: &str) -> f64 {
    let at = q.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(q.len());
    let (n, unit) = q.split_at(at);
    let n: f64 = n
        .parse()
        .unwrap_or_else(|_| panic!("memory quantity {q:?}"));
    n * match unit {
        "" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        other => panic!("memory unit {other:?} in {q:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// What docker-compose.yml says (parsed as compose.rs does)

fn compose() -> Value {
    let text = read(&repo().join("docker-compose.yml"));
    let mut doc: Value = serde_yaml::from_str(&advanced_tests::at_defaults(&text))
        .expect("docker-compose.yml is valid YAML");
    doc.apply_merge().expect("merge keys resolve");
    doc
}

/// Bytes of a compose memory limit as Docker reads it: k, m, g (with or without a trailing b)
/// are powers of 1024, so compose's "60MB" is 60 MiB.
fn docker_bytes(s: &str) -> f64 {
    let s = s.trim().to_ascii_lowercase();
    let at = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    let (n, unit) = s.split_at(at);
    let n: f64 = n.parse().unwrap_or_else(|_| panic!("memory limit {s:?}"));
    n * match unit.trim_end_matches('b') {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        other => panic!("memory unit {other:?} in {s:?}"),
    }
}

/// (CPUs, bytes) compose gives `service`.
fn compose_budget(service: &str) -> (f64, f64) {
    let doc = compose();
    let limits = &doc["services"][service]["deploy"]["resources"]["limits"];
    let cpus = str_of(&limits["cpus"], "cpus").parse().expect("cpus");
    (cpus, docker_bytes(str_of(&limits["memory"], "memory")))
}

fn assert_budget(container: &Value, service: &str) {
    let (cpus, bytes) = compose_budget(service);
    for side in ["requests", "limits"] {
        let r = &container["resources"][side];
        let what = format!("{service}'s container {side}");
        let c = k8s_cpus(str_of(&r["cpu"], &what));
        let m = k8s_bytes(str_of(&r["memory"], &what));
        assert!((c - cpus).abs() < 1e-9, "{what}: cpu {c}, compose {cpus}");
        assert!(
            (m - bytes).abs() < 1.0,
            "{what}: memory {m} bytes, compose {bytes}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn the_api_deployment_sets_every_setting_of_arena() {
    let env = env_of(&arena_container(&api()));
    let unset: BTreeSet<&str> = UNSET_ON_PURPOSE.iter().map(|(n, _)| *n).collect();
    let settings = settings();
    let missing: Vec<&str> = settings
        .iter()
        .map(|s| s.name.as_str())
        .filter(|n| !unset.contains(n) && !env.contains_key(*n))
        .collect();
    assert!(
        missing.is_empty(),
        "settings of src/config.rs the api Deployment does not set (add them to \
         deploy/k8s/base/configmap.yaml or secret.yaml): {missing:?}"
    );
    for (name, why) in UNSET_ON_PURPOSE {
        assert!(
            settings.iter().any(|s| s.name == *name),
            "{name} is no setting any more: drop it from UNSET_ON_PURPOSE"
        );
        assert!(
            !env.contains_key(*name),
            "{name} is set, though unset on purpose ({why})"
        );
    }
}

#[test]
fn the_inserter_and_the_migrate_job_read_the_same_settings_as_the_api() {
    let api_env = env_of(&arena_container(&api()));
    for (what, workload) in [("inserter", inserter()), ("migrate Job", migrate())] {
        let env = env_of(&arena_container(&workload));
        for (name, source) in &api_env {
            assert_eq!(
                env.get(name),
                Some(source),
                "the {what} and the api disagree on {name}"
            );
        }
    }
}

#[test]
fn secrets_come_from_the_secret_and_never_from_the_config_map() {
    let env = env_of(&arena_container(&api()));
    let secret: Vec<String> = settings()
        .into_iter()
        .filter(|s| s.secret)
        .map(|s| s.name)
        .collect();
    assert!(
        secret.contains(&"ADMIN_TOKEN".to_string()) && secret.contains(&"TOKEN_SECRET".to_string())
    );
    // The URLs carry passwords too.
    for name in secret
        .iter()
        .map(String::as_str)
        .chain(["DATABASE_URL", "REDIS_URL", "AMQP_URL"])
    {
        assert!(
            matches!(env.get(name), Some(Source::Secret(_))),
            "{name} must come from the Secret: {:?}",
            env.get(name)
        );
        let map = object("ConfigMap", "arena-config");
        assert!(map["data"][name].is_null(), "{name} is in the ConfigMap");
    }
    for (_, v) in object("Secret", "arena-secrets")["stringData"]
        .as_mapping()
        .expect("stringData")
    {
        let v = str_of(v, "a Secret value");
        assert!(
            !v.is_empty(),
            "an empty secret would be read as a value, not as unset"
        );
    }
}

#[test]
fn every_replica_gets_a_name_of_its_own() {
    // Connected users' rows are keyed by INSTANCE_NAME, and a starting replica deletes the
    // rows an earlier run of its name left: two pods sharing a name delete each other's.
    for workload in [api(), inserter()] {
        let env = env_of(&arena_container(&workload));
        assert_eq!(
            env.get("INSTANCE_NAME"),
            Some(&Source::Field("metadata.name".into())),
            "INSTANCE_NAME must be the pod's name"
        );
    }
}

#[test]
fn the_pods_listen_on_every_interface_on_the_ports_the_probes_and_services_use() {
    let api_container = arena_container(&api());
    let env = env_of(&api_container);
    assert_eq!(value_of(&env, "HOST"), "0.0.0.0");
    let port: u64 = value_of(&env, "PORT").parse().expect("PORT is a number");
    assert_eq!(
        container_port(&api_container, &Value::from("http")),
        port,
        "the container port named http is PORT"
    );
    let service = object("Service", "arena-api");
    let service_port = &seq(&service["spec"]["ports"], "ports")[0];
    assert_eq!(
        container_port(&api_container, &service_port["targetPort"]),
        port
    );
    for probe in ["readinessProbe", "livenessProbe", "startupProbe"] {
        let p = &api_container[probe]["httpGet"]["port"];
        assert_eq!(container_port(&api_container, p), port, "{probe} port");
    }

    let ins = arena_container(&inserter());
    let env = env_of(&ins);
    assert_eq!(value_of(&env, "HOST"), "0.0.0.0");
    let metrics: u64 = value_of(&env, "INSERTER_METRICS_PORT").parse().unwrap();
    assert_eq!(metrics, 9100);
    assert_eq!(container_port(&ins, &Value::from("metrics")), metrics);
    let service = object("Service", "arena-inserter");
    let service_port = &seq(&service["spec"]["ports"], "ports")[0];
    assert_eq!(container_port(&ins, &service_port["targetPort"]), metrics);
}

#[test]
fn the_probes_ask_routes_that_exist() {
    let routes = routes();
    assert!(
        routes.contains_key("/ping") && routes.contains_key("/metrics"),
        "{routes:?}"
    );
    for workload in [api(), inserter()] {
        let container = arena_container(&workload);
        for probe in ["readinessProbe", "livenessProbe", "startupProbe"] {
            if let Some(path) = container[probe]["httpGet"]["path"].as_str() {
                assert!(
                    routes.contains_key(path),
                    "{probe} asks {path}, which no routes.rs registers"
                );
            }
        }
    }
}

#[test]
fn readiness_drops_a_fallen_replica_and_liveness_never_restarts_one() {
    let container = arena_container(&api());
    let routes = routes();
    // /health answers 503 after POST /fall: the pod leaves the Service's endpoints.
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/health");
    // A restart would silently undo the fall (fault injection, undone by /revive): liveness
    // and startup ask a route that is never gated, and not /health.
    for probe in ["livenessProbe", "startupProbe"] {
        let path = str_of(&container[probe]["httpGet"]["path"], probe);
        assert_ne!(path, "/health", "{probe} would restart a fallen replica");
        assert_eq!(
            routes.get(path),
            Some(&false),
            "{probe} asks {path}, which answers 503 while the replica is fallen"
        );
    }
}

#[test]
fn the_resources_are_the_compose_budget() {
    // compose's `api` service: one definition, its limits per replica as a pod's are.
    assert_budget(&arena_container(&api()), "api");
    assert_budget(&arena_container(&inserter()), "inserter");
    for (statefulset, service) in [("db", "db"), ("redis", "redis"), ("rabbitmq", "rabbitmq")] {
        let set = object("StatefulSet", statefulset);
        let container = &seq(&set["spec"]["template"]["spec"]["containers"], "containers")[0];
        assert_budget(container, service);
        assert_eq!(
            container["image"],
            compose()["services"][service]["image"],
            "{statefulset} runs compose's image"
        );
    }
}

#[test]
fn every_arena_container_runs_the_image_compose_builds() {
    let doc = compose();
    let image = str_of(&doc["services"]["api"]["image"], "compose's arena image");
    for workload in [api(), inserter(), migrate()] {
        assert_eq!(arena_container(&workload)["image"], image);
    }
    assert_eq!(arena_container(&api())["args"][0], "serve");
    assert_eq!(
        arena_container(&inserter())["args"],
        doc["services"]["inserter"]["command"]
    );
    assert_eq!(arena_container(&migrate())["args"][0], "migrate");
    // One inserter: it is the queue's one consumer in compose too.
    assert_eq!(inserter()["spec"]["replicas"], 1);
}

#[test]
fn the_kubelet_waits_out_the_whole_shutdown() {
    let env = env_of(&arena_container(&api()));
    let timeout: u64 = env
        .get("SHUTDOWN_TIMEOUT_SECS")
        .map(|_| value_of(&env, "SHUTDOWN_TIMEOUT_SECS"))
        .unwrap_or_else(|| default_of("SHUTDOWN_TIMEOUT_SECS"))
        .parse()
        .expect("SHUTDOWN_TIMEOUT_SECS is a number");
    let spec = &api()["spec"]["template"]["spec"];
    let grace = spec["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("terminationGracePeriodSeconds is set");
    // The preStop pause runs before SIGTERM, out of the same grace period.
    let pre_stop = &arena_container(&api())["lifecycle"]["preStop"];
    let pause = match (
        pre_stop["exec"]["command"].as_sequence(),
        pre_stop["sleep"]["seconds"].as_u64(),
    ) {
        (Some(cmd), _) if cmd.first() == Some(&Value::from("sleep")) => {
            str_of(&cmd[1], "sleep's argument")
                .parse()
                .expect("seconds")
        }
        (_, Some(seconds)) => seconds,
        _ => 0,
    };
    // Three waits of up to SHUTDOWN_TIMEOUT_SECS: requests inside, ntex's stop, our tasks.
    assert!(
        grace > 3 * timeout + pause,
        "terminationGracePeriodSeconds {grace} <= 3 x {timeout} + preStop {pause}"
    );
}

#[test]
fn every_kustomization_entry_exists_and_every_manifest_is_applied() {
    let mut listed = BTreeSet::new();
    let mut todo = vec![k8s_dir().join("kustomization.yaml")];
    while let Some(kustomization) = todo.pop() {
        let doc: Value = serde_yaml::from_str(&read(&kustomization)).expect("kustomization YAML");
        let dir = kustomization.parent().unwrap().to_path_buf();
        for entry in seq(&doc["resources"], "resources") {
            let path = dir.join(str_of(entry, "a resources entry"));
            assert!(
                path.exists(),
                "{} lists {}, which does not exist",
                kustomization.display(),
                path.display()
            );
            if path.is_dir() {
                let nested = path.join("kustomization.yaml");
                assert!(
                    nested.is_file(),
                    "{} has no kustomization.yaml",
                    path.display()
                );
                todo.push(nested);
            } else {
                assert!(
                    listed.insert(path.canonicalize().unwrap()),
                    "{} listed twice",
                    path.display()
                );
            }
        }
    }
    // A manifest no kustomization lists is never applied by `kubectl apply -k deploy/k8s`.
    for path in files_under(&k8s_dir(), &[".yaml", ".yml"]) {
        if !is_kustomization(&path) {
            assert!(
                listed.contains(&path.canonicalize().unwrap()),
                "{} is in no kustomization",
                path.display()
            );
        }
    }
}

#[test]
fn the_autoscaler_cannot_exhaust_postgres_connections() {
    let hpa = object("HorizontalPodAutoscaler", "arena-api");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["kind"], "Deployment");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "arena-api");
    assert!(hpa["spec"]["minReplicas"].as_u64().unwrap() >= 2);
    let max = hpa["spec"]["maxReplicas"].as_u64().unwrap();
    let surge = api()["spec"]["strategy"]["rollingUpdate"]["maxSurge"]
        .as_u64()
        .expect("maxSurge as a number");
    let env = env_of(&arena_container(&api()));
    let workers: u64 = value_of(&env, "WORKERS").parse().unwrap();
    let pool: u64 = value_of(&env, "PG_POOL_SIZE").parse().unwrap();
    let db = object("StatefulSet", "db");
    let args = seq(
        &db["spec"]["template"]["spec"]["containers"][0]["args"],
        "db args",
    );
    let max_connections: u64 = args
        .iter()
        .filter_map(Value::as_str)
        .find_map(|a| a.strip_prefix("max_connections="))
        .expect("db sets max_connections")
        .parse()
        .unwrap();
    // Every replica of a rollout's peak, each worker's full pool, the inserter and the Job.
    let peak = (max + surge) * workers * pool + 2;
    assert!(
        peak < max_connections,
        "{peak} connections at the HPA's maximum, PostgreSQL allows {max_connections}"
    );
}

#[test]
fn every_selector_finds_its_pods() {
    fn selects(selector: &Value, labels: &Value) -> bool {
        let selector = selector.as_mapping().expect("a selector");
        !selector.is_empty() && selector.iter().all(|(k, v)| &labels[k] == v)
    }
    let objects = objects();
    let workloads: Vec<&Value> = objects
        .iter()
        .map(|(_, v)| v)
        .filter(|v| matches!(v["kind"].as_str(), Some("Deployment" | "StatefulSet")))
        .collect();
    for w in &workloads {
        let labels = &w["spec"]["template"]["metadata"]["labels"];
        assert!(
            selects(&w["spec"]["selector"]["matchLabels"], labels),
            "{:?} does not select its own pods",
            w["metadata"]["name"]
        );
    }
    let pods_of = |selector: &Value| -> usize {
        workloads
            .iter()
            .filter(|w| selects(selector, &w["spec"]["template"]["metadata"]["labels"]))
            .count()
    };
    for (_, v) in &objects {
        let name = &v["metadata"]["name"];
        match v["kind"].as_str() {
            Some("Service") => {
                assert_eq!(pods_of(&v["spec"]["selector"]), 1, "Service {name:?}")
            }
            Some("PodDisruptionBudget") => assert_eq!(
                pods_of(&v["spec"]["selector"]["matchLabels"]),
                1,
                "PDB {name:?}"
            ),
            _ => {}
        }
    }
    let pdb = object("PodDisruptionBudget", "arena-api");
    assert!(selects(
        &pdb["spec"]["selector"]["matchLabels"],
        &api()["spec"]["template"]["metadata"]["labels"]
    ));
    // StatefulSets name their governing Service.
    for w in workloads.iter().filter(|w| w["kind"] == "StatefulSet") {
        let service = str_of(&w["spec"]["serviceName"], "serviceName");
        object("Service", service);
    }
}

#[test]
fn the_ingress_keeps_websockets_and_long_polls_open() {
    let ingress = object("Ingress", "arena-api");
    assert_eq!(ingress["spec"]["ingressClassName"], "nginx");
    for timeout in ["proxy-read-timeout", "proxy-send-timeout"] {
        let key = format!("nginx.ingress.kubernetes.io/{timeout}");
        let secs: u64 = str_of(&ingress["metadata"]["annotations"][key.as_str()], &key)
            .parse()
            .expect("seconds");
        // Long-polls wait up to 60 s; nginx.conf gives 75 s.
        assert!(secs >= 75, "{key} is {secs}");
    }
    let backend = &ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"];
    let service = object("Service", str_of(&backend["name"], "backend service"));
    let port_name = &backend["port"]["name"];
    assert!(
        seq(&service["spec"]["ports"], "ports")
            .iter()
            .any(|p| &p["name"] == port_name),
        "the Ingress's port {port_name:?} is not the Service's"
    );
}

#[test]
fn the_service_urls_name_the_demo_services() {
    let env = env_of(&arena_container(&api()));
    let services: BTreeMap<String, Vec<u64>> = objects()
        .into_iter()
        .filter(|(_, v)| v["kind"] == "Service")
        .map(|(_, v)| {
            let ports = seq(&v["spec"]["ports"], "ports")
                .iter()
                .map(|p| p["port"].as_u64().unwrap())
                .collect();
            (str_of(&v["metadata"]["name"], "name").to_string(), ports)
        })
        .collect();
    for name in ["DATABASE_URL", "REDIS_URL", "AMQP_URL"] {
        let url = value_of(&env, name);
        let authority = url
            .split("://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_else(|| panic!("{name} {url:?} has no host"));
        let host_port = authority.rsplit('@').next().unwrap();
        let (host, port) = host_port
            .split_once(':')
            .unwrap_or_else(|| panic!("{name} names its port"));
        let port: u64 = port.parse().unwrap();
        assert!(
            services
                .get(host)
                .is_some_and(|ports| ports.contains(&port)),
            "{name} points at {host}:{port}, which no demo Service serves"
        );
    }
    // The demo database's password is the one in DATABASE_URL.
    let url = value_of(&env, "DATABASE_URL");
    let password = url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split('@').next())
        .and_then(|userinfo| userinfo.split_once(':'))
        .map(|(_, password)| password.to_string())
        .expect("DATABASE_URL has a password");
    let demo = object("Secret", "arena-demo-postgres");
    assert_eq!(
        demo["stringData"]["POSTGRES_PASSWORD"].as_str(),
        Some(password.as_str()),
        "DATABASE_URL's password differs from the demo PostgreSQL's"
    );
}

#[test]
fn the_demo_rabbitmq_is_configured_as_compose_s() {
    // The same file: kustomize cannot read deploy/rabbitmq/arena.conf from here, so the
    // ConfigMap holds a copy.
    let config = object("ConfigMap", "arena-demo-rabbitmq");
    assert_eq!(
        str_of(&config["data"]["arena.conf"], "arena.conf"),
        read(&repo().join("deploy/rabbitmq/arena.conf")),
        "the ConfigMap's arena.conf is deploy/rabbitmq/arena.conf"
    );
    let set = object("StatefulSet", "rabbitmq");
    let container = &seq(&set["spec"]["template"]["spec"]["containers"], "containers")[0];
    let erl_args = seq(&container["env"], "env")
        .iter()
        .find(|e| e["name"] == "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS")
        .expect("the Erlang arguments are set");
    assert_eq!(
        erl_args["value"],
        compose()["services"]["rabbitmq"]["environment"]["RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"]
    );
}
