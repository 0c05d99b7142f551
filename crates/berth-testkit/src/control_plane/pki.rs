//! The control plane's certificates: one CA signs every serving and client
//! certificate, as kubeadm's single cluster CA does. Keys are ECDSA P-256
//! (every component accepts them, and they are made in microseconds).
//!
//! Kubernetes authenticates a client certificate as user = CN and groups =
//! O, so the subject is the identity (apiserver `x509.CommonNameUserConversion`).

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// How long issued certificates are valid: long enough for a dev cluster
/// left running, short enough to look like a real one.
const VALID_DAYS: i64 = 365;

/// A certificate and its private key, both PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// What a certificate is for.
#[derive(Debug, Clone)]
pub enum Usage {
    /// TLS client authentication.
    Client,
    /// TLS serving for these DNS names and IP addresses.
    Server(Vec<String>),
}

/// The cluster CA: signs everything, and is what every component trusts.
pub struct CertificateAuthority {
    params: CertificateParams,
    key: KeyPair,
    cert_pem: String,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// A new self-signed CA named `common_name`.
    pub fn generate(common_name: &str) -> anyhow::Result<Self> {
        let mut params = CertificateParams::default();
        params.distinguished_name = subject(common_name, None);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        set_validity(&mut params, VALID_DAYS * 10)?;
        let key = KeyPair::generate().context("generate the CA key")?;
        let cert_pem = params.self_signed(&key).context("self-sign the CA")?.pem();
        Ok(Self {
            params,
            key,
            cert_pem,
        })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA's private key, PEM (kube-controller-manager signs CSRs with it).
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// A new key pair and a certificate for `CN=common_name, O=organization`.
    pub fn issue(
        &self,
        common_name: &str,
        organization: Option<&str>,
        usage: Usage,
    ) -> anyhow::Result<Issued> {
        let mut params = match &usage {
            Usage::Client => CertificateParams::default(),
            Usage::Server(names) => CertificateParams::new(names.clone())
                .with_context(|| format!("subject alternative names {names:?}"))?,
        };
        params.distinguished_name = subject(common_name, organization);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![match usage {
            Usage::Client => ExtendedKeyUsagePurpose::ClientAuth,
            Usage::Server(_) => ExtendedKeyUsagePurpose::ServerAuth,
        }];
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params, VALID_DAYS)?;
        let key = KeyPair::generate().context("generate a key")?;
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params
            .signed_by(&key, &issuer)
            .with_context(|| format!("sign the certificate for {common_name}"))?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// A key pair that signs service-account tokens (the apiserver's
/// `--service-account-signing-key-file`) and the public half that verifies
/// them (`--service-account-key-file`).
pub fn service_account_key() -> anyhow::Result<(String, String)> {
    let key = KeyPair::generate().context("generate the service-account key")?;
    Ok((key.serialize_pem(), key.public_key_pem()))
}

/// Writes `name.crt` and `name.key` (0600) into `dir`; returns their paths.
pub fn write_issued(dir: &Path, name: &str, issued: &Issued) -> anyhow::Result<(PathBuf, PathBuf)> {
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    write_private(&cert, &issued.cert_pem)?;
    write_private(&key, &issued.key_pem)?;
    Ok((cert, key))
}

/// Creates `path` (mode 0600 from the start, never world-readable for a
/// moment) holding `contents`; fails if it exists.
pub fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("create {}", path.display()))?;
    file.write_all(contents.as_bytes())
        .with_context(|| format!("write {}", path.display()))
}

fn subject(common_name: &str, organization: Option<&str>) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    if let Some(org) = organization {
        name.push(DnType::OrganizationName, org);
    }
    name.push(DnType::CommonName, common_name);
    name
}

/// From yesterday (clocks of the components may lag a little) for `days`.
fn set_validity(params: &mut CertificateParams, days: i64) -> anyhow::Result<()> {
    let today = jiff::Zoned::now()
        .with_time_zone(jiff::tz::TimeZone::UTC)
        .date();
    let ymd = |date: jiff::civil::Date| -> anyhow::Result<_> {
        Ok(rcgen::date_time_ymd(
            date.year().into(),
            date.month().try_into()?,
            date.day().try_into()?,
        ))
    };
    params.not_before = ymd(today.yesterday()?)?;
    params.not_after = ymd(today.checked_add(jiff::Span::new().days(days))?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_files_are_0600_and_never_overwritten() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.key");
        write_private(&path, "secret").unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(write_private(&path, "other").is_err());
        assert_eq!(fs::read_to_string(&path).unwrap(), "secret");
    }

    /// openssl's view of a certificate: `openssl x509 -noout -text`.
    fn openssl_text(dir: &Path, name: &str, issued: &Issued) -> String {
        let (cert, _) = write_issued(dir, name, issued).unwrap();
        let out = std::process::Command::new("openssl")
            .args(["x509", "-noout", "-text", "-in"])
            .arg(&cert)
            .output()
            .expect("run openssl");
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn openssl_verifies(dir: &Path, name: &str) -> bool {
        std::process::Command::new("openssl")
            .arg("verify")
            .arg("-CAfile")
            .arg(dir.join("ca.crt"))
            .arg(dir.join(format!("{name}.crt")))
            .output()
            .expect("run openssl")
            .status
            .success()
    }

    #[test]
    fn certificates_carry_the_identity_and_chain_to_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::generate("test-ca").unwrap();
        write_private(&dir.path().join("ca.crt"), ca.cert_pem()).unwrap();

        let node = ca
            .issue("system:node:a", Some("system:nodes"), Usage::Client)
            .unwrap();
        let text = openssl_text(dir.path(), "node", &node);
        assert!(
            text.contains("Subject: O = system:nodes, CN = system:node:a"),
            "{text}"
        );
        assert!(text.contains("TLS Web Client Authentication"), "{text}");
        assert!(openssl_verifies(dir.path(), "node"));

        let names = vec!["kubernetes.default.svc".into(), "10.96.0.1".into()];
        let server = ca
            .issue("kube-apiserver", None, Usage::Server(names))
            .unwrap();
        let text = openssl_text(dir.path(), "server", &server);
        assert!(
            text.contains("DNS:kubernetes.default.svc, IP Address:10.96.0.1"),
            "{text}"
        );
        assert!(text.contains("TLS Web Server Authentication"), "{text}");
        assert!(openssl_verifies(dir.path(), "server"));

        let stranger = CertificateAuthority::generate("other-ca").unwrap();
        let forged = stranger
            .issue("admin", Some("system:masters"), Usage::Client)
            .unwrap();
        write_issued(dir.path(), "forged", &forged).unwrap();
        assert!(!openssl_verifies(dir.path(), "forged"));
    }
}
