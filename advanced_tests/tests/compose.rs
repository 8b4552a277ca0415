//! docker-compose.yml's shape and resource budget, checked as data, as it is published (every
//! `${VAR:-default}` at its default, i.e. the official images): every service limited, the
//! totals (each service times its replicas) within 1.5 CPU and 550 MB, and the API one service
//! that `docker compose up --scale api=N` can grow, which nginx finds through Docker's DNS;
//! and docker-compose.chat.yml, the chat-scale budget laid on top of it.
//! scripts/test-docker runs the file for real.
use advanced_tests::at_defaults;
use serde_yaml::Value;

fn compose() -> Value {
    compose_file("docker-compose.yml")
}

fn compose_file(name: &str) -> Value {
    let path = format!("{}/../{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut doc: Value =
        serde_yaml::from_str(&at_defaults(&text)).unwrap_or_else(|e| panic!("{name}: {e}"));
    doc.apply_merge().expect("merge keys resolve");
    doc
}

/// `over` on top of `base` as `docker compose -f base -f over` merges them: mappings key by key,
/// anything else (a command, a list of ports) replaced whole.
fn merged(base: &Value, over: &Value) -> Value {
    match (base, over) {
        (Value::Mapping(b), Value::Mapping(o)) => {
            let mut out = b.clone();
            for (k, v) in o {
                let next = match b.get(k) {
                    Some(bv) => merged(bv, v),
                    None => v.clone(),
                };
                out.insert(k.clone(), next);
            }
            Value::Mapping(out)
        }
        _ => over.clone(),
    }
}

/// docker-compose.yml with the chat-scale budget on top.
fn chat_compose() -> Value {
    merged(&compose(), &compose_file("docker-compose.chat.yml"))
}

#[test]
fn defaults_are_substituted_as_compose_does() {
    assert_eq!(
        at_defaults("image: ${NGINX_IMAGE:-nginx:1.28.0-alpine}\nport: ${P:-80}:80"),
        "image: nginx:1.28.0-alpine\nport: 80:80"
    );
}

fn nginx_conf() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../nginx/nginx.conf")).unwrap()
}

/// How many containers compose starts for `svc`: `deploy.replicas`, 1 when unset.
fn replicas(svc: &Value) -> u64 {
    match &svc["deploy"]["replicas"] {
        Value::Null => 1,
        n => n
            .as_u64()
            .unwrap_or_else(|| panic!("deploy.replicas is a number: {n:?}")),
    }
}

fn megabytes(s: &str) -> f64 {
    let s = s.trim();
    let (n, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len()));
    let n: f64 = n.parse().unwrap_or_else(|_| panic!("memory limit {s:?}"));
    match unit.to_ascii_uppercase().as_str() {
        "G" | "GB" => n * 1000.0,
        "M" | "MB" | "" => n,
        "K" | "KB" => n / 1000.0,
        other => panic!("unknown memory unit {other}"),
    }
}

/// The CPU and memory (MB) limits summed over every container the file starts.
fn totals(doc: &Value) -> (f64, f64) {
    let services = doc["services"].as_mapping().expect("services");
    let (mut cpus, mut mem) = (0.0, 0.0);
    for (name, svc) in services {
        let limits = &svc["deploy"]["resources"]["limits"];
        let cpu: f64 = limits["cpus"]
            .as_str()
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("{name:?} has no cpus limit"));
        let m = megabytes(
            limits["memory"]
                .as_str()
                .unwrap_or_else(|| panic!("{name:?} has no memory limit")),
        );
        // Limits are per container: a scaled service counts once per replica.
        let n = replicas(svc) as f64;
        cpus += cpu * n;
        mem += m * n;
    }
    (cpus, mem)
}

#[test]
fn every_service_has_limits_and_the_total_fits_the_budget() {
    let (cpus, mem) = totals(&compose());
    assert!(cpus <= 1.5 + 1e-9, "CPU limits sum to {cpus}");
    assert!(mem <= 550.0, "memory limits sum to {mem} MB");
}

#[test]
fn the_chat_budget_moves_memory_to_nginx_and_the_replicas_only() {
    // docker-compose.chat.yml: what 10 000 proxied room sockets need (README's budget table),
    // the same CPU, and every other service as the contest file has it.
    let (base, chat) = (compose(), chat_compose());
    let (cpus, mem) = totals(&chat);
    assert!(
        (cpus - totals(&base).0).abs() < 1e-9,
        "the chat budget moves no CPU: {cpus}"
    );
    assert!(mem <= 850.0, "memory limits sum to {mem} MB");
    for name in ["inserter", "db", "redis", "rabbitmq"] {
        assert_eq!(
            base["services"][name], chat["services"][name],
            "{name} is the contest's"
        );
    }
    let mem_of = |doc: &Value, svc: &str| {
        megabytes(
            doc["services"][svc]["deploy"]["resources"]["limits"]["memory"]
                .as_str()
                .unwrap(),
        )
    };
    assert!(mem_of(&chat, "nginx") > mem_of(&base, "nginx"));
    assert!(mem_of(&chat, "api") > mem_of(&base, "api"));
    assert_eq!(replicas(&chat["services"]["api"]), 2, "still two replicas");
    // The api's environment merged with the contest's, not replaced by the override's one key.
    assert!(chat["services"]["api"]["environment"]["DATABASE_URL"].is_string());
}

#[test]
fn the_chat_budget_holds_10000_sockets_by_its_own_settings() {
    let chat = chat_compose();
    let env = |svc: &str, key: &str| -> u64 {
        chat["services"][svc]["environment"][key]
            .as_str()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{svc} sets {key}"))
    };
    let (workers, slots) = (
        env("nginx", "NGINX_WORKER_PROCESSES"),
        env("nginx", "NGINX_WORKER_CONNECTIONS"),
    );
    // Two slots per proxied socket, plus the upstream keep-alive pool of each worker.
    assert!(
        workers * slots >= 2 * 10_000 + workers * 512,
        "{workers} × {slots}"
    );
    let replicas = replicas(&chat["services"]["api"]);
    assert!(replicas * env("api", "WS_MAX_CONNECTIONS") > 10_000);

    // The override's command rewrites nginx.conf's two lines (scripts/up's render does the same
    // from the same variables): each must be there, once, in the form its sed matches.
    let command = chat["services"]["nginx"]["command"][2]
        .as_str()
        .expect("sh -c command");
    assert!(
        command.contains("s/^worker_processes [0-9a-z]+;/"),
        "{command}"
    );
    assert!(
        command.contains("s/^( *worker_connections) [0-9]+;/"),
        "{command}"
    );
    let conf = nginx_conf();
    let count = |pred: &dyn Fn(&str) -> bool| conf.lines().filter(|l| pred(l)).count();
    let number_then_semicolon = |rest: &str| {
        rest.split_once(';')
            .is_some_and(|(n, _)| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric()))
    };
    assert_eq!(
        count(&|l| l
            .strip_prefix("worker_processes ")
            .is_some_and(number_then_semicolon)),
        1,
        "one `worker_processes N;` at the start of a line"
    );
    assert_eq!(
        count(&|l| l
            .trim_start()
            .strip_prefix("worker_connections ")
            .is_some_and(number_then_semicolon)),
        1,
        "one `worker_connections N;`"
    );
}

#[test]
fn the_stack_has_nginx_two_api_replicas_an_inserter_and_the_three_services() {
    let doc = compose();
    for name in ["nginx", "api", "inserter", "db", "redis", "rabbitmq"] {
        assert!(!doc["services"][name].is_null(), "service {name} missing");
    }
    for gone in ["api1", "api2"] {
        assert!(
            doc["services"][gone].is_null(),
            "{gone}: the replicas are one scalable service, api"
        );
    }
    assert_eq!(
        replicas(&doc["services"]["api"]),
        2,
        "two API replicas by default"
    );
    assert_eq!(
        replicas(&doc["services"]["inserter"]),
        1,
        "the queue's one consumer"
    );
    assert_eq!(doc["services"]["inserter"]["command"][0], "inserter");
    let ports: Vec<&str> = doc["services"]["nginx"]["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|p| p.as_str())
        .collect();
    assert!(ports.contains(&"9999:9999"), "{ports:?}");
}

#[test]
fn the_api_service_can_be_scaled_and_each_replica_names_itself_after_its_container() {
    let doc = compose();
    let api = &doc["services"]["api"];
    // Each of these is one value for every container of the service: a second replica would
    // clash on the host port or the container name, and a fixed hostname would give every
    // replica the same INSTANCE_NAME.
    for key in ["hostname", "container_name", "ports"] {
        assert!(
            api[key].is_null(),
            "api sets {key}: `--scale api=N` would clash"
        );
    }
    assert!(
        api["environment"]["INSTANCE_NAME"].is_null(),
        "a fixed INSTANCE_NAME would be every replica's"
    );
    // The entrypoint names the replica after its container's hostname, then becomes arena
    // serve (PID 1, so compose's SIGTERM reaches it).
    let entrypoint: Vec<&str> = api["entrypoint"]
        .as_sequence()
        .expect("api has an entrypoint list")
        .iter()
        .map(|v| v.as_str().expect("entrypoint strings"))
        .collect();
    assert_eq!(&entrypoint[..2], ["sh", "-c"], "{entrypoint:?}");
    let script = entrypoint[2];
    assert!(
        script.contains("INSTANCE_NAME=") && script.contains("hostname"),
        "the entrypoint derives INSTANCE_NAME from the hostname: {script:?}"
    );
    assert!(
        script.contains("exec arena serve"),
        "the entrypoint execs arena serve: {script:?}"
    );
    // `$` must be doubled, or compose substitutes `$(…)` itself when it reads the file.
    assert!(
        !script.replace("$$", "").contains('$'),
        "a single $ in {script:?}"
    );
    // The runtime image has the shell the entrypoint runs under: the last FROM, through the
    // ARG that names it.
    let dockerfile =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../Dockerfile")).unwrap();
    let last_from = dockerfile
        .lines()
        .filter_map(|l| l.trim().strip_prefix("FROM "))
        .last()
        .expect("a FROM line");
    let runtime = match last_from
        .strip_prefix("${")
        .and_then(|a| a.strip_suffix('}'))
    {
        Some(arg) => dockerfile
            .lines()
            .find_map(|l| l.trim().strip_prefix(&format!("ARG {arg}=")))
            .unwrap_or_else(|| panic!("ARG {arg} has a default")),
        None => last_from,
    };
    assert!(
        ["debian", "ubuntu", "alpine"]
            .iter()
            .any(|base| runtime.starts_with(base)),
        "the runtime image {runtime:?} may have no sh"
    );
}

#[test]
fn nginx_finds_the_api_replicas_through_dockers_dns() {
    let conf = nginx_conf();
    assert!(
        conf.contains("server api:9999 resolve"),
        "the api service's name, re-resolved"
    );
    assert!(
        conf.contains("resolver 127.0.0.11"),
        "Docker's embedded DNS server"
    );
    // `resolve` keeps the peers in the upstream's shared memory.
    let upstream = &conf[conf.find("upstream arena {").expect("upstream arena")..];
    let upstream = &upstream[..upstream.find('}').unwrap()];
    assert!(upstream.contains("zone arena"), "resolve needs the zone");
    assert!(
        conf.contains("server inserter:9100"),
        "the inserter's metrics upstream"
    );
    // One worker fits nginx's 20 MB; `auto` would start one per host core.
    assert!(
        conf.contains("worker_processes 1;"),
        "one nginx worker in compose"
    );
    assert!(conf.contains("proxy_next_upstream"));

    // Open-source nginx supports `resolve` in an upstream (and `resolver` there) since 1.27.3.
    let doc = compose();
    let image = doc["services"]["nginx"]["image"]
        .as_str()
        .expect("nginx image");
    let tag = image.split_once(':').expect("a pinned tag").1;
    let version: Vec<u32> = tag
        .split('-')
        .next()
        .unwrap()
        .split('.')
        .map(|n| n.parse().unwrap_or_else(|_| panic!("nginx tag {tag:?}")))
        .collect();
    assert!(
        version.len() == 3 && version >= vec![1, 27, 3],
        "{image} predates `resolve` (1.27.3); pin a full version"
    );
}

#[test]
fn the_docker_only_lines_are_those_scripts_up_replaces() {
    // scripts/up renders the local nginx.conf by replacing everything between the replicas
    // markers with 127.0.0.1 servers: Docker's resolver and the `resolve` server must sit
    // there, or the local nginx (Debian's 1.22 has no `resolve`) would refuse the file.
    let conf = nginx_conf();
    let mut inside = false;
    let mut kept = Vec::new();
    for line in conf.lines() {
        if line.contains("# replicas:begin") {
            inside = true;
        } else if line.contains("# replicas:end") {
            inside = false;
        } else if !inside {
            kept.push(line);
        }
    }
    assert!(!inside, "# replicas:begin without # replicas:end");
    for line in kept {
        let code = line.split('#').next().unwrap();
        assert!(
            !code.contains("resolve") && !code.contains("127.0.0.11") && !code.contains("api:"),
            "outside the replicas markers, so the local copy keeps it: {line:?}"
        );
    }
}

#[test]
fn every_nginx_upstream_is_a_compose_service_nginx_waits_for() {
    // nginx resolves a plain upstream name (the inserter's) once, at start: a name with no
    // container yet stops it. The API's is re-resolved, but nginx started before any replica
    // would only answer 503s.
    let conf = nginx_conf();
    let doc = compose();
    let waits: Vec<&str> = doc["services"]["nginx"]["depends_on"]
        .as_sequence()
        .expect("nginx depends_on is a list")
        .iter()
        .filter_map(|s| s.as_str())
        .collect();
    let hosts: Vec<&str> = conf
        .lines()
        .filter_map(|l| l.trim().strip_prefix("server "))
        .filter_map(|s| s.split_once(':').map(|(host, _)| host))
        .collect();
    assert!(!hosts.is_empty());
    for host in hosts {
        assert!(!doc["services"][host].is_null(), "{host} is not a service");
        assert!(waits.contains(&host), "nginx does not wait for {host}");
    }
}
