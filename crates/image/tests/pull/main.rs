//! Registry pulls against a real `docker-registry` on loopback, with images pushed by skopeo:
//! formats (OCI, Docker schema 2, indexes, gzip/zstd/plain layers, whiteouts), auth (basic and
//! bearer), TLS with an extra CA, sharing of layers between pulls, and every failure leaving
//! nothing usable behind.

mod auth;
mod common;
mod failures;
mod formats;
mod tls;
