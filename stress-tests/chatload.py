#!/usr/bin/env python3
"""Chat room load generator (issue 18): thousands of room sockets in one process, each counted.

Owns the chat delivery measurements of stress-tests/run's `chat-faults`, `chat-slow` and
`chat-10k` steps. Through nginx (BASE_URL) it registers USERS users, makes ROOMS groups with
every user a member, opens SOCKETS room sockets (`/ws/updates/{g}?since=0`, spread over the rooms
in turn and over the replicas by nginx's round robin), then posts RATE messages a second for
DURATION, to the rooms in turn, each content stamped with its post time. Every socket counts:
expected (every post to its group answered 201: since=0 on a new group makes that everything),
delivered, lost, duplicates (a seq it already had) and out of order (a seq below its last one it
never had), and post→receipt latency. A closed socket reconnects with `since=<last seq seen>`,
the client behaviour the server guarantees against. One JSON line (`chatload {...}`) and human
lines; exit 1 when anything was lost, duplicated or out of order.

The WebSocket and HTTP clients are a few dozen lines over asyncio.Protocol rather than the
`websockets` package: one protocol object and no task per socket keeps 10 000 sockets at a few
KiB each and the process's CPU (printed) small beside the stack on the same two cores.

Scenarios (flags, all optional):
  --faults broker_stop@15,broker_start@30,kill:api2@50
        actions at seconds after the first post: `rabbitmqctl stop_app` / `start_app` (the
        local stack's broker, as advanced_tests' local backend does) and `kill -9` of a replica
        of scripts/up (its pid file). Latency is split into posts made during each fault (from
        its start to 5 s after it ended: the replicas' periodic catch-up) and outside them.
  --heal  after the run, scripts/up with the stack's own settings (stack.env) restarts what
        the faults killed, as advanced_tests' heal does.
  --hot-rate R --stall T
        one more socket alone in a "hot" room that gets R posts/s of --hot-size characters; with
        --stall it stops reading T s after the first post (4 KiB receive buffer) and resumes at
        the end of the posting, to read what the server sent: the close code (1008 expected)
        and then, reconnected with since, every hot message.
  --memory  samples the replicas' and nginx's RSS (and cgroup usage when capped) before the
        sockets open and while they are open, and prints the growth per 1 000 sockets.

    stress-tests/chatload.py --sockets 2000 --rooms 20 --rate 50 --duration 30s
    SOCKETS=200 stress-tests/chatload.py          # every flag also reads its upper-case env
"""
import argparse
import array
import asyncio
import base64
import json
import os
import random
import re
import resource
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
STATE = os.environ.get("ARENA_STATE_DIR") or os.path.join(ROOT, ".state")
# Events of an outage may wait for a replica's periodic check (every 5 s) to be re-read from
# PostgreSQL: posts made this long after a fault ended still count as made during it.
SETTLE_S = 5.0


def env(name, default):
    return os.environ.get(name, default)


def seconds(text):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)?", str(text))
    if not m:
        raise SystemExit(f"duration {text!r}: use e.g. 30s, 2m, 500ms")
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, None: 1}[m.group(2)]


def log(*a):
    print(*a, flush=True)


# --- set-up over plain HTTP (before the clock starts) --------------------------------------

def http_json(base, method, path, body=None, token=None):
    req = urllib.request.Request(base + path, method=method,
                                 data=None if body is None else json.dumps(body).encode())
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def setup(base, users, rooms, extra_rooms):
    run = f"{int(time.time()):x}{random.randrange(1 << 20):x}"
    people = []
    for i in range(users):
        cred = {"username": f"chatload-{run}-{i}", "password": "chatload-password"}
        st, body = http_json(base, "POST", "/register", cred)
        if st != 201:
            raise SystemExit(f"register: {st} {body}")
        st, body = http_json(base, "POST", "/login", cred)
        if st != 200:
            raise SystemExit(f"login: {st} {body}")
        people.append({"id": body["user_id"], "name": cred["username"], "token": body["token"]})
    groups = []
    for r in range(rooms + extra_rooms):
        st, body = http_json(base, "POST", "/create-chat", {
            "groupName": f"chatload-{run}-{r}", "creatorId": people[0]["id"],
            "members": [p["name"] for p in people[1:]]}, people[0]["token"])
        if st != 201:
            raise SystemExit(f"create-chat: {st} {body}")
        groups.append(body["group_id"])
    return people, groups


# --- the room socket: RFC 6455 client framing over asyncio.Protocol ------------------------

class Counts:
    """Everything measured, in one place."""

    def __init__(self):
        self.lat = array.array("d")      # post→receipt seconds, first receipt of each seq
        self.lat_sent = array.array("d")  # the post time of the same sample
        self.opened = 0                  # successful upgrades, reconnects included
        self.open_refused = {}           # status (or error) → count, for failed upgrades
        self.close_codes = {}            # close code → count (1006: closed without a frame)
        self.id_mismatch = 0
        self.errors = []


C = Counts()


class Sock:
    """One logical room socket: survives its connections."""
    __slots__ = ("idx", "group", "path_base", "last", "seen", "dup", "ooo", "connects", "proto",
                 "first_open", "hot", "stall_rcvbuf", "closes", "frames")

    def __init__(self, idx, group, token, hot=False):
        self.idx, self.group, self.hot = idx, group, hot
        self.path_base = f"/ws/updates/{group}?token={urllib.parse.quote(token)}&since="
        self.last = 0
        self.seen = set()
        self.dup = self.ooo = self.connects = self.frames = 0
        self.proto = None
        self.first_open = None
        self.stall_rcvbuf = hot
        self.closes = []


class Room(asyncio.Protocol):
    def __init__(self, sock, gen):
        self.sock, self.gen = sock, gen
        self.buf = bytearray()
        self.upgraded = False
        self.close_code = None
        self.transport = None
        self.upgraded_fut = gen.loop.create_future()
        self.frag = None

    def connection_made(self, transport):
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write((f"GET {self.sock.path_base}{self.sock.last} HTTP/1.1\r\nHost: {self.gen.host}\r\n"
                         f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                         f"Sec-WebSocket-Version: 13\r\n\r\n").encode())

    def send(self, opcode, payload=b""):
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([0x80 | opcode]) + (bytes([0x80 | n]) if n < 126 else bytes([0xFE]) + struct.pack("!H", n))
        masked = (int.from_bytes(payload, "big") ^ int.from_bytes((mask * (n // 4 + 1))[:n], "big")).to_bytes(n, "big") if n else b""
        self.transport.write(head + mask + masked)

    def data_received(self, data):
        buf = self.buf
        buf += data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = buf[:buf.find(b"\r\n")].split(b" ")
            code = status[1].decode() if len(status) > 1 else "?"
            if code != "101":
                C.open_refused[code] = C.open_refused.get(code, 0) + 1
                self.upgraded_fut.done() or self.upgraded_fut.set_result(False)
                self.transport.close()
                return
            del buf[:end + 4]
            self.upgraded = True
            self.upgraded_fut.done() or self.upgraded_fut.set_result(True)
        pos, n_buf = 0, len(buf)
        while n_buf - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            n, off = b1 & 0x7F, pos + 2
            if n == 126:
                if n_buf - pos < 4:
                    break
                n, off = struct.unpack_from("!H", buf, off)[0], off + 2
            elif n == 127:
                if n_buf - pos < 10:
                    break
                n, off = struct.unpack_from("!Q", buf, off)[0], off + 8
            if b1 & 0x80:  # a server must not mask; tolerate it anyway
                off += 4
            if n_buf < off + n:
                break
            payload = bytes(buf[off:off + n])
            pos = off + n
            self.frame(b0 & 0x80, b0 & 0x0F, payload)
            if self.transport.is_closing():
                break
        del buf[:pos]

    def frame(self, fin, opcode, payload):
        if opcode == 0:  # continuation
            if self.frag is None:
                return
            self.frag[1].extend(payload)
            if fin:
                opcode, payload, self.frag = self.frag[0], bytes(self.frag[1]), None
            else:
                return
        elif not fin and opcode in (1, 2):
            self.frag = (opcode, bytearray(payload))
            return
        if opcode == 1:
            self.sock.frames += 1
            self.gen.on_event(self.sock, payload)
        elif opcode == 9:
            self.send(10, payload)
        elif opcode == 8:
            self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
            self.send(8, payload[:2])
            self.transport.close()

    def connection_lost(self, exc):
        self.upgraded_fut.done() or self.upgraded_fut.set_result(False)
        if self.upgraded:
            code = self.close_code or 1006
            C.close_codes[code] = C.close_codes.get(code, 0) + 1
            self.sock.closes.append((time.time(), code))
        if self.sock.proto is self:
            self.sock.proto = None
            self.gen.lost(self.sock)


# --- posts over keep-alive HTTP/1.1 --------------------------------------------------------

class Poster:
    def __init__(self, host, port):
        self.host, self.port = host, port
        self.reader = self.writer = None

    async def post(self, path, body, token):
        try:
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            data = json.dumps(body).encode()
            self.writer.write((f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
                               f"Authorization: Bearer {token}\r\nContent-Length: {len(data)}\r\n\r\n").encode() + data)
            head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 30)
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ")[1])
            headers = {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:] if l)}
            if "content-length" in headers:
                payload = await self.reader.readexactly(int(headers["content-length"]))
            else:  # chunked
                payload = b""
                while True:
                    size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
                    payload += await self.reader.readexactly(size + 2)
                    if size == 0:
                        break
            if headers.get("connection", "").lower() == "close":
                self.writer.close()
                self.writer = None
            return status, payload
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError, IndexError) as e:
            if self.writer is not None:
                self.writer.close()
            self.writer = None
            return 0, str(e).encode()


# --- the run -------------------------------------------------------------------------------

def pct(values, q):
    if not values:
        return None
    return values[min(len(values) - 1, int(q * len(values)))]


def lat_summary(samples):
    s = sorted(samples)
    return {"n": len(s), "p50_ms": r1(pct(s, 0.50)), "p95_ms": r1(pct(s, 0.95)),
            "p99_ms": r1(pct(s, 0.99)), "max_ms": r1(s[-1] if s else None)}


def r1(x):
    return None if x is None else round(x * 1000, 1)


def stack_env():
    out = {}
    try:
        with open(os.path.join(STATE, "stack.env")) as f:
            for line in f:
                k, sep, v = line.strip().partition("=")
                if sep:
                    out[k] = v
    except OSError:
        pass
    return out


def read_pid(name):
    path = os.path.join(STATE, "pids" if name.startswith("api") else "nginx", f"{name}.pid")
    if name == "nginx" and os.environ.get("NGINX_PID_FILE"):  # another nginx than the stack's
        path = os.environ["NGINX_PID_FILE"]
    try:
        with open(path) as f:
            pid = int(f.read().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def processes(name):
    """The pids of a service: a replica, or nginx's master and workers."""
    pid = read_pid(name)
    if pid is None:
        return []
    if name != "nginx":
        return [pid]
    kids = []
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = [int(p) for p in f.read().split()]
    except OSError:
        pass
    return [pid] + kids


def rss_kb(pids):
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                total += next(int(l.split()[1]) for l in f if l.startswith("VmRSS"))
        except (OSError, StopIteration):
            pass
    return total


def cgroup_bytes(pid):
    """The memory cgroup's usage of process `pid` when it is in one (the --limits caps)."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            for line in f:
                _, ctrl, path = line.rstrip("\n").split(":", 2)
                if "/arena/" not in path + "/":  # not one of scripts/limits.sh's
                    continue
                if ctrl == "" and os.path.exists(f"/sys/fs/cgroup{path}/memory.current"):
                    return int(open(f"/sys/fs/cgroup{path}/memory.current").read())
                if "memory" in ctrl.split(","):
                    for mount in ("/sys/fs/cgroup/memory", "/sys/fs/cgroup/memory,cpu", "/sys/fs/cgroup/cpu,memory"):
                        if os.path.exists(f"{mount}{path}/memory.usage_in_bytes"):
                            return int(open(f"{mount}{path}/memory.usage_in_bytes").read())
    except (OSError, ValueError):
        pass
    return None


class Gen:
    def __init__(self, a):
        self.a = a
        u = urllib.parse.urlsplit(a.base_url)
        self.host, self.port = u.hostname, u.port or 80
        self.loop = asyncio.get_running_loop()
        self.stopping = False
        self.socks = []
        self.posts = []  # [group index, status, seq, t_sent]
        self.hot_posts = []
        self.faults = []  # (name, t_start, t_end)
        self.stalled = False

    def on_event(self, sock, payload):
        now = time.time()
        try:
            d = json.loads(payload)
        except ValueError:
            C.errors.append(f"not JSON: {payload[:80]!r}")
            return
        kind = d.get("type")
        if kind not in ("message.created", "message.deleted"):
            if kind == "error":
                C.errors.append(str(d))
            return
        seq = d.get("seq")
        if seq is None:
            C.errors.append(f"no seq: {payload[:120]!r}")
            return
        if seq <= sock.last:
            if seq in sock.seen:
                sock.dup += 1
            else:
                sock.ooo += 1
                sock.seen.add(seq)
            return
        sock.last = seq
        sock.seen.add(seq)
        if kind == "message.created":
            m = d["message"]
            if m.get("id") != seq:
                C.id_mismatch += 1
            parts = m.get("content", "").split(" ", 3)
            if parts[0] == "cl" and not sock.hot:
                sent = float(parts[2])
                C.lat.append(now - sent)
                C.lat_sent.append(sent)

    def lost(self, sock):
        if self.stopping:
            return
        self.loop.create_task(self.connect(sock, retry=True))

    async def connect(self, sock, retry=False):
        delay = random.uniform(0.05, 0.5) if retry else 0
        while not self.stopping:
            if delay:
                await asyncio.sleep(delay)
            proto = Room(sock, self)
            try:
                if sock.stall_rcvbuf:
                    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                    s.setblocking(False)
                    await self.loop.sock_connect(s, (self.host, self.port))
                    await self.loop.create_connection(lambda: proto, sock=s)
                else:
                    await self.loop.create_connection(lambda: proto, self.host, self.port)
                ok = await asyncio.wait_for(asyncio.shield(proto.upgraded_fut), 15)
            except (OSError, asyncio.TimeoutError) as e:
                C.open_refused[type(e).__name__] = C.open_refused.get(type(e).__name__, 0) + 1
                ok = False
            if ok:
                sock.proto = proto
                sock.connects += 1
                C.opened += 1
                if sock.first_open is None:
                    sock.first_open = time.time()
                if sock.hot and self.stalled:
                    proto.transport.pause_reading()
                if proto.transport.is_closing():  # closed between the upgrade and now
                    sock.proto = None
                    delay = 0.2
                    continue
                return True
            if proto.transport is not None:
                proto.transport.close()
            delay = min(2.0, max(0.1, delay * 2))
        return False

    async def post_loop(self, t0, rate, n_groups, group_of, store, size, people, workers):
        if rate <= 0:
            return
        total = int(rate * self.a.duration)
        queue = asyncio.Queue()
        pad = "x" * max(0, size - 40)

        async def worker():
            poster = Poster(self.host, self.port)
            while True:
                i = await queue.get()
                if i is None:
                    return
                g = group_of(i % n_groups)
                user = people[random.randrange(len(people))]
                sent = time.time()
                status, body = await poster.post("/messages", {"userId": user["id"], "groupId": g,
                                                               "content": f"cl {i} {sent:.6f} {pad}".rstrip()}, user["token"])
                seq = None
                if status == 201:
                    try:
                        seq = json.loads(body)["id"]
                    except (ValueError, KeyError):
                        status = -201
                store.append((i % n_groups, status, seq, sent))

        tasks = [self.loop.create_task(worker()) for _ in range(workers)]
        for i in range(total):
            due = t0 + i / rate
            wait = due - time.time()
            if wait > 0:
                await asyncio.sleep(wait)
            queue.put_nowait(i)
        for _ in tasks:
            queue.put_nowait(None)
        await asyncio.gather(*tasks)

    async def fault_loop(self, t0):
        for spec in filter(None, (self.a.faults or "").split(",")):
            what, _, at = spec.partition("@")
            wait = t0 + float(at) - time.time()
            if wait > 0:
                await asyncio.sleep(wait)
            start = time.time()
            note = await asyncio.to_thread(self.fault, what.strip())
            self.faults.append((what.strip(), start, time.time(), note))
            log(f"  fault {what.strip()} at +{start - t0:.1f} s, took {time.time() - start:.1f} s{': ' + note if note else ''}")

    def fault(self, what):
        if what in ("broker_stop", "broker_start"):
            r = subprocess.run(["rabbitmqctl", "stop_app" if what == "broker_stop" else "start_app"],
                               capture_output=True, text=True)
            return "" if r.returncode == 0 else f"rabbitmqctl failed: {r.stderr.strip()[:200]}"
        if what.startswith("kill:"):
            name = what.split(":", 1)[1]
            pid = read_pid(name)
            if pid is None:
                return f"{name} does not run"
            os.kill(pid, 9)
            return f"kill -9 {name} (pid {pid})"
        return f"unknown fault {what}"

    async def stall_loop(self, t0, hot):
        wait = t0 + self.a.stall - time.time()
        if wait > 0:
            await asyncio.sleep(wait)
        self.stalled = True
        self.stall_at = time.time()
        self.log_marks = {}
        for n in range(1, 33):  # where each local replica's log stood (the server's side of the close)
            path = os.path.join(STATE, "logs", f"api{n}.log")
            if os.path.exists(path):
                self.log_marks[path] = os.path.getsize(path)
        if hot.proto is not None:
            hot.proto.transport.pause_reading()
        log(f"  hot socket stopped reading at +{self.stall_at - t0:.1f} s")

    def unstall(self, hot):
        self.stalled = False
        self.unstall_at = time.time()
        if hot.proto is not None and not hot.proto.transport.is_closing():
            hot.proto.transport.resume_reading()


def memory_sample(names):
    out = {}
    for n in names:
        pids = processes(n)
        out[n] = {"rss_kb": rss_kb(pids), "cgroup": cgroup_bytes(pids[0]) if pids else None}
    return out


def room_sockets(url):
    try:
        with urllib.request.urlopen(url + "/metrics", timeout=5) as r:
            m = re.search(rb'^arena_open_websockets\{kind="room"\} (\S+)', r.read(), re.M)
            return int(float(m.group(1))) if m else None
    except (OSError, ValueError):
        return None


async def main(a):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = a.sockets + 256
    if soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(want, min(hard, 1 << 16)) if hard != resource.RLIM_INFINITY else max(want, 1 << 16), hard))
        except (ValueError, OSError):
            pass
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if soft < want:
            log(f"warning: {soft} file descriptors allowed, {want} wanted (ulimit -n)")
    hot_room = a.hot_rate > 0
    log(f"chatload: {a.sockets} room sockets over {a.rooms} rooms via {a.base_url}, {a.rate} posts/s for {a.duration:.0f} s"
        + (f", faults {a.faults}" if a.faults else "") + (f", hot room {a.hot_rate}/s × {a.hot_size} chars"
                                                           + (f", stalled at +{a.stall:.0f} s" if a.stall is not None else "") if hot_room else ""))
    t_setup = time.time()
    people, groups = await asyncio.to_thread(setup, a.base_url, a.users, a.rooms, 1 if hot_room else 0)
    log(f"  set up {a.users} users and {len(groups)} groups in {time.time() - t_setup:.1f} s")
    g = Gen(a)
    replicas = [f"http://127.0.0.1:{p}" for p in (stack_env().get("ARENA_REPLICA_PORTS") or "9001,9002").split(",") if p]
    names = [f"api{i + 1}" for i in range(len(replicas))] + ["nginx"]
    mem_idle = memory_sample(names) if a.memory else None
    mem_peak = {}

    def sample():
        if not a.memory:
            return
        for n, v in memory_sample(names).items():
            p = mem_peak.setdefault(n, {"rss_kb": 0, "cgroup": 0})
            p["rss_kb"] = max(p["rss_kb"], v["rss_kb"])
            p["cgroup"] = max(p["cgroup"] or 0, v["cgroup"] or 0)

    # Open: CONNECT_RATE a second, rooms in turn.
    for i in range(a.sockets):
        g.socks.append(Sock(i, groups[i % a.rooms], people[i % len(people)]["token"]))
    hot = None
    if hot_room:
        hot = Sock(a.sockets, groups[-1], people[0]["token"], hot=True)
    t_open = time.time()
    opens = []
    for i, s in enumerate(g.socks + ([hot] if hot else [])):
        wait = t_open + i / a.connect_rate - time.time()
        if wait > 0:
            await asyncio.sleep(wait)
        opens.append(g.loop.create_task(g.connect(s)))
        if i % 500 == 0:
            sample()
    await asyncio.wait(opens, timeout=120)
    opened = sum(1 for s in g.socks if s.first_open)
    log(f"  {opened} of {a.sockets} sockets open in {time.time() - t_open:.1f} s"
        + (f" (refused or failed first: {C.open_refused})" if C.open_refused else ""))
    held = {}
    if a.memory:
        await asyncio.sleep(2)
        sample()
        held = dict(zip(names, await asyncio.gather(*(asyncio.to_thread(room_sockets, u) for u in replicas))))

    ru0, w0 = resource.getrusage(resource.RUSAGE_SELF), time.time()
    t0 = time.time() + 0.5
    tasks = [g.loop.create_task(g.post_loop(t0, a.rate, a.rooms, lambda k: groups[k], g.posts, 0, people,
                                            max(4, int(a.rate // 10))))]
    if hot_room:
        tasks.append(g.loop.create_task(g.post_loop(t0, a.hot_rate, 1, lambda k: groups[-1], g.hot_posts,
                                                    a.hot_size, people, max(4, int(a.hot_rate // 10)))))
        if a.stall is not None:
            tasks.append(g.loop.create_task(g.stall_loop(t0, hot)))
    if a.faults:
        tasks.append(g.loop.create_task(g.fault_loop(t0)))
    while not all(t.done() for t in tasks[:2 if hot_room else 1]):
        await asyncio.sleep(2)
        sample()
    posting_end = time.time()
    await asyncio.gather(*tasks)  # faults scheduled past the posting still happen
    if hot is not None and g.stalled:
        g.unstall(hot)
    # Drain: until every socket has every message posted to it, or DRAIN seconds.
    expect = {}
    for k, st, seq, _ in g.posts:
        if st == 201:
            expect.setdefault(k, set()).add(seq)
    hot_expect = {seq for _, st, seq, _ in g.hot_posts if st == 201}
    last_of = {k: max(v) for k, v in expect.items()}
    deadline = time.time() + a.drain
    while time.time() < deadline:
        behind = sum(1 for s in g.socks if s.first_open and s.last < last_of.get(s.idx % a.rooms, 0))
        if hot is not None and hot_expect and hot.last < max(hot_expect):
            behind += 1
        if behind == 0:
            break
        await asyncio.sleep(0.5)
    ru1, w1 = resource.getrusage(resource.RUSAGE_SELF), time.time()
    g.stopping = True
    for s in g.socks + ([hot] if hot else []):
        if s.proto is not None:
            s.proto.transport.close()

    # --- figures --------------------------------------------------------------------------
    statuses = {}
    for _, st, _, _ in g.posts:
        statuses[st] = statuses.get(st, 0) + 1
    expected = delivered = lost = dup = ooo = unexpected = sockets_lossy = 0
    never = sum(1 for s in g.socks if s.first_open is None)
    gaps = behind_at_end = 0
    for s in g.socks:
        if s.first_open is None:  # never upgraded: nothing was promised to it
            continue
        exp = expect.get(s.idx % a.rooms, set())
        got = len(exp & s.seen)
        if got < len(exp):
            # A gap (a missing seq below one it got) is a real loss; only later ones missing means
            # the socket was still catching up (or reconnecting) when the drain ended.
            missing = exp - s.seen
            gaps += sum(1 for q in missing if q < s.last)
            behind_at_end += s.last < max(missing)
        expected += len(exp)
        delivered += got
        lost += len(exp) - got
        sockets_lossy += got < len(exp)
        unexpected += len(s.seen - exp)
        dup += s.dup
        ooo += s.ooo
    lat = list(C.lat)
    windows = []
    for name, start, end, note in g.faults:
        windows.append({"fault": name, "start_s": round(start - t0, 1), "end_s": round(end - t0, 1), "note": note})
    spans = []
    if g.faults:
        # A broker outage is stop → start (+ settle); a kill is the kill (+ settle).
        by = {n: (s, e) for n, s, e, _ in g.faults}
        if "broker_stop" in by:
            spans.append(("broker outage", by["broker_stop"][0], by.get("broker_start", (0, posting_end))[1] + SETTLE_S))
        for n, s, e, _ in g.faults:
            if n.startswith("kill:"):
                spans.append((n, s, e + SETTLE_S))
    phases = {}
    for name, s0, s1 in spans:
        phases[name] = lat_summary([l for l, t in zip(lat, C.lat_sent) if s0 <= t < s1])
    if spans:
        phases["outside"] = lat_summary([l for l, t in zip(lat, C.lat_sent) if not any(s0 <= t < s1 for _, s0, s1 in spans)])
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    summary = {
        "label": a.label, "command": " ".join(sys.argv[1:]),
        "sockets": a.sockets, "opened": opened, "never_opened": never, "rooms": a.rooms, "rate": a.rate, "duration_s": a.duration,
        "posts": {"sent": len(g.posts), "ok": statuses.get(201, 0),
                  "by_status": {str(k): v for k, v in sorted(statuses.items(), key=lambda kv: str(kv[0]))}},
        "expected": expected, "delivered": delivered, "lost": lost, "duplicates": dup, "out_of_order": ooo,
        "unexpected": unexpected, "sockets_with_loss": sockets_lossy, "lost_in_gaps": gaps, "sockets_behind_at_end": behind_at_end, "id_mismatch": C.id_mismatch,
        "latency": lat_summary(lat), "phases": phases, "faults": windows,
        "reconnects": sum(max(0, s.connects - 1) for s in g.socks),
        "close_codes": {str(k): v for k, v in sorted(C.close_codes.items())},
        "open_failures": C.open_refused, "errors": C.errors[:5],
        "generator_cpu": {"seconds": round(cpu, 2), "wall_s": round(w1 - w0, 1), "cores": round(cpu / max(0.001, w1 - w0), 3),
                          "us_per_delivery": round(cpu * 1e6 / max(1, delivered), 1),
                          "max_rss_mib": round(ru1.ru_maxrss / 1024, 1)},
    }
    if hot is not None:
        got = len(hot_expect & hot.seen)
        hs = {"posts_ok": len(hot_expect), "delivered": got, "lost": len(hot_expect) - got, "duplicates": hot.dup,
              "out_of_order": hot.ooo, "closes": [{"at_s": round(t - t0, 1), "code": c} for t, c in hot.closes],
              "reconnects": max(0, hot.connects - 1)}
        if a.stall is not None:
            hs["stalled_s"] = [round(g.stall_at - t0, 1), round(g.unstall_at - t0, 1)] if hasattr(g, "unstall_at") else None
            # The replica logs the close it decided (ws.rs: "does not keep up"): when, and how much
            # was unsent. The client itself can see the 1008 frame only if it gets past the data
            # queued before it.
            for path, mark in getattr(g, "log_marks", {}).items():
                with open(path, "rb") as f:
                    f.seek(mark)
                    for line in f.read().decode(errors="replace").splitlines():
                        m = re.match(r"(\S+Z).*does not keep up.*?pending=(\d+)", line)
                        if m:
                            from datetime import datetime
                            at = datetime.fromisoformat(m.group(1).replace("Z", "+00:00")).timestamp()
                            hs.setdefault("server_closes", []).append(
                                {"replica": os.path.basename(path)[:-4], "at_s": round(at - t0, 1), "pending_bytes": int(m.group(2))})
        summary["hot"] = hs
        summary["lost"] += hs["lost"]
        summary["duplicates"] += hot.dup
        summary["out_of_order"] += hot.ooo
    if a.memory:
        mem = {}
        for n in names:
            i, p = mem_idle.get(n, {}), mem_peak.get(n, {})
            n_socks = a.sockets if n == "nginx" else held.get(n)
            grow = p.get("rss_kb", 0) - i.get("rss_kb", 0)
            mem[n] = {"sockets": n_socks, "idle_rss_mib": round(i.get("rss_kb", 0) / 1024, 1),
                      "peak_rss_mib": round(p.get("rss_kb", 0) / 1024, 1),
                      "rss_mib_per_1k": round(grow / 1024 * 1000 / n_socks, 2) if n_socks else None}
            if i.get("cgroup") is not None and p.get("cgroup"):
                mem[n]["cgroup_idle_mib"] = round(i["cgroup"] / 1048576, 1)
                mem[n]["cgroup_peak_mib"] = round(p["cgroup"] / 1048576, 1)
                mem[n]["cgroup_mib_per_1k"] = round((p["cgroup"] - i["cgroup"]) / 1048576 * 1000 / n_socks, 2) if n_socks else None
        summary["memory"] = mem

    # --- human lines, then the JSON line ---------------------------------------------------
    L = summary["latency"]
    log(f"  posts: {len(g.posts)} sent, {statuses.get(201, 0)} answered 201, others {({k: v for k, v in statuses.items() if k != 201}) or 'none'}")
    log(f"  deliveries: {delivered} of {expected} expected, lost {lost} ({sockets_lossy} sockets; {gaps} in gaps, "
        f"{behind_at_end} sockets still behind at the end), duplicates {dup}, "
        f"out of order {ooo}, unexpected {unexpected} (committed without a 201 to us)")
    log(f"  post→receipt p50 {L['p50_ms']} / p95 {L['p95_ms']} / p99 {L['p99_ms']} / max {L['max_ms']} ms over {L['n']} deliveries")
    for name, p in phases.items():
        log(f"    posted {'during ' + name if name != 'outside' else 'outside the faults'}: {p['n']} deliveries, "
            f"p50 {p['p50_ms']} / p99 {p['p99_ms']} / max {p['max_ms']} ms")
    if never:
        log(f"  {never} sockets never opened (not counted as expecting anything): failed upgrades {C.open_refused}")
    log(f"  reconnects {summary['reconnects']}, close codes {summary['close_codes'] or 'none'}")
    if hot is not None:
        h = summary["hot"]
        log(f"  hot socket: {h['delivered']} of {h['posts_ok']} hot posts, lost {h['lost']}, dup {h['duplicates']}, "
            f"closes seen by the client {h['closes'] or 'none'}, reconnects {h['reconnects']}")
        for c in h.get("server_closes", []):
            log(f"    {c['replica']} closed it as too slow (1008) at +{c['at_s']} s with {c['pending_bytes']} bytes unsent")
    if a.memory:
        for n, m in summary["memory"].items():
            cg = f", cgroup {m['cgroup_idle_mib']} → {m['cgroup_peak_mib']} MiB ({m['cgroup_mib_per_1k']} per 1k)" if "cgroup_peak_mib" in m else ""
            log(f"  memory {n}: {m['sockets']} sockets, RSS {m['idle_rss_mib']} → {m['peak_rss_mib']} MiB "
                f"({m['rss_mib_per_1k']} MiB per 1k){cg}")
    gc = summary["generator_cpu"]
    log(f"  generator CPU {gc['seconds']} s over {gc['wall_s']} s = {gc['cores']} cores, {gc['us_per_delivery']} µs per delivery, "
        f"max RSS {gc['max_rss_mib']} MiB")
    if C.errors:
        log(f"  errors: {C.errors[:5]}")
    print("chatload " + json.dumps(summary), flush=True)
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump(summary, f)
    if a.heal and any(n.startswith("kill:") for n, _, _, _ in g.faults):
        t = time.time()
        e = dict(os.environ)
        for k, v in stack_env().items():
            e.setdefault(k, v)
        e.setdefault("ARENA_STATE_DIR", STATE)
        r = await asyncio.to_thread(subprocess.run, ["bash", os.path.join(ROOT, "scripts/up")], env=e,
                                    capture_output=True, text=True)
        log(f"  healed with scripts/up in {time.time() - t:.1f} s (exit {r.returncode})"
            + ("" if r.returncode == 0 else ": " + r.stderr.strip()[-300:]))
    bad = summary["lost"] + summary["duplicates"] + summary["out_of_order"]
    return 1 if bad else 0


def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--base-url", default=env("BASE_URL", "http://127.0.0.1:9999"))
    p.add_argument("--sockets", type=int, default=int(env("SOCKETS", 200)))
    p.add_argument("--rooms", type=int, default=int(env("ROOMS", 10)))
    p.add_argument("--rate", type=float, default=float(env("RATE", 20)))
    p.add_argument("--duration", type=seconds, default=seconds(env("DURATION", "30s")))
    p.add_argument("--users", type=int, default=int(env("USERS", 20)))
    p.add_argument("--connect-rate", type=float, default=float(env("CONNECT_RATE", 500)), help="sockets opened a second")
    p.add_argument("--drain", type=seconds, default=seconds(env("DRAIN", "20s")),
                   help="after the last post, how long to wait for sockets still behind")
    p.add_argument("--faults", default=env("FAULTS", ""))
    p.add_argument("--heal", action="store_true", default=env("HEAL", "0") == "1")
    p.add_argument("--hot-rate", type=float, default=float(env("HOT_RATE", 0)))
    p.add_argument("--hot-size", type=int, default=int(env("HOT_SIZE", 2000)))
    p.add_argument("--stall", type=seconds, default=seconds(env("STALL")) if env("STALL", "") else None)
    p.add_argument("--memory", action="store_true", default=env("MEMORY", "0") == "1")
    p.add_argument("--json-out", default=env("JSON_OUT", ""))
    p.add_argument("--label", default=env("LABEL", ""), help="names this run in the JSON line (results.py)")
    a = p.parse_args()
    a.base_url = a.base_url.rstrip("/")
    return a


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse())))
