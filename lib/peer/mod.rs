//! The peer wire protocol (BEP 3, 6, 10): [`wire`] holds the messages as pure functions over
//! bytes; [`conn`] runs one connection on blocking sockets (a reader and a writer thread).

pub mod accept;
pub mod close;
pub mod conn;
pub mod wire;
