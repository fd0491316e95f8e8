//! Fuzz target: btrack's HTTP front door (lib/manager/httpd.rs) with btrack's real handler
//! (lib/manager, tracker and pages), over loopback.
//!
//! The request parser reads from a socket, so each input is written to a connection to a
//! server started once on 127.0.0.1:0 (an empty data directory, an admin token nobody
//! knows, an open tracker); the client then closes its sending side and reads the answer.
//! A panic in any server thread aborts the process (libFuzzer's panic hook), which is the
//! crash to find; a server that neither answers nor closes within 10 s is a hang and fails.
//! Covers the request line and headers, Content-Length / chunked framing, chunked body
//! decoding and every route the handler has.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal::manager::{self, httpd, registry::Registry, App};
use shoal::tracker::server::{self, Tracker};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

fn server() -> SocketAddr {
    static ADDR: OnceLock<SocketAddr> = OnceLock::new();
    *ADDR.get_or_init(|| {
        // libFuzzer's main is not Rust's: ignore SIGPIPE as a Rust program would.
        unsafe { libc_sigpipe_ignore() };
        // fuzz/run.sh names a directory it removes afterwards.
        let dir = std::env::var_os("SHOAL_FUZZ_TMP")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| std::env::temp_dir().join(format!("shoal-fuzz-httpd-{}", std::process::id())));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (registry, _) = Registry::open(&dir).unwrap();
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = tcp.local_addr().unwrap();
        let tracker = Arc::new(Tracker::new(server::Config { open: true, http_rate_limit: 0, ..server::Config::default() }));
        let app = Arc::new(App {
            tracker,
            registry,
            cfg: manager::Config {
                public_url: None,
                max_upload: 1 << 20,
                admin_token: Some("fuzz-admin-token-nobody-knows".into()),
                listen: addr.to_string(),
                allowed_hosts: vec![],
            },
        });
        let cfg = httpd::Config {
            max_workers: 64,
            max_per_ip: 64,
            idle_timeout: Duration::from_secs(5),
            head_deadline: Duration::from_secs(5),
            body_grace: Duration::from_secs(5),
            body_min_rate: 1,
        };
        std::thread::spawn(move || httpd::serve(tcp, cfg, Box::new(move |req| app.handle(req)), Box::new(|| {})));
        addr
    })
}

unsafe fn libc_sigpipe_ignore() {
    extern "C" {
        fn signal(sig: i32, handler: usize) -> usize;
    }
    const SIGPIPE: i32 = 13;
    const SIG_IGN: usize = 1;
    signal(SIGPIPE, SIG_IGN);
}

fuzz_target!(|data: &[u8]| {
    let addr = server();
    let mut s = TcpStream::connect(addr).expect("connect to the fuzzed server");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // The server may answer and close before reading everything (431, 400): not an error.
    let _ = s.write_all(data);
    let _ = s.shutdown(Shutdown::Write);
    let mut answer = Vec::new();
    match s.read_to_end(&mut answer) {
        Ok(_) => {}
        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
            panic!("server neither answered nor closed within 10 s")
        }
        Err(_) => {} // reset after an early answer
    }
    if !answer.is_empty() {
        assert!(answer.starts_with(b"HTTP/1.1 "), "not an HTTP answer: {:?}", String::from_utf8_lossy(&answer[..answer.len().min(64)]));
    }
});
