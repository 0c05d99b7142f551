//! The API client, from the node's kubeconfig.

use std::path::Path;

use kube::config::{KubeConfigOptions, Kubeconfig};

/// A client for the kubeconfig at `path` (its current context). Fails on a
/// file that cannot be read or used; never waits for the server.
pub async fn client(path: &Path) -> Result<kube::Client, String> {
    let kubeconfig = Kubeconfig::read_from(path).map_err(|e| e.to_string())?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    kube::Client::try_from(config).map_err(|e| e.to_string())
}
