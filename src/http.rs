//! HTTP/1.1 request heads: parsing (with `httparse`), routing, and the few responses we send.
//!
//! The server speaks just enough HTTP to serve the chat page and to upgrade to WebSocket. Every
//! response closes the connection (`Connection: close`), which keeps the connection state
//! machine in `net` to one request per TCP connection.

use tungstenite::handshake::derive_accept_key;

use crate::chat::Entry;

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
}

/// Parses the request head at the start of `buf`.
pub fn parse(buf: &[u8], routes: &Routes) -> Head {
    let max_head = routes.max_head;
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Partial) if buf.len() >= max_head => {
            Head::Reject(error(431, "Request Header Fields Too Large"))
        }
        Ok(httparse::Status::Partial) => Head::Partial,
        Ok(httparse::Status::Complete(len)) if len > max_head => {
            Head::Reject(error(431, "Request Header Fields Too Large"))
        }
        Ok(httparse::Status::Complete(len)) => Head::Complete {
            len,
            route: route(&req, routes),
        },
        Err(httparse::Error::TooManyHeaders) => {
            Head::Reject(error(431, "Request Header Fields Too Large"))
        }
        Err(_) => Head::Reject(error(400, "Bad Request")),
    }
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

fn route(req: &httparse::Request, routes: &Routes) -> Route {
    let method = req.method.unwrap_or_default();
    let target = req.path.unwrap_or_default();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));

    if header_has_token(req, "upgrade", "websocket") {
        if method != "GET" || req.version != Some(1) {
            return Route::Respond(error(400, "Bad Request"));
        }
        if !origin_allowed(req, &routes.allowed_origins) {
            return Route::Respond(error(403, "Forbidden"));
        }
        return upgrade(req, path, query, routes.echo_path.as_deref());
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Route::Respond(error(405, "Method Not Allowed")),
    };
    match path {
        "/" | "/index.html" | "/example.html" => Route::Respond(page(head_only)),
        _ => Route::Respond(error(404, "Not Found")),
    }
}

/// Cross-site WebSocket hijacking defence: a browser always sends `Origin`, and a page from
/// another site must not act with its visitor's network position. Requests without `Origin`
/// (non-browser clients) and from the server's own origin (same host and port as `Host`) are
/// allowed, others only if listed.
fn origin_allowed(req: &httparse::Request, allowed: &[String]) -> bool {
    let Some(origin) = header(req, "origin") else {
        return true;
    };
    let origin = origin.trim_ascii().to_ascii_lowercase();
    if allowed
        .iter()
        .any(|a| a == "*" || a.as_bytes().eq_ignore_ascii_case(&origin))
    {
        return true;
    }
    let authority = origin
        .strip_prefix(b"http://")
        .or_else(|| origin.strip_prefix(b"https://"));
    match (authority, header(req, "host")) {
        (Some(authority), Some(host)) => authority.eq_ignore_ascii_case(host.trim_ascii()),
        _ => false,
    }
}

fn upgrade(req: &httparse::Request, path: &str, query: &str, echo_path: Option<&str>) -> Route {
    if header(req, "sec-websocket-version") != Some(b"13") {
        let mut r = head(426, "Upgrade Required", "text/plain; charset=utf-8", 17);
        r.truncate(r.len() - 2);
        r.extend_from_slice(b"sec-websocket-version: 13\r\n\r\nUpgrade Required\r\n");
        return Route::Respond(Response(r));
    }
    let key = match header(req, "sec-websocket-key") {
        Some(k) if !k.is_empty() && header_has_token(req, "connection", "upgrade") => k,
        _ => return Route::Respond(error(400, "Bad Request")),
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
            Err(()) => return Route::Respond(error(400, "Bad Request")),
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

/// `{room}/?nickname={nickname}` (the trailing slash is optional), both percent-decoded.
fn room_endpoint(rest: &str, query: &str) -> Result<Entry, ()> {
    let room = rest.strip_suffix('/').unwrap_or(rest);
    let nickname = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("nickname="))
        .ok_or(())?;
    let room = percent_decode(room)?;
    let nickname = percent_decode(nickname)?;
    let ok = |s: &str| !s.is_empty() && s.len() <= MAX_ROOM_URL_FIELD && !s.contains('/');
    if !ok(&room) || !ok(&nickname) || nickname.chars().any(char::is_control) {
        return Err(());
    }
    Ok(Entry::RoomUrl { room, nickname })
}

/// Decodes `%XX` escapes (and `+` as space, as browsers encode query values) into UTF-8.
fn percent_decode(s: &str) -> Result<String, ()> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'%' => {
                let hex = [bytes.next().ok_or(())?, bytes.next().ok_or(())?];
                let hex = std::str::from_utf8(&hex).map_err(|_| ())?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| ())?);
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

/// A plain-text error response whose body is the reason phrase.
pub fn error(status: u16, reason: &str) -> Response {
    let body = format!("{reason}\r\n");
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
        };
        std::str::from_utf8(&bytes[9..12]).unwrap().parse().unwrap()
    }

    fn routes() -> Routes {
        Routes {
            max_head: 8192,
            echo_path: Some("/echo".into()),
            allowed_origins: vec!["https://chat.example".into()],
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
        assert_eq!(status(&p("GET /index.html HTTP/1.1\r\n\r\n")), 200);
        assert_eq!(status(&p("HEAD /example.html HTTP/1.1\r\n\r\n")), 200);
        assert_eq!(status(&p("GET /nope HTTP/1.1\r\n\r\n")), 404);
        assert_eq!(status(&p("POST / HTTP/1.1\r\n\r\n")), 405);
        assert_eq!(status(&p("\x01\x02 garbage\r\n\r\n")), 400);
        assert_eq!(p("GET / HTTP/1.1\r\nHost: x\r\n"), Head::Partial);
    }

    #[test]
    fn head_has_no_body() {
        let Head::Complete {
            route: Route::Respond(Response(r)),
            ..
        } = p("HEAD / HTTP/1.1\r\n\r\n")
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

    #[test]
    fn foreign_origins_are_refused() {
        let with_origin = |origin: &str| {
            status(&p(&format!(
                "GET / HTTP/1.1\r\n{WS}Origin: {origin}\r\n\r\n"
            )))
        };
        // `WS` says `Host: x`: the page's own origin is http://x.
        assert_eq!(with_origin("http://x"), 101);
        assert_eq!(with_origin("HTTP://X"), 101);
        assert_eq!(with_origin("https://chat.example"), 101);
        assert_eq!(with_origin("http://evil.example"), 403);
        assert_eq!(with_origin("http://x.evil.example"), 403);
        assert_eq!(with_origin("null"), 403);
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
