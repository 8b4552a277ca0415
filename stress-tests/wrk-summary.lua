-- wrk's end-of-run hook (wrk -s stress-tests/wrk-summary.lua …): one JSON line with the fields
-- ping.js prints, so ping-vs-static.sh reads wrk and k6 runs alike. Latencies come in µs.
done = function(summary, latency, requests)
  local e = summary.errors
  local socket = e.connect + e.read + e.write + e.timeout
  io.write(string.format(
    '{"requests":%d,"req_per_s":%d,"failed":%d,"non_2xx":%d,"socket_errors":%d,' ..
    '"p50_ms":%.3f,"p95_ms":%.3f,"p99_ms":%.3f,"max_ms":%.3f}\n',
    summary.requests, math.floor(summary.requests / (summary.duration / 1e6) + 0.5),
    e.status + socket, e.status, socket,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000))
end
