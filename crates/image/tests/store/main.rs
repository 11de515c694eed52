//! Integration tests of the image store through its public API. One test binary, so the
//! helpers in `common` are compiled once and shared.

mod common;
mod formats;
mod layers;
mod lookups;
mod users;
