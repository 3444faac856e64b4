//! Wire types shared by usher's server, clients and agent: serde only, no I/O.
#![warn(missing_docs)]

pub mod ca;
pub mod compute;
pub mod graph;
pub mod local;
pub mod oauth;
