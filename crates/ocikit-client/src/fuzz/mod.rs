//! Fuzz entry points with their oracles (feature `__fuzz`; not a public API):
//! `WWW-Authenticate` challenges, `Link` headers and Docker's `config.json`, each judged by
//! a reference reader written here from the RFC or Docker's documented behaviour. The
//! assertions are the fuzzers' oracles.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod challenge;
mod docker_config;
mod link;
pub use challenge::www_authenticate;
pub use docker_config::docker_config;
pub use link::link_header;
