//! End-to-end tests of bdecode, mktorrent and bverify (issue 2).
mod common;
