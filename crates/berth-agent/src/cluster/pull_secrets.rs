//! A pod's image pull secrets, read from the API server at each pull (the
//! Node authorizer lets a node get the secrets its pods name in
//! `imagePullSecrets`).

use berth_pod::PullSecret;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;

/// Each of `names` in `namespace`, or its name and why it could not be
/// read (a missing secret is such a failure too, as for the kubelet).
pub async fn read(
    client: Option<&kube::Client>,
    namespace: &str,
    names: &[String],
) -> Vec<Result<PullSecret, (String, String)>> {
    let mut read = Vec::with_capacity(names.len());
    for name in names {
        let Some(client) = client else {
            read.push(Err((name.clone(), "no API server".to_string())));
            continue;
        };
        let api = Api::<Secret>::namespaced(client.clone(), namespace);
        read.push(match api.get_opt(name).await {
            Ok(Some(secret)) => Ok(PullSecret {
                name: name.clone(),
                type_: secret.type_,
                data: secret
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(key, value)| (key, value.0))
                    .collect(),
            }),
            Ok(None) => Err((name.clone(), format!("secret \"{name}\" not found"))),
            Err(e) => Err((name.clone(), e.to_string())),
        });
    }
    read
}
