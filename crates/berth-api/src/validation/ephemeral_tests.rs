//! `validateEphemeralContainers` and `ValidatePodEphemeralContainersUpdate`,
//! with the API server's texts.

use k8s_openapi::api::core::v1::{
    ContainerPort, EphemeralContainer, Lifecycle, Probe, ResourceRequirements, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::*;
use crate::defaults::apply_defaults;
use crate::testutil::{container, pod};

fn running() -> Pod {
    let mut p = pod("web");
    let spec = p.spec.as_mut().unwrap();
    spec.containers = vec![container("app", "busybox:1.36")];
    apply_defaults(&mut p);
    p
}

fn debugger(name: &str) -> EphemeralContainer {
    EphemeralContainer {
        name: name.into(),
        image: Some("busybox:1.36".into()),
        target_container_name: Some("app".into()),
        stdin: Some(true),
        tty: Some(true),
        ..Default::default()
    }
}

fn with(old: &Pod, ecs: Vec<EphemeralContainer>) -> Pod {
    let mut new = old.clone();
    new.spec.as_mut().unwrap().ephemeral_containers = Some(ecs);
    apply_defaults(&mut new);
    new
}

fn update_errors(old: &Pod, new: &Pod) -> Vec<String> {
    match validate_ephemeral_update(old, new, false) {
        Ok(()) => vec![],
        Err(e) => e.errors.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn an_ephemeral_container_can_be_added_but_not_at_create() {
    let old = running();
    let new = with(&old, vec![debugger("dbg")]);
    assert_eq!(update_errors(&old, &new), Vec::<String>::new());
    let err = validate_pod(&new).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"Pod "web" is invalid: spec.ephemeralContainers: Forbidden: cannot be set on create"#
    );
    // The API server's pods run with them; a plain update may not add one.
    assert!(validate_cluster_pod(&new).is_ok());
    assert_eq!(
        validate_update(&old, &new).unwrap_err().errors.len(),
        1,
        "only the subresource adds ephemeral containers"
    );
    assert_eq!(validate_update(&new, &new), Ok(()));
}

#[test]
fn existing_ephemeral_containers_may_not_be_changed_or_removed() {
    let old = with(&running(), vec![debugger("dbg")]);
    assert_eq!(
        update_errors(&old, &with(&running(), vec![])),
        vec!["spec.ephemeralContainers: Forbidden: existing ephemeral containers \"dbg\" may not be removed\n"]
    );
    let mut changed = debugger("dbg");
    changed.image = Some("busybox:1.37".into());
    assert_eq!(
        update_errors(&old, &with(&running(), vec![changed])),
        vec!["spec.ephemeralContainers: Forbidden: existing ephemeral containers \"dbg\" may not be changed\n"]
    );
    let two = with(&running(), vec![debugger("dbg"), debugger("dbg2")]);
    assert_eq!(update_errors(&old, &two), Vec::<String>::new());
}

#[test]
fn ephemeral_containers_are_validated_as_the_api_server_does() {
    let old = running();
    let mut bad = debugger("app");
    bad.target_container_name = Some("nope".into());
    bad.ports = Some(vec![ContainerPort {
        container_port: 80,
        ..Default::default()
    }]);
    bad.resources = Some(ResourceRequirements {
        limits: Some([("cpu".to_string(), Quantity("1".into()))].into()),
        ..Default::default()
    });
    bad.restart_policy = Some("Always".into());
    bad.readiness_probe = Some(Probe::default());
    bad.lifecycle = Some(Lifecycle::default());
    bad.volume_mounts = Some(vec![VolumeMount {
        name: "data".into(),
        mount_path: "/data".into(),
        sub_path: Some("x".into()),
        ..Default::default()
    }]);
    let p = "spec.ephemeralContainers[0]";
    let errors = update_errors(&old, &with(&old, vec![bad]));
    let expected = [
        format!("{p}.volumeMounts[0].name: Not found: \"data\""),
        format!("{p}.name: Duplicate value: \"app\""),
        format!("{p}.targetContainerName: Not found: \"nope\""),
        format!("{p}.ports: Forbidden: cannot be set for an Ephemeral Container"),
        format!("{p}.resources: Forbidden: cannot be set for an Ephemeral Container"),
        format!("{p}.restartPolicy: Forbidden: cannot be set for an Ephemeral Container"),
        format!("{p}.readinessProbe: Forbidden: cannot be set for an Ephemeral Container"),
        format!("{p}.lifecycle: Forbidden: cannot be set for an Ephemeral Container"),
        format!("{p}.volumeMounts[0].subPath: Forbidden: cannot be set for an Ephemeral Container"),
    ];
    for e in &expected {
        assert!(errors.contains(e), "{e} missing from {errors:#?}");
    }
    let mut empty_resources = debugger("dbg");
    empty_resources.resources = Some(ResourceRequirements::default());
    assert_eq!(
        update_errors(&old, &with(&old, vec![empty_resources])),
        Vec::<String>::new(),
        "empty resources are unset"
    );
}

#[test]
fn static_pods_take_no_ephemeral_containers() {
    let mut old = running();
    old.metadata.annotations =
        Some([("kubernetes.io/config.mirror".to_string(), "x".to_string())].into());
    assert_eq!(
        update_errors(&old, &with(&old, vec![debugger("dbg")])),
        vec![": Forbidden: static pods do not support ephemeral containers"]
    );
    let new = with(&running(), vec![debugger("dbg")]);
    assert!(validate_ephemeral_update(&running(), &new, true).is_err());
}

#[test]
fn ephemeral_containers_are_defaulted_as_containers() {
    let new = with(&running(), vec![debugger("dbg")]);
    let ec = &new.spec.unwrap().ephemeral_containers.unwrap()[0];
    assert_eq!(
        ec.termination_message_path.as_deref(),
        Some("/dev/termination-log")
    );
    assert_eq!(ec.termination_message_policy.as_deref(), Some("File"));
    assert_eq!(ec.image_pull_policy.as_deref(), Some("IfNotPresent"));
    assert_eq!(ec.target_container_name.as_deref(), Some("app"));
}
