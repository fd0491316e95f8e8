//! Trackers: the HTTP (BEP 3, 23, 7, 48) and UDP (BEP 15) protocols, the client side used by
//! bseed/bfetch and the server side used by btrack.
//!
//! Layout:
//! - [`http`] and [`udp`]: the wire formats as pure functions over bytes (query strings,
//!   bencoded responses, BEP 15 packets), shared by the client and the server so both sides
//!   agree by construction;
//! - [`client`]: blocking `announce` / `scrape` against `http://` and `udp://` URLs;
//! - [`store`]: the peer-store trait, btrack's sharded, bounded, expiring in-memory store and
//!   the site-aware peer selection shared by every store;
//! - [`redis`]: the same store in Redis, for several btracks serving one swarm;
//! - [`server`]: btrack's tracker front ends (HTTP request handling and the UDP loop).

pub mod client;
pub mod http;
pub mod redis;
pub mod store;
pub mod server;
pub mod udp;
