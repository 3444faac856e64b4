-- wrk script: POST one fixed form body to a token endpoint on every request (keep-alive).
--   BENCH_BODY   the form body, e.g. grant_type=client_credentials&client_id=..&client_secret=..&scope=..
--   BENCH_BASIC  optional: base64(client_id:client_secret) for HTTP Basic client authentication
-- At the end one machine-readable line is printed: "WRKJSON {...}" (latencies in microseconds).
local body = os.getenv("BENCH_BODY")
if body == nil or body == "" then
  error("BENCH_BODY is not set")
end
wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Accept"] = "application/json"
local basic = os.getenv("BENCH_BASIC")
if basic ~= nil and basic ~= "" then
  wrk.headers["Authorization"] = "Basic " .. basic
end

function done(summary, latency, requests)
  local secs = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_s":%.3f,"rps":%.1f,"mean_us":%.1f,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\n',
    summary.requests, secs, summary.requests / secs, latency.mean,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
