-- wrk script for bench/ingest: the platform's traffic, one connection per wrk thread.
--
-- With one connection per thread (wrk -t N -c N), request() and response() alternate strictly,
-- so each answer is matched to the request it answers and logged: the harness then checks that
-- every acknowledged event is in the database, once.
--
-- Arguments (after `--`): mode=mix|burst tag=T secret=S logdir=D seed=N total=N threads=N rate=R
--   mix:   70% SMS status reports (5% of them exact resends, ~10% late out-of-order reports),
--          10% WhatsApp/RCS/Viber statuses, 10% inbound messages, 5% voice records with a
--          recording URL, 5% invalid (broken JSON or a field of the wrong type).
--   burst: SMS delivery reports only, each message once.
--   total: requests all threads send together, then they stop (0: until wrk's -d ends the run);
--          `threads` (wrk's -t) tells each thread its share.
--   close: 1 sends `Connection: close` (a sender that opens a connection per callback).
--   rate:  requests a second all threads send together on a fixed schedule (0: as fast as answered).
--          Latency is then measured from the scheduled time, so a stall is not hidden
--          (no coordinated omission).
--
-- Log line per answered request: status, latency in microseconds, kind, key, answer summary.
-- In total mode a thread that has its answers writes t<N>.done: when it sent its first request
-- and when its last answer came (CLOCK_MONOTONIC, microseconds), so the harness can stop wrk and
-- time the burst by its last answer, not by wrk's -d.

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]]
local clock = ffi.new("bench_timespec")
local function now_us()
  ffi.C.clock_gettime(1, clock) -- CLOCK_MONOTONIC
  return tonumber(clock.tv_sec) * 1000000 + tonumber(clock.tv_nsec) / 1000
end

-- setup phase (main Lua state): number the threads --------------------------------------------

local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("thread_id", counter)
end

-- running phase (one Lua state per thread) -----------------------------------------------------

local opts = {}
local log
local seq = 0
local sent = 0
local answered = 0
local quota = 0
local first_sent_us = nil
local total_mode = false
local interval_us = 0
local next_at = nil
local verified = false
local pending = nil -- the request on the wire: {kind, key, t0}
local recent = {} -- recent SMS reports, resent as duplicates
local late = {} -- out-of-order reports still to send: an earlier, non-final status
local base_time = 1701000000

function init(args)
  for _, arg in ipairs(args) do
    local name, value = arg:match("^([%w_]+)=(.*)$")
    if name then
      opts[name] = value
    end
  end
  opts.mode = opts.mode or "mix"
  opts.tag = opts.tag or "run"
  local total, threads = tonumber(opts.total or "0"), tonumber(opts.threads or "1")
  total_mode = total > 0
  quota = math.floor(total / threads) + ((thread_id <= total % threads) and 1 or 0)
  local rate = tonumber(opts.rate or "0") / tonumber(opts.threads or "1")
  if rate > 0 then
    interval_us = 1000000 / rate
  end
  math.randomseed(tonumber(opts.seed or "1") * 1000 + thread_id)
  log = assert(io.open(string.format("%s/t%03d.log", opts.logdir, thread_id), "w"))
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. (opts.secret or "")
  if opts.close == "1" then
    wrk.headers["Connection"] = "close"
  end
end

local function uid(prefix)
  seq = seq + 1
  return string.format("%s-%s-%d-%d", prefix, opts.tag, thread_id, seq)
end

local function quote(value)
  return '"' .. value .. '"'
end

local sms_finals = { "DELIVRD", "DELIVRD", "DELIVRD", "DELIVRD", "DELIVRD", "DELIVRD", "DELIVRD",
  "DELIVRD", "UNDELIV", "EXPIRED" }

local function sms_body(id, status, at)
  return "{" .. table.concat({
    '"id":' .. quote(id),
    '"mobile":' .. quote(string.format("9198%08d", math.random(0, 99999999))),
    '"status":' .. quote(status),
    '"credits":"1.0000"',
    '"units":1',
    '"submit_at":' .. quote(tostring(at - 20)),
    '"sent_at":' .. quote(tostring(at - 10)),
    '"deliv_at":' .. quote(tostring(at)),
    '"cid":' .. quote("cid-" .. opts.tag),
    '"custom":' .. quote("order-" .. seq),
    '"custom1":"campaign-bench"',
    '"location":"India","region":"Karnataka","provider":"Jio"',
    '"location_code":"in","region_code":"KA","provider_code":"RJ"',
  }, ",") .. "}"
end

local function sms_report()
  local roll = math.random()
  if roll < 0.05 and #recent > 0 then -- a provider retry: the same report again
    local old = recent[math.random(#recent)]
    return "sms-dup", old.key, old.body
  end
  if roll < 0.15 and #late > 0 then -- late and out of order: an earlier, non-final status
    local item = table.remove(late, 1)
    local body = sms_body(item.id, "AWAITING-DLR", item.at - 30)
    return "sms-late", item.id .. "|AWAITING-DLR|" .. item.final, body
  end
  local id = uid("sms") .. ":1"
  local status = sms_finals[math.random(#sms_finals)]
  local at = base_time + seq
  local body = sms_body(id, status, at)
  local key = id .. "|" .. status
  if #recent >= 64 then
    table.remove(recent, 1)
  end
  recent[#recent + 1] = { key = key, body = body }
  if opts.mode == "mix" and math.random() < 0.12 and #late < 256 then
    late[#late + 1] = { id = id, at = at, final = status }
  end
  return "sms", key, body
end

local channels = { "whatsapp", "rcs", "viber" }
local channel_statuses = { "sent", "delivered", "read", "failed" }

local function channel_status()
  local channel = channels[math.random(#channels)]
  local status = channel_statuses[math.random(#channel_statuses)]
  local id = uid(channel)
  local body = '{"event":"' .. channel .. ':message:status","payload":{'
    .. '"id":' .. quote(id) .. ',"channel":' .. quote(channel)
    .. ',"from":"919019120000","to":' .. quote(string.format("9190%08d", math.random(0, 99999999)))
    .. ',"status":' .. quote(status)
    .. ',"timestamp":"2024-07-09T10:03:37.338022Z","processed_at":"2024-07-09T10:03:30.000000Z"'
    .. ',"foreign_id":' .. quote("ref-" .. seq) .. "}}"
  return "channel", id .. "|" .. status, body
end

local function inbound()
  local channel = (math.random() < 0.5) and "vmn" or "whatsapp"
  local id = uid("in-" .. channel)
  local body = '{"event":"' .. channel .. ':message:in","payload":{'
    .. '"id":' .. quote(id)
    .. ',"channels":[{"name":"' .. channel .. '","to":"919019000000"}]'
    .. ',"recipient":{"from":' .. quote(string.format("9180%08d", math.random(0, 99999999)))
    .. ',"user":{"id":"u-1","first_name":"Asha","phone":"9180000000"}}'
    .. ',"message":{"type":"text","payload":{"text":"STOP promo ' .. seq .. '"}}}}'
  return "inbound", id, body
end

local function voice()
  local mid = uid("call")
  local start = base_time + seq
  local body = '{"bridge":918068280000,"from":918919520000,'
    .. '"to":' .. string.format("9188%08d", math.random(0, 99999999))
    .. ',"source":"OBD","mid":' .. quote(mid) .. ',"flow_id":123'
    .. ',"start_at":"2024-07-09 16:27:39","end_at":"2024-07-09 16:28:02","duration":"23"'
    .. ',"status":"ANSWER"'
    -- .invalid never resolves: no download can leave this machine even if a worker ran.
    .. ',"recording_url":"https://recordings.invalid/bench/' .. mid .. '.mp3"}'
  return "voice", mid, body
end

local function invalid()
  local id = uid("bad")
  if math.random() < 0.5 then
    return "invalid", id, '{"id":' .. quote(id) .. ',"mobile":"9198000000","status":"DELIV'
  end
  return "invalid", id, '{"id":' .. quote(id) .. ',"mobile":"9198000000","status":"DELIVRD","units":"many"}'
end

local function next_request()
  if opts.mode == "burst" then
    local id = uid("dlr") .. ":1"
    local at = base_time + seq
    return "sms", id .. "|DELIVRD", sms_body(id, "DELIVRD", at)
  end
  local roll = math.random()
  if roll < 0.70 then
    return sms_report()
  elseif roll < 0.80 then
    return channel_status()
  elseif roll < 0.90 then
    return inbound()
  elseif roll < 0.95 then
    return voice()
  end
  return invalid()
end

function delay()
  if interval_us == 0 then
    return 0
  end
  local now = now_us()
  next_at = (next_at or now) + interval_us
  if next_at <= now then
    return 0
  end
  return math.floor((next_at - now) / 1000)
end

function request()
  if thread_id == 1 and not verified then
    -- wrk calls request() once on its first thread to inspect it, and never sends that one.
    verified = true
    return wrk.format("POST", nil, nil, "{}")
  end
  if pending then -- the previous request got no answer (connection lost): log it as such
    log:write(string.format("0\t0\t%s\t%s\tno-answer\n", pending.kind, pending.key))
  end
  local kind, key, body = next_request()
  local t0 = now_us()
  if interval_us > 0 and next_at and next_at < t0 then
    t0 = next_at -- count the time this request waited behind a slow one
  end
  pending = { kind = kind, key = key, t0 = t0 }
  first_sent_us = first_sent_us or t0
  sent = sent + 1
  return wrk.format("POST", nil, nil, body)
end

local function summary(body)
  local message = body:match('"message":"([^"]*)"') or ""
  local events = body:match('"events":%[([^%]]*)%]')
  if events then
    return message .. "\t" .. events:gsub('"', "")
  end
  local id = body:match('"id":(%d+)') or body:match('"event":(%d+)')
  return message .. "\t" .. (id or "")
end

function response(status, headers, body)
  if not pending then
    return
  end
  local answered_at = now_us()
  local latency = answered_at - pending.t0
  log:write(string.format("%d\t%d\t%s\t%s\t%s\n", status, latency, pending.kind, pending.key, summary(body)))
  pending = nil
  answered = answered + 1
  if answered % 200 == 0 then
    log:flush()
  end
  if total_mode and answered >= quota then
    log:flush()
    local done = assert(io.open(string.format("%s/t%03d.done", opts.logdir, thread_id), "w"))
    done:write(string.format("%d\t%d\n", first_sent_us, answered_at))
    done:close()
    wrk.thread:stop()
  end
end
