//! `http::parse` sees whatever a client sends before the upgrade, and the net thread calls it
//! again on the whole buffer after every read. So besides never panicking it must be consistent
//! across reads: a prefix of the bytes may be `Partial`, but once it decides (`Complete` or
//! `Reject`) the longer buffer must decide the same way, or a client's fate would depend on how
//! TCP happened to split its head.
//!
//! Input: one byte choosing where to split (as a fraction of the rest), then the request bytes.
//! Run with `-max_len=9000` so heads past the 8192-byte limit (431) are reachable.

#![no_main]

use libfuzzer_sys::fuzz_target;
use websocket::chat::Entry;
use websocket::http::{Head, MAX_ROOM_URL_FIELD, Response, Route, Routes, Service, parse};

/// The server's default `--max-head-size`.
const MAX_HEAD: usize = 8192;

fuzz_target!(|input: &[u8]| {
    let Some((&split, data)) = input.split_first() else {
        return;
    };
    let routes = Routes {
        max_head: MAX_HEAD,
        echo_path: Some("/echo".into()),
        allowed_origins: vec!["https://chat.example".into()],
        public_origins: vec!["https://public.example".into()],
        api_key: websocket::chat::Secret::new(*b"key"),
        max_body: 64 * 1024,
    };
    let whole = parse(data, &routes);
    check(data, &whole);

    let prefix = &data[..data.len() * usize::from(split) / 255];
    let early = parse(prefix, &routes);
    check(prefix, &early);
    match &early {
        Head::Partial => {}
        // The head ended inside the prefix: the bytes after it cannot change the verdict.
        Head::Complete { .. } => assert_eq!(early, whole, "prefix of {} bytes", prefix.len()),
        // Refused already: reading more must not turn the refusal into an acceptance.
        Head::Reject(_) => assert!(
            matches!(whole, Head::Reject(_)),
            "prefix of {} bytes was refused, the whole head gave {whole:?}",
            prefix.len()
        ),
    }
});

/// What any verdict on `buf` must satisfy on its own.
fn check(buf: &[u8], head: &Head) {
    match head {
        Head::Partial => assert!(
            buf.len() < MAX_HEAD,
            "a head past the limit must be refused"
        ),
        Head::Reject(r) => assert_response(r),
        Head::Complete { len, route } => {
            assert!(*len <= buf.len() && *len <= MAX_HEAD);
            assert_eq!(buf[*len - 1], b'\n', "a head ends with its blank line");
            match route {
                Route::Respond(r) => assert_response(r),
                // An API request: its body (if any) follows the head, read by the net thread.
                Route::Api(_) => {}
                Route::Upgrade { response, service } => {
                    assert!(response.starts_with(b"HTTP/1.1 101 "));
                    assert!(response.ends_with(b"\r\n\r\n"));
                    if let Service::Chat(Entry::RoomUrl { room, nickname, .. }) = service {
                        assert_room_field(room);
                        assert_room_field(nickname);
                        assert!(!nickname.chars().any(char::is_control));
                    }
                }
            }
        }
    }
}

/// Every plain response is a whole HTTP/1.1 response that closes the connection.
fn assert_response(Response(bytes): &Response) {
    assert!(bytes.starts_with(b"HTTP/1.1 "));
    let text = String::from_utf8_lossy(bytes);
    assert!(text.contains("\r\nconnection: close\r\n"), "{text}");
}

/// The room URL's contract with the chat state: a usable, bounded, single-segment name.
fn assert_room_field(s: &str) {
    assert!(!s.is_empty() && s.len() <= MAX_ROOM_URL_FIELD && !s.contains('/'));
}
