//! A pod's image pull secrets reach the pull as credentials for its image's
//! registry, tried in turn; secrets that cannot be read give a Warning and
//! the pull goes on without them.

use std::collections::{BTreeMap, HashMap};

use base64::Engine as _;
use berth_runtime::{ImageInfo, RegistryCredentials};

use super::*;

const IMAGE: &str = "registry.test:5000/private/app:1";

/// The secrets of an API server.
#[derive(Default)]
struct Secrets(Mutex<HashMap<String, PullSecret>>);

impl Secrets {
    fn put(&self, name: &str, registry: &str, credentials: &RegistryCredentials) {
        let auth = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", credentials.username, credentials.password));
        let config = serde_json::json!({"auths": {registry: {"auth": auth}}});
        let secret = PullSecret {
            name: name.into(),
            type_: Some("kubernetes.io/dockerconfigjson".into()),
            data: BTreeMap::from([(
                ".dockerconfigjson".to_string(),
                serde_json::to_vec(&config).unwrap(),
            )]),
        };
        self.0.lock().unwrap().insert(name.into(), secret);
    }
}

impl berth_api::env::EnvObjects for Secrets {
    fn config_map(&self, _: &str, _: &str) -> Option<BTreeMap<String, String>> {
        None
    }
    fn secret(&self, _: &str, _: &str) -> Option<BTreeMap<String, String>> {
        None
    }
}

impl ClusterData for Secrets {
    fn service_env(&self, _: &Pod, _: &str, _: bool) -> Result<Vec<(String, String)>, String> {
        Ok(Vec::new())
    }

    fn pull_secrets<'a>(&'a self, _namespace: &'a str, names: &'a [String]) -> PullSecretsRead<'a> {
        let known = self.0.lock().unwrap();
        let read = names
            .iter()
            .map(|name| {
                known
                    .get(name)
                    .cloned()
                    .ok_or_else(|| (name.clone(), format!("secret \"{name}\" not found")))
            })
            .collect();
        Box::pin(async move { read })
    }
}

fn creds(user: &str, pass: &str) -> RegistryCredentials {
    RegistryCredentials {
        username: user.into(),
        password: pass.into(),
    }
}

fn private_pod(secrets: &[&str]) -> Arc<Pod> {
    let names: Vec<String> = secrets.iter().map(|s| format!("{{name: {s}}}")).collect();
    pod(&format!(
        "
apiVersion: v1
kind: Pod
metadata: {{name: web, namespace: team}}
spec:
  imagePullSecrets: [{}]
  containers:
  - {{name: app, image: \"{IMAGE}\"}}
",
        names.join(", ")
    ))
}

fn private_image(h: &Harness, credentials: &RegistryCredentials) {
    h.rt.add_pullable(
        IMAGE,
        ImageInfo {
            reference: String::new(),
            digest: "sha256:feed".into(),
            size: 1,
            config: ImageConfig {
                cmd: vec!["sh".into()],
                ..Default::default()
            },
        },
    );
    h.rt.require_credentials(IMAGE, credentials.clone());
}

fn in_cluster(mut h: Harness, secrets: Arc<Secrets>) -> Harness {
    h.config = Arc::new(WorkerConfig {
        cluster_data: Some(ClusterDataSource(secrets)),
        ..(*h.config).clone()
    });
    h
}

fn warnings(h: &Harness) -> Vec<String> {
    h.sink
        .events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.reason == reasons::FAILED_TO_RETRIEVE_IMAGE_PULL_SECRET)
        .map(|e| {
            assert_eq!(e.event_type, EventType::Warning);
            assert_eq!(e.field_path, None, "the event is the pod's");
            e.message.clone()
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn the_pull_gets_the_matching_credentials_of_the_pods_secrets() {
    let right = creds("user", "password");
    let secrets = Arc::new(Secrets::default());
    secrets.put("other", "elsewhere.test", &creds("no", "match"));
    secrets.put("stale", "registry.test:5000/private", &creds("user", "old"));
    secrets.put("regcred", "registry.test:5000", &right);
    let h = in_cluster(Harness::new(), secrets);
    private_image(&h, &right);
    let _w = h.spawn(private_pod(&["other", "stale", "regcred"]));
    h.sink.wait_for("Running", |s| phase(s) == "Running").await;
    // The most specific key first; the first success ends the pull.
    assert_eq!(
        h.rt.pull_credentials(),
        vec![
            (IMAGE.to_string(), Some(creds("user", "old"))),
            (IMAGE.to_string(), Some(right)),
        ]
    );
    assert!(warnings(&h).is_empty());
}

#[tokio::test(start_paused = true)]
async fn every_credential_failing_fails_the_pull_with_all_their_errors() {
    let secrets = Arc::new(Secrets::default());
    secrets.put("a", "registry.test:5000", &creds("user", "one"));
    secrets.put("b", "registry.test:5000", &creds("user", "two"));
    let h = in_cluster(Harness::new(), secrets);
    private_image(&h, &creds("user", "password"));
    let _w = h.spawn(private_pod(&["a", "b"]));
    let status = h
        .sink
        .wait_for("ErrImagePull", |s| {
            waiting_reason(s, "app") == Some("ErrImagePull")
        })
        .await;
    let message = container(&status, "app")
        .state
        .clone()
        .and_then(|s| s.waiting)
        .and_then(|w| w.message)
        .unwrap_or_default();
    assert!(
        message.starts_with('[') && message.matches("unauthorized").count() == 2,
        "{message}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_missing_secret_warns_and_pulls_anonymously_until_it_exists() {
    let right = creds("user", "password");
    let secrets = Arc::new(Secrets::default());
    let h = in_cluster(Harness::new(), secrets.clone());
    private_image(&h, &right);
    let _w = h.spawn(private_pod(&["regcred", "", "gone"]));
    h.sink
        .wait_for("ErrImagePull", |s| {
            waiting_reason(s, "app") == Some("ErrImagePull")
        })
        .await;
    assert_eq!(h.rt.pull_credentials(), vec![(IMAGE.to_string(), None)]);
    // An empty name is skipped quietly, as the kubelet does.
    assert_eq!(
        warnings(&h)[0],
        "Unable to retrieve some image pull secrets (regcred, gone); attempting to pull the image may not succeed."
    );
    // Created later, the secret serves the next try.
    secrets.put("regcred", "registry.test:5000", &right);
    h.sink.wait_for("Running", |s| phase(s) == "Running").await;
    assert_eq!(
        h.rt.pull_credentials().last(),
        Some(&(IMAGE.to_string(), Some(right)))
    );
}

#[tokio::test(start_paused = true)]
async fn standalone_has_no_secrets_warns_and_pulls_anonymously() {
    let h = Harness::new();
    private_image(&h, &creds("user", "password"));
    h.rt.add_pullable(
        "public.test/app:1",
        ImageInfo {
            reference: String::new(),
            digest: "sha256:beef".into(),
            size: 1,
            config: ImageConfig {
                cmd: vec!["sh".into()],
                ..Default::default()
            },
        },
    );
    let pod = private_pod(&["regcred"]);
    let mut pod = (*pod).clone();
    pod.spec.as_mut().unwrap().containers[0].image = Some("public.test/app:1".into());
    let _w = h.spawn(Arc::new(pod));
    h.sink.wait_for("Running", |s| phase(s) == "Running").await;
    assert_eq!(
        h.rt.pull_credentials(),
        vec![("public.test/app:1".to_string(), None)]
    );
    assert_eq!(
        warnings(&h),
        vec!["Unable to retrieve some image pull secrets (regcred); attempting to pull the image may not succeed."]
    );
}
