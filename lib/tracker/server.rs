//! btrack tracker server (filled in next).
