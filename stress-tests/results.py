#!/usr/bin/env python3
"""Writes stress-tests/RESULTS.md from one stress-tests/run directory.

    results.py RUN_DIR RESULTS_MD

RUN_DIR holds what `run` left: meta, up.log, and per run NAME.status ("exit seconds"),
NAME.log (for ping-ceiling and fib-gmp the scripts' printed lines are the figures),
NAME.summary.json (k6 --summary-export), NAME.log, NAME.peak ("svc bytes": the kernel's peak),
NAME.sampled ("svc cgroup_bytes pss_kb": sampled peaks), NAME.before / NAME.after ("svc
oom_kills throttled_s"), NAME.healed, NAME.oom (services OOM-killed during the run). The
containers leg leaves the same in RUN_DIR/containers (with `limits`: "svc cpus bytes" as Docker
applied them, or `skipped`), the swarm leg swarm.json in RUN_DIR/swarm. The "Tuning: before /
after" section of an existing RESULTS_MD is kept as it is: rows are added by hand. The charts
(charts.py, from NAME.k6.csv.gz and NAME.memory.tsv) go to a `charts` folder beside RESULTS_MD,
shown in its "Charts" section; without matplotlib or series the section says why.
"""
import json
import os
import re
import sys

import charts

RUNS = ["people", "faults", "accounts", "websocket", "chat", "chat-faults", "chat-slow", "chat-10k", "ping-k6", "ping-wrk"]
# The runs of stress-tests/chatload.py: their log's `chatload {…}` lines are the figures.
CHATLOAD = ["chat-faults", "chat-slow", "chat-10k"]
# Run with the caps lifted (issue 10 defines both ratios on the uncapped machine): their own
# section, not in the per-service memory and throttling tables.
UNCAPPED = ["ping-ceiling", "fib-gmp"]
TUNING_HEADER = "## Tuning: before / after"
TUNING_DEFAULT = f"""{TUNING_HEADER}

One row per tuning change: both sides measured on the same machine in one session by the
command in the row (the "before" first; `ARENA_BIN` runs a commit's binary without building),
the figure the change is about in the last two columns.

| change | commits (before → after) | run | figure | before | after |
|---|---|---|---|---|---|
"""


def read(path, default=""):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return default


def table_file(path):
    """Lines "key v1 v2 …" into {key: [v1, v2, …]}."""
    out = {}
    for line in read(path).splitlines():
        parts = line.split()
        if parts:
            out[parts[0]] = parts[1:]
    return out


def num(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return 0.0


def fmt_int(n):
    return f"{int(round(n)):,}".replace(",", " ")


def ms(x):
    return "–" if x is None else (f"{x:.1f}" if x >= 10 else f"{x:.2f}")


class Summary:
    def __init__(self, path):
        try:
            self.m = json.loads(read(path, "{}")).get("metrics", {})
        except json.JSONDecodeError:
            self.m = {}

    def __bool__(self):
        return bool(self.m)

    def get(self, name, field, default=0.0):
        return self.m.get(name, {}).get(field, default)

    def count(self, name):
        return self.get(name, "count")

    def latency(self, name):
        t = self.m.get(name)
        if not t:
            return "–"
        return f"{ms(t.get('med'))} / {ms(t.get('p(95)'))} / {ms(t.get('p(99)'))} ms"

    def statuses(self):
        counts = {}
        for key, v in self.m.items():
            s = re.fullmatch(r"http_reqs\{status:(\d+)\}", key)
            if s and v.get("count"):
                counts[int(s.group(1))] = v["count"]
        other = self.count("http_reqs") - sum(counts.values())
        parts = [f"{'transport error' if s == 0 else s}: {fmt_int(n)}" for s, n in sorted(counts.items())]
        if other > 0:
            parts.append(f"other: {fmt_int(other)}")
        return ", ".join(parts) or "–"

    def errors(self):
        """5xx and transport errors, and failed checks."""
        bad = sum(v.get("count", 0) for k, v in self.m.items()
                  if re.fullmatch(r"http_reqs\{status:(0|5\d\d)\}", k))
        checks = self.get("checks", "fails")
        return f"{fmt_int(bad)} 5xx/transport, {fmt_int(checks)} failed checks"


def run_row(run_dir, name, meta):
    status = read(os.path.join(run_dir, f"{name}.status")).split()
    if not status:
        return None
    code, secs = int(status[0]), status[1] if len(status) > 1 else "?"
    result = "passed" if code == 0 else ("**timed out**" if code == 124 else f"**failed** (exit {code})")
    oom = read(os.path.join(run_dir, f"{name}.oom")).strip()
    if oom:
        result = f"**failed: OOM kill** ({oom})"
    healed = read(os.path.join(run_dir, f"{name}.healed")).strip()
    if healed:
        result += f"; before it, the stack was healed: {healed} had died"
    s = Summary(os.path.join(run_dir, f"{name}.summary.json"))
    log = read(os.path.join(run_dir, f"{name}.log"))
    if name == "people":
        what = f"people.js {meta.get('people_env') or '(full profile)'}"
        reqs, rate, lat = fmt_int(s.count("http_reqs")), f"{s.get('http_reqs', 'rate'):.1f}", s.latency("http_req_duration")
        created, counted = s.count("people_created"), s.count("people_counted")
        check = f"created {fmt_int(created)}, counted {fmt_int(counted)}, lost {fmt_int(s.count('people_lost'))}"
        statuses, errors = s.statuses(), s.errors()
    elif name == "faults":
        # Lines people_faults prints: "people_faults phase=NAME non2xx=N statuses=S:N,… outage_ms=T first_bodies=…" and
        # "people_faults created=N workers=W seconds=S".
        phases = re.findall(r"^people_faults phase=(\w+) non2xx=(\d+) statuses=(\S*)", log, re.M)
        total = re.search(r"^people_faults created=(\d+) workers=(\d+) seconds=(\d+)", log, re.M)
        what = "people_faults.rs: kill -9 api1, kill -9 inserter, RabbitMQ restart, Redis restart"
        reqs = f"{fmt_int(int(total.group(1)))} created (201)" if total else "–"
        rate = f"{int(total.group(1)) / max(1, int(total.group(3))):.1f}" if total else "–"
        lat, statuses = "–", "; ".join(f"{p}: {st or 'none'}" for p, _, st in phases) or "–"
        errors = "non-2xx " + ", ".join(f"{p} {n}" for p, n, _ in phases) if phases else "–"
        bound = f" (replica kill at most {total.group(2)}, the requests in flight)" if total else ""
        failure = re.search(r"panicked at [^\n]*\n([^\n]*)", log)
        check = (f"every 201 in PostgreSQL once, nothing dead-lettered, apelidos from before the Redis restart refused{bound}"
                 if code == 0 else (failure.group(1) if failure else "see the log"))
    elif name == "accounts":
        what = f"accounts.js {meta.get('accounts_env') or '(official profile)'}"
        reqs, rate, lat = fmt_int(s.count("http_reqs")), f"{s.get('http_reqs', 'rate'):.1f}", s.latency("http_req_duration")
        check = (f"consistency failures {fmt_int(s.count('consistency_failures'))}, "
                 f"validation failures {fmt_int(s.count('validation_failures'))}")
        statuses, errors = s.statuses(), s.errors()
    elif name == "websocket":
        sockets, dur = (meta.get("websocket", "? ?").split() + ["?", "?"])[:2]
        what = f"websocket.sh {sockets} sockets {dur}"
        reqs = f"{fmt_int(s.count('fib_replies'))} fib replies"
        rate, lat = f"{s.get('fib_replies', 'rate'):.1f}", s.latency("fib_latency") + " (fib)"
        check = (f"held {fmt_int(s.count('sockets_held_to_the_end'))} of {sockets}, closed early "
                 f"{fmt_int(s.count('sockets_closed_early'))}, fib errors {fmt_int(s.count('fib_errors'))}, "
                 f"tick delay p99 {ms(s.get('tick_delay', 'p(99)', None))} ms")
        statuses, errors = "–", f"{fmt_int(s.count('fib_errors'))} fib errors"
    elif name == "chat":
        words = meta.get("chat", "").split()
        env = dict(w.split("=", 1) for w in words if "=" in w)
        args = [w for w in words if "=" not in w] + ["200", "30s"]
        sockets, rooms = int(args[0]), int(env.get("ROOMS", 10))
        what = f"chat.sh {' '.join(words) or '200 30s'}"
        posted, got = s.count("posted"), s.count("delivered")
        expected = posted * sockets / rooms
        reqs = f"{fmt_int(posted)} posts → {fmt_int(got)} deliveries"
        rate, lat = f"{s.get('delivered', 'rate'):.1f}", s.latency("delivery_latency") + " (post→receipt)"
        check = (f"delivered {fmt_int(got)} of {fmt_int(expected)} expected (lost {fmt_int(max(0, expected - got))}), "
                 f"duplicates {fmt_int(s.count('duplicate_deliveries'))}, closed early {fmt_int(s.count('sockets_closed_early'))}, "
                 f"posts failed {fmt_int(s.count('post_failed'))}")
        statuses, errors = s.statuses(), s.errors()
    elif name in CHATLOAD:
        runs = chatload_lines(log)
        what = "chatload.py " + "; ".join(f"{r.get('label') or ''} {r.get('command', '')}".strip() for r in runs) if runs else f"chatload.py ({name})"
        reqs = " + ".join(f"{fmt_int(r['posts']['ok'])} posts → {fmt_int(r['delivered'])} deliveries" for r in runs) or "–"
        rate = " / ".join(f"{r['delivered'] / max(1, r['duration_s']):.1f}" for r in runs) or "–"
        lat = " ; ".join(f"{ms(r['latency']['p50_ms'])} / {ms(r['latency']['p95_ms'])} / {ms(r['latency']['p99_ms'])} ms" for r in runs) or "–"
        check = " ; ".join(f"delivered {fmt_int(r['delivered'])} of {fmt_int(r['expected'])} expected: lost {fmt_int(r['lost'])}, "
                           f"duplicates {fmt_int(r['duplicates'])}, out of order {fmt_int(r['out_of_order'])}" for r in runs) or "see the log"
        statuses = " ; ".join(", ".join(f"{k}: {fmt_int(v)}" for k, v in r["posts"]["by_status"].items()) for r in runs) or "–"
        errors = " ; ".join(f"{fmt_int(r['opened'])} of {fmt_int(r['sockets'])} sockets opened, {fmt_int(r['reconnects'])} reconnects" for r in runs) or "–"
    else:
        return {"name": name, "result": result, "secs": secs, "ping": ping_rows(name, log)}
    return {"name": name, "what": what, "result": result, "secs": secs, "reqs": reqs, "rate": rate,
            "lat": lat, "statuses": statuses, "errors": errors, "check": check}


def chatload_lines(log):
    """The JSON summaries chatload.py printed, in order."""
    out = []
    for m in re.finditer(r"^chatload (\{.*\})\s*$", log, re.M):
        try:
            out.append(json.loads(m.group(1)))
        except json.JSONDecodeError:
            pass
    return out


CHATLOAD_HEADER = "## Chat deliveries under faults, a stalled socket and 10 000 sockets (chatload.py)"


def chatload_section(run_dir, meta=None):
    """The figures issue 18 asks for: the fault run, the stalled socket, the 10 000 sockets.
    `meta` when these steps ran alone: the section then says which run it is."""
    doc = []
    faults = chatload_lines(read(os.path.join(run_dir, "chat-faults.log")))
    slow = chatload_lines(read(os.path.join(run_dir, "chat-slow.log")))
    big = chatload_lines(read(os.path.join(run_dir, "chat-10k.log")))
    if not (faults or slow or big):
        return doc
    doc += [CHATLOAD_HEADER, ""]
    if meta:
        doc += [f"From a run of these steps alone on {meta.get('date', '?')} (commit {meta.get('commit', '?')}; "
                f"`LEGS=emulated ONLY=\"{meta.get('only', '')}\" stress-tests/run`, emulated caps); the sections above "
                "are from the run named at the top.", ""]
    caps = caps_table(read(os.path.join(run_dir, "chat-budget.limits")))
    if caps:
        doc += ["These steps run under the chat-scale budget (`COMPOSE_FILE=docker-compose.yml:docker-compose.chat.yml "
                "scripts/up --limits`): docker-compose.yml's nginx (30 MB) holds ~1 100 proxied sockets, fewer than any "
                "of them opens, so nginx and the replicas get the memory 10 000 take, with two nginx workers of 12 288 "
                "connections (docs/SCALING.md says why). As applied:", "", "```", caps, "```", ""]
    doc += [
            "`stress-tests/chatload.py`: room sockets through nginx, each reconnecting with `since=<last seq>` "
            "when closed; per socket expected (every post to its room answered 201) vs delivered, duplicates (a seq "
            "twice) and out of order (a seq below the last one). Latency is post→receipt. Generator CPU is "
            "chatload.py's own (user + system) over the posting and drain.", ""]
    lat = lambda p: f"{ms(p.get('p50_ms'))} / {ms(p.get('p99_ms'))} / {ms(p.get('max_ms'))} ms ({fmt_int(p.get('n') or 0)})" if p else "–"
    cpu = lambda r: f"{r['generator_cpu']['cores']:.2f} cores ({r['generator_cpu']['us_per_delivery']} µs/delivery)"
    for r in faults:
        doc += [f"**Fault run** (`chatload.py {r.get('command', '')}`): {fmt_int(r['sockets'])} sockets, "
                f"{r['rate']:g} posts/s for {r['duration_s']:g} s. Faults: "
                + "; ".join(f"{f['fault']} at +{f['start_s']} s (done +{f['end_s']} s{', ' + f['note'] if f.get('note') else ''})"
                            for f in r.get("faults", [])) + ".", "",
                "| expected | delivered | lost | duplicates | out of order | unexpected (committed, no 201) | posts by status | reconnects | close codes | generator CPU |",
                "|---|---|---|---|---|---|---|---|---|---|",
                f"| {fmt_int(r['expected'])} | {fmt_int(r['delivered'])} | {fmt_int(r['lost'])} ({r['sockets_with_loss']} sockets) | "
                f"{fmt_int(r['duplicates'])} | {fmt_int(r['out_of_order'])} | {fmt_int(r['unexpected'])} | "
                f"{', '.join(f'{k}: {v}' for k, v in r['posts']['by_status'].items())} | {fmt_int(r['reconnects'])} | "
                f"{', '.join(f'{k}: {v}' for k, v in r['close_codes'].items()) or '–'} | {cpu(r)} |", "",
                "Post→receipt p50 / p99 / max (deliveries) by when the message was posted (a fault's window runs "
                "from its start to 5 s after it ended):", "",
                "| posted | p50 / p99 / max |", "|---|---|",
                f"| whole run | {lat(r['latency'])} |"]
        doc += [f"| {'during ' + k if k != 'outside' else 'outside the faults'} | {lat(p)} |" for k, p in r.get("phases", {}).items()]
        doc.append("")
    if slow:
        doc += ["**Slow consumer**: the same load twice, once with one socket (alone in a room of 2 KB posts) "
                "that stops reading; the others' post→receipt compared.", "",
                "| run | others: p50 / p99 / max | others lost / dup / out of order | the hot socket: closes (code at +s) | hot posts delivered | generator CPU |",
                "|---|---|---|---|---|---|"]
        for r in slow:
            h = r.get("hot", {})
            closes = ", ".join(f"{c['code']} at +{c['at_s']}" for c in h.get("closes", [])) or "none"
            stalled = f" (stopped reading +{h['stalled_s'][0]}–{h['stalled_s'][1]} s)" if h.get("stalled_s") else ""
            doc.append(f"| {r.get('label') or '?'}{stalled} | {lat(r['latency'])} | {fmt_int(r['lost'] - h.get('lost', 0))} / "
                       f"{fmt_int(r['duplicates'] - h.get('duplicates', 0))} / {fmt_int(r['out_of_order'] - h.get('out_of_order', 0))} | "
                       f"{closes} | {fmt_int(h.get('delivered', 0))} of {fmt_int(h.get('posts_ok', 0))} | {cpu(r)} |")
        doc.append("")
    for r in big:
        doc += [f"**{fmt_int(r['sockets'])} room sockets** (`chatload.py {r.get('command', '')}`): {fmt_int(r['opened'])} opened, "
                f"{r['rate']:g} posts/s for {r['duration_s']:g} s over {r['rooms']} rooms; delivered {fmt_int(r['delivered'])} of "
                f"{fmt_int(r['expected'])}, lost {fmt_int(r['lost'])}, duplicates {fmt_int(r['duplicates'])}, out of order "
                f"{fmt_int(r['out_of_order'])}; post→receipt {lat(r['latency'])}; reconnects {fmt_int(r['reconnects'])}, "
                f"failed upgrades {r.get('open_failures') or 'none'}; generator {cpu(r)}.", "",
                "| process | sockets | RSS idle → peak | RSS per 1 000 sockets | cgroup idle → peak | cgroup per 1 000 |",
                "|---|---|---|---|---|---|"]
        for n, m in (r.get("memory") or {}).items():
            doc.append(f"| {n} | {fmt_int(m['sockets'] or 0)} | {m['idle_rss_mib']} → {m['peak_rss_mib']} MiB | {m['rss_mib_per_1k']} MiB | "
                       f"{str(m.get('cgroup_idle_mib', '–')) + ' → ' + str(m.get('cgroup_peak_mib', '–')) + ' MiB' if 'cgroup_peak_mib' in m else '–'} | "
                       f"{str(m['cgroup_mib_per_1k']) + ' MiB' if m.get('cgroup_mib_per_1k') is not None else '–'} |")
        doc.append("")
    return doc


def service_tables(run_dir, rows, limits=None):
    """Peak memory and CPU throttling per service and run; with `limits` ({svc: (cpus, bytes)})
    each memory cell ends with the limit."""
    doc = []
    services = []
    for r in rows:
        for svc in table_file(os.path.join(run_dir, f"{r['name']}.peak")):
            if svc not in services:
                services.append(svc)
    if not services:
        return doc
    if limits:
        doc += ["## Peak memory per container vs its limit (MiB)", "",
                "Per run: the cgroup's peak (`memory.max_usage_in_bytes`, reset before each run; it "
                "includes page cache, which the kernel reclaims before it OOM-kills) / the highest PSS of "
                "the container's processes, sampled every 2 s / the limit Docker applied. ⚠ marks OOM "
                "kills (Docker's `oom` events) during the run.", ""]
    else:
        doc += ["## Peak memory per service (MiB)", "",
                "Per run: the cgroup's peak (v1 `memory.max_usage_in_bytes`, reset before each run; v2: "
                "`memory.current` sampled every 2 s) / the highest PSS of the service's processes, sampled "
                "every 2 s. The cgroup figure includes page cache and counts only memory charged since the "
                "process entered the cgroup: shared services moved in at start (PostgreSQL's buffers, "
                "RabbitMQ's heap) show little there, their PSS is the figure to read. ⚠ marks OOM kills "
                "during the run.", ""]
    doc += ["| run | " + " | ".join(services) + " |", "|---" * (len(services) + 1) + "|"]
    for r in rows:
        peak = table_file(os.path.join(run_dir, f"{r['name']}.peak"))
        sampled = table_file(os.path.join(run_dir, f"{r['name']}.sampled"))
        before = table_file(os.path.join(run_dir, f"{r['name']}.before"))
        after = table_file(os.path.join(run_dir, f"{r['name']}.after"))
        cells = []
        for svc in services:
            kernel = num((peak.get(svc) or [0])[0]) or num((sampled.get(svc) or [0])[0])
            pss = num((sampled.get(svc) or [0, 0])[1]) * 1024
            ooms = num((after.get(svc) or [0])[0]) - num((before.get(svc) or [0])[0])
            cell = f"{kernel / 1048576:.1f} / {pss / 1048576:.1f}"
            if limits and svc in limits:
                cell += f" / {limits[svc][1] / 1048576:.0f}"
            cells.append(cell + (f" ⚠ {int(ooms)} OOM" if ooms > 0 else ""))
        doc.append(f"| {r['name']} | " + " | ".join(cells) + " |")
    doc.append("")
    quota = f" (quota: {', '.join(f'{s} {limits[s][0]:.2f}' for s in services if s in limits)})" if limits else ""
    doc += [f"CPU time each service spent throttled by its quota during each run (s){quota}:", "",
            "| run | " + " | ".join(services) + " |", "|---" * (len(services) + 1) + "|"]
    for r in rows:
        before = table_file(os.path.join(run_dir, f"{r['name']}.before"))
        after = table_file(os.path.join(run_dir, f"{r['name']}.after"))
        # A service started again during the run (the fault drill's) has a new cgroup, whose
        # counter began at 0: only what it did since then is known.
        delta = lambda s: num((after.get(s) or [0, 0])[1]) - num((before.get(s) or [0, 0])[1])
        cells = [f"{delta(s):.1f}" if delta(s) >= 0 else f"≥ {num((after.get(s) or [0, 0])[1]):.1f} (restarted)"
                 for s in services]
        doc.append(f"| {r['name']} | " + " | ".join(cells) + " |")
    doc.append("")
    return doc


def ping_rows(name, log):
    tool = name.split("-", 1)[1]
    rows = []
    for label, key in (("/ping via nginx → replica", "arena"), ("nginx `return 200`", "static")):
        m = re.search(rf"^{key}\s.*?(\{{.*\}})\s*$", log, re.M)
        if not m:
            rows.append(f"| {tool} | {label} | – | – | – | – |")
            continue
        d = json.loads(m.group(1))
        rows.append(f"| {tool} | {label} | {fmt_int(d.get('requests', 0))} | {fmt_int(d.get('req_per_s', 0))} | "
                    f"{ms(d.get('p50_ms'))} / {ms(d.get('p95_ms'))} / {ms(d.get('p99_ms'))} ms | {fmt_int(d.get('failed', 0))} |")
    ratio = re.search(r"ratio arena/static req/s: ([0-9.]+)", log)
    rows.append(f"| {tool} | ratio (req/s) | | {ratio.group(1) if ratio else '–'} | | |")
    return rows


def ratio_section(run_dir, meta):
    """The two ratios issue 10 sets targets for, from ping-vs-ceiling.sh's and fib-vs-gmp.sh's lines."""
    rows = []
    for name in UNCAPPED:
        status = read(os.path.join(run_dir, f"{name}.status")).split()
        if not status:
            continue
        log = read(os.path.join(run_dir, f"{name}.log"))
        result = "" if status[0] == "0" else f" **failed** (exit {status[0]}, see `{run_dir}/{name}.log`)"
        if name == "ping-ceiling":
            side = {k: re.search(rf"^{k}\s+(\d+) req/s\s+p50 (\S+)\s+p99 (\S+)\s+non-2xx (\d+)", log, re.M)
                    for k in ("stack", "ceiling")}
            ratio = re.search(r"^ratio stack / proxy ceiling: ([0-9.]+)", log, re.M)
            cpu = {k: re.search(rf"^cpu {k}\s+(.*) µs/req", log, re.M) for k in ("stack", "ceiling")}
            workers = re.search(r"^workers: (.*)$", log, re.M)
            fig = lambda m: f"{fmt_int(int(m.group(1)))} req/s (p50 {m.group(2)}, p99 {m.group(3)}, non-2xx {m.group(4)})" if m else "–"
            cpu_text = "; ".join(f"{k}: {re.sub(r'  +', ', ', m.group(1))}" for k, m in cpu.items() if m)
            rows.append(f"| /ping through the stack ÷ the proxy ceiling (wrk -t2 -c64, {meta.get('ping_duration', '?')}; "
                        f"`stress-tests/ping-vs-ceiling.sh`){result} | {fig(side['stack'])} | {fig(side['ceiling'])} | "
                        f"{ratio.group(1) if ratio else '–'} | ≥ 0.95 | CPU µs per request — {cpu_text or '–'}"
                        f"{'; workers: ' + workers.group(1) if workers else ''} |")
        else:
            best = re.search(r"^best of (\d+) runs: arena ([0-9.]+) ms, GMP ([0-9.]+) ms, ratio arena / GMP: ([0-9.]+)", log, re.M)
            parts = lambda who: re.findall(rf"^run \d+/\d+ {who}.*compute ([0-9.]+) ms, to decimal ([0-9.]+) ms, total ([0-9.]+) ms", log, re.M)
            ours, gmp = parts("arena"), parts("GMP")
            pairs = re.findall(r"^run \d+/\d+ ratio arena / GMP: ([0-9.]+)", log, re.M)
            fastest = lambda runs: (min(runs, key=lambda r: float(r[2])) if runs else None)
            o, g = fastest(ours), fastest(gmp)
            fig = lambda b, r: f"{b} ms (compute {r[0]} + decimal {r[1]})" if r else f"{b} ms"
            rows.append(f"| fib(1 000 000) to decimal ÷ GMP (gmpy2), best of each ({meta.get('fib_env', '')}; "
                        f"`stress-tests/fib-vs-gmp.sh`){result} | {fig(best.group(2), o) if best else '–'} | "
                        f"{fig(best.group(3), g) if best else '–'} | {best.group(4) if best else '–'} | ≤ 2.0 | "
                        f"each pair measured back to back: {', '.join(pairs) or '–'} |")
    if not rows:
        return []
    return ["## The two ratios (uncapped)", "",
            "Issue 10 sets these on the uncapped machine, so `run` lifts the caps first (`scripts/up` "
            "without `--limits`: nginx back to its uncapped worker count). Both sides of each ratio are "
            "measured in the same run, one right after the other.", "",
            "| figure | Arena | reference | ratio | target | details |", "|---|---|---|---|---|---|"] + rows + [""]


def caps_table(up_log):
    plain = re.sub(r"\x1b\[[0-9;]*m", "", up_log)
    lines, inside = [], False
    for line in plain.splitlines():
        if line.startswith("service ") and " pids " in line:
            inside = True
        if inside:
            lines.append(line)
            if line.startswith("[arena] limits: cgroup"):
                break
    return "\n".join(lines)


def main():
    run_dir, out = sys.argv[1], sys.argv[2]
    meta = dict(line.split("=", 1) for line in read(os.path.join(run_dir, "meta")).splitlines() if "=" in line)
    quick = meta.get("mode") == "quick"
    doc = ["# Stress results under the Rinha budget", ""]
    doc.append(f"Written by `stress-tests/run` ({'`QUICK=1`: short profiles, an end-to-end check of the harness, **not a benchmark**' if quick else 'full profiles'}) "
               f"on {meta.get('date', '?')}: commit {meta.get('commit', '?')}, release build, {meta.get('replicas', '?')} replicas, "
               f"{meta.get('cpus', '?')} CPUs shared by the stack and the load generators, kernel {meta.get('kernel', '?')}; "
               f"load average {meta.get('load_start', '?')} at the start, {meta.get('load_end', '?')} at the end. "
               f"Logs: `{run_dir}`.")
    doc.append("")
    legs = meta.get("legs", "emulated").split()
    old = read(out)
    if legs == ["peers"] and old.startswith(doc[0]):
        # A side-by-side alone (`LEGS=peers`) replaces its own section of the existing file and
        # leaves the other legs' figures as their run wrote them; the section names its run.
        with open(out, "w") as f:
            f.write(replace_section(old, PEERS_HEADER, "\n".join(peers_section(os.path.join(run_dir, "peers"), meta))))
        return
    only = meta.get("only", "").split()
    if legs == ["emulated"] and only and set(only) <= set(CHATLOAD) and old.startswith(doc[0]):
        # Likewise chatload.py's steps alone (`LEGS=emulated ONLY="chat-faults chat-slow chat-10k"`).
        with open(out, "w") as f:
            f.write(replace_section(old, CHATLOAD_HEADER, "\n".join(chatload_section(run_dir, meta))))
        return
    if "emulated" in legs:
        doc += emulated_sections(run_dir, meta)
    containers = os.path.join(run_dir, "containers")
    if "containers" in legs:
        doc += containers_sections(containers, meta)
    if "emulated" in legs and "containers" in legs:
        doc += side_by_side(run_dir, containers, meta)
    if "swarm" in legs:
        doc += swarm_section(os.path.join(run_dir, "swarm"))
    if "peers" in legs:
        doc += peers_section(os.path.join(run_dir, "peers"))
    doc += charts_section(run_dir, out, meta)

    tuning = TUNING_DEFAULT
    if TUNING_HEADER in old:
        tail = old[old.index(TUNING_HEADER):]
        nxt = tail.find("\n## ", 1)
        tuning = tail if nxt < 0 else tail[:nxt + 1]
    doc.append(tuning.rstrip("\n"))
    with open(out, "w") as f:
        f.write("\n".join(doc) + "\n")


def runs_table(rows):
    load = [r for r in rows if "ping" not in r]
    if not load:
        return []
    doc = ["Latency is p50 / p95 / p99 of every HTTP request (people, accounts) or of the run's own "
           "measure (fib reply, post→receipt). Rate is requests/s over the whole run (fib replies/s, deliveries/s).", "",
           "| run | result | requests | rate /s | p50 / p95 / p99 | statuses | errors | check |",
           "|---|---|---|---|---|---|---|---|"]
    for r in load:
        doc.append(f"| {r['what']} | {r['result']} ({r['secs']} s) | {r['reqs']} | {r['rate']} | {r['lat']} | "
                   f"{r['statuses']} | {r['errors']} | {r['check']} |")
    return doc + [""]


def emulated_sections(run_dir, meta):
    doc = []
    up_status = read(os.path.join(run_dir, "up.status")).strip()
    caps = caps_table(read(os.path.join(run_dir, "up.log")))
    doc += ["## Caps as applied", "",
            "`scripts/up --limits --fresh`, read back from the cgroups (docker-compose.yml's "
            "`deploy.resources.limits`; see stress-tests/README.md, \"Capped runs and RESULTS.md\"):", ""]
    doc += ["```", caps or f"(no table: scripts/up exited {up_status})", "```", ""]
    if up_status != "0":
        doc += [f"**scripts/up --limits --fresh failed (exit {up_status}); nothing was measured.**", ""]

    rows = [r for r in (run_row(run_dir, n, meta) for n in RUNS) if r]  # UNCAPPED: ratio_section
    if any("ping" not in r for r in rows):
        doc += ["## Runs", ""] + runs_table(rows)

    doc += service_tables(run_dir, rows)
    doc += chatload_section(run_dir)

    ping = [r for r in rows if "ping" in r]
    if ping:
        doc += ["## /ping through nginx against nginx's own `return 200`", "",
                "Same load on both, one after the other (`stress-tests/ping-vs-static.sh`, k6 with 64 VUs, "
                "then wrk -t2 -c64); the static nginx runs under the stack nginx's caps and worker count. "
                f"{meta.get('ping_duration', '?')} each.", "",
                "| tool | target | requests | req/s | p50 / p95 / p99 | failed |", "|---|---|---|---|---|---|"]
        for r in ping:
            if r["result"] != "passed":
                doc.append(f"| {r['name'].split('-', 1)[1]} | {r['result']} | | | | |")
            doc += r["ping"]
        doc.append("")

    doc += ratio_section(run_dir, meta)
    return doc


def containers_sections(run_dir, meta):
    doc = ["## In containers: docker-compose.yml under Docker", ""]
    skipped = read(os.path.join(run_dir, "skipped")).strip()
    if skipped:
        return doc + [f"Skipped: {skipped}.", ""]
    up_status = read(os.path.join(run_dir, "up.status")).strip()
    limits = {k: (num(v[0]), num(v[1])) for k, v in table_file(os.path.join(run_dir, "limits")).items() if len(v) >= 2}
    doc += ["`scripts/docker-up --fresh`: the compose file itself, each container under the CPU quota and "
            "memory limit Docker gave it (read back from the containers: "
            + ", ".join(f"{svc} {c:.2f} CPU / {m / 1048576:.0f} MiB" for svc, (c, m) in limits.items()) + ").", ""]
    if up_status != "0":
        return doc + [f"**scripts/docker-up --fresh failed (exit {up_status or '?'}); nothing was measured.**", ""]
    rows = [r for r in (run_row(run_dir, n, meta) for n in RUNS) if r]
    doc += runs_table(rows)
    return doc + service_tables(run_dir, rows, limits)


def side_by_side(emulated, containers, meta):
    """The figures each run is about, emulated caps next to Docker's, from this one session."""
    pick = {
        "people": lambda s: (s.latency("http_req_duration"),
                             f"created {fmt_int(s.count('people_created'))} = counted {fmt_int(s.count('people_counted'))}, {s.errors()}"),
        "accounts": lambda s: (s.latency("http_req_duration"),
                               f"consistency failures {fmt_int(s.count('consistency_failures'))}, {s.errors()}"),
        "websocket": lambda s: (s.latency("fib_latency") + " (fib)",
                                f"closed early {fmt_int(s.count('sockets_closed_early'))}"),
        "chat": lambda s: (s.latency("delivery_latency") + " (post→receipt)",
                           f"delivered {fmt_int(s.count('delivered'))}, duplicates {fmt_int(s.count('duplicate_deliveries'))}, "
                           f"closed early {fmt_int(s.count('sockets_closed_early'))}"),
    }
    rows = []
    for name, f in pick.items():
        cells = []
        for d in (emulated, containers):
            s = Summary(os.path.join(d, f"{name}.summary.json"))
            status = read(os.path.join(d, f"{name}.status")).split()
            if not s:
                cells.append(("–", "–"))
                continue
            lat, check = f(s)
            if status and status[0] != "0":
                check += f" — **failed** (exit {status[0]})"
            cells.append((lat, check))
        if any(c != ("–", "–") for c in cells):
            rows.append(f"| {name} | {cells[0][0]} | {cells[1][0]} | {cells[0][1]} | {cells[1][1]} |")
    if not rows:
        return []
    return ["## Emulated caps vs containers, same session", "",
            "The same runs against the cgroup-emulated stack (`scripts/up --limits`: the shared PostgreSQL, "
            "Redis and RabbitMQ of this machine, CPU-capped, memory measured only) and against the compose "
            "stack (every service in its container under its limits), one after the other.", "",
            "| run | p50 / p95 / p99, emulated | p50 / p95 / p99, containers | check, emulated | check, containers |",
            "|---|---|---|---|---|"] + rows + [""]


def charts_section(run_dir, out, meta):
    """The run's charts, drawn into `charts/` beside RESULTS_MD and shown inline."""
    if meta.get("charts") == "0":
        return []
    try:
        drawn, note = charts.render(run_dir, os.path.join(os.path.dirname(os.path.abspath(out)), "charts"), meta)
    except OSError as e:  # the charts folder cannot be written: RESULTS.md still can
        drawn, note = [], f"no charts: {e}"
    if not drawn and not note:
        return []
    doc = ["## Charts", ""]
    if not note and not any(name for _, _, name, _ in drawn):
        note = f"no charts: {drawn[0][3]}"
    if note:
        return doc + [note[0].upper() + note[1:] + ".", ""]
    doc += ["Per run, over its time (`stress-tests/charts.py`): latency p50 / p95 / p99 per second (log scale; "
            "people and accounts: every HTTP request, chat: post→receipt, websocket: fib reply), the rate "
            "(requests per HTTP status with the iterations k6 dropped; deliveries and posts; fib replies) and each "
            "service's memory every 2 s (cgroup usage solid, PSS dashed).", ""]
    for leg, run, name, why in drawn:
        doc.append(f"### {run}, {leg}")
        doc += ["", f"![{run}, {leg}](charts/{name})" if name else f"No chart: {why}.", ""]
    return doc


PEERS_HEADER = "## Beside the Rinha entries"


def replace_section(doc, header, section):
    """`doc` with its section under `header` replaced by `section` (put before the charts, or
    at the end, when it has none)."""
    section = section.rstrip("\n") + "\n\n"
    if header in doc:
        start = doc.index(header)
        end = doc.find("\n## ", start + 1)
        return doc[:start] + section + ("" if end < 0 else doc[end + 1:])
    at = doc.find("\n## Charts")
    return doc + "\n" + section if at < 0 else doc[:at + 1] + section + doc[at + 1:]


def peers_section(run_dir, meta=None):
    """side_by_side.py's tables (it writes them itself), or why the leg was skipped. `meta`
    when the leg ran alone: the section then says which run it is."""
    doc = [PEERS_HEADER, ""]
    if meta:
        doc += [f"From a run of this leg alone on {meta.get('date', '?')} (commit {meta.get('commit', '?')}; "
                f"`LEGS=peers stress-tests/run`); the sections above are from the run named at the top.", ""]
    skipped = read(os.path.join(run_dir, "skipped")).strip()
    tables = read(os.path.join(run_dir, "side-by-side.md")).strip()
    if skipped:
        doc += [f"Skipped: {skipped}.", ""]
    elif tables:
        doc += ["`stress-tests/side_by_side.py` (the `peers` leg): the same k6 profile against Arena and against the "
                "peer, built from its public source and run natively by `../shared/peers/<peer>/up.sh --limits`.", "",
                tables, ""]
    else:
        doc += [f"No figures: see `{run_dir}/side-by-side.log`.", ""]
    return doc


def swarm_section(run_dir):
    doc = ["## Swarm: a rolling update and a killed task under load", ""]
    skipped = read(os.path.join(run_dir, "skipped")).strip()
    if skipped:
        return doc + [f"Skipped: {skipped}.", ""]
    try:
        r = json.loads(read(os.path.join(run_dir, "swarm.json"), "{}"))
    except json.JSONDecodeError:
        r = {}
    status = read(os.path.join(run_dir, "swarm.status")).split()
    if not r:
        return doc + [f"**stress-tests/swarm.py failed before it measured anything** (exit {status[0] if status else '?'}; "
                      f"see `{run_dir}/swarm.log`).", ""]
    p, a, audit = r.get("people", {}), r.get("accounts", {}), r.get("audit", {})
    doc += [f"`stress-tests/swarm.py{' --quick' if r.get('quick') else ''}`: docker-compose.yml with "
            "docker-compose.swarm.yml as a Swarm stack on this node, people.js and accounts.js "
            f"{'(about a minute each)' if r.get('quick') else '(full profiles)'} with an auditor crediting 1 "
            f"with a unique description per request. Stack up in {r.get('converge_s', '?')} s; the api service "
            f"rolled to `{r.get('rolled_to', '?')}` (start-first, one task at a time) in {r.get('roll_s', '?')} s; "
            f"then one api task's container killed (SIGKILL), replaced by Swarm in {r.get('replaced_s', '?')} s.", "",
            "5xx and transport errors through nginx, by phase (what nginx could not retry):", "",
            "| phase | people.js | accounts.js |", "|---|---|---|"]
    errors = r.get("errors", {})
    for phase in (errors.get("people") or {}):
        fmt = lambda d: ", ".join(f"{'transport' if k in ('0', 0) else k}: {v}" for k, v in d.items()) or "0"
        doc.append(f"| {phase} | {fmt(errors['people'].get(phase, {}))} | {fmt(errors.get('accounts', {}).get(phase, {}))} |")
    doc += ["", "| check | figure |", "|---|---|",
            f"| people: created (201) / counted | {fmt_int(p.get('created', 0))} / {fmt_int(p.get('counted', 0))}: "
            f"lost {p.get('lost', '?')}, counted without a 201 {p.get('phantom', '?')} |",
            f"| accounts.js consistency failures | {a.get('consistency_failures', '?')} ({fmt_int(a.get('requests', 0))} requests) |",
            f"| audited credits answered 200 / in PostgreSQL once | {fmt_int(audit.get('answered_200', 0))}: lost {audit.get('lost', '?')}, "
            f"applied twice {audit.get('duplicated', '?')}; not answered 200 {audit.get('not_200', '?')}, of which applied "
            f"{audit.get('not_200_applied', '?')} |",
            f"| OOM kills | {len(r.get('oom_kills', []))} |"]
    failed = [k for k, ok in r.get("checks", {}).items() if not ok]
    doc += ["", f"Result: {'**failed**: ' + ', '.join(failed) if failed else 'passed'} "
            f"(`{run_dir}`).", ""]
    return doc


if __name__ == "__main__":
    main()
