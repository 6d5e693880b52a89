import { RedisScript } from "./redis-script.js";

/**
 * The Lua the Redis driver runs (key layout in redis-driver.ts). Each script touches the keys
 * of ONE device (one hash tag, one cluster slot) or the instance-wide keys, never both.
 */

/**
 * A step's write, only if the device's version is the one the step's view had; else nothing
 * is written and the device as it is now comes back, for the step to run again on it (a
 * read and a write in one round trip when the view was right; a step with no view yet sends
 * a version no device has, and this is its read).
 *
 * The version is `<g>.<v>`: `v` counts the device's writes (its tombstones' seal order), `g`
 * is set when the device's hash is created, unique per creation (the writer's token), so a
 * device deleted and created again never shows a version a view of its old self had. No hash:
 * version ".0".
 *
 * KEYS: device hash, tombstones zset, record, the record's payload hash (redis-records.ts).
 * ARGV: version of the view, session id, kind (none | open | tomb | del; none writes nothing:
 * a step that only answers, checked against the device as the others), "1" to have the
 * payloads in a conflict's answer, record, dueAt, keepMs, max tombstones, record key prefix,
 * token, the state of the record in the view ("open": not among the tombstones, as an open
 * record's write took it out), "1" when the session has payloads, then the payload fields
 * this write adds (field, value pairs).
 * Returns {1, version after the write, sessions forgotten to keep the device's tombstones
 * bounded...} or {0, HGETALL of the device, the record or false, HGETALL of the payloads or
 * false}.
 */
export const STEP = new RedisScript(
  "step",
  `local device, tombs, rec, pay = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local at = redis.call('HMGET', device, 'g', 'v')
local g, v = at[1], at[2]
if (g or '') .. '.' .. (v or '0') ~= ARGV[1] then
  local payloads = false
  if ARGV[4] == '1' then payloads = redis.call('HGETALL', pay) end
  return {0, redis.call('HGETALL', device), redis.call('GET', rec), payloads}
end
local kind = ARGV[3]
if kind == 'none' then return {1, ARGV[1]} end
local n = redis.call('HINCRBY', device, 'v', 1)
if not g then
  g = ARGV[10]
  redis.call('HSET', device, 'g', g)
end
local sid, keep = ARGV[2], tonumber(ARGV[7])
local out = {1, g .. '.' .. n}
local function live(k)
  if redis.call('PTTL', k) < keep then redis.call('PEXPIRE', k, keep) end
end
if kind == 'open' then
  -- A hold's chunk: the device keeps an open session (no delete), its tombstones are as they were.
  redis.call('SET', rec, ARGV[5], 'PX', keep)
  redis.call('HSET', device, 'o:' .. sid, ARGV[6])
  if ARGV[11] ~= 'open' then redis.call('ZREM', tombs, sid) end
  if ARGV[12] == '1' then
    for i = 13, #ARGV, 2 do redis.call('HSET', pay, ARGV[i], ARGV[i + 1]) end
    redis.call('PEXPIRE', pay, keep)
  end
  live(device)
  return out
end
redis.call('HDEL', device, 'o:' .. sid)
if kind == 'del' then
  redis.call('DEL', rec, pay)
  redis.call('ZREM', tombs, sid)
else
  redis.call('SET', rec, ARGV[5], 'PX', keep)
  redis.call('DEL', pay)
  redis.call('ZADD', tombs, n, sid)
  local over = redis.call('ZCARD', tombs) - tonumber(ARGV[8])
  if over > 0 then
    for _, old in ipairs(redis.call('ZRANGE', tombs, 0, over - 1)) do
      redis.call('DEL', ARGV[9] .. old, ARGV[9] .. old .. ':p')
      out[#out + 1] = old
    end
    redis.call('ZREMRANGEBYRANK', tombs, 0, over - 1)
  end
end
if redis.call('HLEN', device) <= 2 and redis.call('EXISTS', tombs) == 0 then
  redis.call('DEL', device)
  out[2] = '.0'
else
  live(device)
  live(tombs)
end
return out`,
);

/**
 * After writes landed (the steps of one turn of the event loop, together): the instance-wide
 * gauges and the due index (what the sweeper looks at). KEYS: gauges hash, due zset. ARGV:
 * open delta, bytes delta, keepMs, n, then n (member, dueAt) pairs to (re)index, then members
 * to drop from the index. Both keys live as long as the longest kept record, and the gauges
 * go when nothing is open, so an idle Redis ends empty. Returns the gauges {open, bytes}.
 */
export const WRITE_GLOBAL = new RedisScript(
  "write-global",
  `local gauges, due = KEYS[1], KEYS[2]
local dOpen, dBytes, keep = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local n = tonumber(ARGV[4])
if dOpen ~= 0 then redis.call('HINCRBY', gauges, 'open', dOpen) end
if dBytes ~= 0 then redis.call('HINCRBY', gauges, 'bytes', dBytes) end
for i = 5, 3 + 2 * n, 2 do redis.call('ZADD', due, ARGV[i + 1], ARGV[i]) end
for i = 5 + 2 * n, #ARGV do redis.call('ZREM', due, ARGV[i]) end
local now = redis.call('HMGET', gauges, 'open', 'bytes')
local open, bytes = tonumber(now[1] or '0'), tonumber(now[2] or '0')
if open <= 0 and bytes <= 0 then
  redis.call('DEL', gauges)
elseif redis.call('PTTL', gauges) < keep then
  redis.call('PEXPIRE', gauges, keep)
end
local ttl = redis.call('PTTL', due)
if ttl ~= -2 and ttl < keep then redis.call('PEXPIRE', due, keep) end
return {open, bytes}`,
);

export const SCRIPTS = [STEP, WRITE_GLOBAL];
