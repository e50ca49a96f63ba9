//! HTTP/1.1 request heads: parsing (with `httparse`), routing, and the few responses we send.
//!
//! The server speaks just enough HTTP to serve the chat page, to upgrade to WebSocket, and to
//! answer the operator's API (`/api/v1/`, `/metrics`, `/healthz`, see `api`). Page and error
//! responses close the connection (`Connection: close`); API requests may carry a body
//! (`Content-Length`, bounded; chunked bodies get 411) and keep the connection open for the
//! next request, as curl-style scripts and load balancers expect. Every refusal carries a
//! one-line body saying what exactly was wrong, so a person debugging a client need not guess.

use std::net::{IpAddr, SocketAddr};

use tungstenite::handshake::derive_accept_key;

use crate::api::{ApiHead, Reply};
use crate::chat::{Entry, MAX_PAGE, Secret};

/// The browser chat page, embedded in the binary.
pub const PAGE: &str = include_str!("page/index.html");

/// The subprotocol of the command protocol; selected when a client offers it.
pub const SUBPROTOCOL: &str = "chatroom-protocol";

/// The subprotocol of the JSON dialect: offered on any path, it selects that dialect.
pub const JSON_SUBPROTOCOL: &str = "gtchat-json";

/// The path of the JSON dialect.
pub const JSON_PATH: &str = "/json";

/// Most headers a request head may carry.
const MAX_HEADERS: usize = 64;

/// Longest room name and nickname accepted on the room URL endpoint, in bytes.
pub const MAX_ROOM_URL_FIELD: usize = 128;

/// What the bytes received so far amount to.
#[derive(Debug, PartialEq, Eq)]
pub enum Head {
    /// More bytes are needed.
    Partial,
    /// The head is complete: `len` bytes of head, then whatever the client sent after it.
    Complete { len: usize, route: Route },
    /// A response to send before closing (malformed, oversized, or refused requests).
    Reject(Response),
}

/// Where a complete request goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// Serve a plain HTTP response and close.
    Respond(Response),
    /// Switch to WebSocket: send `response` (a `101`), then provide `service`.
    Upgrade { response: Vec<u8>, service: Service },
    /// An authorized request for the operator's API: read its body, then answer it.
    Api(ApiHead),
}

/// What a WebSocket connection is for.
#[derive(Debug, PartialEq, Eq)]
pub enum Service {
    /// A chat dialect, handled by the logic thread.
    Chat(Entry),
    /// Echo every message back (conformance testing only, off unless configured).
    Echo,
}

/// A complete HTTP response, ready to write.
#[derive(Debug, PartialEq, Eq)]
pub struct Response(pub Vec<u8>);

impl Response {
    /// For an error response (4xx, 5xx): its status and the one-line reason in its body, for
    /// the log. `None` for anything else.
    pub fn error_summary(&self) -> Option<(u16, &str)> {
        let status: u16 = std::str::from_utf8(self.0.get(9..12)?).ok()?.parse().ok()?;
        if status < 400 {
            return None;
        }
        let body_at = self.0.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
        let body = std::str::from_utf8(&self.0[body_at..]).ok()?;
        Some((status, body.trim_end()))
    }
}

/// What the router needs from the configuration.
#[derive(Clone, Debug, Default)]
pub struct Routes {
    /// Largest request head; 431 past it.
    pub max_head: usize,
    /// Path of the echo endpoint, if enabled.
    pub echo_path: Option<String>,
    /// Browser origins (`scheme://host[:port]`) allowed to open WebSockets besides the server's
    /// own; `*` allows any.
    pub allowed_origins: Vec<String>,
    /// The server's own public origins (`--public-url`).
    pub public_origins: Vec<String>,
    /// The bearer token the API takes (`--api-key`, else the server password).
    pub api_key: Secret,
    /// Largest API request body; 413 past it.
    pub max_body: usize,
}

/// Parses the request head at the start of `buf`.
pub fn parse(buf: &[u8], routes: &Routes) -> Head {
    let max_head = routes.max_head;
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Partial) if buf.len() >= max_head => Head::Reject(too_large(max_head)),
        Ok(httparse::Status::Partial) => Head::Partial,
        Ok(httparse::Status::Complete(len)) if len > max_head => Head::Reject(too_large(max_head)),
        Ok(httparse::Status::Complete(len)) => Head::Complete {
            len,
            route: route(&req, routes),
        },
        Err(httparse::Error::TooManyHeaders) => Head::Reject(error(
            431,
            &format!("more than {MAX_HEADERS} request headers"),
        )),
        Err(e) => Head::Reject(error(400, &format!("malformed HTTP request head: {e}"))),
    }
}

fn too_large(max_head: usize) -> Response {
    error(431, &format!("request head larger than {max_head} bytes"))
}

/// The client address a trusted reverse proxy reports: the last `X-Forwarded-For` entry (the
/// one that proxy appended; earlier ones came from the client and may be forged). `None` if
/// the head cannot be parsed or carries no usable address.
pub fn forwarded_for(head: &[u8]) -> Option<IpAddr> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    req.parse(head).ok()?;
    let value = req
        .headers
        .iter()
        .rev()
        .find(|h| h.name.eq_ignore_ascii_case("x-forwarded-for"))?
        .value;
    let last = std::str::from_utf8(value).ok()?.rsplit(',').next()?.trim();
    last.parse::<IpAddr>()
        .ok()
        .or_else(|| last.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

/// Client-supplied text (a path, an origin) made safe and short for a response body or a log.
fn quote(bytes: &[u8]) -> String {
    const MAX: usize = 80;
    let text = String::from_utf8_lossy(bytes);
    let mut quoted: String = text
        .chars()
        .take(MAX)
        .flat_map(char::escape_debug)
        .collect();
    if text.chars().count() > MAX {
        quoted.push('…');
    }
    format!("'{quoted}'")
}

fn header<'a>(req: &'a httparse::Request, name: &str) -> Option<&'a [u8]> {
    req.headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
}

/// True if the comma-separated header `name` contains `token` (case-insensitive).
fn header_has_token(req: &httparse::Request, name: &str, token: &str) -> bool {
    req.headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .flat_map(|h| h.value.split(|&b| b == b','))
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// How many times header `name` occurs.
fn header_count(req: &httparse::Request, name: &str) -> usize {
    req.headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .count()
}

fn route(req: &httparse::Request, routes: &Routes) -> Route {
    let method = req.method.unwrap_or_default();
    let target = req.path.unwrap_or_default();
    // Absolute form (`GET http://host/path`), which servers must accept (RFC 7230 §5.3.2):
    // route on its path, as if it had come in origin form.
    let target = match target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"))
        .or_else(|| target.strip_prefix("ws://"))
        .or_else(|| target.strip_prefix("wss://"))
    {
        Some(rest) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => target,
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));

    // RFC 7230 §5.4: an HTTP/1.1 request without exactly one Host is a bad request.
    if req.version == Some(1) && header_count(req, "host") != 1 {
        return Route::Respond(error(
            400,
            "an HTTP/1.1 request needs exactly one Host header",
        ));
    }
    if header_has_token(req, "upgrade", "websocket") {
        if method != "GET" || req.version != Some(1) {
            return Route::Respond(error(
                400,
                "a WebSocket upgrade must be a GET request over HTTP/1.1",
            ));
        }
        // Two Origins: which one would a check believe? Neither.
        if header_count(req, "origin") > 1 {
            return Route::Respond(error(
                400,
                "a WebSocket upgrade may carry one Origin header",
            ));
        }
        if !origin_allowed(req, routes) {
            let origin = quote(header(req, "origin").unwrap_or_default());
            return Route::Respond(error(
                403,
                &format!(
                    "pages from origin {origin} may not open WebSockets here (not this \
                     server's own origin, nor allowed by --public-url or --allow-origin)"
                ),
            ));
        }
        return upgrade(req, path, query, routes.echo_path.as_deref());
    }
    if path == "/healthz" || path == "/metrics" || path == "/api" || path.starts_with("/api/") {
        return api_route(req, method, path, query, routes);
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => {
            let method = quote(method.as_bytes());
            return Route::Respond(error(405, &format!("method {method} not allowed; use GET")));
        }
    };
    match path {
        "/" | "/index.html" | "/example.html" => Route::Respond(page(head_only)),
        _ => Route::Respond(error(
            404,
            &format!(
                "no page at {}; the chat page is / and WebSockets need an upgrade request",
                quote(path.as_bytes())
            ),
        )),
    }
}

/// A request for the operator's surface: the API needs `Authorization: Bearer <key>` (checked
/// here, in constant time, so a wrong key reaches nothing further and is never logged); a body
/// needs a `Content-Length` within the limit.
fn api_route(
    req: &httparse::Request,
    method: &str,
    path: &str,
    query: &str,
    routes: &Routes,
) -> Route {
    let refuse = |reply: Reply| Route::Respond(Response(reply.to_http(false)));
    if path.starts_with("/api") {
        let token = header(req, "authorization")
            .and_then(|v| {
                let v = v.trim_ascii();
                (v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer ")).then(|| &v[7..])
            })
            .map(|t| Secret::new(t.trim_ascii()));
        if !token.is_some_and(|t| routes.api_key.matches(&t)) {
            return refuse(Reply::error(
                401,
                "unauthorized",
                "send Authorization: Bearer <api key>",
            ));
        }
    }
    if header(req, "transfer-encoding").is_some() {
        return refuse(Reply::error(
            411,
            "length_required",
            "send the body with a Content-Length, not chunked",
        ));
    }
    let lengths: Vec<&[u8]> = req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("content-length"))
        .map(|h| h.value.trim_ascii())
        .collect();
    let body_len = match lengths.first() {
        None => 0,
        Some(first) if lengths.iter().any(|l| l != first) => {
            return refuse(Reply::error(
                400,
                "bad_request",
                "conflicting Content-Length headers",
            ));
        }
        Some(len) => match std::str::from_utf8(len)
            .ok()
            .filter(|l| l.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|l| l.parse::<usize>().ok())
        {
            None => {
                return refuse(Reply::error(
                    400,
                    "bad_request",
                    "Content-Length is not a number",
                ));
            }
            Some(n) if n > routes.max_body => {
                return refuse(Reply::error(
                    413,
                    "payload_too_large",
                    &format!("the body is larger than {} bytes", routes.max_body),
                ));
            }
            Some(n) => n,
        },
    };
    let keep_alive = match req.version {
        Some(1) => !header_has_token(req, "connection", "close"),
        _ => header_has_token(req, "connection", "keep-alive"),
    };
    Route::Api(ApiHead {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        content_type: header(req, "content-type").map(|t| String::from_utf8_lossy(t).into_owned()),
        body_len,
        keep_alive,
    })
}

/// Cross-site WebSocket hijacking defence: a browser always sends `Origin`, and a page from
/// another site must not act with its visitor's network position. Requests without `Origin`
/// (non-browser clients) are allowed; so are the listed origins (`--allow-origin`), the
/// server's public origins (`--public-url`), and a page that names the server by an IP
/// address or `localhost`, exactly as its `Host` does. A page from any other host name is
/// refused even when `Host` agrees: with DNS rebinding, an attacker's name resolves to this
/// server and the attacker's page controls both headers.
fn origin_allowed(req: &httparse::Request, routes: &Routes) -> bool {
    let Some(origin) = header(req, "origin") else {
        return true;
    };
    let origin = origin.trim_ascii().to_ascii_lowercase();
    let listed = |list: &[String]| {
        list.iter().any(|a| {
            a == "*"
                || a.trim_end_matches('/')
                    .as_bytes()
                    .eq_ignore_ascii_case(&origin)
        })
    };
    if listed(&routes.allowed_origins) || listed(&routes.public_origins) {
        return true;
    }
    let authority = origin
        .strip_prefix(b"http://")
        .or_else(|| origin.strip_prefix(b"https://"));
    match (authority, header(req, "host")) {
        (Some(authority), Some(host)) => {
            authority.eq_ignore_ascii_case(host.trim_ascii()) && names_no_dns(authority)
        }
        _ => false,
    }
}

/// True if `authority` (`host[:port]`) names its host without DNS: an IP literal, or
/// `localhost` (which browsers resolve locally), so no rebinding can stand behind it.
fn names_no_dns(authority: &[u8]) -> bool {
    let Ok(authority) = std::str::from_utf8(authority) else {
        return false;
    };
    let host = if let Some(rest) = authority.strip_prefix('[') {
        match rest.split_once(']') {
            Some((v6, _)) => return v6.parse::<std::net::Ipv6Addr>().is_ok(),
            None => return false,
        }
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    host == "localhost" || host.parse::<std::net::Ipv4Addr>().is_ok()
}

/// A `Sec-WebSocket-Key` must be 16 bytes in base64 (RFC 6455 §4.2.1): 22 characters of the
/// alphabet, the last carrying no stray bits, then `==`.
fn valid_key(key: &[u8]) -> bool {
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let key = key.trim_ascii();
    key.len() == 24
        && key.ends_with(b"==")
        && key[..22].iter().all(|b| B64.contains(b))
        && B64
            .iter()
            .position(|&b| b == key[21])
            .is_some_and(|v| v & 0xf == 0)
}

fn upgrade(req: &httparse::Request, path: &str, query: &str, echo_path: Option<&str>) -> Route {
    if header(req, "sec-websocket-version") != Some(b"13") {
        let mut r = error(426, "this server speaks WebSocket version 13 (RFC 6455)").0;
        // The required header goes in front of the blank line that ends the head.
        let end = r.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(0) + 2;
        r.splice(end..end, b"sec-websocket-version: 13\r\n".iter().copied());
        return Route::Respond(Response(r));
    }
    let key = match header(req, "sec-websocket-key") {
        Some(k) if valid_key(k) && header_has_token(req, "connection", "upgrade") => k.trim_ascii(),
        _ => {
            return Route::Respond(error(
                400,
                "a WebSocket upgrade needs Connection: Upgrade and a Sec-WebSocket-Key of 16 \
                 bytes in base64",
            ));
        }
    };
    let json =
        path == JSON_PATH || header_has_token(req, "sec-websocket-protocol", JSON_SUBPROTOCOL);
    let service = if echo_path == Some(path) {
        Service::Echo
    } else if json {
        Service::Chat(Entry::Json)
    } else if let Some(rest) = path.strip_prefix("/ws/chat/") {
        match room_endpoint(rest, query) {
            Ok(endpoint) => Service::Chat(endpoint),
            Err(why) => return Route::Respond(error(400, &why)),
        }
    } else {
        Service::Chat(Entry::Protocol)
    };
    let subprotocol = match service {
        Service::Chat(Entry::Protocol) => {
            header_has_token(req, "sec-websocket-protocol", SUBPROTOCOL).then_some(SUBPROTOCOL)
        }
        Service::Chat(Entry::Json) => {
            header_has_token(req, "sec-websocket-protocol", JSON_SUBPROTOCOL)
                .then_some(JSON_SUBPROTOCOL)
        }
        _ => None,
    };
    let mut response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
         sec-websocket-accept: {}\r\n",
        derive_accept_key(key)
    );
    if let Some(subprotocol) = subprotocol {
        response.push_str("sec-websocket-protocol: ");
        response.push_str(subprotocol);
        response.push_str("\r\n");
    }
    response.push_str("\r\n");
    Route::Upgrade {
        response: response.into_bytes(),
        service,
    }
}

/// `{room}/?nickname={nickname}` (the trailing slash is optional), both percent-decoded. The
/// error is the one-line reason for the 400.
fn room_endpoint(rest: &str, query: &str) -> Result<Entry, String> {
    let room = rest.strip_suffix('/').unwrap_or(rest);
    let nickname = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("nickname="))
        .ok_or("missing nickname: the room URL is /ws/chat/{room}/?nickname={nickname}")?;
    let room = room_url_field("room name", room)?;
    let nickname = room_url_field("nickname", nickname)?;
    // `: ` separates a name from its line in what room-URL clients read, so a nickname
    // holding it could forge a line from someone else.
    if nickname.contains(": ") {
        return Err("the nickname contains \": \", which would let it forge lines".into());
    }
    // `history=N`: the room's last N kept messages (at most a page) before the live ones.
    let history = match query.split('&').find_map(|kv| kv.strip_prefix("history=")) {
        None => 0,
        Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => n
            .parse::<u64>()
            .map_or(MAX_PAGE, |n| (n as usize).min(MAX_PAGE)),
        Some(_) => {
            return Err(format!(
                "history must be a number of messages (0 to {MAX_PAGE})"
            ));
        }
    };
    Ok(Entry::RoomUrl {
        room,
        nickname,
        history,
    })
}

/// One percent-decoded field of the room URL, checked: not empty, at most
/// [`MAX_ROOM_URL_FIELD`] bytes, no `/`, no control character.
fn room_url_field(what: &str, raw: &str) -> Result<String, String> {
    let value = percent_decode(raw)
        .map_err(|()| format!("the {what} is not valid percent-encoded UTF-8"))?;
    if value.is_empty() {
        Err(format!("the {what} is empty"))
    } else if value.len() > MAX_ROOM_URL_FIELD {
        Err(format!(
            "the {what} is {} bytes long; at most {MAX_ROOM_URL_FIELD} are allowed",
            value.len()
        ))
    } else if value.contains('/') {
        Err(format!("the {what} contains '/'"))
    } else if value.chars().any(char::is_control) {
        Err(format!("the {what} contains a control character"))
    } else {
        Ok(value)
    }
}

/// Decodes `%XX` escapes (and `+` as space, as browsers encode query values) into UTF-8.
fn percent_decode(s: &str) -> Result<String, ()> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'%' => {
                let digit = |b: Option<u8>| match b {
                    // Only hex digits: `from_str_radix` would also take a sign (`%+A`).
                    Some(b) => (b as char).to_digit(16).ok_or(()),
                    None => Err(()),
                };
                let (hi, lo) = (digit(bytes.next())?, digit(bytes.next())?);
                out.push((hi * 16 + lo) as u8);
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
    }
    String::from_utf8(out).map_err(|_| ())
}

fn head(status: u16, reason: &str, content_type: &str, len: usize) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {len}\r\n\
         connection: close\r\n\r\n"
    )
    .into_bytes()
}

fn page(head_only: bool) -> Response {
    let mut r = head(200, "OK", "text/html; charset=utf-8", PAGE.len());
    if !head_only {
        r.extend_from_slice(PAGE.as_bytes());
    }
    Response(r)
}

/// A plain-text error response: the standard reason phrase in the status line, and `detail`,
/// one line saying what exactly was wrong, as the body.
pub fn error(status: u16, detail: &str) -> Response {
    let reason = match status {
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        _ => "Error",
    };
    let body = format!("{detail}\r\n");
    let mut r = head(status, reason, "text/plain; charset=utf-8", body.len());
    r.extend_from_slice(body.as_bytes());
    Response(r)
}

/// The answer to plain HTTP on a TLS port: a browser shows the hint.
pub fn tls_required() -> Response {
    let body = "this port speaks TLS; use https:// or wss://\r\n";
    let mut r = head(400, "Bad Request", "text/plain; charset=utf-8", body.len());
    r.extend_from_slice(body.as_bytes());
    Response(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(head: &Head) -> u16 {
        let bytes = match head {
            Head::Reject(Response(b))
            | Head::Complete {
                route: Route::Respond(Response(b)),
                ..
            } => b,
            Head::Complete {
                route: Route::Upgrade { response, .. },
                ..
            } => response,
            Head::Partial => return 0,
            Head::Complete {
                route: Route::Api(_),
                ..
            } => return 1,
        };
        std::str::from_utf8(&bytes[9..12]).unwrap().parse().unwrap()
    }

    fn routes() -> Routes {
        Routes {
            max_head: 8192,
            echo_path: Some("/echo".into()),
            allowed_origins: vec!["https://chat.example".into()],
            public_origins: vec!["https://public.example".into()],
            api_key: Secret::new(*b"key"),
            max_body: 100,
        }
    }

    fn p(req: &str) -> Head {
        parse(req.as_bytes(), &routes())
    }

    const WS: &str = "Host: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
                      Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

    #[test]
    fn serves_page_and_errors() {
        assert_eq!(status(&p("GET / HTTP/1.1\r\nHost: x\r\n\r\n")), 200);
        assert_eq!(
            status(&p("GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n")),
            200
        );
        assert_eq!(
            status(&p("HEAD /example.html HTTP/1.1\r\nHost: x\r\n\r\n")),
            200
        );
        assert_eq!(status(&p("GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")), 404);
        assert_eq!(status(&p("POST / HTTP/1.1\r\nHost: x\r\n\r\n")), 405);
        // RFC 7230 §5.4: no Host, or two, is a bad request; HTTP/1.0 needs none.
        assert_eq!(status(&p("GET / HTTP/1.1\r\n\r\n")), 400);
        assert_eq!(
            status(&p("GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n")),
            400
        );
        assert_eq!(status(&p("GET / HTTP/1.0\r\n\r\n")), 200);
        assert_eq!(status(&p("\x01\x02 garbage\r\n\r\n")), 400);
        assert_eq!(p("GET / HTTP/1.1\r\nHost: x\r\n"), Head::Partial);
    }

    #[test]
    fn head_has_no_body() {
        let Head::Complete {
            route: Route::Respond(Response(r)),
            ..
        } = p("HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
        else {
            panic!()
        };
        assert!(r.ends_with(b"\r\n\r\n"));
        let text = String::from_utf8(r).unwrap();
        assert!(text.contains(&format!("content-length: {}", PAGE.len())));
    }

    #[test]
    fn oversized_heads_get_431() {
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(9000));
        assert_eq!(status(&p(&big)), 431);
        let many: String = (0..100).map(|i| format!("X{i}: y\r\n")).collect();
        assert_eq!(status(&p(&format!("GET / HTTP/1.1\r\n{many}\r\n"))), 431);
    }

    #[test]
    fn upgrades_with_accept_key_and_subprotocol() {
        let h = p(&format!(
            "GET / HTTP/1.1\r\n{WS}Sec-WebSocket-Protocol: foo, chatroom-protocol\r\n\r\n"
        ));
        let Head::Complete {
            route: Route::Upgrade { response, service },
            ..
        } = h
        else {
            panic!("{h:?}")
        };
        let text = String::from_utf8(response).unwrap();
        assert!(text.starts_with("HTTP/1.1 101 "));
        assert!(text.contains("sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(text.contains("sec-websocket-protocol: chatroom-protocol\r\n"));
        assert_eq!(service, Service::Chat(Entry::Protocol));

        let h = p(&format!("GET /anything HTTP/1.1\r\n{WS}\r\n"));
        let Head::Complete {
            route: Route::Upgrade { response, .. },
            ..
        } = h
        else {
            panic!()
        };
        assert!(!String::from_utf8(response).unwrap().contains("protocol"));
    }

    #[test]
    fn bad_upgrades_are_refused() {
        let v8 = WS.replace("Version: 13", "Version: 8");
        let h = p(&format!("GET / HTTP/1.1\r\n{v8}\r\n"));
        assert_eq!(status(&h), 426);
        let Head::Complete {
            route: Route::Respond(Response(r)),
            ..
        } = h
        else {
            panic!()
        };
        assert!(
            String::from_utf8(r)
                .unwrap()
                .contains("sec-websocket-version: 13\r\n")
        );
        let nokey = WS.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "");
        assert_eq!(status(&p(&format!("GET / HTTP/1.1\r\n{nokey}\r\n"))), 400);
        assert_eq!(status(&p(&format!("POST / HTTP/1.1\r\n{WS}\r\n"))), 400);
        assert_eq!(status(&p(&format!("GET / HTTP/1.0\r\n{WS}\r\n"))), 400);
    }

    #[test]
    fn routes_echo_and_room_urls() {
        let dialect = |path: &str| match p(&format!("GET {path} HTTP/1.1\r\n{WS}\r\n")) {
            Head::Complete {
                route: Route::Upgrade { service, .. },
                ..
            } => Some(service),
            _ => None,
        };
        assert_eq!(dialect("/echo"), Some(Service::Echo));
        let room = |r: &str, n: &str| {
            Some(Service::Chat(Entry::RoomUrl {
                room: r.into(),
                nickname: n.into(),
                history: 0,
            }))
        };
        assert_eq!(
            dialect("/ws/chat/Room1/?nickname=ann"),
            room("Room1", "ann")
        );
        assert_eq!(dialect("/ws/chat/Room1?nickname=ann"), room("Room1", "ann"));
        assert_eq!(
            dialect("/ws/chat/caf%C3%A9/?nickname=J+D%20x"),
            room("café", "J D x")
        );
        assert_eq!(dialect("/ws/chat/Room1/?nickname="), None);
        assert_eq!(dialect("/ws/chat/Room1/"), None);
        assert_eq!(dialect("/ws/chat/%FF/?nickname=a"), None);
        assert_eq!(dialect("/ws/chat/%4/?nickname=a"), None);
        let long = "x".repeat(MAX_ROOM_URL_FIELD + 1);
        assert_eq!(dialect(&format!("/ws/chat/{long}/?nickname=a")), None);
        assert_eq!(dialect(&format!("/ws/chat/r/?nickname={long}")), None);
    }

    /// The body of the response to `req`, which must be an error.
    fn reason(req: &str) -> (u16, String) {
        let resp = match p(req) {
            Head::Reject(r)
            | Head::Complete {
                route: Route::Respond(r),
                ..
            } => r,
            other => panic!("{other:?}"),
        };
        let (status, body) = resp.error_summary().expect("an error response");
        (status, body.to_string())
    }

    #[test]
    fn refusals_say_why_in_one_line() {
        let room = |url: &str| reason(&format!("GET {url} HTTP/1.1\r\n{WS}\r\n"));
        let (status, missing) = room("/ws/chat/r/");
        assert_eq!(status, 400);
        assert!(missing.starts_with("missing nickname"), "{missing}");
        let long = "x".repeat(MAX_ROOM_URL_FIELD + 1);
        let (_, too_long) = room(&format!("/ws/chat/r/?nickname={long}"));
        assert_eq!(
            too_long,
            "the nickname is 129 bytes long; at most 128 are allowed"
        );
        assert_eq!(
            room("/ws/chat/%FF/?nickname=a").1,
            "the room name is not valid percent-encoded UTF-8"
        );
        assert_eq!(room("/ws/chat/r/?nickname=").1, "the nickname is empty");
        let (status, body) = reason("GET /nope HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(status, 404);
        assert!(body.starts_with("no page at '/nope'"), "{body}");
        let (status, body) = reason(&format!(
            "GET / HTTP/1.1\r\n{WS}Origin: http://evil\r\n\r\n"
        ));
        assert_eq!(status, 403);
        assert!(body.contains("'http://evil'"), "{body}");
        for (_, body) in [room("/ws/chat/r/"), reason("\x01 garbage\r\n\r\n")] {
            assert!(!body.contains('\n') && !body.is_empty(), "{body:?}");
        }
        let v8 = WS.replace("Version: 13", "Version: 8");
        assert_eq!(reason(&format!("GET / HTTP/1.1\r\n{v8}\r\n")).0, 426);
    }

    #[test]
    fn api_requests_need_the_key_and_a_bounded_body() {
        let get = |auth: &str| {
            status(&p(&format!(
                "GET /api/v1/stats HTTP/1.1\r\nHost: x\r\n{auth}\r\n"
            )))
        };
        assert_eq!(get(""), 401);
        assert_eq!(get("Authorization: Bearer nope\r\n"), 401);
        assert_eq!(get("Authorization: Basic key\r\n"), 401);
        assert_eq!(get("Authorization: Bearer key\r\n"), 1);
        assert_eq!(get("authorization: bearer key\r\n"), 1);
        // Health and metrics are open, like the page.
        assert_eq!(status(&p("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")), 1);
        let post = |extra: &str| {
            p(&format!(
                "POST /api/v1/send HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer key\r\n{extra}\r\n"
            ))
        };
        assert_eq!(status(&post("Content-Length: 101\r\n")), 413);
        assert_eq!(status(&post("Transfer-Encoding: chunked\r\n")), 411);
        assert_eq!(status(&post("Content-Length: x\r\n")), 400);
        assert_eq!(
            status(&post("Content-Length: 1\r\nContent-Length: 2\r\n")),
            400
        );
        match post("Content-Length: 100\r\nConnection: close\r\n") {
            Head::Complete {
                route: Route::Api(head),
                ..
            } => {
                assert_eq!(head.body_len, 100);
                assert!(!head.keep_alive);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn forwarded_for_takes_the_last_entry() {
        let head = |xff: &str| format!("GET / HTTP/1.1\r\nHost: x\r\n{xff}\r\n");
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert_eq!(
            forwarded_for(head("X-Forwarded-For: 10.9.9.9, 203.0.113.7\r\n").as_bytes()),
            ip("203.0.113.7")
        );
        assert_eq!(
            forwarded_for(
                head("x-forwarded-for: 1.2.3.4\r\nX-Forwarded-For: 2001:db8::1\r\n").as_bytes()
            ),
            ip("2001:db8::1")
        );
        assert_eq!(
            forwarded_for(head("X-Forwarded-For: 198.51.100.2:4711\r\n").as_bytes()),
            ip("198.51.100.2")
        );
        assert_eq!(
            forwarded_for(head("X-Forwarded-For: unknown\r\n").as_bytes()),
            None
        );
        assert_eq!(forwarded_for(head("").as_bytes()), None);
    }

    #[test]
    fn conformance_nits() {
        // Sec-WebSocket-Key must be 16 bytes of base64.
        for bad in [
            "abc",
            "dGhlIHNhbXBsZSBub25jZQ",
            "dGhlIHNhbXBsZSBub25jZR==",
            "dGhl!HNhbXBsZSBub25jZQ==",
        ] {
            let req = WS.replace("dGhlIHNhbXBsZSBub25jZQ==", bad);
            assert_eq!(
                status(&p(&format!("GET / HTTP/1.1\r\n{req}\r\n"))),
                400,
                "{bad}"
            );
        }
        let dialect = |path: &str| match p(&format!("GET {path} HTTP/1.1\r\n{WS}\r\n")) {
            Head::Complete {
                route: Route::Upgrade { service, .. },
                ..
            } => Some(service),
            _ => None,
        };
        // A sign is not a hex digit; control bytes and `: ` are refused in room-URL fields.
        assert_eq!(dialect("/ws/chat/%+A/?nickname=a"), None);
        assert_eq!(dialect("/ws/chat/a%0Ab/?nickname=a"), None);
        assert_eq!(dialect("/ws/chat/r/?nickname=a%0Ab"), None);
        assert_eq!(dialect("/ws/chat/r/?nickname=alice%3A%20hi"), None);
        assert!(dialect("/ws/chat/r/?nickname=a%3Ab").is_some());
        // The absolute form routes on its path.
        assert_eq!(
            dialect("http://x/ws/chat/r/?nickname=ann"),
            Some(Service::Chat(Entry::RoomUrl {
                room: "r".into(),
                nickname: "ann".into(),
                history: 0,
            }))
        );
        assert_eq!(dialect("http://x/echo"), Some(Service::Echo));
        // `history=N` asks for the last N kept messages first, at most a page.
        let with_history = |n| {
            Some(Service::Chat(Entry::RoomUrl {
                room: "r".into(),
                nickname: "ann".into(),
                history: n,
            }))
        };
        assert_eq!(
            dialect("/ws/chat/r/?nickname=ann&history=5"),
            with_history(5)
        );
        assert_eq!(
            dialect("/ws/chat/r/?history=0&nickname=ann"),
            with_history(0)
        );
        assert_eq!(
            dialect("/ws/chat/r/?nickname=ann&history=99999999999999999999999"),
            with_history(MAX_PAGE)
        );
        assert_eq!(dialect("/ws/chat/r/?nickname=ann&history=-1"), None);
        assert_eq!(dialect("/ws/chat/r/?nickname=ann&history="), None);
    }

    #[test]
    fn foreign_origins_are_refused() {
        let with_origin = |origin: &str| {
            status(&p(&format!(
                "GET / HTTP/1.1\r\n{WS}Origin: {origin}\r\n\r\n"
            )))
        };
        // `WS` says `Host: x`: a host name, so http://x is not trusted without --public-url.
        assert_eq!(with_origin("http://x"), 403);
        assert_eq!(with_origin("https://chat.example"), 101);
        assert_eq!(with_origin("http://evil.example"), 403);
        assert_eq!(with_origin("http://x.evil.example"), 403);
        assert_eq!(with_origin("null"), 403);
        assert_eq!(with_origin("https://public.example"), 101);
        // DNS rebinding: the attacker's page names the server by the attacker's host name,
        // and Host agrees; only IP literals and localhost count as the server's own.
        let rebound = |host: &str, origin: &str| {
            let req = WS.replace("Host: x", &format!("Host: {host}"));
            status(&p(&format!(
                "GET / HTTP/1.1\r\n{req}Origin: {origin}\r\n\r\n"
            )))
        };
        assert_eq!(rebound("evil.example", "http://evil.example"), 403);
        assert_eq!(rebound("127.0.0.1:8080", "http://127.0.0.1:8080"), 101);
        assert_eq!(rebound("[::1]:8080", "http://[::1]:8080"), 101);
        assert_eq!(rebound("localhost:8080", "http://localhost:8080"), 101);
        assert_eq!(rebound("127.0.0.1:8080", "http://127.0.0.1:8081"), 403);
        // Two Origins: 400.
        let two = format!(
            "GET / HTTP/1.1\r\n{WS}Origin: https://chat.example\r\nOrigin: http://evil.example\r\n\r\n"
        );
        assert_eq!(status(&p(&two)), 400);
        // No Origin (not a browser): allowed.
        assert_eq!(status(&p(&format!("GET / HTTP/1.1\r\n{WS}\r\n"))), 101);
        // `*` allows any.
        let open = Routes {
            allowed_origins: vec!["*".into()],
            ..routes()
        };
        let req = format!("GET / HTTP/1.1\r\n{WS}Origin: http://evil.example\r\n\r\n");
        assert!(matches!(
            parse(req.as_bytes(), &open),
            Head::Complete {
                route: Route::Upgrade { .. },
                ..
            }
        ));
    }
}
