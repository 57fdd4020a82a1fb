//! Image locations in skopeo's transport syntax: the library's ([`ocikit::transport`]).

pub(crate) use ocikit::transport::{Location, Selector};
