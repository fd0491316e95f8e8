//! shoal: sync very large files across a closed fleet with BitTorrent.
//!
//! The library behind the `bdecode`, `mktorrent`, `bverify`, `btrack`, `bseed` and
//! `bfetch` binaries. Rooms are named for the protocol part they hold:
//! - [`bencode`]: BEP 3 encoding, a strict pure decoder with byte offsets in errors;
//! - [`metainfo`]: .torrent files, info-hashes, magnet URIs, pieces mapped onto files;
//! - [`hashing`]: piece hashing on every core; [`create`] builds torrents; [`verify`]
//!   checks content against one;
//! - [`units`], [`progress`], [`cli`]: what the binaries share;
//! - [`source`]: where a TORRENT argument comes from (path, `-`, `http://` URL, magnet
//!   link); [`listen`]: the peer port (6881–6889, then any free one); [`congestion`]: the
//!   TCP congestion control peer connections ask for;
//! - [`peer`]: wire messages, connections, the shared acceptor, BEP 9 metadata;
//!   [`picker`]: which blocks to ask whom; [`swarm`]: every swarm decision as a state
//!   machine without I/O; [`session`]: its threaded driver; [`sim`]: the fleet simulator
//!   that runs many swarm cores over a simulated network; [`webseed`]: BEP 19 HTTP range
//!   fetches for the pieces the swarm lacks;
//! - [`tracker`]: HTTP and UDP announce (client and btrack's server, in memory or Redis);
//!   [`manager`]: btrack's web pages, API and registry;
//! - [`sanitize`]: peer- and torrent-supplied text made safe to print; [`mailbox`]: the
//!   queue that feeds a connection's writer and a disk thread.

pub mod announce;
pub mod bencode;
pub mod cli;
pub mod congestion;
pub mod create;
pub mod hashing;
pub mod hex;
pub mod listen;
pub mod mailbox;
pub mod manager;
pub mod metainfo;
pub mod progress;
pub mod units;
pub mod verify;
pub mod peer;
pub mod picker;
pub mod rate;
pub mod seeder;
pub mod source;
pub mod sanitize;
pub mod session;
pub mod sim;
pub mod storage;
pub mod swarm;
pub mod tracker;
pub mod webseed;
