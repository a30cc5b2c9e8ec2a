/* Generated from limits.lua; do not edit. */
#define LIMITS_LUA \
"-- keygate: the limiter algorithms of the Redis backend, as one script so\n" \
"-- that every limit of a plan is decided in one round trip and\n" \
"-- atomically.  Time is the server's (TIME), so instances with skewed\n" \
"-- clocks agree.  Keys carry the API key's hash tag {key id}: in a\n" \
"-- cluster all of a key's limits are on one slot.\n" \
"--\n" \
"-- KEYS[i]  the state of limit i\n" \
"-- ARGV[1]  mode: a = acquire, all-or-nothing (nothing is written unless\n" \
"--          every limit admits); p = peek; u = give one back (undo);\n" \
"--          r = release the lease ARGV member of a concurrency limit\n" \
"-- then 6 per limit: algorithm (f fixed window, s sliding window,\n" \
"--          b token bucket, c concurrency), count, window (s), burst,\n" \
"--          lease ttl (s), lease id\n" \
"-- Returns 4 integers per limit: admitted (1/0), remaining, reset (Unix\n" \
"-- s), retry after (s).\n" \
"local t = redis.call('TIME')\n" \
"local now_s = tonumber(t[1])\n" \
"local now = now_s * 1000000 + tonumber(t[2])\n" \
"local mode = ARGV[1]\n" \
"local out, writes, all = {}, {}, true\n" \
"local UNIT = 1000000\n" \
"\n" \
"for i = 1, #KEYS do\n" \
"  local b = 1 + (i - 1) * 6\n" \
"  local algo, count, win = ARGV[b + 1], tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3])\n" \
"  local burst, ttl, member = tonumber(ARGV[b + 4]), tonumber(ARGV[b + 5]), ARGV[b + 6]\n" \
"  local k = KEYS[i]\n" \
"  local ok, rem, reset, retry = 1, 0, 0, 0\n" \
"\n" \
"  if algo == 'f' then\n" \
"    -- fixed window: hash {s = window start, c = admitted in it}\n" \
"    local start = now_s - now_s % win\n" \
"    local h = redis.call('HMGET', k, 's', 'c')\n" \
"    local c = 0\n" \
"    if tonumber(h[1]) == start then c = tonumber(h[2]) or 0 end\n" \
"    reset = start + win\n" \
"    if mode == 'a' then\n" \
"      if c < count then\n" \
"        c = c + 1\n" \
"        writes[#writes + 1] = {'HSET', k, 's', start, 'c', c}\n" \
"        writes[#writes + 1] = {'EXPIREAT', k, reset + 1}\n" \
"      else\n" \
"        ok, retry = 0, reset - now_s\n" \
"      end\n" \
"    elseif mode == 'u' and c > 0 then\n" \
"      c = c - 1\n" \
"      redis.call('HSET', k, 'c', c)\n" \
"    end\n" \
"    rem = count - c\n" \
"\n" \
"  elseif algo == 's' then\n" \
"    -- sliding window: the previous fixed window's count weighted by how\n" \
"    -- much of it the sliding window still covers, plus the current one\n" \
"    local start = now_s - now_s % win\n" \
"    local h = redis.call('HMGET', k, 's', 'c', 'p')\n" \
"    local s0, cur, prev = tonumber(h[1]), tonumber(h[2]) or 0, tonumber(h[3]) or 0\n" \
"    if s0 ~= start then\n" \
"      if s0 == start - win then prev = cur else prev = 0 end\n" \
"      cur = 0\n" \
"    end\n" \
"    local wus = win * UNIT\n" \
"    local el = now - start * UNIT\n" \
"    local weight = (wus - el) / wus\n" \
"    reset = start + win\n" \
"    if mode == 'a' then\n" \
"      if prev * weight + cur + 1 <= count + 1e-9 then\n" \
"        cur = cur + 1\n" \
"        writes[#writes + 1] = {'HSET', k, 's', start, 'c', cur, 'p', prev}\n" \
"        writes[#writes + 1] = {'EXPIREAT', k, start + 2 * win + 1}\n" \
"      else\n" \
"        ok = 0\n" \
"        if cur + 1 > count or prev == 0 then\n" \
"          retry = reset - now_s\n" \
"        else\n" \
"          local need = prev * (wus - el) - (count - cur - 1) * wus\n" \
"          retry = math.ceil(need / prev / UNIT)\n" \
"        end\n" \
"        if retry < 1 then retry = 1 end\n" \
"      end\n" \
"    elseif mode == 'u' and s0 == start and cur > 0 then\n" \
"      cur = cur - 1\n" \
"      redis.call('HSET', k, 'c', cur)\n" \
"    end\n" \
"    rem = math.floor(count - (prev * weight + cur))\n" \
"\n" \
"  elseif algo == 'b' then\n" \
"    -- token bucket: hash {t = tokens (1 token = 1e6 units), u = last refill (us)}\n" \
"    local cap = burst * UNIT\n" \
"    local h = redis.call('HMGET', k, 't', 'u')\n" \
"    local tok, last = tonumber(h[1]), tonumber(h[2])\n" \
"    if tok == nil or last == nil then\n" \
"      tok, last = cap, now\n" \
"    elseif now > last then\n" \
"      tok = math.min(cap, tok + math.floor((now - last) * count / win))\n" \
"      last = now\n" \
"    end\n" \
"    if tok > cap then tok = cap end\n" \
"    local changed = false\n" \
"    if mode == 'a' then\n" \
"      if tok >= UNIT then\n" \
"        tok = tok - UNIT\n" \
"        changed = true\n" \
"      else\n" \
"        ok = 0\n" \
"        if count > 0 then retry = math.ceil((UNIT - tok) * win / count / UNIT) else retry = win end\n" \
"        if retry < 1 then retry = 1 end\n" \
"      end\n" \
"    elseif mode == 'u' then\n" \
"      tok = math.min(cap, tok + UNIT)\n" \
"      redis.call('HSET', k, 't', tok, 'u', last)\n" \
"    end\n" \
"    local full_in = 0\n" \
"    if count > 0 then full_in = math.ceil((cap - tok) * win / count / UNIT) end\n" \
"    if changed then\n" \
"      writes[#writes + 1] = {'HSET', k, 't', tok, 'u', last}\n" \
"      writes[#writes + 1] = {'PEXPIRE', k, (full_in + win) * 1000}\n" \
"    end\n" \
"    rem = math.floor(tok / UNIT)\n" \
"    reset = now_s + full_in\n" \
"\n" \
"  elseif algo == 'c' then\n" \
"    -- concurrency: a sorted set of leases scored by their expiry (us);\n" \
"    -- expired ones are reaped here, so a crashed instance's leases end\n" \
"    redis.call('ZREMRANGEBYSCORE', k, '-inf', now)\n" \
"    local held = redis.call('ZCARD', k)\n" \
"    if mode == 'a' then\n" \
"      if held < count then\n" \
"        held = held + 1\n" \
"        writes[#writes + 1] = {'ZADD', k, now + ttl * UNIT, member}\n" \
"        writes[#writes + 1] = {'PEXPIRE', k, ttl * 1000 + 1000, 'GT'}\n" \
"        writes[#writes + 1] = {'PEXPIRE', k, ttl * 1000 + 1000, 'NX'}\n" \
"      else\n" \
"        ok, retry = 0, 1\n" \
"      end\n" \
"    elseif mode == 'u' or mode == 'r' then\n" \
"      local z = redis.call('ZREM', k, member)\n" \
"      held = held - z\n" \
"      if mode == 'r' then ok = z end\n" \
"    end\n" \
"    rem = count - held\n" \
"    reset = now_s\n" \
"  else\n" \
"    return redis.error_reply('keygate: unknown limiter algorithm ' .. tostring(algo))\n" \
"  end\n" \
"\n" \
"  if ok == 0 then all = false end\n" \
"  out[#out + 1] = ok\n" \
"  out[#out + 1] = rem\n" \
"  out[#out + 1] = reset\n" \
"  out[#out + 1] = retry\n" \
"end\n" \
"\n" \
"if mode == 'a' and all then\n" \
"  for _, w in ipairs(writes) do redis.call(unpack(w)) end\n" \
"end\n" \
"return out\n" \
""
