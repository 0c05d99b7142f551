//! The local API: the Kubernetes pod endpoints (same paths, same JSON) plus
//! berth's image endpoints, served over HTTP/1.1 on a unix socket.

mod body;
mod events;
mod exec;
#[doc(hidden)]
pub mod fuzzing;
mod images;
pub mod kubelet;
mod logs;
mod metrics;
mod reference;
mod routes;
mod server;
mod status;
mod timeline;
mod watch;

pub use body::MAX_BODY_BYTES;
pub use server::{bind, serve, serve_listener};
