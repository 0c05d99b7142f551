//! berth's end-to-end tests: the `berth` binary against a private containerd.
//!
//! One test binary with a module per capability, not one binary per file:
//! every binary links the whole agent, and two dozen of them filled the disk
//! of a small CI machine. nextest still runs each test in its own process.

mod admission;
mod agent_restart;
mod big_pods;
mod cleanup;
mod cli;
mod cluster;
mod command_args;
mod containerd_restart;
mod crash_recovery;
mod deploy_files;
mod env;
mod events;
mod eviction;
mod hooks;
mod image_pull_cli;
mod image_volume;
mod init_containers;
mod input_bounds;
mod kubectl;
mod lifecycle;
mod logs;
mod metrics;
mod mount_propagation;
mod network;
mod node_shutdown;
mod oom;
mod previous_logs;
mod probes;
mod registry_pulls;
mod restart_matrix;
mod restart_rules;
mod security_context;
mod spec_changes;
mod state_files;
mod static_pods;
mod streaming;
mod subpath;
mod termination;
mod termination_messages;
mod trace;
mod volumes;
