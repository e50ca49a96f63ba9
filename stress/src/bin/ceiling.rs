//! `ceiling-chat`: the fastest room fan-out this machine can do, as a yardstick for the benchmark.
//!
//! It speaks just enough of the room URL endpoint (`ws://127.0.0.1:PORT/ws/chat/{room}/?nickname=
//! {nick}`: `{nick} joined {room}`, every text message to every member as `{nick}: {text}`,
//! `{nick} left {room}`) for `stress` in raw mode, and nothing else: no chat logic, no limits, no
//! UTF-8 check, no fragmented messages, no percent-decoding. One thread, one mio loop. A message
//! is framed once, straight into its room's buffer for the current loop turn (unmasking is the
//! only copy); at the end of the turn every member of a room that got anything is sent the whole
//! buffer with one `write`, so each member costs one syscall per turn however many messages the
//! turn carried. What a socket does not take is kept per connection and sent when it is writable.
//!
//! `stress/bench.sh` runs it as the server "ceiling", so each table says how far this server is
//! from what the kernel allows on the same box, not only how it compares with other servers.
//!
//! Usage: `ceiling-chat PORT` (listens on 127.0.0.1 only).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;

use base64::Engine;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use sha1::{Digest, Sha1};

const LISTENER: Token = Token(usize::MAX);
/// One read per readable socket takes at most this much; the rest waits for the next turn, so
/// one busy sender cannot starve the others.
const SCRATCH: usize = 64 * 1024;
/// A request head larger than this is refused.
const MAX_HEAD: usize = 8192;
/// The GUID of RFC 6455 section 1.3, appended to the key for `Sec-WebSocket-Accept`.
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

struct Conn {
    sock: TcpStream,
    /// The request head so far; `None` once upgraded.
    head: Option<Vec<u8>>,
    /// An incomplete frame carried over to the next read.
    carry: Vec<u8>,
    /// Bytes the socket has not taken yet.
    out: Vec<u8>,
    /// WRITABLE interest is registered (only while `out` is not empty).
    writable: bool,
    room: usize,
    nick: Vec<u8>,
    /// A close frame was received or the stream broke: dropped at the end of the turn.
    dead: bool,
}

struct Room {
    name: Vec<u8>,
    members: Vec<usize>,
    /// Frames for every member, collected during this loop turn.
    turn: Vec<u8>,
}

struct Server {
    poll: Poll,
    conns: slab::Slab<Conn>,
    rooms: Vec<Room>,
    room_ids: HashMap<Vec<u8>, usize>,
    /// Rooms with frames in `turn`.
    busy_rooms: Vec<usize>,
    /// Connections to drop at the end of the turn.
    dead: Vec<usize>,
}

fn main() {
    let port: u16 = match std::env::args().nth(1).map(|p| p.parse()) {
        Some(Ok(p)) => p,
        _ => {
            eprintln!("usage: ceiling-chat PORT");
            std::process::exit(2);
        }
    };
    raise_nofile();
    if let Err(e) = serve(SocketAddr::from(([127, 0, 0, 1], port))) {
        eprintln!("ceiling-chat: {e}");
        std::process::exit(1);
    }
}

/// Raises the soft open-file limit to the hard one (S3 holds 10,000 connections).
fn raise_nofile() {
    // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
    unsafe {
        let mut lim = std::mem::zeroed::<libc::rlimit>();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn serve(addr: SocketAddr) -> io::Result<()> {
    let mut listener = TcpListener::bind(addr)?;
    let mut server = Server {
        poll: Poll::new()?,
        conns: slab::Slab::new(),
        rooms: Vec::new(),
        room_ids: HashMap::new(),
        busy_rooms: Vec::new(),
        dead: Vec::new(),
    };
    server
        .poll
        .registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut events = Events::with_capacity(1024);
    let mut scratch = vec![0u8; SCRATCH];
    loop {
        if let Err(e) = server.poll.poll(&mut events, None) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for ev in &events {
            if ev.token() == LISTENER {
                server.accept(&listener);
                continue;
            }
            let k = ev.token().0;
            if ev.is_writable() {
                server.flush(k);
            }
            if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                server.read(k, &mut scratch);
            }
        }
        server.end_turn();
    }
}

impl Server {
    fn accept(&mut self, listener: &TcpListener) {
        loop {
            match listener.accept() {
                Ok((mut sock, _)) => {
                    let _ = sock.set_nodelay(true);
                    let entry = self.conns.vacant_entry();
                    if self
                        .poll
                        .registry()
                        .register(&mut sock, Token(entry.key()), Interest::READABLE)
                        .is_ok()
                    {
                        entry.insert(Conn {
                            sock,
                            head: Some(Vec::new()),
                            carry: Vec::new(),
                            out: Vec::new(),
                            writable: false,
                            room: 0,
                            nick: Vec::new(),
                            dead: false,
                        });
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // EMFILE and the like: try again on the next readiness.
                Err(_) => return,
            }
        }
    }

    /// Reads what the socket has (edge-triggered: until it would block) and handles it.
    fn read(&mut self, k: usize, scratch: &mut [u8]) {
        loop {
            let Some(c) = self.conns.get_mut(k) else {
                return;
            };
            if c.dead {
                return;
            }
            match c.sock.read(scratch) {
                Ok(0) => return self.kill(k),
                Ok(n) => self.input(k, &scratch[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.kill(k),
            }
        }
    }

    fn input(&mut self, k: usize, bytes: &[u8]) {
        let c = &mut self.conns[k];
        if let Some(head) = c.head.as_mut() {
            head.extend_from_slice(bytes);
            let head = std::mem::take(head);
            return self.handshake(k, head);
        }
        if c.carry.is_empty() {
            let used = self.frames(k, bytes);
            self.conns[k].carry.extend_from_slice(&bytes[used..]);
        } else {
            let mut buf = std::mem::take(&mut c.carry);
            buf.extend_from_slice(bytes);
            let used = self.frames(k, &buf);
            buf.drain(..used);
            self.conns[k].carry = buf;
        }
    }

    fn handshake(&mut self, k: usize, head: Vec<u8>) {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        let n = match req.parse(&head) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if head.len() <= MAX_HEAD => {
                self.conns[k].head = Some(head);
                return;
            }
            _ => return self.kill(k),
        };
        let key = req
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-key"))
            .map(|h| h.value);
        let target = req.path.and_then(parse_target);
        let (Some(key), Some((room, nick))) = (key, target) else {
            self.send(k, b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
            self.conns[k].dead = true;
            return;
        };
        let accept = base64::engine::general_purpose::STANDARD
            .encode(Sha1::new().chain_update(key).chain_update(GUID).finalize());
        let response = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {accept}\r\n\r\n"
        );
        let r = match self.room_ids.get(room) {
            Some(&r) => r,
            None => {
                self.rooms.push(Room {
                    name: room.to_vec(),
                    members: Vec::new(),
                    turn: Vec::new(),
                });
                self.room_ids.insert(room.to_vec(), self.rooms.len() - 1);
                self.rooms.len() - 1
            }
        };
        let nick = nick.to_vec();
        self.send(k, response.as_bytes());
        let mut text = nick.clone();
        text.extend_from_slice(b" joined ");
        text.extend_from_slice(&self.rooms[r].name);
        self.broadcast(r, &[&text]);
        let c = &mut self.conns[k];
        c.head = None;
        c.room = r;
        c.nick = nick;
        c.nick.extend_from_slice(b": ");
        self.rooms[r].members.push(k);
        let rest = head[n..].to_vec();
        if !rest.is_empty() {
            self.input(k, &rest);
        }
    }

    /// Handles the complete client frames at the start of `buf`; returns the bytes they took.
    fn frames(&mut self, k: usize, buf: &[u8]) -> usize {
        let mut at = 0;
        while let Some((fin, opcode, mask, start, end)) = parse_frame(&buf[at..]) {
            let payload = &buf[at + start..at + end];
            at += end;
            match opcode {
                0x1 | 0x2 if fin => {
                    let c = &self.conns[k];
                    let room = &mut self.rooms[c.room];
                    if room.turn.is_empty() {
                        self.busy_rooms.push(c.room);
                    }
                    frame_header(&mut room.turn, 0x1, c.nick.len() + payload.len());
                    room.turn.extend_from_slice(&c.nick);
                    unmask_into(&mut room.turn, payload, mask);
                }
                0x9 => {
                    let mut pong = Vec::new();
                    frame_header(&mut pong, 0xA, payload.len());
                    unmask_into(&mut pong, payload, mask);
                    self.send(k, &pong);
                }
                0xA => {}
                // Close, a fragmented message, or anything else this yardstick does not do.
                _ => {
                    if opcode == 0x8 {
                        self.send(k, &[0x88, 0]);
                    }
                    self.kill(k);
                    return buf.len();
                }
            }
        }
        at
    }

    /// Frames `parts` as one text message into room `r`'s buffer for this turn.
    fn broadcast(&mut self, r: usize, parts: &[&[u8]]) {
        let room = &mut self.rooms[r];
        if room.turn.is_empty() {
            self.busy_rooms.push(r);
        }
        frame_header(&mut room.turn, 0x1, parts.iter().map(|p| p.len()).sum());
        for p in parts {
            room.turn.extend_from_slice(p);
        }
    }

    /// Sends every room's frames of this turn to its members, then drops the dead.
    fn end_turn(&mut self) {
        while !self.busy_rooms.is_empty() || !self.dead.is_empty() {
            for r in std::mem::take(&mut self.busy_rooms) {
                let turn = std::mem::take(&mut self.rooms[r].turn);
                let members = std::mem::take(&mut self.rooms[r].members);
                for &k in &members {
                    self.send(k, &turn);
                }
                // Sending marks failed connections dead but frames nothing: the buffer keeps
                // its capacity for the next turn.
                let room = &mut self.rooms[r];
                room.members = members;
                room.turn = turn;
                room.turn.clear();
            }
            for k in std::mem::take(&mut self.dead) {
                self.drop_conn(k);
            }
        }
    }

    /// Writes `bytes` now if nothing is waiting before them, and keeps what the socket does not
    /// take.
    fn send(&mut self, k: usize, bytes: &[u8]) {
        let Some(c) = self.conns.get_mut(k) else {
            return;
        };
        if c.dead {
            return;
        }
        if !c.out.is_empty() {
            c.out.extend_from_slice(bytes);
            return;
        }
        let mut at = 0;
        while at < bytes.len() {
            match c.sock.write(&bytes[at..]) {
                Ok(n) => at += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.kill(k),
            }
        }
        if at < bytes.len() {
            c.out.extend_from_slice(&bytes[at..]);
            self.want_writable(k, true);
        }
    }

    /// Sends what was kept for a socket that became writable.
    fn flush(&mut self, k: usize) {
        let Some(c) = self.conns.get_mut(k) else {
            return;
        };
        let mut at = 0;
        while at < c.out.len() {
            match c.sock.write(&c.out[at..]) {
                Ok(n) => at += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.kill(k),
            }
        }
        c.out.drain(..at);
        if c.out.is_empty() {
            // Give the memory back: an idle connection holds no buffer.
            c.out = Vec::new();
            self.want_writable(k, false);
        }
    }

    fn want_writable(&mut self, k: usize, on: bool) {
        let c = &mut self.conns[k];
        if c.writable != on {
            c.writable = on;
            let interest = if on {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            let _ = self
                .poll
                .registry()
                .reregister(&mut c.sock, Token(k), interest);
        }
    }

    /// Marks `k` dead; it is dropped at the end of the turn.
    fn kill(&mut self, k: usize) {
        if let Some(c) = self.conns.get_mut(k)
            && !c.dead
        {
            c.dead = true;
            self.dead.push(k);
        }
    }

    fn drop_conn(&mut self, k: usize) {
        let Some(mut c) = self.conns.try_remove(k) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut c.sock);
        if c.head.is_some() {
            return;
        }
        let r = c.room;
        self.rooms[r].members.retain(|&m| m != k);
        let mut nick = c.nick;
        nick.truncate(nick.len() - 2);
        let name = self.rooms[r].name.clone();
        self.broadcast(r, &[&nick, b" left ", &name]);
    }
}

/// `/ws/chat/{room}/?nickname={nick}` (the slash before `?` optional) → (room, nick).
fn parse_target(path: &str) -> Option<(&[u8], &[u8])> {
    let (path, query) = path.split_once('?')?;
    let room = path.strip_prefix("/ws/chat/")?.trim_end_matches('/');
    let nick = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("nickname="))?;
    (!room.is_empty() && !room.contains('/') && !nick.is_empty())
        .then_some((room.as_bytes(), nick.as_bytes()))
}

/// A complete masked client frame at the start of `buf`: (fin, opcode, mask, payload start,
/// frame end). `None` if incomplete.
fn parse_frame(buf: &[u8]) -> Option<(bool, u8, [u8; 4], usize, usize)> {
    let (b0, b1) = (*buf.first()?, *buf.get(1)?);
    let (len, at) = match b1 & 0x7F {
        126 => (
            u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?) as usize,
            4,
        ),
        127 => (
            u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    let mask: [u8; 4] = buf.get(at..at + 4)?.try_into().ok()?;
    let start = at + 4;
    let end = start.checked_add(len)?;
    (buf.len() >= end).then_some((b0 & 0x80 != 0, b0 & 0x0F, mask, start, end))
}

/// Appends a final server frame header (unmasked) for a payload of `len` bytes.
fn frame_header(out: &mut Vec<u8>, opcode: u8, len: usize) {
    out.push(0x80 | opcode);
    if len < 126 {
        out.push(len as u8);
    } else if len <= 0xFFFF {
        out.push(126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
}

/// Appends `payload` unmasked with `mask`.
fn unmask_into(out: &mut Vec<u8>, payload: &[u8], mask: [u8; 4]) {
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_room_url() {
        assert_eq!(
            parse_target("/ws/chat/r1/?nickname=u7"),
            Some((&b"r1"[..], &b"u7"[..]))
        );
        assert_eq!(
            parse_target("/ws/chat/r1?x=1&nickname=u7"),
            Some((&b"r1"[..], &b"u7"[..]))
        );
        assert_eq!(parse_target("/ws/chat/r1/"), None);
        assert_eq!(parse_target("/ws/chat//?nickname=u"), None);
        assert_eq!(parse_target("/ws/chat/r1/?nickname="), None);
    }

    #[test]
    fn parses_masked_frames_and_waits_for_the_rest() {
        let mask = [1, 2, 3, 4];
        let mut frame = vec![0x81, 0x80 | 3];
        frame.extend_from_slice(&mask);
        frame.extend(b"abc".iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
        assert_eq!(parse_frame(&frame), Some((true, 1, mask, 6, 9)));
        assert_eq!(parse_frame(&frame[..8]), None);
        let mut out = Vec::new();
        unmask_into(&mut out, &frame[6..], mask);
        assert_eq!(out, b"abc");
    }
}
