//! Where the listener's sockets come from: addresses to bind (`:port` is
//! every interface, IPv6 and IPv4 on one dual-stack socket, as Go's
//! `net.Listen(":port")` does for node_exporter), or sockets systemd passes
//! in (socket activation).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;

/// One `--web.listen-address`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddress {
    /// `:port`: every interface, IPv6 and IPv4.
    AnyHost(u16),
    /// `host:port` (a name, an IPv4 address or a bracketed IPv6 address).
    Host(String, u16),
}

impl std::str::FromStr for ListenAddress {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| "expected host:port, [ipv6]:port or :port".to_owned())?;
        let port: u16 = port
            .parse()
            .map_err(|_| format!("port {port:?} is not a number from 0 to 65535"))?;
        if host.is_empty() {
            return Ok(Self::AnyHost(port));
        }
        let host = match host.strip_prefix('[') {
            Some(rest) => rest
                .strip_suffix(']')
                .filter(|h| h.parse::<Ipv6Addr>().is_ok())
                .ok_or_else(|| format!("{host:?} is not a bracketed IPv6 address"))?,
            None if host.contains(':') => {
                return Err("an IPv6 address needs brackets: [::1]:10090".into())
            }
            None => host,
        };
        Ok(Self::Host(host.to_owned(), port))
    }
}

impl std::fmt::Display for ListenAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::AnyHost(port) => write!(f, ":{port}"),
            Self::Host(host, port) if host.contains(':') => write!(f, "[{host}]:{port}"),
            Self::Host(host, port) => write!(f, "{host}:{port}"),
        }
    }
}

/// Why no socket could be had.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("cannot listen on {address}: {source}")]
    Bind { address: String, source: io::Error },
    #[error("--web.systemd-socket: {0}")]
    Systemd(String),
}

/// Binds every address (all or none: a failure closes what was bound).
pub fn bind_all(addresses: &[ListenAddress]) -> Result<Vec<TcpListener>, BindError> {
    addresses.iter().map(bind).collect()
}

fn bind(address: &ListenAddress) -> Result<TcpListener, BindError> {
    let fail = |source: io::Error| BindError::Bind {
        address: address.to_string(),
        source,
    };
    let socket = match address {
        ListenAddress::AnyHost(port) => match dual_stack(*port) {
            Ok(socket) => socket,
            // A host without IPv6: every IPv4 interface is what `:port`
            // can still mean.
            Err(e) if ipv6_unavailable(&e) => {
                plain(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), *port)).map_err(fail)?
            }
            Err(e) => return Err(fail(e)),
        },
        ListenAddress::Host(host, port) => {
            let addr = (host.as_str(), *port)
                .to_socket_addrs()
                .map_err(fail)?
                .next()
                .ok_or_else(|| fail(io::Error::other("the name has no address")))?;
            plain(addr).map_err(fail)?
        }
    };
    TcpListener::from_std(socket.into()).map_err(fail)
}

fn ipv6_unavailable(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL)
    )
}

/// `[::]:port` that also takes IPv4 (as `::ffff:a.b.c.d`), whatever the
/// host's `net.ipv6.bindv6only` says.
fn dual_stack(port: u16) -> io::Result<Socket> {
    let socket = Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_only_v6(false)?;
    finish(
        socket,
        SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port),
    )
}

fn plain(addr: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    finish(socket, addr)
}

fn finish(socket: Socket, addr: SocketAddr) -> io::Result<Socket> {
    // As every server does: a restart must not wait out TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket)
}

/// The sockets systemd passed (`LISTEN_FDS` descriptors from 3, meant for
/// this process by `LISTEN_PID`), as exporter-toolkit's
/// `--web.systemd-socket` takes them.
pub fn systemd_listeners(
    env: impl Fn(&str) -> Option<String>,
) -> Result<Vec<TcpListener>, BindError> {
    let err = |m: String| BindError::Systemd(m);
    let pid = env("LISTEN_PID").ok_or_else(|| {
        err(
            "LISTEN_PID is not set: the exporter was not started by systemd socket activation"
                .into(),
        )
    })?;
    if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
        return Err(err(format!(
            "LISTEN_PID={pid} is not this process ({})",
            std::process::id()
        )));
    }
    let count: i32 = env("LISTEN_FDS")
        .and_then(|n| n.trim().parse().ok())
        .filter(|n| *n > 0)
        .ok_or_else(|| err("LISTEN_FDS is not a positive number: no socket was passed".into()))?;
    (0..count)
        .map(|i| listener_from_fd(3 + i).map_err(|e| err(format!("descriptor {}: {e}", 3 + i))))
        .collect()
}

#[cfg(unix)]
fn listener_from_fd(fd: i32) -> io::Result<TcpListener> {
    use std::os::fd::{BorrowedFd, FromRawFd};
    // Looked at before it is taken: a descriptor that is not the socket
    // systemd passed (a unit without the socket, a wrapper that closed
    // it) may be one the process opened itself, and taking it would close
    // it under its owner.
    // SAFETY: the descriptor is only borrowed for this check; an invalid
    // one makes the getsockopt fail with EBADF.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    if socket2::SockRef::from(&borrowed).r#type()? != Type::STREAM {
        return Err(io::Error::other("not a stream socket"));
    }
    // SAFETY: a stream socket at a descriptor systemd hands to this process
    // (LISTEN_PID checked) that nothing else in it owns; taken once.
    let socket = unsafe { Socket::from_raw_fd(fd) };
    socket.set_nonblocking(true)?;
    TcpListener::from_std(socket.into())
}

#[cfg(not(unix))]
fn listener_from_fd(_fd: i32) -> io::Result<TcpListener> {
    Err(io::Error::other("socket activation needs a Unix system"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_and_print() {
        for (text, parsed) in [
            (":10090", ListenAddress::AnyHost(10090)),
            ("127.0.0.1:0", ListenAddress::Host("127.0.0.1".into(), 0)),
            ("[::1]:9", ListenAddress::Host("::1".into(), 9)),
            ("localhost:80", ListenAddress::Host("localhost".into(), 80)),
        ] {
            assert_eq!(text.parse::<ListenAddress>().unwrap(), parsed);
            assert_eq!(parsed.to_string(), text);
        }
        for bad in ["10090", ":x", "::1:80", "[nope]:1", "host:70000", ""] {
            assert!(bad.parse::<ListenAddress>().is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn any_host_takes_ipv4_and_ipv6() {
        let listeners = bind_all(&[ListenAddress::AnyHost(0)]).unwrap();
        let port = listeners[0].local_addr().unwrap().port();
        for addr in ["127.0.0.1", "::1"] {
            let client = tokio::net::TcpStream::connect((addr, port));
            let (accepted, client) = tokio::join!(listeners[0].accept(), client);
            if addr == "::1" && client.as_ref().is_err_and(ipv6_unavailable) {
                continue; // a host without IPv6 loopback
            }
            client.unwrap();
            accepted.unwrap();
        }
    }

    #[test]
    fn systemd_sockets_are_refused_without_the_environment() {
        let none = |_: &str| None;
        assert!(systemd_listeners(none)
            .unwrap_err()
            .to_string()
            .contains("LISTEN_PID"));
        let other = |k: &str| (k == "LISTEN_PID").then(|| "1".to_owned());
        assert!(systemd_listeners(other)
            .unwrap_err()
            .to_string()
            .contains("not this process"));
    }
}
