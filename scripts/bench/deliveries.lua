-- wrk script for scripts/bench-intake: POSTs one payload file as GitHub would,
-- with a fresh X-GitHub-Delivery on every request (so nothing is a duplicate).
-- Environment: BENCH_PAYLOAD (file), BENCH_SIGNATURE (sha256=…), BENCH_EVENT,
-- BENCH_RUN (unique per run).
local threads = {}
local next_thread = 1

function setup(thread)
  thread:set("thread_id", next_thread)
  next_thread = next_thread + 1
  table.insert(threads, thread)
end

function init(args)
  local file = assert(io.open(os.getenv("BENCH_PAYLOAD"), "rb"))
  body = file:read("*a")
  file:close()
  signature = os.getenv("BENCH_SIGNATURE")
  event = os.getenv("BENCH_EVENT") or "issue_comment"
  run = os.getenv("BENCH_RUN") or "00000000"
  counter = 0
  failures = 0
end

function request()
  counter = counter + 1
  local delivery = string.format("%s-%04d-4000-8000-%012d", run, thread_id, counter)
  return wrk.format("POST", "/integration/github/events", {
    ["Content-Type"] = "application/json",
    ["X-GitHub-Event"] = event,
    ["X-GitHub-Hook-ID"] = "1",
    ["X-GitHub-Delivery"] = delivery,
    ["X-Hub-Signature-256"] = signature,
  }, body)
end

function response(status, headers, body)
  if status ~= 200 then
    failures = failures + 1
  end
end

function done(summary, latency, requests)
  local failed = 0
  for _, thread in ipairs(threads) do
    failed = failed + thread:get("failures")
  end
  io.write(string.format("BENCH requests=%d seconds=%.3f rps=%.1f p50_ms=%.2f p99_ms=%.2f non200=%d errors=%d\n",
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, failed,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
