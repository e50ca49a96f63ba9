//! A multithreaded WebSocket chat server.
//!
//! Two threads do the work: [`net`] (one mio event loop: sockets, HTTP, WebSocket framing) and
//! [`logic`] (owns all chat state in [`chat`]); they talk only through the messages in
//! [`events`]. See `ARCHITECTURE.md` for the whole picture.

pub mod chat;
pub mod client;
pub mod config;
pub mod crash;
pub mod events;
pub mod http;
pub mod logic;
pub mod net;
pub mod proto;
pub mod selftest;
pub mod server;
pub mod ws;
