//! The cluster's Services, watched (`spec.clusterIP!=None`), for the
//! environment variables every container gets: `<NAME>_SERVICE_HOST`,
//! `<NAME>_SERVICE_PORT` and the Docker-link `<NAME>_PORT_*` ones (the
//! kubelet's `getServiceEnvVarMap` and `pkg/kubelet/envvars`).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::api::Api;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use tokio_util::sync::CancellationToken;

/// The services, by namespace and name; `None` until first listed.
#[derive(Default)]
pub struct Services {
    known: RwLock<Option<BTreeMap<(String, String), Service>>>,
}

/// The master service, whose variables every pod gets.
const MASTER_SERVICE: &str = "kubernetes";

impl Services {
    /// The service variables of a container of a pod in `namespace`.
    /// Before the first list only a static pod starts, without them: it
    /// must run while the API server is away (the kubelet's
    /// `makeEnvironmentVariables`).
    pub fn env(
        &self,
        namespace: &str,
        service_links: bool,
        static_pod: bool,
    ) -> Result<Vec<(String, String)>, String> {
        let known = self.known.read().expect("services lock");
        let Some(known) = known.as_ref() else {
            if static_pod {
                return Ok(Vec::new());
            }
            return Err(
                "services have not yet been read at least once, cannot construct envvars".into(),
            );
        };
        let mut chosen: BTreeMap<&str, &Service> = BTreeMap::new();
        for ((ns, name), service) in known {
            if ns == namespace && service_links {
                chosen.insert(name, service);
            }
        }
        if let Some(master) = known.get(&("default".to_string(), MASTER_SERVICE.to_string())) {
            chosen.entry(MASTER_SERVICE).or_insert(master);
        }
        Ok(chosen.values().flat_map(|s| variables(s)).collect())
    }
}

fn variable_name(name: &str) -> String {
    name.to_uppercase().replace('-', "_")
}

/// One service's variables, in the kubelet's order.
fn variables(service: &Service) -> Vec<(String, String)> {
    let Some(spec) = &service.spec else {
        return Vec::new();
    };
    let ip = spec.cluster_ip.clone().unwrap_or_default();
    let ports = spec.ports.as_deref().unwrap_or_default();
    if ip.is_empty() || ip == "None" || ports.is_empty() {
        return Vec::new();
    }
    let prefix = variable_name(service.metadata.name.as_deref().unwrap_or_default());
    let mut vars = vec![
        (format!("{prefix}_SERVICE_HOST"), ip.clone()),
        (format!("{prefix}_SERVICE_PORT"), ports[0].port.to_string()),
    ];
    for port in ports {
        if let Some(name) = port.name.as_deref().filter(|n| !n.is_empty()) {
            vars.push((
                format!("{prefix}_SERVICE_PORT_{}", variable_name(name)),
                port.port.to_string(),
            ));
        }
    }
    let host = |port: i32| {
        if ip.contains(':') {
            format!("[{ip}]:{port}")
        } else {
            format!("{ip}:{port}")
        }
    };
    for (i, port) in ports.iter().enumerate() {
        let protocol = port.protocol.as_deref().unwrap_or("TCP");
        let lower = protocol.to_lowercase();
        let url = format!("{lower}://{}", host(port.port));
        if i == 0 {
            vars.push((format!("{prefix}_PORT"), url.clone()));
        }
        let port_prefix = format!("{prefix}_PORT_{}_{}", port.port, protocol.to_uppercase());
        vars.push((port_prefix.clone(), url));
        vars.push((format!("{port_prefix}_PROTO"), lower));
        vars.push((format!("{port_prefix}_PORT"), port.port.to_string()));
        vars.push((format!("{port_prefix}_ADDR"), ip.clone()));
    }
    vars
}

fn key(service: &Service) -> (String, String) {
    (
        service.metadata.namespace.clone().unwrap_or_default(),
        service.metadata.name.clone().unwrap_or_default(),
    )
}

/// Keeps `services` current until `stop`.
pub async fn run(client: kube::Client, data: Arc<super::NodeData>, stop: CancellationToken) {
    let services = &data.services;
    let api: Api<Service> = Api::all(client);
    let config = watcher::Config::default().fields("spec.clusterIP!=None");
    let mut stream = watcher::watcher(api, config).default_backoff().boxed();
    let mut listing = BTreeMap::new();
    loop {
        let Some(event) = super::next_event(&mut stream, "services", &stop).await else {
            return;
        };
        let mut known = services.known.write().expect("services lock");
        match event {
            Event::Init => listing.clear(),
            Event::InitApply(service) => {
                listing.insert(key(&service), service);
            }
            Event::InitDone => *known = Some(std::mem::take(&mut listing)),
            Event::Apply(service) => {
                known
                    .get_or_insert_with(BTreeMap::new)
                    .insert(key(&service), service);
            }
            Event::Delete(service) => {
                if let Some(known) = known.as_mut() {
                    known.remove(&key(&service));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};

    fn service(namespace: &str, name: &str, ip: &str, ports: &[(Option<&str>, i32)]) -> Service {
        let mut s = Service::default();
        s.metadata.namespace = Some(namespace.into());
        s.metadata.name = Some(name.into());
        s.spec = Some(ServiceSpec {
            cluster_ip: Some(ip.into()),
            ports: Some(
                ports
                    .iter()
                    .map(|(n, p)| ServicePort {
                        name: n.map(str::to_string),
                        port: *p,
                        protocol: Some("TCP".into()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        });
        s
    }

    fn services(list: Vec<Service>) -> Services {
        Services {
            known: RwLock::new(Some(list.into_iter().map(|s| (key(&s), s)).collect())),
        }
    }

    #[test]
    fn the_kubelets_variables_for_the_namespace_and_the_master_service() {
        let s = services(vec![
            service(
                "default",
                "kubernetes",
                "10.96.0.1",
                &[(Some("https"), 443)],
            ),
            service("app", "my-db", "10.96.0.9", &[(None, 5432)]),
            service("other", "x", "10.96.0.8", &[(None, 80)]),
        ]);
        let vars: BTreeMap<_, _> = s.env("app", true, false).unwrap().into_iter().collect();
        assert_eq!(vars["KUBERNETES_SERVICE_HOST"], "10.96.0.1");
        assert_eq!(vars["KUBERNETES_SERVICE_PORT"], "443");
        assert_eq!(vars["KUBERNETES_SERVICE_PORT_HTTPS"], "443");
        assert_eq!(vars["KUBERNETES_PORT"], "tcp://10.96.0.1:443");
        assert_eq!(vars["KUBERNETES_PORT_443_TCP_ADDR"], "10.96.0.1");
        assert_eq!(vars["MY_DB_SERVICE_HOST"], "10.96.0.9");
        assert_eq!(vars["MY_DB_PORT_5432_TCP"], "tcp://10.96.0.9:5432");
        assert!(!vars.contains_key("X_SERVICE_HOST"));
        // Without service links, only the master service.
        let vars = s.env("app", false, false).unwrap();
        assert!(
            vars.iter().all(|(k, _)| k.starts_with("KUBERNETES_")),
            "{vars:?}"
        );
        assert!(!vars.is_empty());
    }

    #[test]
    fn before_the_first_list_only_static_pods_containers_start() {
        let err = Services::default().env("app", true, false).unwrap_err();
        assert!(err.contains("services have not yet been read"), "{err}");
        assert_eq!(Services::default().env("app", true, true), Ok(Vec::new()));
    }
}
