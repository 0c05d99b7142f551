//! Where berth's pods and containers live in the cgroup tree (cgroupfs
//! layout, the same path in every hierarchy). The runtime places them; the
//! kubelet API's stats read them.

/// The parent of all pod cgroups.
const ROOT: &str = "berth";

/// The pod's cgroup, as an absolute cgroupfs path (`/berth/pod<uid>`).
pub fn pod_cgroup(pod_uid: &str) -> String {
    format!("/{ROOT}/pod{pod_uid}")
}

/// A container's cgroup inside its pod (`/berth/pod<uid>/<container id>`).
pub fn container_cgroup(pod_uid: &str, container_id: &str) -> String {
    format!("{}/{container_id}", pod_cgroup(pod_uid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_cgroupfs_layout() {
        assert_eq!(pod_cgroup("u-1"), "/berth/podu-1");
        assert_eq!(container_cgroup("u-1", "c1"), "/berth/podu-1/c1");
    }
}
