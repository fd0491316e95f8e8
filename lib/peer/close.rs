//! Why a peer connection ended, as a type: the swarm core decides from it whether to ban
//! the peer, redial it later, or remember that the address is our own — never from the text
//! of a message.

use std::fmt;
use std::io;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    // ---- decided by the swarm core ----
    /// The session is ending.
    Shutdown,
    /// A second connection to the same peer (the one opened by the lower peer id is kept).
    Duplicate,
    /// Already at the peer limit.
    TooManyPeers,
    /// The peer is banned.
    Banned,
    /// The peer sent pieces that failed their hash check too often.
    CorruptData,
    /// A message that breaks the protocol at the swarm level (a `have` past the last piece,
    /// a malformed bitfield).
    Protocol(String),

    // ---- reported by the connection ----
    /// The peer closed the connection.
    PeerClosed,
    /// The peer said nothing, not even a keep-alive, for too long.
    Silent,
    /// A socket error (the kind is what decisions read; the text is for people).
    Io(io::ErrorKind, String),
    /// We dialled our own listening socket.
    Ourselves,
    /// The handshake named another torrent.
    OtherTorrent,
    /// The handshake was malformed.
    BadHandshake(String),
    /// A request outside the torrent.
    InvalidRequest(String),
    /// More requests queued than allowed.
    RequestFlood,
    /// A run of blocks nobody asked for.
    UnrequestedBlocks,
    /// Our side of the session ended while the connection was running.
    SessionEnded,
}

impl CloseReason {
    /// The peer is broken or hostile: it is banned and not dialled again.
    pub fn misbehaved(&self) -> bool {
        matches!(
            self,
            CloseReason::CorruptData
                | CloseReason::Protocol(_)
                | CloseReason::OtherTorrent
                | CloseReason::BadHandshake(_)
                | CloseReason::InvalidRequest(_)
                | CloseReason::RequestFlood
                | CloseReason::UnrequestedBlocks
        )
    }

    /// A socket error while doing `what`.
    pub fn io(what: &str, e: io::Error) -> CloseReason {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => CloseReason::Silent,
            io::ErrorKind::UnexpectedEof => CloseReason::PeerClosed,
            k => CloseReason::Io(k, format!("{what}: {e}")),
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::Shutdown => write!(f, "shutting down"),
            CloseReason::Duplicate => write!(f, "already connected to this peer"),
            CloseReason::TooManyPeers => write!(f, "too many peers"),
            CloseReason::Banned => write!(f, "banned"),
            CloseReason::CorruptData => write!(f, "banned: sent corrupt data repeatedly"),
            CloseReason::Protocol(d) => write!(f, "protocol violation: {d}"),
            CloseReason::PeerClosed => write!(f, "connection closed by peer"),
            CloseReason::Silent => write!(f, "peer silent for too long"),
            CloseReason::Io(_, d) => write!(f, "{d}"),
            CloseReason::Ourselves => write!(f, "connected to ourselves"),
            CloseReason::OtherTorrent => write!(f, "handshake for another torrent"),
            CloseReason::BadHandshake(d) => write!(f, "bad handshake: {d}"),
            CloseReason::InvalidRequest(d) => write!(f, "invalid request: {d}"),
            CloseReason::RequestFlood => write!(f, "request flood"),
            CloseReason::UnrequestedBlocks => write!(f, "sends blocks nobody asked for"),
            CloseReason::SessionEnded => write!(f, "session ended"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_misbehaviour_bans() {
        assert!(CloseReason::RequestFlood.misbehaved());
        assert!(CloseReason::Protocol("x".into()).misbehaved());
        assert!(!CloseReason::PeerClosed.misbehaved());
        assert!(
            !CloseReason::io("read", io::Error::from(io::ErrorKind::ConnectionReset)).misbehaved()
        );
        assert_eq!(
            CloseReason::io("read", io::Error::from(io::ErrorKind::TimedOut)),
            CloseReason::Silent
        );
    }
}
