//! The TCP congestion control of peer connections (`--tcp-congestion`).
//!
//! Every host of a swarm runs dozens of TCP flows at once through its own uplink, and the
//! flows of one host compete with each other at that uplink. How fairly they share it
//! decides how evenly the hosts are served. Measured on the namespace testbed (32 hosts ×
//! 256 MiB × 100 Mbit/s, docs/BENCHMARKS.md): with the kernel's BBR (the default of the
//! machines here) a few hosts got 6–9 MB/s for long stretches while uploading at full rate
//! and the last host finished at 1.35–1.41 × F/B; with CUBIC every host finished within
//! half a second of the others, 1.26 ×. So peer connections ask for CUBIC (present in every
//! Linux kernel and allowed to unprivileged processes by default) unless told otherwise;
//! `system` keeps whatever the kernel's default is.
//!
//! A name the kernel does not offer (or does not allow) is not fatal: the session says so on
//! one line and its connections use the kernel's default ([`check`]).

use std::fmt;
use std::io;

/// What peer connections ask for when nothing is given.
pub const DEFAULT: &str = "cubic";

/// The longest name the kernel takes (`TCP_CA_NAME_MAX` is 16 with the NUL).
const MAX_NAME: usize = 15;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Congestion {
    /// The kernel's default (`net.ipv4.tcp_congestion_control`); nothing is set.
    System,
    /// This algorithm, set on every peer connection.
    Named(String),
}

impl Default for Congestion {
    fn default() -> Congestion {
        Congestion::Named(DEFAULT.into())
    }
}

impl fmt::Display for Congestion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Congestion::System => f.write_str("system"),
            Congestion::Named(n) => f.write_str(n),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bad TCP congestion control {:?}: a kernel name like cubic, reno or bbr (1 to {MAX_NAME} of a-z 0-9 _), or system",
            self.0
        )
    }
}

impl std::error::Error for ParseError {}

/// Parses an option value: `system`, or an algorithm's name.
pub fn parse(s: &str) -> Result<Congestion, ParseError> {
    if s == "system" {
        return Ok(Congestion::System);
    }
    let ok = !s.is_empty()
        && s.len() <= MAX_NAME
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(Congestion::Named(s.into()))
    } else {
        Err(ParseError(s.into()))
    }
}

/// Sets `c` on a connected or listening TCP socket.
#[cfg(target_os = "linux")]
pub fn apply(socket: &impl std::os::fd::AsRawFd, c: &Congestion) -> io::Result<()> {
    let Congestion::Named(name) = c else { return Ok(()) };
    // SAFETY: the pointer and length describe `name`'s bytes, alive for the call; the kernel
    // copies at most that many.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_CONGESTION,
            name.as_ptr() as *const libc::c_void,
            name.len() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
pub fn apply(_socket: &impl std::os::fd::AsRawFd, c: &Congestion) -> io::Result<()> {
    match c {
        Congestion::System => Ok(()),
        Congestion::Named(_) => Err(io::Error::new(io::ErrorKind::Unsupported, "only on Linux")),
    }
}

/// What the session's connections will use: `c` when the kernel takes it on a socket of
/// our own, else [`Congestion::System`] and why not (for one line on stderr).
pub fn check(c: &Congestion) -> (Congestion, Option<io::Error>) {
    if *c == Congestion::System {
        return (Congestion::System, None);
    }
    let probe = std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0));
    match probe.and_then(|l| apply(&l, c)) {
        Ok(()) => (c.clone(), None),
        Err(e) => (Congestion::System, Some(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_system_parse_and_anything_else_is_refused() {
        assert_eq!(parse("system"), Ok(Congestion::System));
        assert_eq!(parse("cubic"), Ok(Congestion::Named("cubic".into())));
        assert_eq!(parse("bbr2"), Ok(Congestion::Named("bbr2".into())));
        for bad in ["", "Cubic", "cu bic", "a/b", "sixteen_chars_xx", "cubic\0"] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
        assert_eq!(Congestion::default().to_string(), DEFAULT);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_algorithm_set_is_the_one_the_socket_reports() {
        use std::os::fd::AsRawFd;
        let l = std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).unwrap();
        for name in ["reno", "cubic"] {
            apply(&l, &Congestion::Named(name.into())).unwrap();
            let mut buf = [0u8; 16];
            let mut len = buf.len() as libc::socklen_t;
            // SAFETY: buf and len describe a writable buffer of len bytes.
            let r = unsafe {
                libc::getsockopt(
                    l.as_raw_fd(),
                    libc::IPPROTO_TCP,
                    libc::TCP_CONGESTION,
                    buf.as_mut_ptr() as *mut libc::c_void,
                    &mut len,
                )
            };
            assert_eq!(r, 0);
            let got: Vec<u8> = buf.iter().copied().take_while(|b| *b != 0).collect();
            assert_eq!(got, name.as_bytes());
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn an_algorithm_the_kernel_lacks_falls_back_to_the_system_default_with_the_reason() {
        let (c, why) = check(&Congestion::Named("nosuchcc".into()));
        assert_eq!(c, Congestion::System);
        let why = why.expect("a reason");
        assert_eq!(why.raw_os_error(), Some(libc::ENOENT));
        assert_eq!(check(&Congestion::System).0, Congestion::System);
    }
}
