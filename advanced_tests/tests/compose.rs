//! docker-compose.yml cannot be run here (no Docker engine), so its shape and its resource
//! budget are checked as data: every service limited, the totals within 1.5 CPU and 550 MB.
use serde_yaml::Value;

fn compose() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docker-compose.yml");
    let text = std::fs::read_to_string(path).expect("docker-compose.yml exists");
    let mut doc: Value = serde_yaml::from_str(&text).expect("docker-compose.yml is valid YAML");
    doc.apply_merge().expect("merge keys resolve");
    doc
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
        cpus += cpu;
        mem += m;
    }
    assert!(cpus <= 1.5 + 1e-9, "CPU limits sum to {cpus}");
    assert!(mem <= 550.0, "memory limits sum to {mem} MB");
}

#[test]
fn the_stack_has_nginx_two_replicas_an_inserter_and_the_three_services() {
    let doc = compose();
    for name in [
        "nginx", "api1", "api2", "inserter", "db", "redis", "rabbitmq",
    ] {
        assert!(!doc["services"][name].is_null(), "service {name} missing");
    }
    assert_eq!(
        doc["services"]["api1"]["environment"]["INSTANCE_NAME"],
        "api1"
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
fn nginx_conf_names_the_compose_replicas() {
    let conf = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../nginx/nginx.conf"))
        .unwrap();
    assert!(conf.contains("server api1:9999") && conf.contains("server api2:9999"));
    assert!(
        conf.contains("server inserter:9100"),
        "the inserter's metrics upstream"
    );
    assert!(conf.contains("proxy_next_upstream"));
}

#[test]
fn every_nginx_upstream_is_a_compose_service_nginx_waits_for() {
    // nginx resolves upstream names once, at start: a name with no container yet stops it.
    let conf = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../nginx/nginx.conf"))
        .unwrap();
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
