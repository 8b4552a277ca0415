// /ping under closed-loop load: VUS virtual users request as fast as they get answers for
// DURATION. Prints requests/s, latency percentiles and failures as one JSON line.
//   k6 run -e BASE_URL=http://127.0.0.1:9999 stress-tests/ping.js
import http from 'k6/http';
import { check } from 'k6';

const BASE_URL = __ENV.BASE_URL || 'http://127.0.0.1:9999';
const PATH = __ENV.PATH_TO_HIT || '/ping';

export const options = {
  scenarios: {
    ping: {
      executor: 'constant-vus',
      vus: Number(__ENV.VUS || 64),
      duration: __ENV.DURATION || '20s',
    },
  },
  discardResponseBodies: true,
  summaryTrendStats: ['avg', 'p(50)', 'p(95)', 'p(99)', 'max'],
};

export default function () {
  const res = http.get(`${BASE_URL}${PATH}`);
  check(res, { 'status is 200': (r) => r.status === 200 });
}

export function handleSummary(data) {
  const m = data.metrics;
  const line = {
    target: `${BASE_URL}${PATH}`,
    requests: m.http_reqs.values.count,
    req_per_s: Math.round(m.http_reqs.values.rate),
    failed: m.http_req_failed.values.passes,
    p50_ms: +m.http_req_duration.values['p(50)'].toFixed(3),
    p95_ms: +m.http_req_duration.values['p(95)'].toFixed(3),
    p99_ms: +m.http_req_duration.values['p(99)'].toFixed(3),
  };
  return { stdout: JSON.stringify(line) + '\n' };
}
