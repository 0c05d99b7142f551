use super::*;
use berth_api::reasons;
use serde_json::json;

fn now() -> Timestamp {
    "2024-05-01T12:00:00Z".parse().unwrap()
}

fn rich_pod() -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "uid": "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
            "creationTimestamp": "2024-05-01T11:50:00Z",
            "labels": {"app": "web", "tier": "front"},
            "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": "{}\n",
                "note": "hello"
            }
        },
        "spec": {
            "nodeName": "node-1",
            "priority": 0,
            "serviceAccountName": "default",
            "initContainers": [{
                "name": "setup",
                "image": "busybox",
                "command": ["sh", "-c", "true"]
            }],
            "containers": [{
                "name": "app",
                "image": "busybox:latest",
                "args": ["sleep", "3600"],
                "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                "env": [
                    {"name": "MODE", "value": "prod"},
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}}
                ],
                "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}, "requests": {"cpu": "250m", "memory": "64Mi"}},
                "readinessProbe": {"exec": {"command": ["cat", "/tmp/ready"]}, "periodSeconds": 5, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3},
                "volumeMounts": [{"name": "data", "mountPath": "/data"}]
            }],
            "volumes": [{"name": "data", "emptyDir": {}}],
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]
        },
        "status": {
            "phase": "Running",
            "hostIP": "192.168.1.10",
            "podIP": "10.88.0.7",
            "podIPs": [{"ip": "10.88.0.7"}],
            "startTime": "2024-05-01T11:50:01Z",
            "conditions": [
                {"type": "Initialized", "status": "True"},
                {"type": "Ready", "status": "True"},
                {"type": "ContainersReady", "status": "True"},
                {"type": "PodScheduled", "status": "True"}
            ],
            "initContainerStatuses": [{
                "name": "setup", "image": "busybox", "imageID": "docker.io/library/busybox@sha256:aa",
                "containerID": "containerd://111", "ready": true, "restartCount": 0,
                "state": {"terminated": {"exitCode": 0, "reason": "Completed",
                    "startedAt": "2024-05-01T11:50:02Z", "finishedAt": "2024-05-01T11:50:03Z"}}
            }],
            "containerStatuses": [{
                "name": "app", "image": "busybox:latest", "imageID": "docker.io/library/busybox@sha256:aa",
                "containerID": "containerd://222", "ready": true, "restartCount": 1, "started": true,
                "state": {"running": {"startedAt": "2024-05-01T11:55:00Z"}},
                "lastState": {"terminated": {"exitCode": 137, "reason": "Error",
                    "startedAt": "2024-05-01T11:50:04Z", "finishedAt": "2024-05-01T11:54:59Z"}}
            }],
            "qosClass": "Burstable"
        }
    }))
    .unwrap()
}

const EXPECTED: &str = "\
Name:             web
Namespace:        default
Priority:         0
Service Account:  default
Node:             node-1/192.168.1.10
Start Time:       Wed, 01 May 2024 11:50:01 +0000
Labels:           app=web
                  tier=front
Annotations:      note: hello
Status:           Running
IP:               10.88.0.7
IPs:
  IP:  10.88.0.7
Init Containers:
  setup:
    Container ID:  containerd://111
    Image:         busybox
    Image ID:      docker.io/library/busybox@sha256:aa
    Port:          <none>
    Host Port:     <none>
    Command:
      sh
      -c
      true
    State:          Terminated
      Reason:       Completed
      Exit Code:    0
      Started:      Wed, 01 May 2024 11:50:02 +0000
      Finished:     Wed, 01 May 2024 11:50:03 +0000
    Ready:          True
    Restart Count:  0
    Environment:    <none>
    Mounts:         <none>
Containers:
  app:
    Container ID:  containerd://222
    Image:         busybox:latest
    Image ID:      docker.io/library/busybox@sha256:aa
    Port:          8080/TCP
    Host Port:     0/TCP
    Args:
      sleep
      3600
    State:          Running
      Started:      Wed, 01 May 2024 11:55:00 +0000
    Last State:     Terminated
      Reason:       Error
      Exit Code:    137
      Started:      Wed, 01 May 2024 11:50:04 +0000
      Finished:     Wed, 01 May 2024 11:54:59 +0000
    Ready:          True
    Restart Count:  1
    Limits:
      cpu:     500m
      memory:  64Mi
    Requests:
      cpu:      250m
      memory:   64Mi
    Readiness:  exec [cat /tmp/ready] delay=0s timeout=1s period=5s #success=1 #failure=3
    Environment:
      MODE:      prod
      POD_NAME:  web (v1:metadata.name)
    Mounts:
      /data from data (rw)
Conditions:
  Type              Status
  Initialized       True 
  Ready             True 
  ContainersReady   True 
  PodScheduled      True 
Volumes:
  data:
    Type:        EmptyDir (a temporary directory that shares a pod's lifetime)
    Medium:      
    SizeLimit:   <unset>
QoS Class:       Burstable
Node-Selectors:  <none>
Tolerations:     node.kubernetes.io/not-ready:NoExecute op=Exists for 300s
Events:
  Type    Reason   Age   From     Message
  ----    ------   ----  ----     -------
  Normal  Pulled   10m   kubelet  Container image \"busybox\" already present on machine
  Normal  Started  5m    kubelet  Started container app
";

fn events() -> Vec<Event> {
    serde_json::from_value(json!([
        {"metadata": {"name": "e2"}, "involvedObject": {}, "type": "Normal", "reason": reasons::STARTED,
         "message": "Started container app", "source": {"component": "kubelet"},
         "firstTimestamp": "2024-05-01T11:55:00Z", "lastTimestamp": "2024-05-01T11:55:00Z", "count": 1},
        {"metadata": {"name": "e1"}, "involvedObject": {}, "type": "Normal", "reason": reasons::PULLED,
         "message": "Container image \"busybox\" already present on machine\n", "source": {"component": "kubelet"},
         "firstTimestamp": "2024-05-01T11:50:00Z", "lastTimestamp": "2024-05-01T11:50:00Z", "count": 1}
    ]))
    .unwrap()
}

#[test]
fn describes_a_rich_pod_like_kubectl() {
    let text = describe_pod(&rich_pod(), &events(), now(), &TimeZone::UTC);
    for (i, (got, want)) in text.lines().zip(EXPECTED.lines()).enumerate() {
        assert_eq!(got, want, "line {}", i + 1);
    }
    assert_eq!(text, EXPECTED);
}

#[test]
fn without_events_the_section_reads_none_aligned_with_the_block() {
    let text = describe_pod(&rich_pod(), &[], now(), &TimeZone::UTC);
    assert!(text.ends_with("Tolerations:     node.kubernetes.io/not-ready:NoExecute op=Exists for 300s\nEvents:          <none>\n"), "{text}");
}

#[test]
fn a_terminating_pod_says_for_how_long() {
    let mut pod = rich_pod();
    pod.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        "2024-05-01T11:59:30Z".parse().unwrap(),
    ));
    pod.metadata.deletion_grace_period_seconds = Some(30);
    let text = describe_pod(&pod, &[], now(), &TimeZone::UTC);
    assert!(
        text.contains(
            "Status:                    Terminating (lasts 30s)\nTermination Grace Period:  30s\n"
        ),
        "{text}"
    );
}

#[test]
fn qos_is_computed_when_the_status_has_none() {
    let mut pod = rich_pod();
    pod.status.as_mut().unwrap().qos_class = None;
    assert_eq!(qos_class(&pod), "Burstable");
    let resources = &mut pod.spec.as_mut().unwrap().containers[0].resources;
    resources.as_mut().unwrap().requests = None;
    assert_eq!(
        qos_class(&pod),
        "Burstable",
        "the init container has no limits"
    );
    pod.spec.as_mut().unwrap().init_containers = None;
    assert_eq!(qos_class(&pod), "Guaranteed");
    pod.spec.as_mut().unwrap().containers[0].resources = None;
    assert_eq!(qos_class(&pod), "BestEffort");
}

#[test]
fn an_image_volume_shows_its_reference_and_pull_policy() {
    let mut pod = rich_pod();
    pod.spec.as_mut().unwrap().volumes = Some(
        serde_json::from_value(json!([{"name": "data", "image": {
            "reference": "registry.k8s.io/e2e-test-images/kitten:1.8", "pullPolicy": "Always"}}]))
        .unwrap(),
    );
    let text = describe_pod(&pod, &[], now(), &TimeZone::UTC);
    let want = "Volumes:\n  data:\n    Type:        Image (a container image or OCI artifact)\n    Reference:   registry.k8s.io/e2e-test-images/kitten:1.8\n    PullPolicy:  Always\n";
    assert!(text.contains(want), "{text}");
}
