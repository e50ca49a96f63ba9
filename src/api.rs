//! The operator's HTTP surface: the admin REST API under `/api/v1/`, `/metrics` (Prometheus text
//! format) and `/healthz`.
//!
//! The net thread parses a request's head and body into an [`ApiRequest`] here (routing, path
//! decoding, JSON), so malformed requests are answered there and only well-formed ones reach
//! the logic thread. The logic thread answers from the chat core's state with [`answer`]
//! (rendering the core's neutral views as JSON) and sends the [`Reply`] back; no state is
//! shared, so nothing is locked. Authorization is checked before any of this, in
//! `http::route`, so a wrong key never gets this far.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Value, json};

use crate::chat::{ApiDone, Chat, ChatError, ConnId, Dialect, Sent, Sink};
use crate::webhook;

/// Where the admin API lives.
pub const PREFIX: &str = "/api/v1/";

/// Longest `pattern` of a user search, in bytes (as `findusers` allows).
const MAX_PATTERN: usize = 256;

/// What an HTTP request for the operator's surface looks like once its head is parsed: enough
/// to read its body and to route it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiHead {
    pub method: String,
    /// The path, still percent-encoded.
    pub path: String,
    pub query: String,
    pub content_type: Option<String>,
    /// Bytes of body that follow the head (`Content-Length`, already checked against the limit).
    pub body_len: usize,
    /// The connection stays open for the next request after the response.
    pub keep_alive: bool,
}

/// A well-formed request for the logic thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiRequest {
    /// `GET /api/v1/stats`; `net` is the net thread's counters as it forwarded the request.
    Stats { net: NetCounters },
    /// `GET /api/v1/users?online=1&pattern=a*`
    Users {
        online_only: bool,
        pattern: Option<String>,
    },
    /// `GET /api/v1/users/{id}`
    User { id: u64 },
    /// `DELETE /api/v1/users/{id}/connections`
    Disconnect { id: u64 },
    /// `GET /api/v1/rooms`
    Rooms,
    /// `GET /api/v1/rooms/{id}`
    Room { id: u64 },
    /// `POST /api/v1/rooms` with `{"name":...}`: a persistent room.
    CreateRoom { name: String },
    /// `DELETE /api/v1/rooms/{id}`
    DeleteRoom { id: u64 },
    /// `POST /api/v1/send`
    Send {
        to_users: Vec<u64>,
        to_rooms: Vec<u64>,
        text: String,
    },
    /// `GET /healthz`: answered at all means the logic thread is alive.
    Health,
    /// `GET /metrics`
    Metrics { net: NetCounters },
}

/// What the net thread counts, where it happens: plain fields of its own, copied into the
/// requests that report them, so reading them costs the hot path nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetCounters {
    pub accepted: u64,
    pub refused_over_limit: u64,
    pub refused_per_address: u64,
    pub slow_consumers_cut: u64,
    /// Messages refused by a rate limit (the connection's or the address's).
    pub rate_limited: u64,
    pub address_rate_refusals: u64,
    pub rate_limited_cut: u64,
    pub timed_out: u64,
    pub protocol_failures: u64,
    /// Chat messages read from clients, and their payload bytes.
    pub messages_in: u64,
    pub bytes_in: u64,
    /// HTTP requests answered (pages, API, errors), and API requests refused for their key.
    pub http_requests: u64,
    pub unauthorized: u64,
}

/// Upper bounds (seconds) of the logic batch histogram's buckets.
const BATCH_BUCKETS: [f64; 10] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.05, 0.25,
];

/// Upper bounds (seconds) of the store commit histogram's buckets: a commit waits for the
/// disk (fsync), so milliseconds to a second.
const COMMIT_BUCKETS: [f64; 10] = [
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// A Prometheus histogram of durations.
#[derive(Debug, Clone)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Observations at most each bound (cumulative, as Prometheus reports them).
    buckets: Vec<u64>,
    count: u64,
    sum: f64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: vec![0; bounds.len()],
            count: 0,
            sum: 0.0,
        }
    }

    pub fn observe(&mut self, took: Duration) {
        let secs = took.as_secs_f64();
        for (bound, count) in self.bounds.iter().zip(&mut self.buckets) {
            if secs <= *bound {
                *count += 1;
            }
        }
        self.count += 1;
        self.sum += secs;
    }

    fn render(&self, m: &mut String, name: &str, help: &str) {
        let _ = writeln!(m, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (bound, count) in self.bounds.iter().zip(&self.buckets) {
            let _ = writeln!(m, "{name}_bucket{{le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(m, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(m, "{name}_sum {}", self.sum);
        let _ = writeln!(m, "{name}_count {}", self.count);
    }
}

/// What the logic thread counts, owned by it and read only by it.
#[derive(Debug, Clone)]
pub struct LogicCounters {
    pub started: Instant,
    /// Chat requests applied.
    pub requests: u64,
    /// Frame deliveries queued (one frame to one connection), and their bytes.
    pub deliveries: u64,
    pub bytes_out: u64,
    /// How long each batch of events took to apply.
    pub batch: Histogram,
    /// How long the store took per group commit, as it reported; `None` without a store.
    pub commit: Option<Histogram>,
    /// On a cluster node: whether Redis can be reached, and room messages heard from other
    /// nodes (a node hears only rooms it has members in).
    pub cluster: Option<ClusterCounters>,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct ClusterCounters {
    pub link_up: bool,
    pub room_messages_in: u64,
    pub replicas_in: u64,
}

impl LogicCounters {
    /// Counters for a logic thread with a store (`with_store`) or without.
    pub fn new(with_store: bool) -> LogicCounters {
        LogicCounters {
            started: Instant::now(),
            requests: 0,
            deliveries: 0,
            bytes_out: 0,
            batch: Histogram::new(&BATCH_BUCKETS),
            commit: with_store.then(|| Histogram::new(&COMMIT_BUCKETS)),
            cluster: None,
        }
    }
}

/// An HTTP response without its connection header, which the net thread adds (it knows
/// whether the connection stays open).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(status: u16, value: &Value) -> Reply {
        let mut body = serde_json::to_vec(value).expect("a JSON value serializes");
        body.push(b'\n');
        Reply {
            status,
            content_type: "application/json",
            body,
        }
    }

    /// An error: `{"error":{"code":...,"message":...}}`. `code` is stable, for scripts;
    /// `message` is for people.
    pub fn error(status: u16, code: &str, message: &str) -> Reply {
        Reply::json(
            status,
            &json!({ "error": { "code": code, "message": message } }),
        )
    }

    /// The complete response.
    pub fn to_http(&self, keep_alive: bool) -> Vec<u8> {
        let reason = match self.status {
            200 => "OK",
            400 => "Bad Request",
            401 => "Unauthorized",
            404 => "Not Found",
            405 => "Method Not Allowed",
            409 => "Conflict",
            411 => "Length Required",
            413 => "Content Too Large",
            415 => "Unsupported Media Type",
            503 => "Service Unavailable",
            _ => "Error",
        };
        let mut head = format!(
            "HTTP/1.1 {} {reason}\r\ncontent-type: {}\r\ncontent-length: {}\r\nconnection: {}\r\n",
            self.status,
            self.content_type,
            self.body.len(),
            if keep_alive { "keep-alive" } else { "close" }
        );
        if self.status == 401 {
            head.push_str("www-authenticate: Bearer\r\n");
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

/// The body of `POST /api/v1/send`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SendBody {
    #[serde(default)]
    to_users: Vec<u64>,
    #[serde(default)]
    to_rooms: Vec<u64>,
    text: String,
}

/// The body of `POST /api/v1/rooms`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoomBody {
    name: String,
}

/// Routes a request and checks its body. The error is the response to send instead.
pub fn parse(head: &ApiHead, body: &[u8]) -> Result<ApiRequest, Reply> {
    let method = head.method.as_str();
    let only = |allowed: &str, request: ApiRequest| {
        if method == allowed {
            Ok(request)
        } else {
            Err(Reply::error(
                405,
                "method_not_allowed",
                &format!("this endpoint takes {allowed}, not {method}"),
            ))
        }
    };
    match head.path.as_str() {
        "/healthz" => return only("GET", ApiRequest::Health),
        "/metrics" => {
            return only(
                "GET",
                ApiRequest::Metrics {
                    net: NetCounters::default(),
                },
            );
        }
        _ => {}
    }
    let Some(rest) = head.path.strip_prefix(PREFIX) else {
        return Err(not_found(&head.path));
    };
    let segments = rest
        .split('/')
        .map(decode_segment)
        .collect::<Result<Vec<String>, Reply>>()?;
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    match segments[..] {
        ["stats"] => only(
            "GET",
            ApiRequest::Stats {
                net: NetCounters::default(),
            },
        ),
        ["users"] => {
            let (online_only, pattern) = user_query(&head.query)?;
            only(
                "GET",
                ApiRequest::Users {
                    online_only,
                    pattern,
                },
            )
        }
        ["users", id] => only("GET", ApiRequest::User { id: parse_id(id)? }),
        ["users", id, "connections"] => {
            only("DELETE", ApiRequest::Disconnect { id: parse_id(id)? })
        }
        ["rooms"] if method == "POST" => {
            let body: RoomBody = json_body(head, body)?;
            Ok(ApiRequest::CreateRoom { name: body.name })
        }
        ["rooms"] => only("GET", ApiRequest::Rooms),
        ["rooms", id] if method == "DELETE" => Ok(ApiRequest::DeleteRoom { id: parse_id(id)? }),
        ["rooms", id] => only("GET", ApiRequest::Room { id: parse_id(id)? }),
        ["send"] => {
            if method != "POST" {
                return Err(Reply::error(
                    405,
                    "method_not_allowed",
                    "/api/v1/send takes POST",
                ));
            }
            let body: SendBody = json_body(head, body)?;
            if body.text.is_empty() {
                return Err(Reply::error(400, "bad_request", "text is empty"));
            }
            if body.to_users.is_empty() && body.to_rooms.is_empty() {
                return Err(Reply::error(
                    400,
                    "bad_request",
                    "name at least one recipient in to_users or to_rooms",
                ));
            }
            Ok(ApiRequest::Send {
                to_users: body.to_users,
                to_rooms: body.to_rooms,
                text: body.text,
            })
        }
        _ => Err(not_found(&head.path)),
    }
}

fn not_found(path: &str) -> Reply {
    let shown: String = path.chars().take(80).flat_map(char::escape_debug).collect();
    Reply::error(404, "not_found", &format!("no endpoint at '{shown}'"))
}

/// A JSON body of the declared type.
fn json_body<T: for<'de> Deserialize<'de>>(head: &ApiHead, body: &[u8]) -> Result<T, Reply> {
    let json = head.content_type.as_deref().is_some_and(|t| {
        t.split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .eq_ignore_ascii_case("application/json")
    });
    if !json {
        return Err(Reply::error(
            415,
            "unsupported_media_type",
            "the body must be JSON (Content-Type: application/json)",
        ));
    }
    serde_json::from_slice(body).map_err(|e| Reply::error(400, "bad_json", &e.to_string()))
}

/// `%XX` escapes decoded strictly: a stray `%`, a non-hex digit or invalid UTF-8 is a 400.
fn percent_decode(raw: &str) -> Result<String, Reply> {
    let bad = || {
        Reply::error(
            400,
            "bad_path",
            "the path is not valid percent-encoded UTF-8",
        )
    };
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            // Only hex digits: `from_str_radix` would also take a sign (`%+A`).
            let hex = |b: Option<u8>| b.and_then(|b| (b as char).to_digit(16)).ok_or_else(bad);
            let (hi, lo) = (hex(bytes.next())?, hex(bytes.next())?);
            out.push((hi * 16 + lo) as u8);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

/// One path segment, decoded; an empty segment, `.`, `..` or one holding `/` once decoded
/// names no endpoint (404), so no spelling of a path reaches another endpoint.
fn decode_segment(raw: &str) -> Result<String, Reply> {
    let segment = percent_decode(raw)?;
    if segment.is_empty() || segment == "." || segment == ".." || segment.contains('/') {
        return Err(Reply::error(404, "not_found", "no such endpoint"));
    }
    Ok(segment)
}

/// A user or room id: decimal digits that fit 64 bits.
fn parse_id(raw: &str) -> Result<u64, Reply> {
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Reply::error(400, "bad_id", "an id is a decimal number"));
    }
    raw.parse()
        .map_err(|_| Reply::error(400, "bad_id", "the id is too large"))
}

/// `online=1` (or `true`) and `pattern=...` (wildcards `*` and `?`).
fn user_query(query: &str) -> Result<(bool, Option<String>), Reply> {
    let mut online = false;
    let mut pattern = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(&value.replace('+', " "))?;
        match key {
            "online" => {
                online = match value.as_str() {
                    "1" | "true" => true,
                    "0" | "false" | "" => false,
                    _ => return Err(Reply::error(400, "bad_query", "online is 1 or 0")),
                }
            }
            "pattern" if value.len() > MAX_PATTERN => {
                return Err(Reply::error(
                    400,
                    "bad_query",
                    &format!("pattern is longer than {MAX_PATTERN} bytes"),
                ));
            }
            "pattern" => pattern = Some(value),
            _ => {}
        }
    }
    Ok((online, pattern))
}

fn dialect_name(d: Dialect) -> &'static str {
    match d {
        Dialect::Protocol => "protocol",
        Dialect::RoomUrl => "room_url",
        Dialect::Json => "json",
    }
}

/// Answers request of the HTTP connection `http` from the core's state, on the logic thread.
/// Closes and messages it causes go to `out` like any other effect. `None`: the answer waits
/// for the store and comes as `Effect::ApiDone` (see [`done`]).
pub fn answer(
    chat: &mut Chat,
    http: ConnId,
    request: ApiRequest,
    now: u64,
    counters: &LogicCounters,
    hooks: Option<&webhook::Counters>,
    out: &mut dyn Sink,
) -> Option<Reply> {
    let later = |result: Result<(), ChatError>| result.err().map(|e| refusal(&e));
    Some(match request {
        ApiRequest::CreateRoom { name } => return later(chat.api_create_room(http, name, out)),
        ApiRequest::DeleteRoom { id } => return later(chat.api_delete_room(http, id, out)),
        ApiRequest::Health => match counters.cluster {
            // A node cut off from the others serves its own connections only: a load
            // balancer should send new clients elsewhere.
            Some(c) if !c.link_up => Reply::json(
                503,
                &json!({ "status": "degraded", "cluster": "unreachable" }),
            ),
            Some(_) => Reply::json(200, &json!({ "status": "ok", "cluster": "up" })),
            None => Reply::json(200, &json!({ "status": "ok" })),
        },
        ApiRequest::Stats { net } => Reply::json(200, &stats(chat, &net, counters)),
        ApiRequest::Metrics { net } => Reply {
            status: 200,
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: metrics(chat, &net, counters, hooks).into_bytes(),
        },
        ApiRequest::Users {
            online_only,
            pattern,
        } => {
            let users: Vec<Value> = chat
                .user_list(online_only, pattern.as_deref())
                .iter()
                .map(|u| json!({ "id": u.id, "name": u.name, "online": u.online }))
                .collect();
            Reply::json(200, &json!({ "users": users }))
        }
        ApiRequest::User { id } => match chat.user_view(id) {
            None => no_user(id),
            Some(u) => {
                let rooms: Vec<Value> = u
                    .rooms
                    .iter()
                    .map(|(id, name)| json!({ "id": id, "name": name }))
                    .collect();
                Reply::json(
                    200,
                    &json!({
                        "id": u.id,
                        "name": u.name,
                        "online": u.connections > 0,
                        "connections": u.connections,
                        "messages_sent": u.sent,
                        "messages_received": u.received,
                        "rooms": rooms,
                    }),
                )
            }
        },
        ApiRequest::Disconnect { id } => match chat.disconnect_user(id, out) {
            None => no_user(id),
            Some(n) => Reply::json(200, &json!({ "disconnected": n })),
        },
        ApiRequest::Rooms => {
            let rooms: Vec<Value> = chat.room_views().iter().map(room_json).collect();
            Reply::json(200, &json!({ "rooms": rooms }))
        }
        ApiRequest::Room { id } => match (chat.room_view(id), chat.room_member_list(id)) {
            (Some(room), Some(members)) => {
                let mut value = room_json(&room);
                value["members"] = members
                    .iter()
                    .map(|w| json!({ "client": w.client, "user": w.user, "name": w.name }))
                    .collect();
                Reply::json(200, &value)
            }
            _ => Reply::error(404, "room_not_found", &format!("no room {id}")),
        },
        ApiRequest::Send {
            to_users,
            to_rooms,
            text,
        } => {
            match chat.server_send(http, &to_users, &to_rooms, &text, now, out) {
                Some(sent) => sent_reply(&sent),
                // Messages were queued: answered once the store has them.
                None => return None,
            }
        }
    })
}

/// The answer to a request that waited for the store.
pub fn done(result: Result<ApiDone, ChatError>) -> Reply {
    match result {
        Ok(ApiDone::RoomCreated { id }) => Reply::json(200, &json!({ "created": id })),
        Ok(ApiDone::RoomDeleted { id }) => Reply::json(200, &json!({ "deleted": id })),
        Ok(ApiDone::Sent(sent)) => sent_reply(&sent),
        Err(e) => refusal(&e),
    }
}

/// What `POST /api/v1/send` did.
fn sent_reply(sent: &Sent) -> Reply {
    Reply::json(
        200,
        &json!({
            "connections": sent.connections,
            "queued": sent.queued,
            "queue_full": sent.queue_full,
            "failed": sent.failed,
            "unknown": sent.unknown,
        }),
    )
}

/// The core's refusal of an API request, with a status that fits.
fn refusal(e: &ChatError) -> Reply {
    match e {
        ChatError::RoomNotFound => Reply::error(404, "room_not_found", "no such room"),
        ChatError::RoomExists => Reply::error(409, "room_exists", "a room with that name exists"),
        ChatError::QuotaExceeded(_) => Reply::error(
            409,
            "quota_exceeded",
            "the server has as many rooms as it may",
        ),
        ChatError::TooLong(_) => Reply::error(400, "bad_request", "the name is too long"),
        ChatError::BadName => Reply::error(
            400,
            "bad_request",
            "a name is not empty and has no control characters",
        ),
        ChatError::StoreFailed => {
            Reply::error(503, "store_failed", "the store could not commit it")
        }
        _ => Reply::error(503, "unavailable", "try again"),
    }
}

fn no_user(id: u64) -> Reply {
    Reply::error(404, "user_not_found", &format!("no user {id}"))
}

fn room_json(r: &crate::chat::RoomView<'_>) -> Value {
    json!({
        "id": r.id,
        "name": r.name,
        "temporary": r.temporary,
        "needs_answer": r.needs_answer,
        "members": r.members,
    })
}

fn stats(chat: &Chat, net: &NetCounters, logic: &LogicCounters) -> Value {
    let census = chat.census();
    let mut by_dialect = serde_json::Map::new();
    for d in Dialect::ALL {
        by_dialect.insert(dialect_name(d).into(), census.conns[d.index()].into());
    }
    json!({
        "connections": by_dialect,
        "users_online": census.users_online,
        "users": census.users,
        "rooms": census.rooms,
        "messages_in": logic.requests,
        "bytes_in": net.bytes_in,
        "deliveries": logic.deliveries,
        "bytes_out": logic.bytes_out,
        "drops": {
            "slow_consumer": net.slow_consumers_cut,
            "rate_limited": net.rate_limited,
            "rate_limit_close": net.rate_limited_cut,
            "timeout": net.timed_out,
            "protocol_error": net.protocol_failures,
            "over_connection_limit": net.refused_over_limit,
            "over_address_limit": net.refused_per_address,
        },
        "uptime_seconds": logic.started.elapsed().as_secs(),
    })
}

/// The Prometheus text exposition format (version 0.0.4).
fn metrics(
    chat: &Chat,
    net: &NetCounters,
    logic: &LogicCounters,
    hooks: Option<&webhook::Counters>,
) -> String {
    let census = chat.census();
    let mut m = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
        let _ = writeln!(
            m,
            "# HELP websocket_{name} {help}\n# TYPE websocket_{name} {kind}"
        );
        for (labels, value) in samples {
            let _ = writeln!(m, "websocket_{name}{labels} {value}");
        }
    };
    let conns: Vec<(String, u64)> = Dialect::ALL
        .iter()
        .map(|d| {
            (
                format!("{{dialect=\"{}\"}}", dialect_name(*d)),
                census.conns[d.index()],
            )
        })
        .collect();
    let conns: Vec<(&str, u64)> = conns.iter().map(|(l, v)| (l.as_str(), *v)).collect();
    metric(
        "connections",
        "gauge",
        "Open chat connections by dialect.",
        &conns,
    );
    metric(
        "users_online",
        "gauge",
        "Users logged in on at least one connection.",
        &[("", census.users_online)],
    );
    metric("users", "gauge", "Registered users.", &[("", census.users)]);
    metric("rooms", "gauge", "Chatrooms.", &[("", census.rooms)]);
    metric(
        "connections_accepted_total",
        "counter",
        "TCP connections accepted.",
        &[("", net.accepted)],
    );
    metric(
        "connections_refused_total",
        "counter",
        "Connections refused at accept, by reason.",
        &[
            ("{reason=\"limit\"}", net.refused_over_limit),
            ("{reason=\"per_address\"}", net.refused_per_address),
        ],
    );
    metric(
        "messages_received_total",
        "counter",
        "Chat messages read from clients.",
        &[("", net.messages_in)],
    );
    metric(
        "received_bytes_total",
        "counter",
        "Payload bytes of chat messages read from clients.",
        &[("", net.bytes_in)],
    );
    metric(
        "requests_applied_total",
        "counter",
        "Chat requests applied by the logic thread.",
        &[("", logic.requests)],
    );
    metric(
        "deliveries_total",
        "counter",
        "Frames queued for a connection (one frame to one connection).",
        &[("", logic.deliveries)],
    );
    metric(
        "sent_bytes_total",
        "counter",
        "Bytes of frames queued for connections.",
        &[("", logic.bytes_out)],
    );
    metric(
        "slow_consumers_total",
        "counter",
        "Connections closed for not reading what was sent to them.",
        &[("", net.slow_consumers_cut)],
    );
    metric(
        "rate_limited_total",
        "counter",
        "Messages refused by a rate limit.",
        &[("", net.rate_limited)],
    );
    metric(
        "rate_limit_closes_total",
        "counter",
        "Connections closed for flooding past the rate limit.",
        &[("", net.rate_limited_cut)],
    );
    metric(
        "timeouts_total",
        "counter",
        "Connections dropped at a deadline (handshake, close, idle).",
        &[("", net.timed_out)],
    );
    metric(
        "protocol_errors_total",
        "counter",
        "Connections failed for a WebSocket protocol violation.",
        &[("", net.protocol_failures)],
    );
    metric(
        "http_requests_total",
        "counter",
        "HTTP requests answered.",
        &[("", net.http_requests)],
    );
    metric(
        "api_unauthorized_total",
        "counter",
        "API requests refused for a missing or wrong key.",
        &[("", net.unauthorized)],
    );
    metric(
        "uptime_seconds",
        "gauge",
        "Seconds since the logic thread started.",
        &[("", logic.started.elapsed().as_secs())],
    );
    if let Some(h) = hooks {
        let n = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        metric(
            "webhook_dropped_total",
            "counter",
            "Webhook events dropped because a receiver's queue was full.",
            &[("", n(&h.dropped))],
        );
        metric(
            "webhook_delivered_total",
            "counter",
            "Webhook events a receiver accepted (2xx).",
            &[("", n(&h.delivered))],
        );
        metric(
            "webhook_retries_total",
            "counter",
            "Webhook requests repeated after a failure.",
            &[("", n(&h.retried))],
        );
        metric(
            "webhook_failed_total",
            "counter",
            "Webhook events given up after every retry failed.",
            &[("", n(&h.failed))],
        );
    }
    if let Some(c) = &logic.cluster {
        metric(
            "cluster_link_up",
            "gauge",
            "1 while this node reaches Redis (and so the other nodes).",
            &[("", u64::from(c.link_up))],
        );
        metric(
            "cluster_room_messages_received_total",
            "counter",
            "Room messages heard from other nodes.",
            &[("", c.room_messages_in)],
        );
        metric(
            "cluster_updates_received_total",
            "counter",
            "Everything heard from other nodes (presence, changes, messages).",
            &[("", c.replicas_in)],
        );
    }
    logic.batch.render(
        &mut m,
        "websocket_logic_batch_seconds",
        "Time the logic thread took to apply one batch of events.",
    );
    if let Some(commit) = &logic.commit {
        commit.render(
            &mut m,
            "websocket_store_commit_seconds",
            "Time the store thread took per group commit.",
        );
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(method: &str, path: &str) -> ApiHead {
        ApiHead {
            method: method.into(),
            path: path.into(),
            query: String::new(),
            content_type: Some("application/json".into()),
            body_len: 0,
            keep_alive: true,
        }
    }

    fn status(method: &str, path: &str, body: &str) -> u16 {
        match parse(&head(method, path), body.as_bytes()) {
            Ok(_) => 200,
            Err(r) => r.status,
        }
    }

    #[test]
    fn routes_and_refusals() {
        assert_eq!(
            parse(&head("GET", "/api/v1/users/7"), b""),
            Ok(ApiRequest::User { id: 7 })
        );
        assert_eq!(
            parse(&head("DELETE", "/api/v1/users/7/connections"), b""),
            Ok(ApiRequest::Disconnect { id: 7 })
        );
        assert_eq!(status("POST", "/api/v1/users/7", ""), 405);
        assert_eq!(status("GET", "/api/v1/nope", ""), 404);
        assert_eq!(status("GET", "/api/v1/users/../stats", ""), 404);
        assert_eq!(status("GET", "/api/v1/users/%2e%2e", ""), 404);
        assert_eq!(status("GET", "/api/v1/users/%2F", ""), 404);
        assert_eq!(status("GET", "/api/v1/users/%zz", ""), 400);
        assert_eq!(status("GET", "/api/v1/users/%ff", ""), 400);
        assert_eq!(status("GET", "/api/v1/users/%", ""), 400);
        assert_eq!(
            status("GET", "/api/v1/users/99999999999999999999999", ""),
            400
        );
        assert_eq!(status("GET", "/api/v1/users/-1", ""), 400);
        assert_eq!(status("GET", "/api/v1//users", ""), 404);
        assert_eq!(status("POST", "/api/v1/send", "{"), 400);
        assert_eq!(status("POST", "/api/v1/send", r#"{"text":"hi"}"#), 400);
        assert_eq!(
            status("POST", "/api/v1/send", r#"{"to_users":[1],"text":"hi"}"#),
            200
        );
        assert_eq!(
            status("POST", "/api/v1/send", r#"{"to_users":[1e99],"text":"hi"}"#),
            400
        );
        let mut form = head("POST", "/api/v1/send");
        form.content_type = Some("application/x-www-form-urlencoded".into());
        assert_eq!(parse(&form, b"{}").unwrap_err().status, 415);
    }

    #[test]
    fn user_queries() {
        let mut h = head("GET", "/api/v1/users");
        h.query = "online=1&pattern=a%2A".into();
        assert_eq!(
            parse(&h, b""),
            Ok(ApiRequest::Users {
                online_only: true,
                pattern: Some("a*".into())
            })
        );
        h.query = "online=maybe".into();
        assert_eq!(parse(&h, b"").unwrap_err().status, 400);
    }

    #[test]
    fn histogram_is_cumulative() {
        let mut h = Histogram::new(&BATCH_BUCKETS);
        h.observe(Duration::from_micros(70));
        h.observe(Duration::from_secs(1));
        assert_eq!(h.buckets[0], 0);
        assert_eq!(h.buckets[1], 1);
        assert_eq!(*h.buckets.last().unwrap(), 1);
        assert_eq!(h.count, 2);
        let mut text = String::new();
        h.render(&mut text, "x", "help");
        assert!(
            text.contains("x_bucket{le=\"+Inf\"} 2\nx_sum 1.00007\nx_count 2\n"),
            "{text}"
        );
    }
}
