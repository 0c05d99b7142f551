//! berth-cli
