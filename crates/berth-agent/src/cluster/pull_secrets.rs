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
        // The name goes into the request's path: one that is not a
        // secret's name (`..`, `/`) is not asked for.
        let problems = berth_api::validation::names::dns1123_subdomain(name);
        if !problems.is_empty() {
            read.push(Err((name.clone(), problems.join("; "))));
            continue;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_name_that_is_no_secrets_name_is_not_asked_for() {
        // No client: a valid name would fail for want of an API server.
        let read = read(None, "ns", &["../../nodes/n".into(), "ok".into()]).await;
        let why: Vec<&str> = read
            .iter()
            .map(|r| r.as_ref().err().unwrap().1.as_str())
            .collect();
        assert!(why[0].contains("RFC 1123 subdomain"), "{why:?}");
        assert_eq!(why[1], "no API server");
    }
}
