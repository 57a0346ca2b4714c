-- wrk script for scripts/bench_rest.sh: GETs PREFIX .. <random line of FILE>,
-- with an optional bearer token, and prints one machine-readable result line.
--
--   wrk -t2 -c32 -d15s -s rest_load.lua http://127.0.0.1:PORT -- PREFIX FILE [TOKEN]
--
-- PREFIX is the path and query up to the varying part, e.g.
-- "/api/2.0/mlflow/secrets/get?secret_id=" with FILE holding one secret id a
-- line, or "/api/2.0/mlflow/secrets/list?max_results=100" with FILE holding
-- page-token suffixes ("&page_token=..."; an empty line is the first page).

local counter = 1

function setup(thread)
   thread:set("tid", counter)
   counter = counter + 1
end

function init(args)
   prefix = args[1]
   local file = args[2]
   local token = args[3]
   lines = {}
   for line in io.lines(file) do
      table.insert(lines, line)
   end
   if #lines == 0 then
      error("no lines in " .. file)
   end
   if token and token ~= "" then
      wrk.headers["Authorization"] = "Bearer " .. token
   end
   wrk.headers["Accept"] = "application/json"
   math.randomseed(os.time() * 1000 + tid)
end

function request()
   return wrk.format("GET", prefix .. lines[math.random(#lines)])
end

function done(summary, latency, requests)
   -- errors.status counts responses with a status of 400 or more. No
   -- response() callback: defining one makes wrk parse every body.
   local e = summary.errors
   io.write(string.format(
      "WRK_RESULT requests=%d seconds=%.3f rps=%.1f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f http_errors=%d socket_errors=%d\n",
      summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
      latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
      latency.max / 1000, e.status, e.connect + e.read + e.write + e.timeout))
end
