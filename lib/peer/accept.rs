//! One listening socket for every torrent of a process: the acceptor reads each incoming
//! peer's handshake and hands the connection to the session whose info-hash it names.
//!
//! Invariants: at most [`MAX_HANDSHAKING`] connections wait for their handshake at once
//! (each for at most `conn::HANDSHAKE_TIMEOUT`), and each torrent runs at most its own cap
//! of accepted connections; anything beyond is closed at once, before it costs a thread for
//! long. A connection naming no registered torrent is closed. Stopping wakes the accept loop
//! and joins it, so the port is free when [`Acceptor::stop`] returns.

use super::conn::{self, Context, PeerKey, Side};
use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Connections waiting for their handshake at once, whatever the torrent.
pub const MAX_HANDSHAKING: usize = 64;

struct Torrent {
    ctx: Arc<Context>,
    live: Arc<AtomicUsize>,
    cap: usize,
    next_key: PeerKey,
}

#[derive(Default)]
struct Shared {
    torrents: Mutex<HashMap<[u8; 20], Torrent>>,
    handshaking: AtomicUsize,
    stop: AtomicBool,
}

pub struct Acceptor {
    port: u16,
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Acceptor {
    /// Binds (see `listen::bind`: `None` takes the first free port of 6881–6889) and starts
    /// accepting.
    pub fn bind(port: Option<u16>) -> io::Result<Arc<Acceptor>> {
        let listener = crate::listen::bind(port)?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let thread = std::thread::Builder::new().name("accept".into()).spawn(move || accept_loop(listener, s))?;
        Ok(Arc::new(Acceptor { port, shared, thread: Mutex::new(Some(thread)) }))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Routes incoming peers of `ctx`'s torrent to it, at most `cap` at once.
    pub fn add(&self, ctx: Arc<Context>, cap: usize) {
        // Keys of accepted connections count up from the middle; dialled ones from 1.
        let t = Torrent { ctx: ctx.clone(), live: Arc::new(AtomicUsize::new(0)), cap, next_key: u64::MAX / 2 };
        self.shared.torrents.lock().unwrap().insert(ctx.info_hash, t);
    }

    /// Incoming peers of this torrent are refused from now on.
    pub fn remove(&self, info_hash: &[u8; 20]) {
        self.shared.torrents.lock().unwrap().remove(info_hash);
    }

    /// Stops accepting and waits for the accept loop to end (the port is free after).
    pub fn stop(&self) {
        if self.shared.stop.swap(true, Ordering::SeqCst) {
            return; // stopped already
        }
        let _ = TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], self.port)), Duration::from_secs(1));
        if let Some(h) = self.thread.lock().unwrap().take() {
            let _ = h.join();
        }
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for s in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = s else { continue };
        let Ok(addr) = stream.peer_addr() else { continue };
        // An IPv4 peer on the dual-stack socket shows as ::ffff:a.b.c.d: name it as IPv4, as
        // trackers and other peers do.
        let addr = SocketAddr::new(addr.ip().to_canonical(), addr.port());
        if shared.handshaking.load(Ordering::SeqCst) >= MAX_HANDSHAKING {
            continue; // dropped: closed at once
        }
        shared.handshaking.fetch_add(1, Ordering::SeqCst);
        let sh = shared.clone();
        let started = conn::spawn(format!("hs-{addr}"), move || {
            let routed = route(&sh, stream, addr);
            if let Some(run) = routed {
                run();
            }
        });
        if started.is_err() {
            shared.handshaking.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Reads the handshake and picks the torrent; answers the connection's work, or `None` when
/// it is refused. Releases the handshake slot either way.
fn route(shared: &Arc<Shared>, mut stream: TcpStream, addr: SocketAddr) -> Option<impl FnOnce()> {
    stream.set_read_timeout(Some(conn::HANDSHAKE_TIMEOUT)).ok();
    let hs = conn::read_handshake(&mut stream);
    shared.handshaking.fetch_sub(1, Ordering::SeqCst);
    let hs = hs.ok()?;
    let (ctx, live, key) = {
        let mut torrents = shared.torrents.lock().unwrap();
        let t = torrents.get_mut(&hs.info_hash)?;
        if t.live.load(Ordering::SeqCst) >= t.cap {
            return None;
        }
        t.next_key += 1;
        t.live.fetch_add(1, Ordering::SeqCst);
        (t.ctx.clone(), t.live.clone(), t.next_key)
    };
    Some(move || {
        conn::run(ctx, key, stream, addr, Side::Accepted(hs));
        live.fetch_sub(1, Ordering::SeqCst);
    })
}
