//! Interop tests (being written).
