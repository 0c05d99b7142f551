//! The local API's own PKI, made once at first start under `<rootDir>/pki`
//! (0700, keys 0600) and kept: a CA, a serving certificate signed by it, and
//! an admin client certificate (group `system:masters`, as kubeadm's
//! admin.conf), plus the kubeconfig that bundles the three for kubectl.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use berth_runtime::files::{create_dir, write_private, PRIVATE_DIR_MODE};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// The CA's subject: also how the CA is recognised again from its params.
const CA_NAME: &str = "berth-ca";
/// The admin's user name (CN) and group (O).
const ADMIN_USER: &str = "berth-admin";
const ADMIN_GROUP: &str = "system:masters";

/// Where the local API's certificates live.
#[derive(Debug, Clone)]
pub struct ApiPki {
    dir: PathBuf,
}

impl ApiPki {
    pub fn new(root_dir: &Path) -> Self {
        Self {
            dir: root_dir.join("pki"),
        }
    }

    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("api-ca.crt")
    }
    fn ca_key(&self) -> PathBuf {
        self.dir.join("api-ca.key")
    }
    pub fn serving_cert(&self) -> PathBuf {
        self.dir.join("api.crt")
    }
    pub fn serving_key(&self) -> PathBuf {
        self.dir.join("api.key")
    }
    pub fn admin_cert(&self) -> PathBuf {
        self.dir.join("admin.crt")
    }
    pub fn admin_key(&self) -> PathBuf {
        self.dir.join("admin.key")
    }

    /// Makes what is missing: the CA first, then the certificates it signs.
    /// A new CA re-issues both certificates, so they always chain to it.
    /// `names` are the serving certificate's DNS names and IPs.
    pub fn ensure(&self, names: &[String]) -> Result<(), String> {
        create_dir(&self.dir, PRIVATE_DIR_MODE)
            .map_err(|e| format!("create {}: {e}", self.dir.display()))?;
        let fresh_ca = !self.ca_cert().exists() || !self.ca_key().exists();
        let ca_key = if fresh_ca {
            let key = KeyPair::generate().map_err(|e| e.to_string())?;
            let cert = ca_params().self_signed(&key).map_err(|e| e.to_string())?;
            self.write(&self.ca_key(), &key.serialize_pem())?;
            self.write(&self.ca_cert(), &cert.pem())?;
            key
        } else {
            let pem = std::fs::read_to_string(self.ca_key())
                .map_err(|e| format!("read {}: {e}", self.ca_key().display()))?;
            KeyPair::from_pem(&pem).map_err(|e| format!("{}: {e}", self.ca_key().display()))?
        };
        let issuer = Issuer::new(ca_params(), ca_key);
        let serving_ok = self.serving_key().exists() && names_all(&self.serving_cert(), names);
        if fresh_ca || !serving_ok {
            let mut params = CertificateParams::new(names.to_vec()).map_err(|e| e.to_string())?;
            params.distinguished_name = name(&[(DnType::CommonName, "berth-apiserver")]);
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            params.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ];
            self.issue(&params, &issuer, &self.serving_cert(), &self.serving_key())?;
        }
        if fresh_ca || !self.admin_cert().exists() || !self.admin_key().exists() {
            let mut params =
                CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
            params.distinguished_name = name(&[
                (DnType::OrganizationName, ADMIN_GROUP),
                (DnType::CommonName, ADMIN_USER),
            ]);
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            params.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ];
            self.issue(&params, &issuer, &self.admin_cert(), &self.admin_key())?;
        }
        Ok(())
    }

    fn issue(
        &self,
        params: &CertificateParams,
        issuer: &Issuer<'_, KeyPair>,
        cert_path: &Path,
        key_path: &Path,
    ) -> Result<(), String> {
        let key = KeyPair::generate().map_err(|e| e.to_string())?;
        let cert = params
            .signed_by(&key, issuer)
            .map_err(|e| format!("sign {}: {e}", cert_path.display()))?;
        self.write(key_path, &key.serialize_pem())?;
        self.write(cert_path, &cert.pem())
    }

    fn write(&self, path: &Path, pem: &str) -> Result<(), String> {
        write_private(path, pem.as_bytes()).map_err(|e| format!("write {}: {e}", path.display()))
    }

    /// A kubeconfig for the admin at `server` (certificates inline, so the
    /// file works when copied alone).
    pub fn kubeconfig(&self, server: SocketAddr, node_name: &str) -> Result<String, String> {
        use base64::Engine;
        let encode = |bytes: Vec<u8>| base64::engine::general_purpose::STANDARD.encode(bytes);
        let read = |path: PathBuf| {
            std::fs::read(&path).map_err(|e| format!("read {}: {e}", path.display()))
        };
        let ca = encode(read(self.ca_cert())?);
        let cert = encode(read(self.admin_cert())?);
        let key = encode(read(self.admin_key())?);
        let host = match server {
            SocketAddr::V4(addr) if addr.ip().is_unspecified() => {
                format!("127.0.0.1:{}", addr.port())
            }
            SocketAddr::V6(addr) if addr.ip().is_unspecified() => {
                format!("[::1]:{}", addr.port())
            }
            other => other.to_string(),
        };
        Ok(format!(
            "apiVersion: v1
kind: Config
clusters:
- name: {node_name}
  cluster:
    server: https://{host}
    certificate-authority-data: {ca}
users:
- name: {ADMIN_USER}
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
contexts:
- name: {ADMIN_USER}@{node_name}
  context:
    cluster: {node_name}
    user: {ADMIN_USER}
    namespace: default
current-context: {ADMIN_USER}@{node_name}
preferences: {{}}
"
        ))
    }
}

/// Whether the certificate at `path` exists and names every one of `names`
/// (a node renamed or readdressed gets a new serving certificate).
fn names_all(path: &Path, names: &[String]) -> bool {
    use rustls::pki_types::pem::PemObject;
    use x509_parser::extensions::GeneralName;
    let Ok(der) = rustls::pki_types::CertificateDer::from_pem_file(path) else {
        return false;
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(&der) else {
        return false;
    };
    let Ok(Some(sans)) = cert.subject_alternative_name() else {
        return false;
    };
    let named: Vec<String> = sans
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => Some(dns.to_string()),
            GeneralName::IPAddress(bytes) => match bytes.len() {
                4 => <[u8; 4]>::try_from(*bytes)
                    .ok()
                    .map(|b| std::net::IpAddr::from(b).to_string()),
                16 => <[u8; 16]>::try_from(*bytes)
                    .ok()
                    .map(|b| std::net::IpAddr::from(b).to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    names.iter().all(|n| named.contains(n))
}

fn name(parts: &[(DnType, &str)]) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    for (kind, value) in parts {
        dn.push(kind.clone(), *value);
    }
    dn
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = name(&[(DnType::CommonName, CA_NAME)]);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn first_start_makes_private_files_and_later_starts_keep_them() {
        let root = tempfile::tempdir().unwrap();
        let pki = ApiPki::new(root.path());
        pki.ensure(&["localhost".into(), "127.0.0.1".into()])
            .unwrap();
        let mode = |p: PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(root.path().join("pki")), 0o700);
        for key in [pki.ca_key(), pki.serving_key(), pki.admin_key()] {
            assert_eq!(mode(key), 0o600);
        }
        let admin = std::fs::read(pki.admin_cert()).unwrap();
        let serving = std::fs::read(pki.serving_cert()).unwrap();
        pki.ensure(&["localhost".into()]).unwrap();
        assert_eq!(std::fs::read(pki.admin_cert()).unwrap(), admin);
        assert_eq!(std::fs::read(pki.serving_cert()).unwrap(), serving);
        // A new node address: a new serving certificate, the same CA and admin.
        let ca = std::fs::read(pki.ca_cert()).unwrap();
        pki.ensure(&["localhost".into(), "10.0.0.7".into()])
            .unwrap();
        assert_ne!(std::fs::read(pki.serving_cert()).unwrap(), serving);
        assert!(names_all(
            &pki.serving_cert(),
            &["10.0.0.7".into(), "localhost".into()]
        ));
        assert_eq!(std::fs::read(pki.ca_cert()).unwrap(), ca);
        assert_eq!(std::fs::read(pki.admin_cert()).unwrap(), admin);
        let config = pki
            .kubeconfig("0.0.0.0:6443".parse().unwrap(), "node-1")
            .unwrap();
        assert!(
            config.contains("server: https://127.0.0.1:6443"),
            "{config}"
        );
    }
}
