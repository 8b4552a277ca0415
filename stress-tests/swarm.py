#!/usr/bin/env python3
"""Arena as a Docker Swarm stack, rolled to a new image and one task killed, under load.

    stress-tests/swarm.py [--quick] [--out DIR] [--keep]

1. Swarm on this node (`docker swarm init` if it is not one yet; left again at the end if this
   script made it, and nothing else runs in containers), the images (the official ones if
   present, else the local stand-ins of scripts/docker-images) and arena:latest built from the
   Dockerfile.
2. `docker stack deploy` of docker-compose.yml with docker-compose.swarm.yml on top. The stack
   deploy schema refuses compose's long `depends_on` (with conditions), which Swarm ignores
   anyway, so the file is deployed with `depends_on` and `build` removed and its bind mounts
   made absolute (DIR/stack.yml): nothing else changes.
3. Load: people.js and accounts.js (full profiles; --quick: about a minute of each), and an
   auditor crediting 1 to the accounts with a unique description per request (from the moment
   accounts.js's validation phases are over).
4. Mid-load, the api service rolls to a new image (arena:latest with one more label: what a
   deploy of a new build does) with compose-swarm's update_config (start-first, one at a
   time); once done, one api task's container is killed (SIGKILL) and Swarm replaces it.
5. Checks, failed on: no person answered 201 missing from the count (people.js's created vs
   counted), accounts.js's consistency (balances within limits, every credit and debit answered
   200 or 422), every credit the auditor got 200 for in PostgreSQL (none lost), no OOM kill
   (Docker's events). Reported, not failed on: the answers that were 5xx or transport errors
   (what nginx could not retry), per phase (before the roll, during it, between it and the kill,
   the 30 s after the kill, after), and what a SIGKILL can leave ambiguous: a request the killed
   replica had completed but not answered is sent again by nginx, so a person can be counted
   whose client got 422 for its apelido ("phantom"), and a credit applied twice ("duplicated").
   A graceful stop (the rolling update) leaves neither.

Writes DIR/swarm.json and prints one line per figure; exit 1 if a check failed. No timings are
asserted. Settings: ARENA_PORT (9999), ARENA_HTTP_PORT (80), ARENA_SWARM_STACK (arena-swarm),
ARENA_STATE_DIR (where scripts/docker-images keeps images.env).
"""
import argparse
import csv
import gzip
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
STATE = os.environ.get("ARENA_STATE_DIR", os.path.join(ROOT, ".state"))
STACK = os.environ.get("ARENA_SWARM_STACK", "arena-swarm")
PORT = os.environ.get("ARENA_PORT", "9999")
HTTP_PORT = os.environ.get("ARENA_HTTP_PORT", "80")
BASE = f"http://127.0.0.1:{PORT}"
OFFICIAL = ["rust:1-bookworm", "debian:bookworm-slim", "postgres:16-alpine", "redis:7-alpine",
            "rabbitmq:3.13-alpine", "nginx:1.28.0-alpine"]
# accounts.js's concurrency and validation phases need the seeded balances: the auditor starts
# after them (its LOAD_AT is 8 s).
AUDIT_FROM = 12
# The window after the kill whose errors are the kill's.
KILL_WINDOW = 30


def log(msg):
    print(f"[swarm] {msg}", file=sys.stderr, flush=True)


def sh(*args, check=True, capture=True, env=None):
    r = subprocess.run(args, text=True, capture_output=capture, env=env)
    if check and r.returncode != 0:
        raise SystemExit(f"{' '.join(args)}: exit {r.returncode}\n{(r.stderr or '')[-2000:]}")
    return (r.stdout or "").strip()


def http(method, path, body=None, timeout=10):
    req = urllib.request.Request(BASE + path, method=method, data=body and json.dumps(body).encode(),
                                 headers={"content-type": "application/json"} if body else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, OSError) as e:
        return 0, str(e).encode()


def images_env():
    """The variables that swap in local stand-ins, when the official images are not here."""
    if all(subprocess.run(["docker", "image", "inspect", i], capture_output=True).returncode == 0 for i in OFFICIAL):
        return {}
    sh("bash", os.path.join(ROOT, "scripts/docker-images"), capture=False)
    with open(os.path.join(STATE, "docker/images.env")) as f:
        return dict(l.strip().split("=", 1) for l in f if "=" in l and not l.startswith("#"))


def stack_file(out):
    """docker-compose.yml as Swarm's schema takes it: depends_on and build (both ignored by
    Swarm) removed, bind-mount sources absolute."""
    with open(os.path.join(ROOT, "docker-compose.yml")) as f:
        doc = yaml.safe_load(f)
    for svc in doc["services"].values():
        svc.pop("depends_on", None)
        svc.pop("build", None)
        svc["volumes"] = [os.path.join(ROOT, v[2:]) if v.startswith("./") else v for v in svc.get("volumes", [])]
        if not svc["volumes"]:
            del svc["volumes"]
    doc = {k: v for k, v in doc.items() if not k.startswith("x-")}
    path = os.path.join(out, "stack.yml")
    with open(path, "w") as f:
        f.write("# docker-compose.yml for `docker stack deploy`, written by stress-tests/swarm.py\n")
        yaml.safe_dump(doc, f, sort_keys=False)
    return path


def services():
    out = sh("docker", "service", "ls", "--filter", f"label=com.docker.stack.namespace={STACK}",
             "--format", "{{.Name}} {{.Replicas}}")
    return dict(l.split(" ", 1) for l in out.splitlines() if l)


def converged():
    svcs = services()
    return bool(svcs) and all(r.split(" ")[0].split("/")[0] == r.split(" ")[0].split("/")[1] for r in svcs.values())


def wait(what, done, limit):
    start = time.time()
    while not done():
        if time.time() - start > limit:
            raise SystemExit(f"{what}: not within {limit} s")
        time.sleep(1)
    return time.time() - start


def instances(n=20):
    seen = set()
    for _ in range(n):
        status, body = http("GET", "/ping")
        if status == 200:
            seen.add(json.loads(body)["instance"])
    return seen


def api_containers():
    out = sh("docker", "ps", "-q", "--filter", f"label=com.docker.swarm.service.name={STACK}_api")
    return out.split()


def k6(script, env, out, name):
    wrapped = sh("bash", "-c", f'source "{HERE}/lib.sh"; here="{HERE}"; OUT="{out}"; k6_wrap {script}')
    cmd = ["k6", "run", "--quiet", "--summary-export", os.path.join(out, f"{name}.summary.json"),
           "--out", f"csv={os.path.join(out, name + '.csv.gz')}", wrapped]
    log_file = open(os.path.join(out, f"{name}.log"), "w")
    return subprocess.Popen(cmd, env={**os.environ, **env, "BASE_URL": BASE}, stdout=log_file, stderr=subprocess.STDOUT)


class Auditor:
    """Credits of 1 with unique descriptions, each answer recorded."""

    def __init__(self, threads=2, pause=0.05):
        self.answers = {}  # descricao -> (account, status)
        self.bodies = {}  # status -> the first body answered with it
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.pause = pause
        self.threads = [threading.Thread(target=self.loop, args=(t,), daemon=True) for t in range(threads)]

    def loop(self, t):
        n = 0
        while not self.stop.is_set():
            n += 1
            desc = f"w{t}{n:07d}"  # w and 8 digits: ≤ 10 characters, the contract's limit
            account = 1 + n % 5
            status, body = http("POST", f"/clientes/{account}/transacoes", {"valor": 1, "tipo": "c", "descricao": desc})
            with self.lock:
                self.answers[desc] = (account, status)
                self.bodies.setdefault(status, body.decode(errors="replace")[:200])
            time.sleep(self.pause)

    def start(self):
        for t in self.threads:
            t.start()

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join()


def db_exec(sql):
    db = sh("docker", "ps", "-q", "--filter", f"label=com.docker.swarm.service.name={STACK}_db").split()[0]
    return sh("docker", "exec", "-i", db, "psql", "-U", "postgres", "-d", "arena", "-Atc", sql)


def errors_by_phase(csv_path, phases):
    """5xx and transport errors (status 0) in each [start, end) of `phases` (name → window)."""
    counts = {name: {} for name in phases}
    try:
        with gzip.open(csv_path, "rt") as f:
            for row in csv.DictReader(f):
                if row["metric_name"] != "http_reqs":
                    continue
                status = int(row.get("status") or 0)
                if status != 0 and status < 500:
                    continue
                t = int(row["timestamp"])
                for name, (a, b) in phases.items():
                    if a <= t < b:
                        counts[name][status] = counts[name].get(status, 0) + 1
    except (OSError, EOFError):
        pass
    return counts


def summary(path):
    try:
        with open(path) as f:
            return json.load(f).get("metrics", {})
    except (OSError, json.JSONDecodeError):
        return {}


def count(m, name):
    return int(m.get(name, {}).get("count", 0))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="about a minute of load (scripts/test-docker)")
    ap.add_argument("--out", default=os.path.join(STATE, "swarm"))
    ap.add_argument("--keep", action="store_true", help="leave the stack (and swarm) up")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    env = {**os.environ, **images_env(), "ARENA_PORT": PORT, "ARENA_HTTP_PORT": HTTP_PORT}
    log("building arena:latest from the Dockerfile")
    sh("docker", "build", "-q", "--build-arg", f"RUST_IMAGE={env.get('RUST_IMAGE', 'rust:1-bookworm')}",
       "--build-arg", f"RUNTIME_IMAGE={env.get('RUNTIME_IMAGE', 'debian:bookworm-slim')}", "-t", "arena:latest", ROOT)
    made_swarm = sh("docker", "info", "-f", "{{.Swarm.LocalNodeState}}") != "active"
    if made_swarm:
        log("docker swarm init")
        sh("docker", "swarm", "init", "--advertise-addr", "127.0.0.1")
    oom_log = open(os.path.join(args.out, "oom-events"), "w")
    oom_watch = subprocess.Popen(["docker", "events", "--filter", "type=container", "--filter", "event=oom",
                                  "--filter", f"label=com.docker.stack.namespace={STACK}",
                                  "--format", "{{.Time}} {{.Actor.Attributes.name}}"], stdout=oom_log)
    result = {"stack": STACK, "quick": args.quick}
    load = []  # the k6 processes, stopped in `finally` if something fails before they end
    try:
        log(f"docker stack deploy {STACK}")
        sh("docker", "stack", "deploy", "-c", stack_file(args.out), "-c", os.path.join(ROOT, "docker-compose.swarm.yml"),
           STACK, env=env)
        result["converge_s"] = round(wait("every service running", converged, 300), 1)
        wait("both replicas answering /ping through nginx", lambda: len(instances()) >= 2, 180)
        # Until the first replica has seeded Redis's apelido keys, a POST /pessoas answers 503
        # (people::rebuild): the replicas may have started before Redis did.
        warm = {"apelido": f"warmup{int(time.time())}", "nome": "Warm Up", "nascimento": "2000-01-01", "stack": None}
        wait("POST /pessoas accepted", lambda: http("POST", "/pessoas", warm)[0] in (201, 422), 120)
        result["instances_before"] = sorted(instances())
        log(f"up in {result['converge_s']} s: {result['instances_before']}")

        quick = args.quick
        people_env = {"SCALE": "0.3", "RATE": "0.25"} if quick else {}
        accounts_env = {"DURATION_FACTOR": "0.2"} if quick else {}
        roll_at = 20 if quick else 90
        t0 = time.time()
        people = k6("people.js", people_env, args.out, "people")
        accounts = k6("accounts.js", accounts_env, args.out, "accounts")
        load += [people, accounts]
        auditor = Auditor()
        time.sleep(AUDIT_FROM)
        auditor.start()
        time.sleep(max(0, roll_at - (time.time() - t0)))

        log("building arena:roll (arena:latest with a new label) and rolling the api service to it")
        roll_image = f"arena:roll-{int(time.time())}"
        subprocess.run(["docker", "build", "-q", "--label", f"arena.rollout={roll_image}", "-t", roll_image, "-"],
                       input=f"FROM arena:latest\n", text=True, capture_output=True, check=True)
        roll_start = time.time()
        sh("docker", "service", "update", "--quiet", "--detach=false", "--image", roll_image, f"{STACK}_api")
        roll_end = time.time()
        images = sh("docker", "service", "inspect", "-f", "{{.Spec.TaskTemplate.ContainerSpec.Image}}", f"{STACK}_api")
        result["roll_s"] = round(roll_end - roll_start, 1)
        result["rolled_to"] = images.split("@")[0]
        log(f"rolled in {result['roll_s']} s to {result['rolled_to']}")

        time.sleep(5)
        wait("the api tasks running", lambda: len(api_containers()) >= 2, 60)
        running = set(api_containers())
        victim = sorted(running)[0]
        log(f"docker kill {victim} (an api task)")
        kill_at = time.time()
        sh("docker", "kill", victim)
        replaced = lambda: len(set(api_containers()) - running) >= 1 and len(api_containers()) >= len(running)
        result["replaced_s"] = round(wait("Swarm replacing the killed task", replaced, 120), 1)
        log(f"replaced in {result['replaced_s']} s")

        people_rc, accounts_rc = people.wait(), accounts.wait()
        auditor.finish()
        end = time.time()
        result["instances_after"] = sorted(instances())

        # people: created vs counted (people.js compares them itself).
        p, a = summary(os.path.join(args.out, "people.summary.json")), summary(os.path.join(args.out, "accounts.summary.json"))
        created, counted = count(p, "people_created"), count(p, "people_counted")
        result["people"] = {"exit": people_rc, "created": created, "counted": counted,
                            "lost": max(0, created - counted), "phantom": max(0, counted - created),
                            "requests": count(p, "http_reqs")}
        result["accounts"] = {"exit": accounts_rc, "consistency_failures": count(a, "consistency_failures"),
                              "requests": count(a, "http_reqs")}
        # The auditor: every 200 in PostgreSQL exactly once.
        # The auditor's descriptions only: accounts.js's are 10 random letters and digits.
        rows = db_exec("SELECT descricao, count(*) FROM transactions WHERE descricao ~ '^w[0-9]{8}$' GROUP BY 1")
        applied = dict(l.split("|") for l in rows.splitlines() if l)
        ok = [d for d, (_, s) in auditor.answers.items() if s == 200]
        not_ok = [d for d, (_, s) in auditor.answers.items() if s != 200]
        result["audit"] = {
            "credits": len(auditor.answers), "answered_200": len(ok),
            "lost": sum(1 for d in ok if int(applied.get(d, 0)) == 0),
            "duplicated": sum(1 for d, n in applied.items() if int(n) > 1),
            "not_200": len(not_ok), "not_200_applied": sum(1 for d in not_ok if int(applied.get(d, 0)) > 0),
            "not_200_bodies": {s: b for s, b in auditor.bodies.items() if s != 200},
        }
        phases = {"before the roll": (t0, roll_start), "during the roll": (roll_start, roll_end),
                  "between": (roll_end, kill_at), "kill (30 s)": (kill_at, kill_at + KILL_WINDOW),
                  "after": (kill_at + KILL_WINDOW, end + 60)}
        # k6's csv timestamps are whole Unix seconds: so are the windows.
        phases = {k: (int(a), int(b)) for k, (a, b) in phases.items()}
        result["errors"] = {
            "people": errors_by_phase(os.path.join(args.out, "people.csv.gz"), phases),
            "accounts": errors_by_phase(os.path.join(args.out, "accounts.csv.gz"), phases),
        }
    finally:
        for proc in load:
            if proc.poll() is None:
                proc.terminate()
        oom_watch.terminate()
        for svc in ("nginx", "api"):
            with open(os.path.join(args.out, f"{svc}.log"), "w") as f:
                # It can hang on a task whose container was killed: bounded.
                try:
                    subprocess.run(["docker", "service", "logs", "--timestamps", f"{STACK}_{svc}"],
                                   stdout=f, stderr=subprocess.STDOUT, timeout=30)
                except subprocess.TimeoutExpired:
                    f.write("(docker service logs did not finish within 30 s)\n")
        oom_log.close()
        if not args.keep:
            log(f"docker stack rm {STACK}")
            sh("docker", "stack", "rm", STACK, check=False)
            wait("the stack's containers gone", lambda: not sh("docker", "ps", "-q", "--filter",
                 f"label=com.docker.stack.namespace={STACK}"), 120)
            wait("the stack's network gone", lambda: not sh("docker", "network", "ls", "-q", "--filter",
                 f"label=com.docker.stack.namespace={STACK}"), 60)
            # Leaving a swarm detaches every container from its networks (Docker 20.10), compose
            # stacks included: only when nothing else runs.
            if made_swarm and not sh("docker", "ps", "-q"):
                sh("docker", "swarm", "leave", "--force", check=False)
    with open(os.path.join(args.out, "oom-events")) as f:
        result["oom_kills"] = [l.strip() for l in f if l.strip()]

    checks = {
        "people: every 201 counted": result["people"]["lost"] == 0 and created > 0,
        "accounts.js consistency": result["accounts"]["consistency_failures"] == 0 and result["accounts"]["requests"] > 0,
        "audited credits: every 200 in PostgreSQL": result["audit"]["lost"] == 0 and result["audit"]["answered_200"] > 0,
        "no OOM kill": not result["oom_kills"],
    }
    result["checks"] = checks
    with open(os.path.join(args.out, "swarm.json"), "w") as f:
        json.dump(result, f, indent=2)
    for k in ("converge_s", "roll_s", "rolled_to", "replaced_s", "people", "accounts", "audit", "errors", "oom_kills"):
        print(f"{k}: {json.dumps(result.get(k))}")
    for name, ok in checks.items():
        print(f"check {name}: {'ok' if ok else 'FAILED'}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
