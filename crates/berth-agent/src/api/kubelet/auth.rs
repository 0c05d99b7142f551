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

/// The kubelet's mapping of method and path to verb and the subresources
/// that allow it, tried in order (`GetRequestAttributes` in the kubelet's
/// `pkg/kubelet/server/auth.go`, with `KubeletFineGrainedAuthz`, GA and
/// locked on): `/pods`, `/runningpods`, `/healthz` and `/configz` first ask
/// for their own subresource, then for the coarse one (`proxy`).
pub fn attributes(method: &http::Method, path: &str) -> Vec<Attributes> {
    let verb = match *method {
        http::Method::POST => "create",
        http::Method::PUT => "update",
        http::Method::PATCH => "patch",
        http::Method::DELETE => "delete",
        _ => "get",
    };
    let fine = [
        ("/allocatedPods", "pods"),
        ("/pods", "pods"),
        ("/healthz", "healthz"),
        ("/configz", "configz"),
        ("/runningpods/", "pods"),
    ]
    .into_iter()
    .find(|(prefix, _)| is_subpath(path, prefix));
    let coarse = [
        ("/stats/", "stats"),
        ("/metrics", "metrics"),
        ("/logs/", "log"),
        ("/checkpoint/", "checkpoint"),
        ("/statusz", "statusz"),
        ("/flagz", "configz"),
    ]
    .into_iter()
    .find(|(prefix, _)| is_subpath(path, prefix))
    .map_or("proxy", |(_, subresource)| subresource);
    fine.map(|(_, subresource)| subresource)
        .into_iter()
        .chain([coarse])
        .map(|subresource| Attributes { verb, subresource })
        .collect()
}

/// `path` is `prefix` (less a trailing slash) or below it.
fn is_subpath(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

pub struct Authorizer {
    client: kube::Client,
    node: String,
    answers: Mutex<HashMap<(Identity, Attributes), (bool, Instant)>>,
}

/// Why a request was refused: 401, 403, or 500 when the API server could
/// not answer, each with the kubelet's message.
#[derive(Debug)]
pub enum Refusal {
    Unauthorized,
    Forbidden(String),
    Error(String),
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
            .map_err(|e| {
                tracing::warn!("TokenReview: {e}");
                Refusal::Unauthorized
            })?;
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

    /// Allowed when any of the request's attributes is (the kubelet's
    /// `InstallAuthFilter`); refused with all of their subresources named.
    pub async fn authorize(&self, who: &Identity, what: &[Attributes]) -> Result<(), Refusal> {
        for attributes in what {
            match self.allowed(who, attributes).await {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(user = %who.user, subresource = attributes.subresource, "authorization error: {e}");
                    return Err(Refusal::Error(format!(
                        "Authorization error (user={}, verb={}, resource=nodes, subresource={})",
                        who.user, attributes.verb, attributes.subresource
                    )));
                }
            }
        }
        let verb = what.first().map_or("", |a| a.verb);
        let subresources: Vec<&str> = what.iter().map(|a| a.subresource).collect();
        Err(Refusal::Forbidden(format!(
            "Forbidden (user={}, verb={verb}, resource=nodes, subresource(s)=[{}])\n",
            who.user,
            subresources.join(" ")
        )))
    }

    /// One attribute's answer, from the cache while it holds. An API server
    /// that cannot answer is an error, never cached: a denial remembered for
    /// a timeout would refuse the API server's own calls for 30 s.
    async fn allowed(&self, who: &Identity, what: &Attributes) -> Result<bool, String> {
        let key = (who.clone(), what.clone());
        let cached = self
            .answers
            .lock()
            .expect("answers lock")
            .get(&key)
            .copied();
        match cached {
            Some((allowed, until)) if Instant::now() < until => Ok(allowed),
            _ => {
                let allowed = self.review(who, what).await?;
                let ttl = if allowed { ALLOWED_TTL } else { DENIED_TTL };
                let mut answers = self.answers.lock().expect("answers lock");
                answers.retain(|_, (_, until)| Instant::now() < *until);
                answers.insert(key, (allowed, Instant::now() + ttl));
                Ok(allowed)
            }
        }
    }

    /// One SubjectAccessReview.
    async fn review(&self, who: &Identity, what: &Attributes) -> Result<bool, String> {
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
        let answer = api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| format!("SubjectAccessReview: {e}"))?;
        Ok(answer.status.is_some_and(|s| s.allowed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subresources(method: http::Method, path: &str) -> Vec<&'static str> {
        attributes(&method, path)
            .into_iter()
            .map(|a| a.subresource)
            .collect()
    }

    #[test]
    fn paths_map_to_the_kubelets_subresources() {
        let get = http::Method::GET;
        assert_eq!(
            subresources(get.clone(), "/containerLogs/ns/p/c"),
            ["proxy"]
        );
        assert_eq!(subresources(get.clone(), "/stats/summary"), ["stats"]);
        assert_eq!(subresources(get.clone(), "/stats"), ["stats"]);
        assert_eq!(subresources(get.clone(), "/metrics/resource"), ["metrics"]);
        assert_eq!(subresources(get.clone(), "/logs/syslog"), ["log"]);
        assert_eq!(subresources(get.clone(), "/flagz"), ["configz"]);
        assert_eq!(subresources(get.clone(), "/statsx"), ["proxy"]);
        assert_eq!(
            attributes(&http::Method::POST, "/exec/a/b/c")[0].verb,
            "create"
        );
    }

    #[test]
    fn fine_grained_subresources_come_before_proxy() {
        let get = http::Method::GET;
        assert_eq!(subresources(get.clone(), "/healthz"), ["healthz", "proxy"]);
        assert_eq!(
            subresources(get.clone(), "/healthz/ping"),
            ["healthz", "proxy"]
        );
        assert_eq!(subresources(get.clone(), "/pods"), ["pods", "proxy"]);
        assert_eq!(subresources(get.clone(), "/pods/"), ["pods", "proxy"]);
        assert_eq!(
            subresources(get.clone(), "/runningpods/"),
            ["pods", "proxy"]
        );
        assert_eq!(
            subresources(get.clone(), "/allocatedPods"),
            ["pods", "proxy"]
        );
        assert_eq!(subresources(get.clone(), "/configz"), ["configz", "proxy"]);
        assert_eq!(subresources(get, "/podsx"), ["proxy"]);
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

    /// An API server answering each SubjectAccessReview with the next
    /// status: 500 (etcd timed out), then allowed.
    fn api_server(calls: std::sync::Arc<std::sync::atomic::AtomicUsize>) -> kube::Client {
        let service = tower::service_fn(move |_: http::Request<kube::client::Body>| {
            let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                let (code, body) = if n == 0 {
                    (
                        500,
                        r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"etcdserver: request timed out","code":500}"#,
                    )
                } else {
                    (
                        201,
                        r#"{"kind":"SubjectAccessReview","apiVersion":"authorization.k8s.io/v1","spec":{},"status":{"allowed":true}}"#,
                    )
                };
                let response = http::Response::builder()
                    .status(code)
                    .header("content-type", "application/json")
                    .body(kube::client::Body::from(body.as_bytes().to_vec()))
                    .unwrap();
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        kube::Client::new(service, "default")
    }

    #[tokio::test]
    async fn an_api_server_that_cannot_answer_is_a_500_and_is_asked_again() {
        let calls = std::sync::Arc::default();
        let authorizer = Authorizer::new(api_server(std::sync::Arc::clone(&calls)), "n".into());
        let who = Identity {
            user: "kube-apiserver-kubelet-client".into(),
            groups: vec![],
        };
        let what = attributes(&http::Method::GET, "/containerLogs/ns/p/c");
        match authorizer.authorize(&who, &what).await {
            Err(Refusal::Error(message)) => assert_eq!(
                message,
                "Authorization error (user=kube-apiserver-kubelet-client, verb=get, resource=nodes, subresource=proxy)"
            ),
            other => panic!("want a 500, got {other:?}"),
        }
        // Not remembered as a denial: the next request asks again.
        assert!(authorizer.authorize(&who, &what).await.is_ok());
        assert!(authorizer.authorize(&who, &what).await.is_ok());
        assert_eq!(
            calls.load(std::sync::atomic::Ordering::SeqCst),
            2,
            "the allow is cached"
        );
    }
}
