import { RedisScript } from "./redis-script.js";

/**
 * The Lua the Redis driver runs (key layout in redis-driver.ts). Each script touches the keys
 * of ONE device (one hash tag, one cluster slot) or the instance-wide keys, never both.
 */

/** A step's view, atomically: the device hash (version, open sessions) and the record. */
export const READ_STEP = new RedisScript(
  "read-step",
  `return {redis.call('HGETALL', KEYS[1]), redis.call('GET', KEYS[3])}`,
);

/**
 * A step's write, only if the device's version is the one the step read; returns {0} on a
 * conflict, else {1, sessions forgotten to keep the device's tombstones bounded...}.
 * KEYS: device hash, tombstones zset, record. ARGV: version read, session id, kind
 * (open | tomb | del), record, dueAt, keepMs, max tombstones, record key prefix.
 */
export const WRITE_STEP = new RedisScript(
  "write-step",
  `local device, tombs, rec = KEYS[1], KEYS[2], KEYS[3]
if (redis.call('HGET', device, 'v') or '0') ~= ARGV[1] then return {0} end
local version = redis.call('HINCRBY', device, 'v', 1)
local sid, kind, keep = ARGV[2], ARGV[3], tonumber(ARGV[6])
local out = {1}
if kind == 'del' then
  redis.call('DEL', rec)
  redis.call('HDEL', device, 'o:' .. sid)
  redis.call('ZREM', tombs, sid)
elseif kind == 'open' then
  redis.call('SET', rec, ARGV[4], 'PX', keep)
  redis.call('HSET', device, 'o:' .. sid, ARGV[5])
  redis.call('ZREM', tombs, sid)
else
  redis.call('SET', rec, ARGV[4], 'PX', keep)
  redis.call('HDEL', device, 'o:' .. sid)
  redis.call('ZADD', tombs, version, sid)
  local over = redis.call('ZCARD', tombs) - tonumber(ARGV[7])
  if over > 0 then
    for _, old in ipairs(redis.call('ZRANGE', tombs, 0, over - 1)) do
      redis.call('DEL', ARGV[8] .. old)
      out[#out + 1] = old
    end
    redis.call('ZREMRANGEBYRANK', tombs, 0, over - 1)
  end
end
if redis.call('HLEN', device) <= 1 and redis.call('EXISTS', tombs) == 0 then
  redis.call('DEL', device)
else
  for _, k in ipairs({device, tombs}) do
    if redis.call('PTTL', k) < keep then redis.call('PEXPIRE', k, keep) end
  end
end
return out`,
);

/**
 * After a write landed: the instance-wide gauges and the due index (what the sweeper looks
 * at). KEYS: gauges hash, due zset. ARGV: open delta, bytes delta, keepMs, member to (re)index
 * or '', its dueAt, members to drop from the index... Both keys live as long as the longest
 * kept record, and the gauges go when nothing is open, so an idle Redis ends empty.
 */
export const WRITE_GLOBAL = new RedisScript(
  "write-global",
  `local gauges, due = KEYS[1], KEYS[2]
local dOpen, dBytes, keep = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if dOpen ~= 0 then redis.call('HINCRBY', gauges, 'open', dOpen) end
if dBytes ~= 0 then redis.call('HINCRBY', gauges, 'bytes', dBytes) end
if ARGV[4] ~= '' then redis.call('ZADD', due, ARGV[5], ARGV[4]) end
for i = 6, #ARGV do redis.call('ZREM', due, ARGV[i]) end
local open = tonumber(redis.call('HGET', gauges, 'open') or '0')
local bytes = tonumber(redis.call('HGET', gauges, 'bytes') or '0')
if open <= 0 and bytes <= 0 then
  redis.call('DEL', gauges)
elseif redis.call('PTTL', gauges) < keep then
  redis.call('PEXPIRE', gauges, keep)
end
if redis.call('EXISTS', due) == 1 and redis.call('PTTL', due) < keep then
  redis.call('PEXPIRE', due, keep)
end
return 1`,
);

export const SCRIPTS = [READ_STEP, WRITE_STEP, WRITE_GLOBAL];
