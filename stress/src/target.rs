//! Parsing `ws://` and `wss://` URLs and refusing every target that is not on this machine.
//!
//! The stress client can open thousands of connections and push millions of messages per second;
//! pointed at someone else's host that is an attack, so only loopback targets are accepted:
//! `127.0.0.0/8`, `::1` and the name `localhost` (only when every address it resolves to is a
//! loopback one). Other names are refused without being resolved, so no DNS lookup leaves the box.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

/// A parsed `ws[s]://host[:port]/path` URL whose host has been checked to be loopback.
#[derive(Clone, Debug)]
pub struct Target {
    /// Where to connect.
    pub addr: SocketAddr,
    /// The `Host` header value (`host:port` as written in the URL).
    pub host_header: String,
    /// Path and query, starting with `/`; may still hold `{room}` / `{i}` placeholders.
    pub path: String,
    /// `wss://`: the host name the server's certificate must be valid for.
    pub tls_name: Option<String>,
}

/// Parses `url` and checks that its host is a loopback address.
pub fn parse(url: &str) -> Result<Target, String> {
    let (tls, rest) = match (url.strip_prefix("ws://"), url.strip_prefix("wss://")) {
        (Some(rest), _) => (false, rest),
        (_, Some(rest)) => (true, rest),
        _ => return Err(format!("{url}: only ws:// and wss:// URLs are supported")),
    };
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    if authority.contains('@') {
        return Err(format!("{url}: user info in the URL is not supported"));
    }
    let (host, port) = split_host_port(authority, if tls { 443 } else { 80 })?;
    let addr = loopback_addr(host, port)?;
    let path = if path.is_empty() {
        "/".to_string()
    } else if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_string()
    };
    Ok(Target {
        addr,
        host_header: authority.to_string(),
        path,
        tls_name: tls.then(|| host.to_string()),
    })
}

/// Splits `host[:port]` or `[v6][:port]`; the port defaults to `default_port`.
fn split_host_port(authority: &str, default_port: u16) -> Result<(&str, u16), String> {
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("{authority}: unclosed '['"))?;
        match after.strip_prefix(':') {
            Some(p) => (host, Some(p)),
            None if after.is_empty() => (host, None),
            None => return Err(format!("{authority}: junk after ']'")),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("the URL has no host".to_string());
    }
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .map_err(|_| format!("{authority}: bad port"))?,
        None => default_port,
    };
    Ok((host, port))
}

/// Whether `ip` is on this machine's loopback interface (IPv4-mapped loopback included).
fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// The address to connect to, or an error when `host` is not a loopback address.
pub fn loopback_addr(host: &str, port: u16) -> Result<SocketAddr, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return if is_loopback(ip) {
            Ok(SocketAddr::new(ip, port))
        } else {
            Err(format!(
                "refusing target {host}: only loopback addresses (127.0.0.0/8, ::1, localhost) are allowed"
            ))
        };
    }
    if !host.eq_ignore_ascii_case("localhost") {
        return Err(format!(
            "refusing target {host}: only loopback addresses (127.0.0.0/8, ::1, localhost) are allowed"
        ));
    }
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("{host}: {e}"))?
        .collect();
    if addrs.is_empty() || !addrs.iter().all(|a| is_loopback(a.ip())) {
        return Err(format!(
            "refusing target {host}: it resolves to a non-loopback address"
        ));
    }
    // Prefer IPv4: servers started with `--bind 127.0.0.1` do not listen on ::1.
    Ok(*addrs.iter().find(|a| a.is_ipv4()).unwrap_or(&addrs[0]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_loopback_forms() {
        let t = parse("ws://127.0.0.1:9000/ws/chat/{room}/?nickname=u{i}").unwrap();
        assert_eq!(t.addr, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(t.host_header, "127.0.0.1:9000");
        assert_eq!(t.path, "/ws/chat/{room}/?nickname=u{i}");
        assert_eq!(parse("ws://127.3.4.5").unwrap().addr.port(), 80);
        assert_eq!(parse("ws://[::1]:81").unwrap().path, "/");
        assert_eq!(parse("ws://127.0.0.1:81?x=1").unwrap().path, "/?x=1");
        let tls = parse("wss://localhost/").unwrap();
        assert_eq!(tls.addr.port(), 443);
        assert_eq!(tls.tls_name.as_deref(), Some("localhost"));
        assert_eq!(parse("ws://127.0.0.1/").unwrap().tls_name, None);
        assert!(
            parse("ws://localhost:9000/")
                .unwrap()
                .addr
                .ip()
                .is_loopback()
        );
    }

    #[test]
    fn refuses_everything_else() {
        for url in [
            "ws://10.0.0.1:80/",
            "ws://192.168.1.1/",
            "ws://8.8.8.8:53/",
            "ws://[::ffff:8.8.8.8]:80/",
            "ws://[2001:db8::1]:80/",
            "ws://example.com/",
            "ws://0.0.0.0:80/",
            "wss://example.com/",
            "http://127.0.0.1/",
            "ws://user@127.0.0.1/",
            "ws://127.0.0.1:99999/",
        ] {
            assert!(parse(url).is_err(), "{url} was accepted");
        }
    }
}
