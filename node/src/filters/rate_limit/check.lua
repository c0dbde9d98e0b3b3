-- meshgate rate limit: count one request against every window of one policy, atomically.
-- The Rust twin of this arithmetic is node/src/filters/rate_limit/window.rs (and governor's
-- GCRA); both are tested against the same numbers.
--
-- KEYS[1]  the client's hash: one field set per window, named by the window's period.
-- ARGV[1]  algorithm: "gcra" | "sliding_window" | "fixed_window"
-- ARGV[2]  number of windows n; then per window: requests, burst, period (microseconds).
-- Reply    {refused_by, retry_after_us, remaining_1, reset_us_1, ..., remaining_n, reset_us_n}
--          refused_by = 0 when the request was counted, else the 1-based refusing window.
--          Nothing is written unless every window admits the request.
-- Time is the server's (TIME), so every gateway node sees the same clock.

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local algorithm = ARGV[1]
local n = tonumber(ARGV[2])

local fields = {}
for i = 1, n do
  local period = ARGV[2 + 3 * i]
  if algorithm == 'gcra' then
    fields[#fields + 1] = 't' .. period
  else
    fields[#fields + 1] = 'w' .. period
    fields[#fields + 1] = 'c' .. period
    if algorithm == 'sliding_window' then
      fields[#fields + 1] = 'p' .. period
    end
  end
end
local stored = redis.call('HMGET', KEYS[1], unpack(fields))

local reply = {0, 0}
local writes = {}
local ttl = 0
local refused_by = 0
local retry_after = 0
local per_window = #fields / n

for i = 1, n do
  local requests = tonumber(ARGV[3 * i])
  local burst = tonumber(ARGV[1 + 3 * i])
  local period = tonumber(ARGV[2 + 3 * i])
  local base = (i - 1) * per_window
  local remaining, reset, allowed, wait, expire

  if algorithm == 'gcra' then
    local emission = math.max(1, math.floor(period / requests))
    local tolerance = emission * (burst - 1)
    local tat = tonumber(stored[base + 1]) or now
    if tat < now then tat = now end
    if now >= tat - tolerance then
      local next_tat = tat + emission
      allowed = true
      remaining = math.floor((now + tolerance + emission - next_tat) / emission)
      reset = next_tat - now
      expire = reset
      writes[#writes + 1] = fields[base + 1]
      writes[#writes + 1] = next_tat
    else
      allowed = false
      remaining = 0
      wait = tat - tolerance - now
      reset = tat - now
    end
  else
    local index = math.floor(now / period)
    local elapsed = now - index * period
    local window = tonumber(stored[base + 1])
    local count = tonumber(stored[base + 2]) or 0
    reset = period - elapsed
    if algorithm == 'fixed_window' then
      if window ~= index then count = 0 end
      if count < requests then
        allowed = true
        remaining = requests - count - 1
        expire = reset
        writes[#writes + 1] = fields[base + 1]
        writes[#writes + 1] = index
        writes[#writes + 1] = fields[base + 2]
        writes[#writes + 1] = count + 1
      else
        allowed = false
        remaining = 0
        wait = reset
      end
    else
      local previous = tonumber(stored[base + 3]) or 0
      local current = count
      if window == index then
        -- as stored
      elseif window == index - 1 then
        previous = count
        current = 0
      else
        previous = 0
        current = 0
      end
      local weighted = previous * (period - elapsed) / period
      local estimate = weighted + current + 1
      if estimate <= requests then
        allowed = true
        remaining = math.floor(requests - estimate)
        expire = reset + period
        writes[#writes + 1] = fields[base + 1]
        writes[#writes + 1] = index
        writes[#writes + 1] = fields[base + 2]
        writes[#writes + 1] = current + 1
        writes[#writes + 1] = fields[base + 3]
        writes[#writes + 1] = previous
      else
        allowed = false
        remaining = 0
        if current + 1 > requests then
          -- Not before the next window; then `current` must slide out far enough.
          wait = reset + math.ceil(period * (current + 1 - requests) / math.max(current, 1))
        else
          local allowed_weight = math.floor((requests - current - 1) * period / math.max(previous, 1))
          wait = math.max(1, reset - allowed_weight)
        end
      end
    end
  end

  if not allowed and refused_by == 0 then
    refused_by = i
    retry_after = wait
  end
  if expire and expire > ttl then ttl = expire end
  reply[#reply + 1] = math.max(0, remaining)
  reply[#reply + 1] = math.max(0, math.ceil(reset))
end

reply[1] = refused_by
reply[2] = math.max(0, math.ceil(retry_after))
if refused_by == 0 and #writes > 0 then
  redis.call('HSET', KEYS[1], unpack(writes))
  redis.call('PEXPIRE', KEYS[1], math.ceil(ttl / 1000) + 1000)
end
return reply
