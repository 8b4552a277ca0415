//! docker-compose.yml's shape and resource budget, checked as data, as it is published (every
//! `${VAR:-default}` at its default, i.e. the official images): every service limited, the
//! totals (each service times its replicas) within 1.5 CPU and 550 MB, and the API one service
//! that `docker compose up --scale api=N` can grow, which nginx finds through Docker's DNS.
//! scripts/test-docker runs the file for real.
use advanced_tests::at_defaults;
use serde_yaml::Value;

fn compose() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docker-compose.yml");
    let text = std::fs::read_to_string(path).expect("docker-compose.yml exists");
    let mut doc: Value =
        serde_yaml::from_str(&at_defaults(&text)).expect("docker-compose.yml is valid YAML");
    doc.apply_merge().expect("merge keys resolve");
    doc
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

#[test]
fn every_service_has_limits_and_the_total_fits_the_budget() {
    let doc = compose();
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
    assert!(cpus <= 1.5 + 1e-9, "CPU limits sum to {cpus}");
    assert!(mem <= 550.0, "memory limits sum to {mem} MB");
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
