//! btrack peer store (filled in next).
