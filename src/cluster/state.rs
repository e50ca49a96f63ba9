//! The cluster's shared state in Redis: where each thing is kept, the one Lua script that
//! commits a durable change (its uniqueness check, its writes and its announcement to the
//! other nodes in one atomic step), and loading everything at a node's start.
//!
//! Keys (all under the prefix `P`, `websocket` unless `--redis-prefix` says otherwise):
//! `P:users` (userid → user), `P:names` (username → userid, what makes names unique),
//! `P:passwords` (userid → PHC hash), `P:rooms` (persistent rooms), `P:snaps`, `P:offline`,
//! `P:last` (highest id ever handed out, per kind), `P:changes` (the stream of durable changes,
//! each also published on `P:all` with its stream id), `P:temprooms`, `P:nodes` (node → start
//! token), `P:presence:NODE` (chatclientid → presence), `P:alive:NODE` (expires when the
//! node stops beating), `P:slot:N` (which node holds id slot N).

use redis::{Connection, Script};
use serde_json::{Value, json};

use super::wire;
use crate::chat::{Change, Presence, Snapshot, TempRoom};

/// Commits one durable change: checks, writes, appends it to the change stream and publishes
/// it with its stream id (so a node that missed the publication reads it from the stream).
/// Answers `conflict` when a check fails (nothing written), else `ok`.
const APPLY: &str = r#"
local req = cjson.decode(ARGV[1])
for _, c in ipairs(req.checks) do
  local exists = redis.call('HEXISTS', c[1], c[2]) == 1
  if (c[3] == 'absent' and exists) or (c[3] == 'present' and not exists) then
    return 'conflict'
  end
end
for _, op in ipairs(req.ops) do
  local kind = op[1]
  if kind == 'hset' then
    redis.call('HSET', op[2], op[3], op[4])
  elseif kind == 'hdel' then
    redis.call('HDEL', op[2], op[3])
  elseif kind == 'max' then
    local cur = tonumber(redis.call('HGET', op[2], op[3]) or '0')
    if tonumber(op[4]) > cur then redis.call('HSET', op[2], op[3], op[4]) end
  elseif kind == 'patch' then
    local raw = redis.call('HGET', op[2], op[3])
    if raw then
      local v = cjson.decode(raw)
      for k, x in pairs(op[4]) do v[k] = x end
      redis.call('HSET', op[2], op[3], cjson.encode(v))
    end
  elseif kind == 'deluser' then
    local p, id = op[2], op[3]
    local raw = redis.call('HGET', p .. ':users', id)
    if raw then redis.call('HDEL', p .. ':names', cjson.decode(raw).name) end
    redis.call('HDEL', p .. ':users', id)
    redis.call('HDEL', p .. ':passwords', id)
    for _, h in ipairs({p .. ':snaps', p .. ':offline'}) do
      local all = redis.call('HGETALL', h)
      for i = 1, #all, 2 do
        local v = cjson.decode(all[i + 1])
        if tostring(v.to) == id or tostring(v.from) == id then redis.call('HDEL', h, all[i]) end
      end
    end
  end
end
local id = redis.call('XADD', req.stream, 'MAXLEN', '~', req.keep, '*', 'm', req.message)
redis.call('PUBLISH', req.channel, '{"id":"' .. id .. '",' .. string.sub(req.message, 2))
return 'ok'
"#;

/// Durable changes kept in the change stream (`P:changes`, trimmed approximately): how far
/// back a node that lost its subscription can catch up without a restart.
const STREAM_KEEP: u64 = 100_000;

/// Names of keys and channels under one prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_owned(),
        }
    }

    pub fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.prefix)
    }

    /// The channel every node hears: presence, durable changes, beats.
    pub fn all(&self) -> String {
        self.key("all")
    }

    pub fn room(&self, id: u64) -> String {
        format!("{}:room:{id}", self.prefix)
    }

    pub fn node(&self, node: &str) -> String {
        format!("{}:node:{node}", self.prefix)
    }

    pub fn presence(&self, node: &str) -> String {
        format!("{}:presence:{node}", self.prefix)
    }

    pub fn alive(&self, node: &str) -> String {
        format!("{}:alive:{node}", self.prefix)
    }

    pub fn slot(&self, slot: u64) -> String {
        format!("{}:slot:{slot}", self.prefix)
    }
}

/// The script run by the cluster's command connection.
pub struct Committer {
    script: Script,
    keys: Keys,
    node: String,
}

impl Committer {
    pub fn new(keys: Keys, node: String) -> Committer {
        Committer {
            script: Script::new(APPLY),
            keys,
            node,
        }
    }

    /// Commits `change` and announces it; `Ok(false)` on a uniqueness conflict.
    pub fn commit(&self, con: &mut Connection, change: &Change) -> redis::RedisResult<bool> {
        let Some(request) = self.request(change) else {
            return Ok(true);
        };
        let answer: String = self.script.arg(request.to_string()).invoke(con)?;
        Ok(answer == "ok")
    }

    /// The checks and writes of `change`, or `None` for a change the cluster does not keep
    /// in Redis (room history stays with each node; room ids need no reservation).
    fn request(&self, change: &Change) -> Option<Value> {
        let k = |name: &str| self.keys.key(name);
        let (checks, ops) = match change {
            Change::PutUser(user) => (
                json!([
                    [k("names"), user.name, "absent"],
                    [k("users"), user.id.to_string(), "absent"]
                ]),
                json!([
                    ["hset", k("users"), user.id.to_string(), wire::user(user)],
                    ["hset", k("names"), user.name, user.id.to_string()],
                    ["hset", k("passwords"), user.id.to_string(), user.hash],
                    ["max", k("last"), "users", user.id.to_string()],
                ]),
            ),
            Change::SetPassword { id, hash } => (
                json!([]),
                json!([["hset", k("passwords"), id.to_string(), hash]]),
            ),
            Change::DeleteUser { id } => (
                json!([]),
                json!([["deluser", self.keys.prefix, id.to_string()]]),
            ),
            Change::PutRoom {
                id,
                epoch,
                name,
                question,
                answer,
            } => (
                json!([]),
                json!([
                    [
                        "hset",
                        k("rooms"),
                        id.to_string(),
                        wire::room(*id, *epoch, name, question, answer)
                    ],
                    ["max", k("last"), "rooms", id.to_string()],
                ]),
            ),
            Change::DeleteRoom { id } => (json!([]), json!([["hdel", k("rooms"), id.to_string()]])),
            Change::PutSnap(snap) => (
                json!([]),
                json!([
                    [
                        "hset",
                        k("snaps"),
                        snap.id.to_string(),
                        wire::snap(snap).to_string()
                    ],
                    ["max", k("last"), "snaps", snap.id.to_string()],
                ]),
            ),
            Change::ReadSnap {
                id,
                received,
                deadline,
            } => (
                json!([]),
                json!([["patch", k("snaps"), id.to_string(),
                        {"received": received, "deadline": deadline}]]),
            ),
            Change::DeleteSnap { id } => (json!([]), json!([["hdel", k("snaps"), id.to_string()]])),
            Change::PutOffline(m) => (
                json!([]),
                json!([
                    ["hset", k("offline"), m.id.to_string(), wire::offline(m)],
                    ["max", k("last"), "offline", m.id.to_string()],
                ]),
            ),
            Change::DeleteOffline { ids } => {
                let ops: Vec<Value> = ids
                    .iter()
                    .map(|id| json!(["hdel", k("offline"), id.to_string()]))
                    .collect();
                (json!([]), Value::Array(ops))
            }
            Change::AppendHistory(_) | Change::TrimHistory { .. } | Change::ReserveRooms { .. } => {
                return None;
            }
        };
        let message = json!({"t": "changed", "node": self.node, "change": wire::change(change)});
        Some(
            json!({"checks": checks, "ops": ops, "stream": self.keys.key("changes"),
                    "keep": STREAM_KEEP.to_string(), "message": message.to_string(),
                    "channel": self.keys.all()}),
        )
    }
}

fn hash_values(con: &mut Connection, key: &str) -> redis::RedisResult<Vec<(String, String)>> {
    redis::cmd("HGETALL").arg(key).query(con)
}

/// Everything durable, as a node starts with it.
pub fn load_snapshot(con: &mut Connection, keys: &Keys) -> redis::RedisResult<Snapshot> {
    let mut snapshot = Snapshot::default();
    let passwords: std::collections::HashMap<String, String> =
        hash_values(con, &keys.key("passwords"))?
            .into_iter()
            .collect();
    for (id, raw) in hash_values(con, &keys.key("users"))? {
        let hash = passwords.get(&id).cloned().unwrap_or_default();
        if let Some(user) = wire::parse(raw.as_bytes()).and_then(|v| wire::user_from(&v, hash)) {
            snapshot.users.push(user);
        }
    }
    snapshot.users.sort_by_key(|u| u.seq);
    for (_, raw) in hash_values(con, &keys.key("rooms"))? {
        if let Some(room) = wire::parse(raw.as_bytes()).and_then(|v| wire::room_from(&v)) {
            snapshot.rooms.push(room);
        }
    }
    snapshot.rooms.sort_by_key(|r| r.id);
    for (_, raw) in hash_values(con, &keys.key("snaps"))? {
        if let Some(snap) = wire::parse(raw.as_bytes()).and_then(|v| wire::snap_from(&v)) {
            snapshot.snaps.push(snap);
        }
    }
    for (_, raw) in hash_values(con, &keys.key("offline"))? {
        if let Some(m) = wire::parse(raw.as_bytes()).and_then(|v| wire::offline_from(&v)) {
            snapshot.offline.push(m);
        }
    }
    snapshot.offline.sort_by_key(|m| (m.sent, m.id));
    for (kind, last) in hash_values(con, &keys.key("last"))? {
        let last: u64 = last.parse().unwrap_or(0);
        match kind.as_str() {
            "users" => snapshot.last_user = last,
            "rooms" => snapshot.last_room = last,
            "snaps" => snapshot.last_snap = last,
            "offline" => snapshot.last_offline = last,
            _ => {}
        }
    }
    Ok(snapshot)
}

/// The temporary rooms with members, and (node, chatclientid, presence) of every connection
/// of the other live nodes.
pub type Roster = (Vec<TempRoom>, Vec<(String, u64, Presence)>);

/// Who is where on the other live nodes, and the temporary rooms that have members.
pub fn load_roster(con: &mut Connection, keys: &Keys, me: &str) -> redis::RedisResult<Roster> {
    let mut presence = Vec::new();
    for (node, _) in hash_values(con, &keys.key("nodes"))? {
        if node == me {
            continue;
        }
        let alive: bool = redis::cmd("EXISTS").arg(keys.alive(&node)).query(con)?;
        if !alive {
            continue;
        }
        for (client, raw) in hash_values(con, &keys.presence(&node))? {
            let state = wire::parse(raw.as_bytes()).and_then(|v| wire::presence_from(&v));
            if let (Ok(client), Some(state)) = (client.parse(), state) {
                presence.push((node.clone(), client, state));
            }
        }
    }
    let occupied: std::collections::HashSet<u64> = presence
        .iter()
        .flat_map(|(_, _, p)| p.rooms.iter().copied())
        .collect();
    let mut rooms = Vec::new();
    for (_, raw) in hash_values(con, &keys.key("temprooms"))? {
        let room = wire::parse(raw.as_bytes()).and_then(|v| wire::temp_room_from(&v));
        if let Some(room) = room.filter(|r| occupied.contains(&r.id)) {
            rooms.push(room);
        }
    }
    rooms.sort_by_key(|r| r.id);
    Ok((rooms, presence))
}

/// The id of the newest entry of the change stream ("0-0" when empty).
pub fn last_change(con: &mut Connection, keys: &Keys) -> redis::RedisResult<String> {
    let newest: Vec<(String, Vec<(String, String)>)> = redis::cmd("XREVRANGE")
        .arg(keys.key("changes"))
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query(con)?;
    Ok(newest
        .into_iter()
        .next()
        .map_or_else(|| "0-0".to_owned(), |(id, _)| id))
}

/// The durable changes committed after stream entry `after`, oldest first, with the id of the
/// last one; `None` when the stream no longer reaches back that far (trimmed).
pub fn changes_since(
    con: &mut Connection,
    keys: &Keys,
    after: &str,
) -> redis::RedisResult<Option<(Vec<Change>, String)>> {
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(keys.key("changes"))
        .arg("-")
        .arg("+")
        .arg("COUNT")
        .arg(1)
        .query(con)?;
    // The oldest entry kept is after `after`: what lay between may have been trimmed.
    if let Some((oldest, _)) = entries.first()
        && after != "0-0"
        && stream_id(oldest) > stream_id(after)
    {
        return Ok(None);
    }
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(keys.key("changes"))
        .arg(format!("({after}"))
        .arg("+")
        .query(con)?;
    let mut last = after.to_owned();
    let mut changes = Vec::new();
    for (id, fields) in entries {
        let change = fields
            .iter()
            .find(|(k, _)| k == "m")
            .and_then(|(_, m)| wire::parse(m.as_bytes()))
            .and_then(|v| wire::change_from(v.get("change")?));
        changes.extend(change);
        last = id;
    }
    Ok(Some((changes, last)))
}

/// A stream id ("ms-seq") as numbers, for ordering.
fn stream_id(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}
