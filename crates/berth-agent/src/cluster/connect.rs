//! The API client, from the node's kubeconfig.

use std::path::Path;

use kube::config::{AuthInfo, KubeConfigOptions, Kubeconfig};

/// A client for the kubeconfig at `path` (its current context). Fails,
/// naming the file, on one that cannot be read, parsed or used, or whose
/// user has no credentials (a node cannot register anonymously); never
/// waits for the server.
pub async fn client(path: &Path) -> Result<kube::Client, String> {
    let in_file = |e: String| format!("kubeconfig {}: {e}", path.display());
    let kubeconfig = Kubeconfig::read_from(path).map_err(|e| in_file(e.to_string()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| in_file(e.to_string()))?;
    if !has_credentials(&config.auth_info) {
        return Err(in_file(
            "the current context's user has no credentials \
             (client-certificate/client-key, token, tokenFile, exec or username/password)"
                .into(),
        ));
    }
    kube::Client::try_from(config).map_err(|e| in_file(e.to_string()))
}

fn has_credentials(user: &AuthInfo) -> bool {
    let certificate = user.client_certificate.is_some() || user.client_certificate_data.is_some();
    let key = user.client_key.is_some() || user.client_key_data.is_some();
    (certificate && key)
        || user.token.is_some()
        || user.token_file.is_some()
        || user.exec.is_some()
        || user.auth_provider.is_some()
        || (user.username.is_some() && user.password.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn error_for(text: Option<&str>) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.kubeconfig");
        if let Some(text) = text {
            std::fs::write(&path, text).unwrap();
        }
        let error = client(&path).await.err().expect("an error");
        assert!(
            error.starts_with(&format!("kubeconfig {}: ", path.display())),
            "{error}"
        );
        error
    }

    const HEAD: &str = "apiVersion: v1\nkind: Config\ncurrent-context: node\n\
        clusters: [{name: c, cluster: {server: 'https://127.0.0.1:6443'}}]\n\
        contexts: [{name: node, context: {cluster: c, user: node}}]\n";

    #[tokio::test]
    async fn a_kubeconfig_that_cannot_be_used_is_an_error_naming_the_file() {
        assert!(error_for(None).await.contains("failed to read"));
        assert!(error_for(Some("clusters: [oops"))
            .await
            .contains("failed to parse"));
        let no_user = format!("{HEAD}users: [{{name: node, user: {{}}}}]\n");
        assert!(error_for(Some(&no_user)).await.contains("no credentials"));
        let missing_cert = format!(
            "{HEAD}users: [{{name: node, user: {{client-certificate: /nonexistent/node.crt, \
             client-key: /nonexistent/node.key}}}}]\n"
        );
        let error = error_for(Some(&missing_cert)).await;
        assert!(error.contains("client certificate"), "{error}");
        let no_context = HEAD.replace("current-context: node", "current-context: gone");
        let error = error_for(Some(&no_context)).await;
        assert!(error.contains("context"), "{error}");
    }

    #[tokio::test]
    async fn a_kubeconfig_with_a_token_makes_a_client() {
        let token = format!("{HEAD}users: [{{name: node, user: {{token: abc}}}}]\n");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.kubeconfig");
        std::fs::write(&path, token).unwrap();
        client(&path).await.expect("a client");
    }
}
