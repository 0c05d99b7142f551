//! The node agent as a library: pod sources (manifest directory, local API),
//! the supervisor that owns one pod worker per pod, and the local API server.

pub mod service;

pub use service::{ApiError, LogOptions, LogTarget, PodService, WatchEvent};
