// People (Rinha 2023) load profile, after the official Gatling simulation:
//   creation        2/s for 10 s, 5/s for 15 s, then 6 → 600/s over 3 min; each 201 is followed
//                   1–30 ms later by a GET of its Location (which may land on the other replica)
//   valid search    2/s for 25 s, then 6 → 100/s over 3 min (terms from termos-busca.tsv)
//   invalid search  2/s for 25 s, then 6 → 40/s over 3 min (no `t`, expects 400)
// Payloads are generated here in the official mix, ~1/99 of fields replaced by invalid values.
// At the end: created (201s) vs counted (GET /contagem-pessoas?wait=… minus the count before
// the run); the run fails (exit 99) if they differ.
//
//   k6 run stress-tests/people.js                              full profile (~3.5 min)
//   SCALE=0.15 RATE=0.25 k6 run stress-tests/people.js         ~30 s, a quarter of the rates
// Env: BASE_URL (http://localhost:9999), SCALE (durations factor, 1), RATE (rates factor, 1),
//      TERMS_FILE (search terms; default ../shared/data/rinha-2023/termos-busca.tsv beside the repo).
import http from 'k6/http';
import { check, sleep } from 'k6';
import { Counter } from 'k6/metrics';

const BASE_URL = __ENV.BASE_URL || 'http://localhost:9999';
const SCALE = parseFloat(__ENV.SCALE || '1');
const RATE = parseFloat(__ENV.RATE || '1');

const created = new Counter('people_created');
const counted = new Counter('people_counted');
// +1 per 201, minus the count at the end: must be 0.
const lost = new Counter('people_lost');
const serverErrors = new Counter('server_errors');

// open() resolves against this script's directory: the repo is one up, shared/ beside it
// (/work/main → /work/shared), or two up for worktrees (/work/wt/<name>).
function loadTerms() {
  const candidates = __ENV.TERMS_FILE
    ? [__ENV.TERMS_FILE]
    : ['../../shared/data/rinha-2023/termos-busca.tsv', '../../../shared/data/rinha-2023/termos-busca.tsv'];
  for (const path of candidates) {
    try {
      return open(path).split('\n').slice(1).map((t) => t.trim()).filter((t) => t.length > 0);
    } catch (_) {
      // try the next place
    }
  }
  throw new Error(`termos-busca.tsv not found (tried ${candidates.join(', ')}); set TERMS_FILE`);
}
const TERMS = loadTerms();

const secs = (s) => `${Math.max(1, Math.round(s * SCALE))}s`;
const rate = (r) => Math.max(1, Math.round(r * RATE));

function constant(exec, r, from, duration) {
  return {
    executor: 'constant-arrival-rate', exec, rate: rate(r), timeUnit: '1s',
    duration: secs(duration), startTime: secs(from), preAllocatedVUs: 10, maxVUs: 200,
  };
}

function ramp(exec, from, to, start, duration) {
  return {
    executor: 'ramping-arrival-rate', exec, startRate: rate(from), timeUnit: '1s',
    startTime: secs(start), preAllocatedVUs: 50, maxVUs: 1000,
    stages: [{ target: rate(to), duration: secs(duration) }],
  };
}

export const options = {
  scenarios: {
    create_2: constant('createPerson', 2, 0, 10),
    create_5: constant('createPerson', 5, 10, 15),
    create_ramp: ramp('createPerson', 6, 600, 25, 180),
    search_2: constant('searchValid', 2, 0, 25),
    search_ramp: ramp('searchValid', 6, 100, 25, 180),
    invalid_2: constant('searchInvalid', 2, 0, 25),
    invalid_ramp: ramp('searchInvalid', 6, 40, 25, 180),
  },
  thresholds: {
    people_lost: ['count==0'],
    server_errors: ['count==0'],
  },
  summaryTrendStats: ['avg', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
  setupTimeout: '90s',
  teardownTimeout: '120s',
};

const LETTERS = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ';
const STACK = ['C', 'C++', 'C#', 'Java', 'Kotlin', 'Scala', 'Go', 'Rust', 'Python', 'Ruby', 'PHP',
  'JavaScript', 'TypeScript', 'Node', 'Elixir', 'Erlang', 'Clojure', 'Haskell', 'OCaml', 'Lua',
  'Perl', 'Dart', 'Swift', 'Zig', 'Nim', 'Crystal', 'PostgreSQL', 'MySQL', 'Oracle', 'SQLite',
  'MongoDB', 'Redis', 'Cassandra', 'SQL Server', 'DB2', 'MariaDB'];
const INVALID = {
  apelido: () => 'x'.repeat(35),
  nome: () => 'n'.repeat(120),
  nascimento: () => ['12-12-2000', null, 10, '?!?!?'][randInt(0, 3)],
  stack: () => [['1'.repeat(40)], 'string', 1][randInt(0, 2)],
};

function randInt(min, max) { return min + Math.floor(Math.random() * (max - min + 1)); }
function letters(n, withSpaces) {
  let s = '';
  for (let i = 0; i < n; i++) {
    s += withSpaces && i > 0 && i < n - 1 && Math.random() < 0.15 ? ' ' : LETTERS[randInt(0, LETTERS.length - 1)];
  }
  return s;
}
const pad = (n) => String(n).padStart(2, '0');

function payload() {
  const p = {
    apelido: letters(randInt(1, 32), false),
    nome: letters(randInt(1, 100), true),
    // month up to 13 and day up to 29: some dates are impossible, as in the official test.
    nascimento: `${randInt(1940, 2020)}-${pad(randInt(1, 13))}-${pad(randInt(1, 29))}`,
    stack: randInt(1, 14) === 1 ? null
      : Array.from({ length: randInt(1, 26) }, () => STACK[randInt(0, STACK.length - 1)]),
  };
  for (const field of Object.keys(INVALID)) {
    if (randInt(1, 99) === 1) p[field] = INVALID[field]();
  }
  return JSON.stringify(p);
}

const JSON_HEADERS = { headers: { 'Content-Type': 'application/json' } };

function noteServerError(res) {
  if (res.status >= 500 || res.status === 0) serverErrors.add(1);
}

export function createPerson() {
  const res = http.post(`${BASE_URL}/pessoas`, payload(), { ...JSON_HEADERS, tags: { name: 'POST /pessoas' } });
  noteServerError(res);
  check(res, { 'creation: 201, 400 or 422': (r) => [201, 400, 422].includes(r.status) });
  if (res.status !== 201) return;
  created.add(1);
  lost.add(1);
  const location = res.headers.Location || res.headers.location;
  sleep(randInt(1, 30) / 1000);
  const got = http.get(`${BASE_URL}${location}`, { tags: { name: 'GET /pessoas/{id}' } });
  noteServerError(got);
  check(got, { 'lookup: 200': (r) => r.status === 200 });
}

export function searchValid() {
  const t = TERMS[randInt(0, TERMS.length - 1)];
  const res = http.get(`${BASE_URL}/pessoas?t=${encodeURIComponent(t)}`, { tags: { name: 'GET /pessoas?t' } });
  noteServerError(res);
  check(res, { 'search: 200': (r) => r.status === 200 });
}

export function searchInvalid() {
  const res = http.get(`${BASE_URL}/pessoas`, { tags: { name: 'GET /pessoas (no t)' } });
  noteServerError(res);
  check(res, { 'search without t: 400': (r) => r.status === 400 });
}

export function setup() {
  const res = http.get(`${BASE_URL}/contagem-pessoas?wait=60`);
  if (res.status !== 200) throw new Error(`GET /contagem-pessoas answered ${res.status}`);
  return { before: parseInt(res.body, 10) };
}

export function teardown(data) {
  // The inserter writes in batches: wait (bounded) until every 201 is in PostgreSQL.
  const res = http.get(`${BASE_URL}/contagem-pessoas?wait=60`, { timeout: '90s' });
  const n = parseInt(res.body, 10) - data.before;
  counted.add(n);
  lost.add(-n);
  console.log(`people counted after the run: ${n} (compare people_created; people_lost must be 0)`);
}
