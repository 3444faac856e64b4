//! usher's HTTP edge: one origin serving the token service (`/{tenant}/...`), Graph
//! (`/v1.0/...`), usher's own API (`/usher/...`) and operations (`/healthz`, `/metrics`), over TLS
//! always. Handlers are thin; errors become HTTP responses in `error.rs` only.
#![warn(missing_docs)]

pub mod config;
mod error;
mod graph_shapes;
mod metrics;
mod pages;
mod routes;
mod serve;
mod state;
pub mod tls;

pub use config::{ServerConfig, ServerError};
pub use serve::{RunningServer, start};
pub use state::AppState;
