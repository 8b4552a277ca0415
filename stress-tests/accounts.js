// Rinha de Backend 2024 (crébitos), the official Gatling profile rewritten for k6.
//
//   scripts/up --fresh && k6 run stress-tests/accounts.js
//
// Phases (each starts after the previous one has had time to finish):
//   1. concorrencia (t=0): 25 simultaneous debits of 1 on account 1, extrato total must be -25;
//      25 simultaneous credits of 1, total must be 0.
//   2. validacoes (t=VALIDATION_AT): the 5 accounts at once — extrato (limit, total 0), credit
//      "toma", debit "devolve", extrato shows devolve then toma, credit "danada" then 4
//      simultaneous extratos showing it first with the same total, five invalid bodies (422,
//      400 tolerated); and account 6 → 404.
//   3. load (t=LOAD_AT): debits ramping 1→220 new requests/s over 2 min then 220/s for 2 min,
//      credits 1→110/s then 110/s, extratos 1→10/s then 10/s; random account, valor 1–10000,
//      10 random alphanumerics. Every debit 200 or 422, every saldo/total ≥ -limite.
// Phases 1–2 need a freshly seeded database (balances 0); the load tolerates anything.
//
// Environment:
//   BASE_URL         default http://localhost:9999
//   DURATION_FACTOR  scales the load phase's 2+2 minutes (0.1 → 12 s + 12 s); default 1
//   RATE_FACTOR      scales the load phase's request rates; default 1 (the official profile)
// Fails (non-zero exit) on any consistency failure, any validation failure or any 5xx.
import http from 'k6/http';
import exec from 'k6/execution';
import { Counter } from 'k6/metrics';

const BASE_URL = __ENV.BASE_URL || 'http://localhost:9999';
const DURATION_FACTOR = Number(__ENV.DURATION_FACTOR || 1);
const RATE_FACTOR = Number(__ENV.RATE_FACTOR || 1);
const LIMITS = { 1: 100000, 2: 80000, 3: 1000000, 4: 10000000, 5: 500000 };
const JSON_HEADERS = { headers: { 'Content-Type': 'application/json' } };

// Balance or extrato total below -limite, a debit answered neither 200 nor 422, a credit
// refused, or the concurrency phase's totals off.
const consistencyFailures = new Counter('consistency_failures');
// An answer of the validation phase differing from the official expectations.
const validationFailures = new Counter('validation_failures');
const serverErrors = new Counter('server_errors');

const VALIDATION_AT = 4; // s: phase 1 is ~100 requests
const LOAD_AT = 8; // s: phase 2 is ~70 requests
const secs = (s) => `${Math.max(1, Math.round(s))}s`;
const rate = (r) => Math.max(1, Math.round(r * RATE_FACTOR));
const ramp = (target) => ({
  executor: 'ramping-arrival-rate',
  startTime: `${LOAD_AT}s`,
  startRate: 1,
  timeUnit: '1s',
  preAllocatedVUs: Math.max(2, Math.ceil(rate(target) / 4)),
  maxVUs: Math.max(10, rate(target) * 2),
  stages: [
    { target: rate(target), duration: secs(120 * DURATION_FACTOR) },
    { target: rate(target), duration: secs(120 * DURATION_FACTOR) },
  ],
});

export const options = {
  // Phase 1's 25 requests leave together.
  batch: 25,
  batchPerHost: 25,
  summaryTrendStats: ['avg', 'min', 'med', 'p(95)', 'p(99)', 'max'],
  scenarios: {
    concorrencia: { executor: 'per-vu-iterations', vus: 1, iterations: 1, exec: 'concorrencia' },
    validacoes: {
      executor: 'per-vu-iterations',
      vus: 5,
      iterations: 1,
      startTime: `${VALIDATION_AT}s`,
      exec: 'validacoes',
    },
    nao_encontrado: {
      executor: 'per-vu-iterations',
      vus: 1,
      iterations: 1,
      startTime: `${VALIDATION_AT}s`,
      exec: 'naoEncontrado',
    },
    debitos: { ...ramp(220), exec: 'debito' },
    creditos: { ...ramp(110), exec: 'credito' },
    extratos: { ...ramp(10), exec: 'extrato' },
  },
  thresholds: {
    consistency_failures: ['count==0'],
    validation_failures: ['count==0'],
    server_errors: ['count==0'],
  },
};

function track(res) {
  if (res.status >= 500 || res.status === 0) serverErrors.add(1);
  return res;
}

function json(res) {
  try {
    return res.json();
  } catch (_) {
    return null;
  }
}

function expect(ok, what, res) {
  if (!ok) {
    validationFailures.add(1);
    console.error(`validation: ${what} (status ${res && res.status}: ${res && res.body})`);
  }
}

function post(id, valor, tipo, descricao) {
  return track(http.post(`${BASE_URL}/clientes/${id}/transacoes`,
    JSON.stringify({ valor, tipo, descricao }), JSON_HEADERS));
}

function getExtrato(id) {
  return track(http.get(`${BASE_URL}/clientes/${id}/extrato`));
}

function batchOf(n, tipo) {
  const body = JSON.stringify({ valor: 1, tipo, descricao: tipo === 'd' ? 'debits' : 'credits' });
  const reqs = [];
  for (let i = 0; i < n; i++) {
    reqs.push(['POST', `${BASE_URL}/clientes/1/transacoes`, body, JSON_HEADERS]);
  }
  return http.batch(reqs).map(track);
}

export function concorrencia() {
  for (const [tipo, expected] of [['d', -25], ['c', 0]]) {
    const answers = batchOf(25, tipo);
    const refused = answers.filter((r) => r.status !== 200).length;
    const e = json(getExtrato(1));
    const total = e && e.saldo ? e.saldo.total : null;
    if (refused > 0 || total !== expected) {
      consistencyFailures.add(1);
      console.error(`concorrencia ${tipo}: ${refused} of 25 refused, total ${total}, expected ${expected}`);
    }
  }
}

export function validacoes() {
  const id = exec.scenario.iterationInTest + 1;
  const limite = LIMITS[id];
  let res = getExtrato(id);
  let e = json(res);
  expect(res.status === 200 && e && e.saldo.limite === limite && e.saldo.total === 0,
    `account ${id}: first extrato`, res);

  res = post(id, 1, 'c', 'toma');
  let v = json(res);
  expect(res.status === 200 && v && v.limite === limite && v.saldo === 1, `account ${id}: toma`, res);
  res = post(id, 1, 'd', 'devolve');
  v = json(res);
  expect(res.status === 200 && v && v.limite === limite && v.saldo === 0, `account ${id}: devolve`, res);

  res = getExtrato(id);
  e = json(res);
  const u = (e && e.ultimas_transacoes) || [];
  expect(res.status === 200 && u.length >= 2
    && u[0].descricao === 'devolve' && u[0].tipo === 'd' && u[0].valor === 1
    && u[1].descricao === 'toma' && u[1].tipo === 'c' && u[1].valor === 1,
  `account ${id}: extrato after toma/devolve`, res);

  res = post(id, 1, 'c', 'danada');
  v = json(res);
  expect(res.status === 200 && v, `account ${id}: danada`, res);
  const saldo = v ? v.saldo : null;
  const url = `${BASE_URL}/clientes/${id}/extrato`;
  for (const r of http.batch([['GET', url], ['GET', url], ['GET', url], ['GET', url]]).map(track)) {
    const x = json(r);
    expect(r.status === 200 && x && x.ultimas_transacoes.length > 0
      && x.ultimas_transacoes[0].descricao === 'danada' && x.saldo.total === saldo,
    `account ${id}: extrato right after danada`, r);
  }

  for (const body of [
    { valor: 1.2, tipo: 'd', descricao: 'devolve' },
    { valor: 1, tipo: 'x', descricao: 'devolve' },
    { valor: 1, tipo: 'c', descricao: '123456789 e mais um pouco' },
    { valor: 1, tipo: 'c', descricao: '' },
    { valor: 1, tipo: 'c', descricao: null },
  ]) {
    res = track(http.post(`${BASE_URL}/clientes/${id}/transacoes`, JSON.stringify(body), JSON_HEADERS));
    expect(res.status === 422 || res.status === 400, `account ${id}: ${JSON.stringify(body)} refused`, res);
  }
}

export function naoEncontrado() {
  const res = getExtrato(6);
  expect(res.status === 404, 'account 6 is not found', res);
}

const ALNUM = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
const randomId = () => 1 + Math.floor(Math.random() * 5);
const randomValor = () => 1 + Math.floor(Math.random() * 10000);
function randomDescricao() {
  let s = '';
  for (let i = 0; i < 10; i++) s += ALNUM[Math.floor(Math.random() * ALNUM.length)];
  return s;
}

function checkSaldo(id, res, what) {
  const v = json(res);
  if (!v || typeof v.saldo !== 'number' || v.limite !== LIMITS[id] || v.saldo < -LIMITS[id]) {
    consistencyFailures.add(1);
    console.error(`${what} on ${id}: ${res.status} ${res.body}`);
  }
}

export function debito() {
  const id = randomId();
  const res = post(id, randomValor(), 'd', randomDescricao());
  if (res.status === 200) checkSaldo(id, res, 'debit');
  else if (res.status !== 422) {
    consistencyFailures.add(1);
    console.error(`debit on ${id}: ${res.status} ${res.body}`);
  }
}

export function credito() {
  const id = randomId();
  const res = post(id, randomValor(), 'c', randomDescricao());
  if (res.status === 200) checkSaldo(id, res, 'credit');
  else {
    consistencyFailures.add(1);
    console.error(`credit on ${id}: ${res.status} ${res.body}`);
  }
}

export function extrato() {
  const id = randomId();
  const res = getExtrato(id);
  const e = json(res);
  if (res.status !== 200 || !e || e.saldo.limite !== LIMITS[id] || e.saldo.total < -LIMITS[id]
    || e.ultimas_transacoes.length > 10) {
    consistencyFailures.add(1);
    console.error(`extrato of ${id}: ${res.status} ${res.body}`);
  }
}

export function handleSummary(data) {
  const m = data.metrics;
  const count = (name) => (m[name] ? m[name].values.count : 0);
  const d = m.http_req_duration.values;
  const fmt = (x) => (x === undefined ? '-' : `${x.toFixed(2)}ms`);
  const lines = [
    `accounts: ${count('http_reqs')} requests, ${m.http_reqs.values.rate.toFixed(1)} req/s`,
    `latency: p50 ${fmt(d.med)}  p95 ${fmt(d['p(95)'])}  p99 ${fmt(d['p(99)'])}  max ${fmt(d.max)}`,
    `consistency failures: ${count('consistency_failures')}`,
    `validation failures: ${count('validation_failures')}`,
    `5xx / transport errors: ${count('server_errors')}`,
  ];
  const failed = Object.entries(data.metrics)
    .filter(([, v]) => v.thresholds && Object.values(v.thresholds).some((t) => !t.ok))
    .map(([k]) => k);
  lines.push(failed.length ? `FAILED thresholds: ${failed.join(', ')}` : 'all thresholds passed');
  return { stdout: `${lines.join('\n')}\n` };
}
