//! The peer wire protocol (BEP 3, 6, 10): [`wire`] holds the messages as pure functions over
//! bytes; [`conn`] runs one connection on blocking sockets (a reader and a writer thread);
//! [`metadata`] is BEP 9 metadata exchange (serving the info dictionary, fetching it for a
//! magnet link); [`buffers`] reuses block buffers between readers and disk threads.

pub mod accept;
pub mod buffers;
pub mod close;
pub mod conn;
pub mod inbound;
pub mod metadata;
pub mod wire;
