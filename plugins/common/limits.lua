-- keygate: the limiter algorithms of the Redis backend, as one script so
-- that every limit of a plan is decided in one round trip and
-- atomically.  Time is the server's (TIME), so instances with skewed
-- clocks agree.  Keys carry the API key's hash tag {key id}: in a
-- cluster all of a key's limits are on one slot.
--
-- KEYS[i]  the state of limit i
-- ARGV[1]  mode: a = acquire, all-or-nothing (nothing is written unless
--          every limit admits); p = peek; u = give one back (undo);
--          r = release the lease ARGV member of a concurrency limit
-- then 6 per limit: algorithm (f fixed window, s sliding window,
--          b token bucket, c concurrency), count, window (s), burst,
--          lease ttl (s), lease id ("" in mode a: take no lease, admit,
--          report what others hold: kg_call_lease_wanted() is 0)
-- Returns 4 integers per limit: admitted (1/0), remaining, reset (Unix
-- s), retry after (s).
local t = redis.call('TIME')
local now_s = tonumber(t[1])
local now = now_s * 1000000 + tonumber(t[2])
local mode = ARGV[1]
local out, writes, all = {}, {}, true
local UNIT = 1000000

for i = 1, #KEYS do
  local b = 1 + (i - 1) * 6
  local algo, count, win = ARGV[b + 1], tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3])
  local burst, ttl, member = tonumber(ARGV[b + 4]), tonumber(ARGV[b + 5]), ARGV[b + 6]
  local k = KEYS[i]
  local ok, rem, reset, retry = 1, 0, 0, 0

  if algo == 'f' then
    -- fixed window: hash {s = window start, c = admitted in it}
    local start = now_s - now_s % win
    local h = redis.call('HMGET', k, 's', 'c')
    local c = 0
    if tonumber(h[1]) == start then c = tonumber(h[2]) or 0 end
    reset = start + win
    if mode == 'a' then
      if c < count then
        c = c + 1
        writes[#writes + 1] = {'HSET', k, 's', start, 'c', c}
        writes[#writes + 1] = {'EXPIREAT', k, reset + 1}
      else
        ok, retry = 0, reset - now_s
      end
    elseif mode == 'u' and c > 0 then
      c = c - 1
      redis.call('HSET', k, 'c', c)
    end
    rem = count - c

  elseif algo == 's' then
    -- sliding window: the previous fixed window's count weighted by how
    -- much of it the sliding window still covers, plus the current one
    local start = now_s - now_s % win
    local h = redis.call('HMGET', k, 's', 'c', 'p')
    local s0, cur, prev = tonumber(h[1]), tonumber(h[2]) or 0, tonumber(h[3]) or 0
    if s0 ~= start then
      if s0 == start - win then prev = cur else prev = 0 end
      cur = 0
    end
    local wus = win * UNIT
    local el = now - start * UNIT
    local weight = (wus - el) / wus
    reset = start + win
    if mode == 'a' then
      if prev * weight + cur + 1 <= count + 1e-9 then
        cur = cur + 1
        writes[#writes + 1] = {'HSET', k, 's', start, 'c', cur, 'p', prev}
        writes[#writes + 1] = {'EXPIREAT', k, start + 2 * win + 1}
      else
        ok = 0
        if cur + 1 > count or prev == 0 then
          retry = reset - now_s
        else
          local need = prev * (wus - el) - (count - cur - 1) * wus
          retry = math.ceil(need / prev / UNIT)
        end
        if retry < 1 then retry = 1 end
      end
    elseif mode == 'u' and s0 == start and cur > 0 then
      cur = cur - 1
      redis.call('HSET', k, 'c', cur)
    end
    rem = math.floor(count - (prev * weight + cur))

  elseif algo == 'b' then
    -- token bucket: hash {t = tokens (1 token = 1e6 units), u = last refill (us)}
    local cap = burst * UNIT
    local h = redis.call('HMGET', k, 't', 'u')
    local tok, last = tonumber(h[1]), tonumber(h[2])
    if tok == nil or last == nil then
      tok, last = cap, now
    elseif now > last then
      tok = math.min(cap, tok + math.floor((now - last) * count / win))
      last = now
    end
    if tok > cap then tok = cap end
    local changed = false
    if mode == 'a' then
      if tok >= UNIT then
        tok = tok - UNIT
        changed = true
      else
        ok = 0
        if count > 0 then retry = math.ceil((UNIT - tok) * win / count / UNIT) else retry = win end
        if retry < 1 then retry = 1 end
      end
    elseif mode == 'u' then
      tok = math.min(cap, tok + UNIT)
    end
    local full_in = 0
    if count > 0 then full_in = math.ceil((cap - tok) * win / count / UNIT) end
    if mode == 'u' then
      redis.call('HSET', k, 't', tok, 'u', last)
      redis.call('PEXPIRE', k, (full_in + win) * 1000)
    end
    if changed then
      writes[#writes + 1] = {'HSET', k, 't', tok, 'u', last}
      writes[#writes + 1] = {'PEXPIRE', k, (full_in + win) * 1000}
    end
    rem = math.floor(tok / UNIT)
    reset = now_s + full_in

  elseif algo == 'c' then
    -- concurrency: a sorted set of leases scored by their expiry (us);
    -- expired ones are reaped here, so a crashed instance's leases end
    redis.call('ZREMRANGEBYSCORE', k, '-inf', now)
    local held = redis.call('ZCARD', k)
    if mode == 'a' and member == '' then
      ok = 1
    elseif mode == 'a' then
      if held < count then
        held = held + 1
        writes[#writes + 1] = {'ZADD', k, now + ttl * UNIT, member}
        writes[#writes + 1] = {'PEXPIRE', k, ttl * 1000 + 1000, 'GT'}
        writes[#writes + 1] = {'PEXPIRE', k, ttl * 1000 + 1000, 'NX'}
      elseif held > 0 then
        -- Retry-After: as long as the youngest lease has been held (at
        -- least 1 s), never past the earliest expiry, as the memory
        -- state says it (core/leases.c).
        local first = tonumber(redis.call('ZRANGE', k, 0, 0, 'WITHSCORES')[2])
        local last = tonumber(redis.call('ZRANGE', k, -1, -1, 'WITHSCORES')[2])
        local wait = math.min(math.max(ttl * UNIT - (last - now), UNIT), first - now)
        ok, retry = 0, math.max(math.ceil(wait / UNIT), 1)
      else
        ok, retry = 0, 1
      end
    elseif mode == 'u' or mode == 'r' then
      local z = redis.call('ZREM', k, member)
      held = held - z
      if mode == 'r' then ok = z end
    end
    rem = count - held
    reset = now_s
  else
    return redis.error_reply('keygate: unknown limiter algorithm ' .. tostring(algo))
  end

  if ok == 0 then all = false end
  out[#out + 1] = ok
  out[#out + 1] = rem
  out[#out + 1] = reset
  out[#out + 1] = retry
end

if mode == 'a' and all then
  for _, w in ipairs(writes) do redis.call(unpack(w)) end
end
return out
