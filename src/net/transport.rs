//! A connection's byte transport: the TCP socket itself, or a TLS session over it.
//!
//! Either way the rest of the net thread reads and writes plaintext: the head parser and
//! tungstenite read through [`Transport::read`], and the outbox is flushed through
//! [`Transport::write_from`]. With plain TCP that is one `match` more than a bare socket.

use std::fmt;
use std::io::{self, ErrorKind, Read};
use std::net::Shutdown;

use log::debug;
use mio::net::TcpStream;
use rustls::ServerConnection;

use super::outbox::Outbox;

/// The first byte of every TLS connection: a handshake record (RFC 8446 §5.1).
const TLS_HANDSHAKE: u8 = 0x16;

pub enum Transport {
    Plain(TcpStream),
    Tls(Box<Tls>),
}

/// A rustls server session and its socket.
pub struct Tls {
    session: ServerConnection,
    tcp: TcpStream,
    /// The first byte has been checked to open a TLS handshake record.
    sniffed: bool,
    /// The peer spoke plain HTTP: the answer (a 400 with a hint) goes out in clear, and
    /// rustls is no longer used.
    cleartext: bool,
}

/// The read error for a peer whose first byte is not a TLS record: most likely plain HTTP
/// sent to the TLS port, which deserves a readable answer rather than a TLS alert.
#[derive(Debug)]
struct NotTls;

impl fmt::Display for NotTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a TLS handshake (plain HTTP on the TLS port?)")
    }
}

impl std::error::Error for NotTls {}

/// True if a read failed because the peer does not speak TLS at all.
pub fn is_not_tls(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<NotTls>())
}

impl Transport {
    pub fn tls(session: ServerConnection, tcp: TcpStream) -> Transport {
        Transport::Tls(Box::new(Tls {
            session,
            tcp,
            sniffed: false,
            cleartext: false,
        }))
    }

    /// The socket, for registering with the poller and for discarding input.
    pub fn tcp(&mut self) -> &mut TcpStream {
        match self {
            Transport::Plain(tcp) => tcp,
            Transport::Tls(t) => &mut t.tcp,
        }
    }

    /// Bytes the kernel holds in the socket's send queue that the peer has not yet
    /// acknowledged (0 if the kernel will not say): with our own queue, what waits for a peer,
    /// so a client that does not read is told apart from one whose bytes merely moved into
    /// the kernel.
    pub fn kernel_unsent(&mut self) -> usize {
        use std::os::fd::AsRawFd;
        let mut n: libc::c_int = 0;
        // SAFETY: TIOCOUTQ writes one int through the pointer we pass; the fd is open.
        let rc = unsafe { libc::ioctl(self.tcp().as_raw_fd(), libc::TIOCOUTQ, &mut n) };
        if rc == 0 { n.max(0) as usize } else { 0 }
    }

    /// Reads plaintext. With TLS this reads records from the socket until one yields
    /// plaintext or the socket would block (so `WouldBlock` can also mean "handshake in
    /// progress"; check [`Transport::wants_write`] afterwards: the handshake's replies wait in
    /// the session). `Ok(0)` is the end of the stream, clean or not.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(tcp) => tcp.read(buf),
            Transport::Tls(t) => t.read(buf),
        }
    }

    /// True if the TLS session has records (handshake messages, alerts) waiting to be written
    /// although the outbox may be empty.
    pub fn wants_write(&self) -> bool {
        match self {
            Transport::Plain(_) => false,
            Transport::Tls(t) => !t.cleartext && t.session.wants_write(),
        }
    }

    /// Writes what `outbox` holds: with `writev` on plain TCP; with TLS, frames are encrypted
    /// into as few records as fit the session's buffer and those are written with `writev`.
    /// Returns `Ok(true)` once everything (the TLS session's records too) is on the wire.
    pub fn write_from(&mut self, outbox: &mut Outbox) -> io::Result<bool> {
        match self {
            Transport::Plain(tcp) => outbox.write_to(tcp),
            Transport::Tls(t) if t.cleartext => outbox.write_to(&mut t.tcp),
            Transport::Tls(t) => outbox.write_tls(&mut t.session, &mut t.tcp),
        }
    }

    /// Ends our direction of the stream once everything is written: with TLS a `close_notify`
    /// alert first, so the peer knows the data was not truncated. `Ok(false)` if the alert is
    /// still waiting for the socket (call again when it is writable).
    pub fn shutdown_write(&mut self) -> io::Result<bool> {
        match self {
            Transport::Plain(tcp) => tcp.shutdown(Shutdown::Write).map(|_| true),
            Transport::Tls(t) => {
                if !t.cleartext {
                    // Idempotent: rustls queues the alert only once.
                    t.session.send_close_notify();
                    while t.session.wants_write() {
                        match t.session.write_tls(&mut t.tcp) {
                            Ok(0) => return Err(ErrorKind::WriteZero.into()),
                            Ok(_) => {}
                            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                            Err(e) if e.kind() == ErrorKind::Interrupted => {}
                            Err(e) => return Err(e),
                        }
                    }
                }
                t.tcp.shutdown(Shutdown::Write).map(|_| true)
            }
        }
    }

    /// Gives up on TLS for a peer that turned out to speak plain HTTP, so the 400 queued
    /// next reaches it in clear.
    pub fn fall_back_to_cleartext(&mut self) {
        if let Transport::Tls(t) = self {
            t.cleartext = true;
        }
    }
}

impl Tls {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            // Plaintext already decrypted first: rustls refuses to read more records while its
            // plaintext buffer is full.
            match self.session.reader().read(buf) {
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                done => return done,
            }
            if !self.sniffed {
                let mut first = [0u8; 1];
                match self.tcp.peek(&mut first)? {
                    0 => return Ok(0),
                    _ if first[0] != TLS_HANDSHAKE => {
                        return Err(io::Error::new(ErrorKind::InvalidData, NotTls));
                    }
                    _ => self.sniffed = true,
                }
            }
            if self.session.read_tls(&mut self.tcp)? == 0 {
                return Ok(0);
            }
            if let Err(e) = self.session.process_new_packets() {
                debug!("TLS: {e}");
                // Best effort: the alert rustls queued tells the peer why before we drop it.
                let _ = self.session.write_tls(&mut self.tcp);
                return Err(io::Error::new(ErrorKind::InvalidData, e));
            }
        }
    }
}
