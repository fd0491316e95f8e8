//! Choosing the TCP port a peer session listens on.
//!
//! Without an explicit port a session takes the first free port of the BitTorrent range
//! 6881–6889 and, when all nine are taken, any free port the kernel picks (port 0), so a
//! second `bfetch` or `bseed` on the same host just works. An explicit port is used as
//! given: when it is taken that is an error, never a silent move elsewhere (`0` asks the
//! kernel for any free port).
//!
//! The port actually bound is what the session logs ("listening on port N") and announces;
//! [`last_bound`] lets a binary that runs one session put it in its `--json` report.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, TcpListener};
use std::sync::atomic::{AtomicU16, Ordering};

/// The ports tried, in order, when none is given.
pub const DEFAULT_PORTS: std::ops::RangeInclusive<u16> = 6881..=6889;

static LAST_BOUND: AtomicU16 = AtomicU16::new(0);

/// Binds a listener on all addresses, IPv6 and IPv4 (one dual-stack socket where the host
/// has IPv6 and `net.ipv6.bindv6only` is 0; IPv4 alone otherwise): on `port` when given (0:
/// any free port), else on the first free port of [`DEFAULT_PORTS`], else on any free port.
pub fn bind(port: Option<u16>) -> io::Result<TcpListener> {
    let listener = match port {
        Some(p) => bind_any(p)?,
        None => bind_first_free(DEFAULT_PORTS)?,
    };
    if let Ok(a) = listener.local_addr() {
        LAST_BOUND.store(a.port(), Ordering::Relaxed);
    }
    Ok(listener)
}

/// The first port of `range` that binds, else any free port. Only "address in use" (or a
/// permission refusal on that one port) moves on to the next; other errors are returned.
pub fn bind_first_free(range: std::ops::RangeInclusive<u16>) -> io::Result<TcpListener> {
    for p in range {
        match bind_any(p) {
            Ok(l) => return Ok(l),
            Err(e) if matches!(e.kind(), io::ErrorKind::AddrInUse | io::ErrorKind::PermissionDenied) => continue,
            Err(e) => return Err(e),
        }
    }
    bind_any(0)
}

/// Both stacks on `port` when a dual-stack socket is possible, else IPv4.
fn bind_any(port: u16) -> io::Result<TcpListener> {
    if dual_stack() {
        match TcpListener::bind((Ipv6Addr::UNSPECIFIED, port)) {
            Ok(l) => return Ok(l),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse || e.kind() == io::ErrorKind::PermissionDenied => return Err(e),
            Err(_) => {} // no IPv6 here: IPv4 alone
        }
    }
    TcpListener::bind((Ipv4Addr::UNSPECIFIED, port))
}

/// Does an IPv6 wildcard socket also take IPv4 connections here?
fn dual_stack() -> bool {
    std::fs::read_to_string("/proc/sys/net/ipv6/bindv6only").map(|v| v.trim() == "0").unwrap_or(false)
}

/// The port most recently bound by [`bind`] in this process (0 before any). Meant for
/// binaries that run a single session; a process running many (btrack --seed) should not
/// rely on it.
pub fn last_bound() -> u16 {
    LAST_BOUND.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_port_taken_is_an_error() {
        let a = bind(Some(0)).unwrap();
        let p = a.local_addr().unwrap().port();
        let e = bind(Some(p)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
    }

    #[test]
    fn range_skips_taken_ports_then_falls_back_to_any() {
        let a = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
        let p = a.local_addr().unwrap().port();
        // The only port of the range is taken: any free port instead.
        let l = bind_first_free(p..=p).unwrap();
        let got = l.local_addr().unwrap().port();
        assert!(got != p && got != 0);
        // Free again: taken first.
        drop(a);
        let c = bind_first_free(p..=p).unwrap();
        assert_eq!(c.local_addr().unwrap().port(), p);
    }
}
