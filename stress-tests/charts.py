#!/usr/bin/env python3
"""Draws the charts of one stress-tests/run: per run and leg, what a Gatling report shows.

    charts.py RUN_DIR CHARTS_DIR    every chart of the run (results.py calls render() itself)
    charts.py --self-test           checks the parsing on made-up series (and a drawing, when
                                    matplotlib is installed); exit 1 on a failure

Owns reading the two time series `run` leaves beside each run's log into buckets of a second
(or a few, so a chart keeps ~300 points) and drawing them:
  NAME.k6.csv.gz     k6's `--out csv` (lib.sh's run() sets K6_OUT): one line per sample,
                     "metric_name,timestamp,metric_value,…,status,…", timestamp in whole seconds
  NAME.memory.tsv    lib.sh's memory sampler, every 2 s: "epoch svc cgroup_bytes pss_kb"
One PNG per run and leg, CHARTS_DIR/<run>-<leg>.png (stable names: a new run overwrites; a file
of that pattern the run did not draw is removed, so the folder matches RESULTS.md), on one time
axis (seconds since the run started: the memory sampler starts just before k6):
  people, accounts  latency p50/p95/p99 of every HTTP request (log scale); requests/s per HTTP
                    status, with the iterations k6 dropped for want of VUs
  chat              post→receipt p50/p95/p99; deliveries/s and posts/s
  websocket         fib reply p50/p95/p99; fib replies/s
and below, a small panel per service: its cgroup's usage, its PSS and its limit (the emulated
caps' table, or Docker's `limits` for the containers leg).
matplotlib (Agg backend: no display) is imported only to draw: without it, or without series,
render() returns why instead of a file and results.py writes that in RESULTS.md.
"""
import csv
import gzip
import math
import os
import re
import sys
import tempfile
import zlib

# run -> (latency trend, its label, counters drawn as rates (metric, label), split HTTP by status)
# (in the order results.py lists the runs)
KINDS = {
    "people": ("http_req_duration", "every HTTP request", [], True),
    "accounts": ("http_req_duration", "every HTTP request", [], True),
    "websocket": ("fib_latency", "fib reply", [("fib_replies", "fib replies")], False),
    "chat": ("delivery_latency", "post → receipt", [("delivered", "deliveries"), ("posted", "posts (201)")], False),
}
LEGS = ["emulated", "containers"]  # the swarm leg's k6 runs are swarm.py's own
MAX_POINTS = 300
# Legends above a panel's top right corner, its title on the left: inside, they hid the first
# seconds (accounts' concurrency phase).
ABOVE_RIGHT = dict(loc="lower right", bbox_to_anchor=(1, 1), fontsize=9, frameon=False, borderaxespad=0.2)


def leg_dir(run_dir, leg):
    return run_dir if leg == "emulated" else os.path.join(run_dir, leg)


def chart_name(run, leg):
    return f"{run}-{leg}.png"


class Series:
    """One run's k6 samples in per-second buckets: trend values, counter sums (HTTP requests also
    per status)."""

    def __init__(self):
        self.trends = {}    # metric -> {second: [values]}
        self.counts = {}    # metric -> {second: sum}
        self.statuses = {}  # status -> {second: requests}
        self.truncated = False

    def seconds(self):
        secs = [s for d in (*self.trends.values(), *self.counts.values(), *self.statuses.values()) for s in d]
        return (min(secs), max(secs)) if secs else None


def read_k6(path, trends, counters):
    """The samples of `trends` and `counters` (and http_reqs by status) in k6's CSV, gzipped or
    not. A file cut short (k6 killed by the run's time limit) gives what it holds."""
    s = Series()
    wanted_trends, wanted_counts = set(trends), set(counters)
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rt", newline="") as f:
            rows = csv.reader(f)
            header = next(rows, None)
            if not header:
                return s
            col = {name: i for i, name in enumerate(header)}
            m_i, t_i, v_i, st_i = col["metric_name"], col["timestamp"], col["metric_value"], col.get("status")
            for row in rows:
                if len(row) <= v_i:
                    continue
                metric = row[m_i]
                if metric == "http_reqs" and st_i is not None and len(row) > st_i:
                    sec = int(float(row[t_i]))
                    d = s.statuses.setdefault(row[st_i] or "0", {})
                    d[sec] = d.get(sec, 0) + float(row[v_i])
                if metric in wanted_trends:
                    s.trends.setdefault(metric, {}).setdefault(int(float(row[t_i])), []).append(float(row[v_i]))
                elif metric in wanted_counts:
                    d = s.counts.setdefault(metric, {})
                    sec = int(float(row[t_i]))
                    d[sec] = d.get(sec, 0) + float(row[v_i])
    except (EOFError, zlib.error, gzip.BadGzipFile, ValueError):
        s.truncated = True
    return s


def read_memory(path):
    """{svc: [(epoch, cgroup_bytes, pss_kb)]} from the sampler's series; bad lines skipped."""
    out = {}
    try:
        with open(path) as f:
            for line in f:
                p = line.split()
                if len(p) != 4:
                    continue
                try:
                    out.setdefault(p[1], []).append((int(p[0]), int(p[2]), int(p[3])))
                except ValueError:
                    continue
    except OSError:
        pass
    return out


def percentile(sorted_values, p):
    """k6's percentile: linear between the two nearest ranks."""
    if not sorted_values:
        return None
    k = (len(sorted_values) - 1) * p / 100
    lo = math.floor(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def bucket_width(first, last):
    return max(1, math.ceil((last - first + 1) / MAX_POINTS))


def buckets(by_second, t0, width):
    """{second: x} into {bucket start, seconds since t0: [x, …]} of `width` seconds."""
    out = {}
    for sec, x in by_second.items():
        out.setdefault((sec - t0) // width * width, []).append(x)
    return out


def percentiles_over_time(by_second, t0, width, ps=(50, 95, 99)):
    """[(t, {p: value})] per bucket of a trend's {second: [values]}."""
    rows = []
    for t, lists in sorted(buckets(by_second, t0, width).items()):
        values = sorted(v for vs in lists for v in vs)
        rows.append((t, {p: percentile(values, p) for p in ps}))
    return rows


def rate_over_time(by_second, t0, width, last):
    """[(t, per second)] of a counter's {second: sum}, every bucket from 0 to `last` (an empty
    one is 0: a gap in a rate is a rate of 0)."""
    b = buckets(by_second, t0, width)
    return [(t, sum(b.get(t, [])) / width) for t in range(0, last - t0 + 1, width)]


def status_label(status):
    return "transport error" if status in ("0", "") else status


def status_color(status, i):
    """2xx greens, 3xx blues, 4xx oranges, 5xx reds, transport errors black."""
    palettes = {"2": ["#2ca02c", "#98df8a", "#1b5e20"], "3": ["#1f77b4", "#aec7e8"],
                "4": ["#ff7f0e", "#ffbb78", "#bf5b00", "#8c564b"], "5": ["#d62728", "#ff9896", "#7f0000"]}
    if status in ("0", ""):
        return "black"
    pal = palettes.get(status[0], ["#9467bd", "#c5b0d5"])
    return pal[i % len(pal)]


def memory_limits(d, leg):
    """{svc: MiB} as the leg applied them: Docker's (`limits`: "svc cpus bytes") or the emulated
    caps' table (limits.table, else the one in up.log: "svc pids cpus 50.0 MiB note")."""
    out = {}
    if leg == "containers":
        for line in read_lines(os.path.join(d, "limits")):
            p = line.split()
            if len(p) >= 3 and p[2].isdigit() and int(p[2]) > 0:
                out[p[0]] = int(p[2]) / 1048576
        return out
    for name in ("limits.table", "up.log"):
        for line in read_lines(os.path.join(d, name)):
            m = re.match(r"^(\S+)\s+\d+\s+\S+\s+([0-9.]+) MiB", line)
            if m:
                out[m.group(1)] = float(m.group(2))
        if out:
            break
    return out


def read_lines(path):
    try:
        with open(path) as f:
            return f.read().splitlines()
    except OSError:
        return []


def with_gaps(points, width):
    """(t, y) points with a None between two more than a bucket apart: a line is not drawn
    across a time without samples."""
    out = []
    for t, y in points:
        if out and t - out[-1][0] > width:
            out.append((out[-1][0] + width, None))
        out.append((t, y))
    return [t for t, _ in out], [float("nan") if y is None else y for _, y in out]


def draw(run, leg, series, memory, limits, meta, path):
    """One PNG: latency, rate, and a small panel per service's memory (`series` or `memory`
    holds samples)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator

    trend, trend_label, counters, by_status = KINDS[run]
    span = series.seconds()
    mem_secs = [e for samples in memory.values() for e, _, _ in samples]
    # The sampler starts just before k6: its first sample is the run's start.
    edges = list(span or ()) + mem_secs
    t0, last = min(edges), max(edges)
    width = bucket_width(t0, last)
    per = "per second" if width == 1 else f"per {width} s"
    plain = FuncFormatter(lambda v, _: f"{v:g}")

    cols = 4
    mem_rows = max(1, math.ceil(len(memory) / cols))
    fig = plt.figure(figsize=(12, 8 + 2.2 * mem_rows), layout="constrained")
    grid = fig.add_gridspec(2 + mem_rows, cols, height_ratios=[3, 3] + [1.6] * mem_rows)
    ax_lat = fig.add_subplot(grid[0, :])
    ax_rate = fig.add_subplot(grid[1, :], sharex=ax_lat)
    mode = "QUICK=1: short profiles, not a benchmark" if meta.get("mode") == "quick" else "full profiles"
    fig.suptitle(f"{run} — {leg} leg\n{meta.get('date', '?')}, commit {meta.get('commit', '?')}, {mode}", fontsize=12)

    lat = percentiles_over_time(series.trends.get(trend, {}), t0, width)
    if lat:
        for p, color in ((50, "#1f77b4"), (95, "#ff7f0e"), (99, "#d62728")):
            ts, ys = with_gaps([(t, max(v[p], 0.01)) for t, v in lat], width)
            ax_lat.plot(ts, ys, label=f"p{p}", color=color, lw=1.2, marker=".", ms=3)
        ax_lat.set_yscale("log")
        ax_lat.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
        ax_lat.yaxis.set_major_formatter(plain)
        ax_lat.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
        ax_lat.legend(**ABOVE_RIGHT, ncol=3)
    else:
        ax_lat.text(0.5, 0.5, "no latency samples", transform=ax_lat.transAxes, ha="center")
    ax_lat.set_ylabel("ms (log scale)")
    ax_lat.set_title(f"latency of {trend_label}, {per}", fontsize=10, loc="left")
    ax_lat.grid(True, which="both", alpha=0.3)

    drew = False
    if by_status:
        seen = {}  # statuses of each class drawn so far: 200 and 201 get two greens
        for status, by_sec in sorted(series.statuses.items(), key=lambda kv: (kv[0] in ("0", ""), kv[0])):
            r = rate_over_time(by_sec, t0, width, last)
            color = status_color(status, seen.get(status[:1], 0))
            seen[status[:1]] = seen.get(status[:1], 0) + 1
            ax_rate.plot([t for t, _ in r], [v for _, v in r], label=status_label(status), color=color, lw=1.2)
            drew = True
    for metric, label in counters:
        if metric in series.counts:
            r = rate_over_time(series.counts[metric], t0, width, last)
            ax_rate.plot([t for t, _ in r], [v for _, v in r], label=label, lw=1.2)
            drew = True
    if by_status and series.counts.get("dropped_iterations"):
        r = rate_over_time(series.counts["dropped_iterations"], t0, width, last)
        ax_rate.plot([t for t, _ in r], [v for _, v in r], label="iterations dropped by k6", color="grey", ls="--", lw=1)
    if drew:
        ax_rate.legend(**ABOVE_RIGHT, ncol=len(ax_rate.get_lines()))
    else:
        ax_rate.text(0.5, 0.5, "no request samples", transform=ax_rate.transAxes, ha="center")
    ax_rate.set_ylabel("per second")
    ax_rate.set_title(("requests per HTTP status" if by_status else ", ".join(l for _, l in counters)) + f", {per}", fontsize=10, loc="left")
    ax_rate.set_xlabel("seconds since the run started" + (" (k6's series cut short)" if series.truncated else ""))
    ax_rate.grid(True, alpha=0.3)
    ax_rate.set_ylim(bottom=0)
    ax_rate.set_xlim(-width / 2, last - t0 + width / 2)

    # Memory: one small panel per service, each on its own scale (50 MiB replicas beside a
    # 200 MB PostgreSQL would be flat lines on a shared one), with its limit when it has one.
    for i, (svc, samples) in enumerate(memory.items()):
        ax = fig.add_subplot(grid[2 + i // cols, i % cols], sharex=ax_lat)
        ts = [e - t0 for e, _, _ in samples]
        if any(cg for _, cg, _ in samples):
            ax.plot(ts, [cg / 1048576 for _, cg, _ in samples], color="#1f77b4", lw=1.2, label="cgroup")
        ax.plot(ts, [k / 1024 for _, _, k in samples], color="#9467bd", lw=1, ls="--", label="PSS")
        limit = limits.get(svc)
        if limit:
            ax.axhline(limit, color="#d62728", lw=1, ls=":", label="limit")
        ax.set_title(f"{svc}" + (f" (limit {limit:g} MiB)" if limit else " (no memory limit)"), fontsize=9)
        ax.set_ylim(bottom=0)
        ax.tick_params(labelsize=8)
        ax.grid(True, alpha=0.3)
        if i % cols == 0:
            ax.set_ylabel("MiB", fontsize=9)
    if memory:
        fig.supxlabel("memory per service, sampled every 2 s: the cgroup's usage (solid), the PSS of its processes "
                      "(dashed), its limit (dotted); x: seconds since the run started", fontsize=9)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def render(run_dir, charts_dir, meta):
    """Every chart of the run: [(leg, run, file name or None, why not)], plus a note for the
    whole run (matplotlib missing) or None. Charts of this naming that were not drawn now are
    removed: the folder shows what RESULTS.md shows."""
    legs = [l for l in meta.get("legs", "emulated").split() if l in LEGS]
    todo = [(leg, run) for leg in legs for run in KINDS
            if os.path.exists(os.path.join(leg_dir(run_dir, leg), f"{run}.status"))]
    results, drawn, note = [], set(), None
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        todo, note = [], "no charts: matplotlib is not installed (`pip install matplotlib`)"
    for leg, run in todo:
        d = leg_dir(run_dir, leg)
        trend, _, counters, _ = KINDS[run]
        k6 = os.path.join(d, f"{run}.k6.csv.gz")
        series = read_k6(k6, [trend], [m for m, _ in counters] + ["dropped_iterations"]) if os.path.exists(k6) else Series()
        memory = read_memory(os.path.join(d, f"{run}.memory.tsv"))
        name = chart_name(run, leg)
        if not series.seconds() and not memory:
            results.append((leg, run, None, "no time series recorded (neither k6's CSV nor memory samples)"))
            continue
        os.makedirs(charts_dir, exist_ok=True)
        try:
            draw(run, leg, series, memory, memory_limits(d, leg), meta, os.path.join(charts_dir, name))
            results.append((leg, run, name, None))
            drawn.add(name)
        except Exception as e:  # a chart is not worth a failed run: say why instead
            results.append((leg, run, None, f"drawing failed: {type(e).__name__}: {e}"))
    owned = {chart_name(r, l) for l in LEGS for r in KINDS}
    if os.path.isdir(charts_dir):
        for f in os.listdir(charts_dir):
            if f in owned and f not in drawn:
                os.remove(os.path.join(charts_dir, f))
    return results, note


def self_test():
    failures = []

    def expect(what, got, want):
        if got != want:
            failures.append(f"{what}: got {got!r}, want {want!r}")

    expect("p50 of 1..100", percentile(list(range(1, 101)), 50), 50.5)
    expect("p99 of 1..100", round(percentile(list(range(1, 101)), 99), 2), 99.01)
    expect("p95 of one value", percentile([7.0], 95), 7.0)
    expect("p50 of nothing", percentile([], 50), None)
    expect("bucket width, 200 s", bucket_width(0, 199), 1)
    expect("bucket width, 900 s", bucket_width(0, 899), 3)
    with tempfile.TemporaryDirectory() as tmp:
        header = ("metric_name,timestamp,metric_value,check,error,error_code,expected_response,group,method,name,"
                  "proto,scenario,service,status,subproto,tls_version,url,extra_tags,metadata\n")
        row = lambda m, t, v, st="": f"{m},{t},{v},,,,true,,POST,\"/pessoas, quoted\",HTTP/1.1,s,,{st},,,u,,\n"
        body = header + "".join([
            row("http_reqs", 1000, 1, 201), row("http_req_duration", 1000, 2.5, 201),
            row("http_reqs", 1000, 1, 201), row("http_req_duration", 1000, 7.5, 201),
            row("http_reqs", 1001, 1, 422), row("http_req_duration", 1001, 1.0, 422),
            row("http_reqs", 1003, 1, 0), row("dropped_iterations", 1003, 4), row("vus", 1003, 9),
        ])
        path = os.path.join(tmp, "people.k6.csv.gz")
        with gzip.open(path, "wt") as f:
            f.write(body)
        s = read_k6(path, ["http_req_duration"], ["dropped_iterations"])
        expect("trend buckets", s.trends["http_req_duration"], {1000: [2.5, 7.5], 1001: [1.0]})
        expect("statuses", s.statuses, {"201": {1000: 2}, "422": {1001: 1}, "0": {1003: 1}})
        expect("counters", s.counts, {"dropped_iterations": {1003: 4}})
        expect("span", s.seconds(), (1000, 1003))
        expect("not truncated", s.truncated, False)
        expect("p50 per second", [(t, v[50]) for t, v in percentiles_over_time(s.trends["http_req_duration"], 1000, 1)],
               [(0, 5.0), (1, 1.0)])
        expect("rate with a gap", rate_over_time(s.statuses["201"], 1000, 1, 1003), [(0, 2), (1, 0), (2, 0), (3, 0)])
        expect("rate, 2 s buckets", rate_over_time({1000: 2, 1001: 4, 1002: 1}, 1000, 2, 1003), [(0, 3.0), (2, 0.5)])
        # k6 killed mid-write: the gzip stream ends early; what came before it is kept.
        blob = open(path, "rb").read()
        cut = os.path.join(tmp, "cut.k6.csv.gz")
        with open(cut, "wb") as f:
            f.write(blob[:-12])
        c = read_k6(cut, ["http_req_duration"], [])
        expect("truncated flagged", c.truncated, True)
        mem = os.path.join(tmp, "people.memory.tsv")
        with open(mem, "w") as f:
            f.write("1000 api1 1048576 2048\n1000 db 0 4096\nbad line\n1002 api1 2097152 3072\n")
        expect("memory series", read_memory(mem), {"api1": [(1000, 1048576, 2048), (1002, 2097152, 3072)],
                                                   "db": [(1000, 0, 4096)]})
        expect("memory, no file", read_memory(os.path.join(tmp, "none")), {})
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("charts self-test: matplotlib missing, drawing not checked")
        else:
            with open(os.path.join(tmp, "people.status"), "w") as f:
                f.write("0 4\n")
            charts = os.path.join(tmp, "charts")
            os.makedirs(charts)
            stale = os.path.join(charts, chart_name("chat", "emulated"))
            open(stale, "w").close()
            got, note = render(tmp, charts, {"legs": "emulated", "mode": "quick"})
            expect("render", (got, note), ([("emulated", "people", "people-emulated.png", None)], None))
            expect("PNG written", open(os.path.join(charts, "people-emulated.png"), "rb").read(4), b"\x89PNG")
            expect("stale chart removed", os.path.exists(stale), False)
    for f in failures:
        print("charts self-test FAILED:", f)
    if not failures:
        print("charts self-test passed")
    return not failures


def main():
    if sys.argv[1:] == ["--self-test"]:
        sys.exit(0 if self_test() else 1)
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    run_dir, charts_dir = sys.argv[1:]
    meta = {}
    with open(os.path.join(run_dir, "meta")) as f:
        meta = dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)
    results, note = render(run_dir, charts_dir, meta)
    if note:
        print(note)
    for leg, run, name, why in results:
        print(f"{run} ({leg}): {os.path.join(charts_dir, name) if name else why}")


if __name__ == "__main__":
    main()
