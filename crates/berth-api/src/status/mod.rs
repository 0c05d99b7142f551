//! The kubelet's pure status rules over k8s types: pod phase (`getPhase`),
//! kubelet-owned conditions (status/generate.go), default container states,
//! reasons and messages.

mod conditions;
mod container;
mod duration;
mod phase;
mod qos;

pub use conditions::{
    all_containers_restarting_condition, is_kubelet_condition, pod_conditions,
    with_foreign_conditions, ALL_CONTAINERS_RESTARTING, CONTAINERS_NOT_INITIALIZED,
    CONTAINERS_NOT_READY, POD_COMPLETED, POD_FAILED, READINESS_GATES_NOT_READY,
    RESTART_ALL_CONTAINERS_STARTED, UNKNOWN_CONTAINER_STATUSES,
};
pub use container::{
    crash_loop_message, default_waiting_state, terminated_reason, CONTAINER_CREATING,
    CRASH_LOOP_BACK_OFF, POD_INITIALIZING,
};
pub use duration::go_duration;
pub use phase::{any_regular_container_started, pod_phase, pod_phase_initialized};
pub use qos::qos_class;
