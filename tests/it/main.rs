//! The integration tests: one crate, so the harness in `common` is compiled once and every
//! module uses it. Each test starts the real `websocket` binary on an ephemeral loopback port.

mod abuse;
mod api;
mod architecture;
mod backend;
mod browser;
mod cli;
mod client;
mod cluster;
mod common;
mod crash;
mod dialects;
mod docs;
mod durability;
mod faults;
mod foundation;
mod history;
mod protocol;
mod tls;
mod webhooks;
