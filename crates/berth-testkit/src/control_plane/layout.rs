//! Where a control plane keeps its files, which loopback ports it serves
//! on, and the command line of each process. The flags are those of
//! upstream's `hack/local-up-cluster.sh` and controller-runtime's envtest,
//! reduced to one loopback host.

use std::net::TcpListener;
use std::path::{Path, PathBuf};

/// The Service network: the apiserver's `kubernetes` Service takes its first
/// address, which the serving certificate names.
pub const SERVICE_CIDR: &str = "10.96.0.0/24";
pub const KUBERNETES_SERVICE_IP: &str = "10.96.0.1";
/// The service-account token issuer (kubeadm's default).
pub const SERVICE_ACCOUNT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// The loopback ports of one control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub etcd_client: u16,
    pub etcd_peer: u16,
    pub apiserver: u16,
    pub controller_manager: u16,
    pub scheduler: u16,
}

impl Ports {
    /// Five distinct ports free right now. All are held until all are
    /// chosen, so they differ from each other; another process may still
    /// take one before our component binds it (a start-up then fails
    /// naming the port, and is rare: the kernel hands out ephemeral ports
    /// in a random order).
    pub fn free() -> anyhow::Result<Self> {
        let listeners = (0..5)
            .map(|_| TcpListener::bind("127.0.0.1:0"))
            .collect::<Result<Vec<_>, _>>()?;
        let ports = listeners
            .iter()
            .map(|l| l.local_addr().map(|a| a.port()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            etcd_client: ports[0],
            etcd_peer: ports[1],
            apiserver: ports[2],
            controller_manager: ports[3],
            scheduler: ports[4],
        })
    }
}

/// The files of one control plane under its directory.
#[derive(Debug, Clone)]
pub struct Layout {
    pub dir: PathBuf,
    pub ports: Ports,
}

impl Layout {
    pub fn pki_dir(&self) -> PathBuf {
        self.dir.join("pki")
    }

    /// A certificate, key or other PKI file.
    pub fn pki(&self, file: &str) -> PathBuf {
        self.pki_dir().join(file)
    }

    /// The kubeconfig of `who` (`admin`, `controller-manager`, ...).
    pub fn kubeconfig(&self, who: &str) -> PathBuf {
        self.dir.join(format!("{who}.kubeconfig"))
    }

    pub fn log_dir(&self) -> PathBuf {
        self.dir.join("logs")
    }

    /// The log of a component.
    pub fn log(&self, component: &str) -> PathBuf {
        self.log_dir().join(format!("{component}.log"))
    }

    pub fn etcd_data(&self) -> PathBuf {
        self.dir.join("etcd")
    }

    /// The apiserver's URL.
    pub fn server(&self) -> String {
        format!("https://127.0.0.1:{}", self.ports.apiserver)
    }

    pub fn etcd_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.etcd_client)
    }

    pub fn etcd_args(&self) -> Vec<String> {
        let peer = format!("http://127.0.0.1:{}", self.ports.etcd_peer);
        let client = self.etcd_url();
        vec![
            "--name=cp".into(),
            flag("data-dir", &self.etcd_data()),
            format!("--listen-client-urls={client}"),
            format!("--advertise-client-urls={client}"),
            format!("--listen-peer-urls={peer}"),
            format!("--initial-advertise-peer-urls={peer}"),
            format!("--initial-cluster=cp={peer}"),
            "--initial-cluster-state=new".into(),
            // Its data dies with the test: durability buys nothing, and
            // fsync on a busy disk is what makes etcd slow.
            "--unsafe-no-fsync=true".into(),
            "--log-level=warn".into(),
        ]
    }

    pub fn apiserver_args(&self) -> Vec<String> {
        vec![
            format!("--etcd-servers={}", self.etcd_url()),
            "--bind-address=127.0.0.1".into(),
            // Without it a loopback bind address is swapped for the
            // default route's interface, which may not exist.
            "--advertise-address=127.0.0.1".into(),
            // Keeps 127.0.0.1 out of the `kubernetes` Endpoints (pods
            // cannot reach the host's loopback).
            "--endpoint-reconciler-type=none".into(),
            format!("--secure-port={}", self.ports.apiserver),
            flag("tls-cert-file", &self.pki("apiserver.crt")),
            flag("tls-private-key-file", &self.pki("apiserver.key")),
            flag("client-ca-file", &self.pki("ca.crt")),
            format!("--service-account-issuer={SERVICE_ACCOUNT_ISSUER}"),
            flag("service-account-key-file", &self.pki("sa.pub")),
            flag("service-account-signing-key-file", &self.pki("sa.key")),
            "--authorization-mode=Node,RBAC".into(),
            // Added to the default plugins (ServiceAccount etc. stay on).
            "--enable-admission-plugins=NodeRestriction".into(),
            "--allow-privileged=true".into(),
            format!("--service-cluster-ip-range={SERVICE_CIDR}"),
            flag(
                "kubelet-client-certificate",
                &self.pki("apiserver-kubelet-client.crt"),
            ),
            flag(
                "kubelet-client-key",
                &self.pki("apiserver-kubelet-client.key"),
            ),
            "--kubelet-preferred-address-types=InternalIP,Hostname".into(),
            "--profiling=false".into(),
            "--v=1".into(),
        ]
    }

    pub fn controller_manager_args(&self) -> Vec<String> {
        let kubeconfig = self.kubeconfig("controller-manager");
        vec![
            flag("kubeconfig", &kubeconfig),
            flag("authentication-kubeconfig", &kubeconfig),
            flag("authorization-kubeconfig", &kubeconfig),
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={}", self.ports.controller_manager),
            "--leader-elect=false".into(),
            "--controllers=*".into(),
            // Each controller acts as its own service account, so RBAC is
            // exercised as in a kubeadm cluster. It costs start-up time:
            // the default ServiceAccount exists ~6 s after /readyz instead
            // of ~0.5 s (one account and token per controller, in turn).
            "--use-service-account-credentials=true".into(),
            flag("service-account-private-key-file", &self.pki("sa.key")),
            // Published to every namespace as the kube-root-ca.crt ConfigMap.
            flag("root-ca-file", &self.pki("ca.crt")),
            flag("cluster-signing-cert-file", &self.pki("ca.crt")),
            flag("cluster-signing-key-file", &self.pki("ca.key")),
            format!("--service-cluster-ip-range={SERVICE_CIDR}"),
            "--profiling=false".into(),
        ]
    }

    pub fn scheduler_args(&self) -> Vec<String> {
        let kubeconfig = self.kubeconfig("scheduler");
        vec![
            flag("kubeconfig", &kubeconfig),
            flag("authentication-kubeconfig", &kubeconfig),
            flag("authorization-kubeconfig", &kubeconfig),
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={}", self.ports.scheduler),
            "--leader-elect=false".into(),
            "--profiling=false".into(),
        ]
    }
}

fn flag(name: &str, path: &Path) -> String {
    format!("--{name}={}", path.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        Layout {
            dir: "/cp".into(),
            ports: Ports {
                etcd_client: 1001,
                etcd_peer: 1002,
                apiserver: 1003,
                controller_manager: 1004,
                scheduler: 1005,
            },
        }
    }

    #[test]
    fn free_ports_are_distinct() {
        let p = Ports::free().unwrap();
        let mut all = vec![
            p.etcd_client,
            p.etcd_peer,
            p.apiserver,
            p.controller_manager,
            p.scheduler,
        ];
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 5);
    }

    #[test]
    fn components_find_each_other_on_the_chosen_ports() {
        let l = layout();
        let has = |args: &[String], want: &str| {
            assert!(args.iter().any(|a| a == want), "{want} not in {args:?}");
        };
        has(&l.etcd_args(), "--listen-client-urls=http://127.0.0.1:1001");
        has(&l.etcd_args(), "--initial-cluster=cp=http://127.0.0.1:1002");
        has(&l.apiserver_args(), "--etcd-servers=http://127.0.0.1:1001");
        has(&l.apiserver_args(), "--secure-port=1003");
        has(&l.controller_manager_args(), "--secure-port=1004");
        has(&l.scheduler_args(), "--secure-port=1005");
        has(&l.apiserver_args(), "--client-ca-file=/cp/pki/ca.crt");
        has(
            &l.controller_manager_args(),
            "--kubeconfig=/cp/controller-manager.kubeconfig",
        );
        assert_eq!(l.server(), "https://127.0.0.1:1003");
    }
}
