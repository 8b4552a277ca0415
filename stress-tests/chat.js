// Chat fan-out across replicas (SPEC §5): SOCKETS room sockets spread evenly over ROOMS groups
// and over every replica (each socket connects to a replica's own port, in turn), while posters
// send RATE messages a second, each to a random room and through a replica chosen in turn.
// Every socket of a room must hear every message posted to it, from whichever replica.
//
// Reports post→receipt latency (all, and split into same-replica and cross-replica), deliveries
// per second, and lost deliveries: every socket of a room should receive each message posted
// to that room while all sockets were open, so expected = posted × SOCKETS / ROOMS.
// Replica memory per 1k room sockets: run it through stress-tests/chat.sh, which samples RSS.
//
//   SOCKETS=2000 ROOMS=20 RATE=50 DURATION=30s k6 run stress-tests/chat.js
//   REPLICA_URLS=http://127.0.0.1:9001,http://127.0.0.1:9002 (default: the stack's two replicas)
import http from 'k6/http';
import ws from 'k6/ws';
import { check, sleep } from 'k6';
import exec from 'k6/execution';
import { Counter, Trend } from 'k6/metrics';

const SOCKETS = parseInt(__ENV.SOCKETS || '200', 10);
const ROOMS = parseInt(__ENV.ROOMS || '10', 10);
const RATE = parseInt(__ENV.RATE || '20', 10);
const DURATION = __ENV.DURATION || '30s';
const USERS = parseInt(__ENV.USERS || '20', 10);
const BASE = (__ENV.BASE_URL || 'http://127.0.0.1:9999').replace(/\/$/, '');
const REPLICAS = (__ENV.REPLICA_URLS || 'http://127.0.0.1:9001,http://127.0.0.1:9002')
  .split(',').map((u) => u.trim().replace(/\/$/, '')).filter((u) => u);
// Time for every socket to open before the first post, and for the last deliveries to arrive.
const CONNECT_SECS = parseInt(__ENV.CONNECT_SECS || String(Math.max(10, Math.ceil(SOCKETS / 100))), 10);
const DRAIN_SECS = 5;

if (SOCKETS % ROOMS !== 0) throw new Error(`SOCKETS (${SOCKETS}) must be a multiple of ROOMS (${ROOMS})`);

function seconds(d) {
  const m = /^(\d+)(s|m)?$/.exec(d);
  if (!m) throw new Error(`DURATION ${d}: use e.g. 30s or 2m`);
  return parseInt(m[1], 10) * (m[2] === 'm' ? 60 : 1);
}
const POST_SECS = seconds(DURATION);

const socketsOpened = new Counter('sockets_opened');
const socketsLost = new Counter('sockets_closed_early');
const posted = new Counter('posted');
const postFailed = new Counter('post_failed');
const delivered = new Counter('delivered');
const duplicates = new Counter('duplicate_deliveries');
const latency = new Trend('delivery_latency', true);
const latencySame = new Trend('delivery_latency_same_replica', true);
const latencyCross = new Trend('delivery_latency_cross_replica', true);

export const options = {
  setupTimeout: '180s',
  scenarios: {
    subscribers: {
      executor: 'per-vu-iterations',
      exec: 'subscribe',
      vus: SOCKETS,
      iterations: 1,
      maxDuration: `${CONNECT_SECS + POST_SECS + DRAIN_SECS + 60}s`,
    },
    posters: {
      executor: 'constant-arrival-rate',
      exec: 'post',
      rate: RATE,
      timeUnit: '1s',
      duration: `${POST_SECS}s`,
      startTime: `${CONNECT_SECS}s`,
      preAllocatedVUs: Math.max(10, RATE),
      maxVUs: Math.max(50, RATE * 4),
    },
  },
  thresholds: {
    sockets_closed_early: ['count==0'],
    post_failed: ['count==0'],
    duplicate_deliveries: ['count==0'],
  },
  summaryTrendStats: ['avg', 'p(50)', 'p(95)', 'p(99)', 'max'],
};

function json(res) {
  try { return res.json(); } catch (_) { return null; }
}

// USERS users, every one a member of every room; all logged in.
export function setup() {
  const run = `${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
  const users = [];
  for (let i = 0; i < USERS; i++) {
    const credentials = JSON.stringify({ username: `k6chat-${run}-${i}`, password: 'k6-password' });
    const params = { headers: { 'Content-Type': 'application/json' } };
    const reg = http.post(`${BASE}/register`, credentials, params);
    if (reg.status !== 201) throw new Error(`register: ${reg.status} ${reg.body}`);
    const login = json(http.post(`${BASE}/login`, credentials, params));
    users.push({ id: login.user_id, name: `k6chat-${run}-${i}`, token: login.token });
  }
  const rooms = [];
  for (let r = 0; r < ROOMS; r++) {
    const creator = users[0];
    const res = http.post(`${BASE}/create-chat`, JSON.stringify({
      groupName: `k6-room-${run}-${r}`,
      creatorId: creator.id,
      members: users.slice(1).map((u) => u.name),
    }), { headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${creator.token}` } });
    if (res.status !== 201) throw new Error(`create-chat: ${res.status} ${res.body}`);
    rooms.push(json(res).group_id);
  }
  return { users, rooms };
}

// One room socket: room (VU mod ROOMS), replica (VU mod replicas), held until the posters are
// done and their last messages had time to arrive.
export function subscribe(data) {
  // 0 … SOCKETS-1 within this scenario (__VU also numbers the posters' VUs, so it is not).
  const vu = exec.scenario.iterationInTest;
  const room = data.rooms[vu % ROOMS];
  const user = data.users[vu % USERS];
  // Every room has sockets on every replica: rooms first, then replicas in turn.
  const replica = Math.floor(vu / ROOMS) % REPLICAS.length;
  const url = `${REPLICAS[replica].replace(/^http/, 'ws')}/ws/updates/${room}?token=${user.token}`;
  // Stagger the opens over the first seconds so the replicas are not handed 2000 at once.
  const stagger = (vu / SOCKETS) * (CONNECT_SECS / 2);
  sleep(stagger);
  // Open until the posters are done and their last messages had time to arrive, counted from
  // the start of the run, whenever this socket opened.
  const holdMs = (CONNECT_SECS + POST_SECS + DRAIN_SECS - stagger) * 1000;
  let closedByUs = false;
  const seen = new Set();
  const res = ws.connect(url, null, (socket) => {
    socket.on('open', () => {
      socketsOpened.add(1);
      socket.setTimeout(() => { closedByUs = true; socket.close(); }, holdMs);
    });
    socket.on('message', (text) => {
      const now = Date.now();
      const event = JSON.parse(text);
      if (event.type !== 'message.created') return;
      if (seen.has(event.message.id)) { duplicates.add(1); return; }
      seen.add(event.message.id);
      const sent = JSON.parse(event.message.content);
      delivered.add(1);
      const took = now - sent.t;
      latency.add(took);
      (sent.via === replica ? latencySame : latencyCross).add(took);
    });
    socket.on('close', () => { if (!closedByUs) socketsLost.add(1); });
    socket.on('error', () => { if (!closedByUs) socketsLost.add(1); });
  });
  check(res, { 'upgraded (101)': (r) => r && r.status === 101 });
}

// One post to a random room through the replicas in turn.
export function post(data) {
  const user = data.users[Math.floor(Math.random() * USERS)];
  const room = data.rooms[Math.floor(Math.random() * ROOMS)];
  const via = __ITER % REPLICAS.length;
  const body = JSON.stringify({
    userId: user.id,
    groupId: room,
    content: JSON.stringify({ t: Date.now(), via }),
  });
  const res = http.post(`${REPLICAS[via]}/messages`, body, {
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${user.token}` },
  });
  if (res.status === 201) posted.add(1); else postFailed.add(1);
}

function metric(data, name, field) {
  const m = data.metrics[name];
  return m && m.values[field] !== undefined ? m.values[field] : 0;
}

export function handleSummary(data) {
  const ms = (name, field) => metric(data, name, field).toFixed(1);
  const sent = metric(data, 'posted', 'count');
  const expected = sent * (SOCKETS / ROOMS);
  const got = metric(data, 'delivered', 'count');
  const lines = [
    '',
    `chat: ${SOCKETS} room sockets over ${ROOMS} rooms and ${REPLICAS.length} replicas, ${RATE} posts/s for ${POST_SECS} s`,
    `  sockets opened ${metric(data, 'sockets_opened', 'count')}, closed early ${metric(data, 'sockets_closed_early', 'count')}`,
    `  posts 201 ${sent}, failed ${metric(data, 'post_failed', 'count')}`,
    `  deliveries ${got} of ${expected} expected, lost ${Math.max(0, expected - got)}, unexpected ${Math.max(0, got - expected)}, duplicates ${metric(data, 'duplicate_deliveries', 'count')}, ${(got / POST_SECS).toFixed(0)} deliveries/s while posting`,
    `  post→receipt p50 ${ms('delivery_latency', 'p(50)')} ms, p95 ${ms('delivery_latency', 'p(95)')} ms, p99 ${ms('delivery_latency', 'p(99)')} ms, max ${ms('delivery_latency', 'max')} ms`,
    `    same replica   p50 ${ms('delivery_latency_same_replica', 'p(50)')} ms, p99 ${ms('delivery_latency_same_replica', 'p(99)')} ms`,
    `    cross replica  p50 ${ms('delivery_latency_cross_replica', 'p(50)')} ms, p99 ${ms('delivery_latency_cross_replica', 'p(99)')} ms`,
    '',
  ];
  return { stdout: lines.join('\n') + '\n' };
}
