//! kubeconfig files: one cluster, one user authenticated by a client
//! certificate. Certificates and keys are embedded (`*-data`), so a file
//! can be handed to any client (kubectl, berth, a copy elsewhere) alone.

use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::pki::{self, Issued};

/// The cluster's name in every kubeconfig the kit writes.
const CLUSTER: &str = "berth";

/// The kubeconfig YAML for `user` at `server`, trusting `ca_pem`.
pub fn render(server: &str, ca_pem: &str, user: &str, credentials: &Issued) -> String {
    let ca = STANDARD.encode(ca_pem);
    let cert = STANDARD.encode(&credentials.cert_pem);
    let key = STANDARD.encode(&credentials.key_pem);
    // Names are validated by the caller (DNS-subdomain-like or fixed), so
    // they need no YAML quoting beyond the quotes here.
    format!(
        "apiVersion: v1\nkind: Config\n\
         clusters:\n- name: {CLUSTER}\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\n\
         users:\n- name: \"{user}\"\n  user:\n    client-certificate-data: {cert}\n    client-key-data: {key}\n\
         contexts:\n- name: \"{user}@{CLUSTER}\"\n  context:\n    cluster: {CLUSTER}\n    user: \"{user}\"\n\
         current-context: \"{user}@{CLUSTER}\"\n"
    )
}

/// Writes the kubeconfig at `path`, 0600 (it holds a private key).
pub fn write(
    path: &Path,
    server: &str,
    ca_pem: &str,
    user: &str,
    credentials: &Issued,
) -> anyhow::Result<()> {
    pki::write_private(path, &render(server, ca_pem, user, credentials))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeds_the_credentials_and_selects_its_context() {
        let issued = Issued {
            cert_pem: "CERT".into(),
            key_pem: "KEY".into(),
        };
        let yaml = render("https://127.0.0.1:1234", "CA", "system:node:a", &issued);
        let doc: serde_json::Value = serde_yaml_ng::from_str(&yaml).unwrap();
        assert_eq!(doc["current-context"], "system:node:a@berth");
        let cluster = &doc["clusters"][0]["cluster"];
        assert_eq!(cluster["server"], "https://127.0.0.1:1234");
        assert_eq!(cluster["certificate-authority-data"], STANDARD.encode("CA"));
        let user = &doc["users"][0];
        assert_eq!(user["name"], "system:node:a");
        assert_eq!(
            user["user"]["client-certificate-data"],
            STANDARD.encode("CERT")
        );
        assert_eq!(user["user"]["client-key-data"], STANDARD.encode("KEY"));
        assert_eq!(doc["contexts"][0]["context"]["user"], "system:node:a");
    }
}
