//! berth-pod
