//! The node agent as a library: pod sources (manifest directory, local API),
//! the supervisor that owns one pod worker per pod, and the local API server.
//!
//! # Layout
//!
//! - `agent::run`: the boot order (reclaim leftovers, adopt, load sources,
//!   serve) and the shutdown; start there.
//! - `supervisor`: one pod worker per UID; `admission`: what is refused
//!   before a worker starts; `orphans`: runtime pods no source claims.
//! - `store`, `saved_events`: the pods and events as the API shows them.
//! - `manifests`: the static pod source; `api/`: the local API server;
//!   `cluster/`: cluster mode (the Node, its Lease, the API server's pods
//!   and their statuses).
//! - `logs`: reading CRI logs; `log_rotation`, `image_gc`, `eviction`
//!   (local storage limits), `periodic`: the background passes; `config`,
//!   `state_dir`, `node`: settings and host.

pub mod admission;
pub mod agent;
pub mod api;
pub mod cluster;
pub mod config;
pub mod eviction;
pub mod image_gc;
pub mod log_rotation;
pub mod logs;
pub mod manifests;
pub mod metrics;
mod node;
mod orphans;
mod periodic;
pub mod saved_events;
pub mod service;
mod state_dir;
pub mod store;
pub mod supervisor;

pub use agent::run;
pub use config::{AgentConfig, AgentFlags, ConfigError};
pub use manifests::{watch_manifests, ManifestEvent};
pub use service::{ApiError, LogOptions, LogTarget, PodService, WatchEvent};
pub use supervisor::Supervisor;

/// Why the agent could not run.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("config: {0}")]
    Config(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("runtime: {0}")]
    Runtime(#[from] berth_runtime::RuntimeError),
}
