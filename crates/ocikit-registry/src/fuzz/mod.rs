//! Fuzz entry points with their oracles (feature `__fuzz`; not a public API): request
//! routes, `Range` and `Content-Range`, htpasswd files and `Authorization: Basic`, bearer
//! tokens, each judged by a small reference parser written here. The assertions are the
//! fuzzers' oracles.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod auth;
mod range;
mod route;
mod token;
pub use auth::htpasswd;
pub use range::range_headers;
pub use route::route_parse;
pub use token::{sign as sign_token, token_verify};
