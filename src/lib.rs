//! A multithreaded WebSocket chat server.
//!
//! Two threads do the work: [`net`] (one mio event loop: sockets, HTTP, WebSocket framing, and
//! parsing each message in its [`dialect`]) and [`logic`] (owns the chat core, [`chat`], and
//! renders its events per dialect); they talk only through the messages in [`events`]. See
//! `ARCHITECTURE.md` for the whole picture.

pub mod api;
pub mod auth;
pub mod chat;
pub mod client;
pub mod cluster;
pub mod config;
pub mod crash;
pub mod dialect;
pub mod events;
pub mod http;
pub mod logic;
pub mod net;
pub mod selftest;
pub mod server;
pub mod store;
pub mod tls;
pub mod transcript;
pub mod webhook;
pub mod ws;
