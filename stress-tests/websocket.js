// Fibonacci over WebSocket (SPEC §6): SOCKETS sockets held open for DURATION through nginx,
// each asking fib(n) for a random n <= MAX_N once a second. Reports sockets held, fib replies
// per second, reply latency and the clock tick delay (receive time minus the tick's `now`; the
// load generator and the replicas share one clock when run on the same machine).
// Replica memory per 1k sockets: run it through stress-tests/websocket.sh, which samples RSS.
//
//   SOCKETS=1000 DURATION=60s k6 run stress-tests/websocket.js
//   SOCKETS=200 DURATION=20s BASE_URL=http://localhost:9930 k6 run stress-tests/websocket.js
import ws from 'k6/ws';
import { check } from 'k6';
import { Counter, Trend } from 'k6/metrics';

const SOCKETS = parseInt(__ENV.SOCKETS || '100', 10);
const DURATION = __ENV.DURATION || '60s';
const MAX_N = parseInt(__ENV.MAX_N || '10000', 10);
const BASE = (__ENV.BASE_URL || 'http://localhost:9999').replace(/^http/, 'ws').replace(/\/$/, '');

function millis(d) {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(d);
  if (!m) throw new Error(`DURATION ${d}: use e.g. 60s, 2m, 500ms`);
  return parseFloat(m[1]) * ({ ms: 1, s: 1000, m: 60000 }[m[2] || 's']);
}
const HOLD_MS = millis(DURATION);

const socketsOpened = new Counter('sockets_opened');
const socketsHeld = new Counter('sockets_held_to_the_end');
const socketsLost = new Counter('sockets_closed_early');
const fibReplies = new Counter('fib_replies');
const fibErrors = new Counter('fib_errors');
const ticks = new Counter('ticks');
const tickDelay = new Trend('tick_delay', true);
const fibLatency = new Trend('fib_latency', true);

export const options = {
  scenarios: {
    sockets: {
      executor: 'per-vu-iterations',
      vus: SOCKETS,
      iterations: 1,
      maxDuration: `${Math.ceil(HOLD_MS / 1000) + 60}s`,
    },
  },
  thresholds: {
    sockets_closed_early: ['count==0'],
    fib_errors: ['count==0'],
    tick_delay: ['p(99)<1000'],
  },
  summaryTrendStats: ['avg', 'p(50)', 'p(95)', 'p(99)', 'max'],
};

export default function () {
  const username = `k6-${__VU}`;
  let closedByUs = false;
  const res = ws.connect(`${BASE}/ws/fibonacci/${username}`, null, (socket) => {
    const sent = {};
    socket.on('open', () => {
      socketsOpened.add(1);
      socket.setInterval(() => {
        const n = Math.floor(Math.random() * (MAX_N + 1));
        sent[n] = Date.now();
        socket.send(String(n));
      }, 1000);
      socket.setTimeout(() => {
        closedByUs = true;
        socketsHeld.add(1);
        socket.close();
      }, HOLD_MS);
    });
    socket.on('message', (text) => {
      const now = Date.now();
      const msg = JSON.parse(text);
      if (msg.type === 'time') {
        ticks.add(1);
        tickDelay.add(Math.max(0, now - Date.parse(msg.now)));
      } else if (msg.type === 'fib') {
        fibReplies.add(1);
        if (sent[msg.n] !== undefined) {
          fibLatency.add(now - sent[msg.n]);
          delete sent[msg.n];
        }
      } else {
        fibErrors.add(1);
      }
    });
    socket.on('close', () => {
      if (!closedByUs) socketsLost.add(1);
    });
    socket.on('error', () => {
      if (!closedByUs) socketsLost.add(1);
    });
  });
  check(res, { 'upgraded (101)': (r) => r && r.status === 101 });
}

function metric(data, name, field) {
  const m = data.metrics[name];
  return m && m.values[field] !== undefined ? m.values[field] : 0;
}

export function handleSummary(data) {
  const seconds = data.state.testRunDurationMs / 1000;
  const lines = [
    '',
    `websocket: ${SOCKETS} sockets requested, held ${DURATION} against ${BASE}`,
    `  sockets opened ${metric(data, 'sockets_opened', 'count')}, held to the end ${metric(data, 'sockets_held_to_the_end', 'count')}, closed early ${metric(data, 'sockets_closed_early', 'count')}`,
    `  fib replies ${metric(data, 'fib_replies', 'count')} (${metric(data, 'fib_replies', 'rate').toFixed(1)}/s over ${seconds.toFixed(0)} s), errors ${metric(data, 'fib_errors', 'count')}`,
    `  fib latency p50 ${metric(data, 'fib_latency', 'p(50)').toFixed(1)} ms, p99 ${metric(data, 'fib_latency', 'p(99)').toFixed(1)} ms`,
    `  ticks ${metric(data, 'ticks', 'count')}, tick delay p50 ${metric(data, 'tick_delay', 'p(50)').toFixed(1)} ms, p99 ${metric(data, 'tick_delay', 'p(99)').toFixed(1)} ms, max ${metric(data, 'tick_delay', 'max').toFixed(1)} ms`,
    '',
  ];
  return { stdout: lines.join('\n') + '\n' };
}
