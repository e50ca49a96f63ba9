//! A connection's socket: plain TCP (`ws://`) or a rustls client session over it (`wss://`).
//! The worker reads and writes plaintext either way.

use std::io::{self, ErrorKind, Read, Write};
use std::sync::Arc;

use mio::net::TcpStream;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};

/// What a `wss://` run needs to open sessions: the config (trusting `--tls-ca`) and the name
/// the server's certificate is checked against.
#[derive(Debug)]
pub struct TlsClient {
    pub config: Arc<ClientConfig>,
    pub name: ServerName<'static>,
}

pub enum Sock {
    Plain(TcpStream),
    Tls(Box<(ClientConnection, TcpStream)>),
}

impl Sock {
    pub fn new(tcp: TcpStream, tls: Option<&TlsClient>) -> io::Result<Sock> {
        Ok(match tls {
            None => Sock::Plain(tcp),
            Some(t) => {
                let conn = ClientConnection::new(Arc::clone(&t.config), t.name.clone())
                    .map_err(io::Error::other)?;
                Sock::Tls(Box::new((conn, tcp)))
            }
        })
    }

    pub fn tcp(&self) -> &TcpStream {
        match self {
            Sock::Plain(tcp) => tcp,
            Sock::Tls(t) => &t.1,
        }
    }

    pub fn tcp_mut(&mut self) -> &mut TcpStream {
        match self {
            Sock::Plain(tcp) => tcp,
            Sock::Tls(t) => &mut t.1,
        }
    }

    /// True for plain TCP, where a short read means the socket is empty. With TLS it does not:
    /// a read returns the plaintext of the records read so far while more may wait.
    pub fn short_read_means_empty(&self) -> bool {
        matches!(self, Sock::Plain(_))
    }

    /// True if the TLS session has records to send (handshake messages, or data the socket
    /// did not take yet).
    pub fn wants_write(&self) -> bool {
        match self {
            Sock::Plain(_) => false,
            Sock::Tls(t) => t.0.wants_write(),
        }
    }

    /// Reads plaintext: with TLS, records until some plaintext appears or the socket would
    /// block. `Ok(0)` is the end of the stream.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let (conn, tcp) = match self {
            Sock::Plain(tcp) => return tcp.read(buf),
            Sock::Tls(t) => (&mut t.0, &mut t.1),
        };
        loop {
            match conn.reader().read(buf) {
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                done => return done,
            }
            if conn.read_tls(tcp)? == 0 {
                return Ok(0);
            }
            conn.process_new_packets()
                .map_err(|e| io::Error::new(ErrorKind::InvalidData, e))?;
        }
    }

    /// Writes plaintext; with TLS it is encrypted into the session's buffer and as much as the
    /// socket takes is sent. `WouldBlock` only when nothing could be taken.
    pub fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (conn, tcp) = match self {
            Sock::Plain(tcp) => return tcp.write(buf),
            Sock::Tls(t) => (&mut t.0, &mut t.1),
        };
        let mut n = conn.writer().write(buf)?;
        let sent_all = send_tls(conn, tcp)?;
        if n == 0 && sent_all {
            // The buffer was full and is empty now: try once more.
            n = conn.writer().write(buf)?;
            send_tls(conn, tcp)?;
        }
        if n == 0 {
            return Err(ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }

    /// Sends what waits in the TLS session. Returns `Ok(false)` if the socket would block.
    pub fn flush_tls(&mut self) -> io::Result<bool> {
        match self {
            Sock::Plain(_) => Ok(true),
            Sock::Tls(t) => send_tls(&mut t.0, &mut t.1),
        }
    }
}

fn send_tls(conn: &mut ClientConnection, tcp: &mut TcpStream) -> io::Result<bool> {
    while conn.wants_write() {
        match conn.write_tls(tcp) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}
