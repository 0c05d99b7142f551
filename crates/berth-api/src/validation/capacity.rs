//! berth's own limit on a pod's size. The API server and the kubelet set
//! none on the number of containers (only the object's size bounds it), so
//! this is berth's: containerd runs every container of a pod, init
//! containers included, under the pod's one shim, which starts and stops
//! them one after another and serves every task call of the pod. With 1,000
//! containers a pod took minutes to start and its shim (containerd 1.6)
//! stopped answering while the pod was deleted.

use k8s_openapi::api::core::v1::PodSpec;

use super::errors::FieldError;

/// Containers and init containers of one pod, together.
pub const MAX_CONTAINERS_PER_POD: usize = 250;

/// A pod with more containers (init containers included) than berth runs.
pub(crate) fn container_count(spec: &PodSpec) -> Option<FieldError> {
    let inits = spec.init_containers.as_ref().map_or(0, Vec::len);
    let total = spec.containers.len() + inits;
    (total > MAX_CONTAINERS_PER_POD).then(|| {
        FieldError::forbidden(
            "spec.containers",
            format!(
                "a pod may have at most {MAX_CONTAINERS_PER_POD} containers, initContainers \
                 included (berth's limit: one containerd shim serves them all); this one has {total}"
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{container, spec_with};

    fn spec(inits: usize, regular: usize) -> PodSpec {
        let named = |prefix: &str, n: usize| {
            (0..n)
                .map(|i| container(&format!("{prefix}{i}"), "busybox"))
                .collect()
        };
        spec_with(named("i", inits), named("c", regular), "Always")
    }

    #[test]
    fn containers_and_init_containers_count_together() {
        assert_eq!(container_count(&spec(0, MAX_CONTAINERS_PER_POD)), None);
        assert_eq!(
            container_count(&spec(50, MAX_CONTAINERS_PER_POD - 50)),
            None
        );
        let too_many = container_count(&spec(1, MAX_CONTAINERS_PER_POD)).unwrap();
        assert_eq!(
            too_many.to_string(),
            "spec.containers: Forbidden: a pod may have at most 250 containers, \
             initContainers included (berth's limit: one containerd shim serves them all); \
             this one has 251"
        );
        assert!(container_count(&spec(0, 1000)).is_some());
    }
}
