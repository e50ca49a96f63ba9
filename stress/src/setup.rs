//! Protocol-mode preparation over one blocking control connection: create the rooms
//! (persistent, so they survive this connection closing) and the users to log in as.
//!
//! Done before the load connections exist so the `chatroomcreated` broadcasts reach nobody but
//! the control connection, and so every load connection finds its room and user ready.

use crate::frame::{self, Handshake, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, Parsed};
use crate::target::Target;
use crate::wire::{self, Fields};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Instant;

/// Commands written before reading their replies, so setup of thousands of users does not pay
/// one round trip each, while the unread replies stay far below any socket buffer.
const PIPELINE: u64 = 256;

/// A blocking WebSocket connection speaking the command protocol.
pub struct Control {
    sock: TcpStream,
    buf: Vec<u8>,
    deadline: Instant,
    mask: u32,
}

impl Control {
    /// Connects, upgrades and reads the `yourchatclientid` greeting.
    pub fn connect(target: &Target, deadline: Instant) -> Result<Self, String> {
        let left = deadline.saturating_duration_since(Instant::now());
        let sock =
            TcpStream::connect_timeout(&target.addr, left.max(std::time::Duration::from_millis(1)))
                .map_err(|e| format!("control connection to {}: {e}", target.addr))?;
        let _ = sock.set_nodelay(true);
        // Writes are small and pipelined in bounded batches, but a server that stops reading
        // must not hang setup past its deadline either.
        sock.set_write_timeout(Some(left.max(std::time::Duration::from_millis(1))))
            .map_err(|e| format!("control: {e}"))?;
        let mut ctl = Control {
            sock,
            buf: Vec::new(),
            deadline,
            mask: 0x2545_F491,
        };
        let mut req = Vec::new();
        frame::write_request(
            &mut req,
            &target.host_header,
            &target.path,
            Some("chatroom-protocol"),
        );
        ctl.sock
            .write_all(&req)
            .map_err(|e| format!("control: {e}"))?;
        loop {
            match frame::parse_response(&ctl.buf) {
                Handshake::Done(n) => {
                    ctl.buf.drain(..n);
                    break;
                }
                Handshake::Partial => ctl.fill()?,
                Handshake::Failed(why) => return Err(format!("control: {why}")),
            }
        }
        let hello = ctl.recv()?;
        if !hello.starts_with(b"yourchatclientid(") {
            return Err(format!(
                "control: expected yourchatclientid(...), got {}",
                String::from_utf8_lossy(&hello)
            ));
        }
        Ok(ctl)
    }

    fn fill(&mut self) -> Result<(), String> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("control: setup deadline passed".to_string());
        }
        self.sock
            .set_read_timeout(Some(left))
            .map_err(|e| format!("control: {e}"))?;
        let mut chunk = [0u8; 64 * 1024];
        match self.sock.read(&mut chunk) {
            Ok(0) => Err("control: server closed the connection".to_string()),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(e) => Err(format!("control: read: {e}")),
        }
    }

    fn frame(&mut self, out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
        self.mask = self.mask.rotate_left(7) ^ 0x9E37_79B9;
        frame::write_masked(out, opcode, payload, self.mask.to_ne_bytes());
    }

    /// Sends several commands in one write.
    fn send_all(&mut self, texts: &[String]) -> Result<(), String> {
        let mut out = Vec::new();
        for t in texts {
            self.frame(&mut out, OP_TEXT, t.as_bytes());
        }
        self.sock
            .write_all(&out)
            .map_err(|e| format!("control: write: {e}"))
    }

    /// The next text or binary message from the server (answering pings on the way).
    fn recv(&mut self) -> Result<Vec<u8>, String> {
        loop {
            let (op, payload, used) = match frame::parse(&self.buf) {
                Parsed::Frame(f) if !f.fin => return Err("control: fragmented reply".to_string()),
                Parsed::Frame(f) => (f.opcode, f.payload.to_vec(), f.len),
                Parsed::Incomplete => {
                    self.fill()?;
                    continue;
                }
                Parsed::Invalid(why) => return Err(format!("control: {why}")),
            };
            self.buf.drain(..used);
            match op {
                OP_PING => {
                    let mut out = Vec::new();
                    self.frame(&mut out, OP_PONG, &payload);
                    self.sock
                        .write_all(&out)
                        .map_err(|e| format!("control: {e}"))?;
                }
                OP_PONG => {}
                OP_CLOSE => {
                    return Err(format!(
                        "control: server closed with {}",
                        frame::close_code(&payload)
                    ));
                }
                _ => return Ok(payload),
            }
        }
    }

    /// Reads until the reply to message id `m` (a message starting with `prefix` and `m`) or an
    /// error, skipping broadcasts meant for everybody.
    fn reply(&mut self, prefix: &str, m: u64) -> Result<Vec<u8>, String> {
        let ok = format!("{prefix}{m},");
        loop {
            let msg = self.recv()?;
            if msg.starts_with(ok.as_bytes()) {
                return Ok(msg);
            }
            // Errors are never broadcast, so any error here answers one of our commands.
            if msg.starts_with(b"error(") {
                return Err(String::from_utf8_lossy(&msg).into_owned());
            }
        }
    }

    /// Creates `names.len()` persistent rooms; returns their chatroomids.
    pub fn create_rooms(&mut self, names: &[String], password: &str) -> Result<Vec<u64>, String> {
        let mut ids = Vec::with_capacity(names.len());
        for (chunk_no, chunk) in names.chunks(PIPELINE as usize).enumerate() {
            let first = 1 + chunk_no as u64 * PIPELINE;
            let cmds: Vec<String> = (first..)
                .zip(chunk)
                .map(|(m, name)| wire::addchatroom(m, name, password))
                .collect();
            self.send_all(&cmds)?;
            for m in first..first + chunk.len() as u64 {
                let msg = self
                    .reply("chatroomcreated(", m)
                    .map_err(|e| format!("addchatroom: {e}"))?;
                let mut f = Fields::after(&msg, b"chatroomcreated(").expect("checked prefix");
                let parsed = (|| {
                    f.num()?;
                    let room = f.num()?;
                    f.str()?;
                    Some((room, f.num()?))
                })();
                let (room, info) = parsed.ok_or_else(|| {
                    format!("addchatroom: cannot read {}", String::from_utf8_lossy(&msg))
                })?;
                if info & 8 != 0 {
                    return Err("addchatroom made a temporary room: wrong --password?".to_string());
                }
                ids.push(room);
            }
        }
        Ok(ids)
    }

    /// Creates users `s{uid}` for `uid` in `uid_base..uid_base + n`, all with password `pass`.
    pub fn create_users(
        &mut self,
        uid_base: u64,
        n: u64,
        pass: &str,
        password: &str,
    ) -> Result<(), String> {
        let mut done = 0;
        let mut m = 1_000_000;
        while done < n {
            let batch = PIPELINE.min(n - done);
            let cmds: Vec<String> = (0..batch)
                .map(|j| {
                    let uid = uid_base + done + j;
                    wire::adduser(m + j, uid, &format!("s{uid}"), pass, password)
                })
                .collect();
            self.send_all(&cmds)?;
            for j in 0..batch {
                self.reply("success(", m + j)
                    .map_err(|e| format!("adduser: {e}"))?;
            }
            done += batch;
            m += batch;
        }
        Ok(())
    }

    /// Says goodbye. The rooms stay: they are persistent.
    pub fn close(mut self) {
        let mut out = Vec::new();
        self.frame(&mut out, OP_CLOSE, &1000u16.to_be_bytes());
        let _ = self.sock.write_all(&out);
    }
}
