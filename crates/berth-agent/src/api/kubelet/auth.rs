//! Who calls the kubelet API and whether they may (the kubelet's
//! `pkg/kubelet/server/auth.go`): a client certificate from the client CA
//! names the user (CN) and groups (O); otherwise a bearer token is checked
//! with a TokenReview; anonymous callers get 401. Every request is then
//! authorized with a SubjectAccessReview on the node's subresource.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};
use tokio::time::Instant;

/// How long an answer is reused (the kubelet's webhook cache TTLs).
const ALLOWED_TTL: Duration = Duration::from_secs(5 * 60);
const DENIED_TTL: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    pub user: String,
    pub groups: Vec<String>,
}

/// The user of a verified client certificate.
pub fn from_certificate(der: &[u8]) -> Option<Identity> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let user = subject
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect();
    Some(Identity { user, groups })
}

/// What a request asks of the node, as a SubjectAccessReview names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Attributes {
    pub verb: &'static str,
    pub subresource: &'static str,
}

/// The kubelet's mapping of method and path to verb and subresource.
pub fn attributes(method: &http::Method, path: &str) -> Attributes {
    let verb = match *method {
        http::Method::POST => "create",
        http::Method::PUT => "update",
        http::Method::PATCH => "patch",
        http::Method::DELETE => "delete",
        _ => "get",
    };
    let subresource = if path.starts_with("/stats") {
        "stats"
    } else if path.starts_with("/metrics") {
        "metrics"
    } else if path.starts_with("/logs") {
        "log"
    } else if path.starts_with("/checkpoint") {
        "checkpoint"
    } else {
        "proxy"
    };
    Attributes { verb, subresource }
}

pub struct Authorizer {
    client: kube::Client,
    node: String,
    answers: Mutex<HashMap<(Identity, Attributes), (bool, Instant)>>,
}

/// Why a request was refused: 401 or 403 with the kubelet's message.
#[derive(Debug)]
pub enum Refusal {
    Unauthorized,
    Forbidden(String),
}

impl Authorizer {
    pub fn new(client: kube::Client, node: String) -> Self {
        Self {
            client,
            node,
            answers: Mutex::default(),
        }
    }

    /// The caller of a request without a client certificate: its bearer
    /// token's user, as the API server's TokenReview says.
    pub async fn token_user(&self, headers: &http::HeaderMap) -> Result<Identity, Refusal> {
        let token = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(Refusal::Unauthorized)?;
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_string(),
                ..Default::default()
            },
            ..Default::default()
        };
        let api: Api<TokenReview> = Api::all(self.client.clone());
        let answer = api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|_| Refusal::Unauthorized)?;
        let status = answer.status.ok_or(Refusal::Unauthorized)?;
        if status.authenticated != Some(true) {
            return Err(Refusal::Unauthorized);
        }
        let user = status.user.ok_or(Refusal::Unauthorized)?;
        Ok(Identity {
            user: user.username.unwrap_or_default(),
            groups: user.groups.unwrap_or_default(),
        })
    }

    pub async fn authorize(&self, who: &Identity, what: &Attributes) -> Result<(), Refusal> {
        let key = (who.clone(), what.clone());
        let cached = self
            .answers
            .lock()
            .expect("answers lock")
            .get(&key)
            .copied();
        let allowed = match cached {
            Some((allowed, until)) if Instant::now() < until => allowed,
            _ => {
                let allowed = self.review(who, what).await;
                let ttl = if allowed { ALLOWED_TTL } else { DENIED_TTL };
                let mut answers = self.answers.lock().expect("answers lock");
                answers.retain(|_, (_, until)| Instant::now() < *until);
                answers.insert(key, (allowed, Instant::now() + ttl));
                allowed
            }
        };
        if allowed {
            Ok(())
        } else {
            Err(Refusal::Forbidden(format!(
                "Forbidden (user={}, verb={}, resource=nodes, subresource={})",
                who.user, what.verb, what.subresource
            )))
        }
    }

    /// One SubjectAccessReview; an API server that cannot answer denies.
    async fn review(&self, who: &Identity, what: &Attributes) -> bool {
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(who.user.clone()),
                groups: Some(who.groups.clone()),
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(what.verb.into()),
                    version: Some("v1".into()),
                    resource: Some("nodes".into()),
                    subresource: Some(what.subresource.into()),
                    name: Some(self.node.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let api: Api<SubjectAccessReview> = Api::all(self.client.clone());
        match api.create(&PostParams::default(), &review).await {
            Ok(answer) => answer.status.is_some_and(|s| s.allowed),
            Err(e) => {
                tracing::warn!("SubjectAccessReview: {e}");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_the_kubelets_subresources() {
        let get = http::Method::GET;
        assert_eq!(
            attributes(&get, "/containerLogs/ns/p/c").subresource,
            "proxy"
        );
        assert_eq!(attributes(&get, "/stats/summary").subresource, "stats");
        assert_eq!(attributes(&get, "/metrics/resource").subresource, "metrics");
        assert_eq!(attributes(&get, "/logs/syslog").subresource, "log");
        assert_eq!(
            attributes(&http::Method::POST, "/exec/a/b/c").verb,
            "create"
        );
    }

    #[test]
    fn a_certificate_names_user_and_groups() {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "kube-apiserver-kubelet-client");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "system:masters");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let who = from_certificate(cert.der()).unwrap();
        assert_eq!(who.user, "kube-apiserver-kubelet-client");
        assert_eq!(who.groups, ["system:masters"]);
    }
}
