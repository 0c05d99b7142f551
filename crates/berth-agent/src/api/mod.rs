//! The local API: the Kubernetes pod endpoints (same paths, same JSON) plus
//! berth's image endpoints, served over HTTP/1.1 on a unix socket, and over HTTPS on TCP for kubectl
//! (`https`, with its own PKI in `pki`).

mod body;
mod connection;
mod discovery;
mod events;
mod exec;
#[doc(hidden)]
pub mod fuzzing;
mod https;
mod images;
pub mod kubelet;
mod logs;
mod metrics;
mod namespaces;
mod openapi_schemas;
mod patch;
mod pki;
mod pod_patch;
mod reference;
mod routes;
mod selectors;
mod server;
mod status;
mod stream;
mod table;
mod timeline;
mod watch;

pub use body::MAX_BODY_BYTES;
pub use https::HttpsServer;
pub use pki::ApiPki;
pub use server::{bind, serve, serve_listener};
