//! The kubelet's runtime path, for comparison: containerd's CRI plugin,
//! driven with the RPCs the kubelet sends for a pod (RunPodSandbox, then
//! per container ImageStatus, CreateContainer, StartContainer; StopContainer
//! with the grace period, StopPodSandbox and RemovePodSandbox to delete).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, CreateContainerRequest, ImageSpec, ImageStatusRequest,
    LinuxContainerConfig, LinuxContainerResources, LinuxPodSandboxConfig,
    LinuxSandboxSecurityContext, NamespaceMode, NamespaceOption, PodSandboxConfig,
    PodSandboxMetadata, RemovePodSandboxRequest, RunPodSandboxRequest, StartContainerRequest,
    StopContainerRequest, StopPodSandboxRequest,
};
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

/// A CRI pod as the bench made it: its sandbox and containers.
#[derive(Debug, Clone)]
pub struct CriPod {
    pub sandbox: String,
    pub containers: Vec<String>,
}

/// A connection to containerd's CRI services.
#[derive(Clone)]
pub struct Cri {
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
    log_root: PathBuf,
}

impl Cri {
    pub async fn connect(socket: &Path, log_root: &Path) -> anyhow::Result<Self> {
        let socket = socket.to_path_buf();
        let channel =
            Endpoint::try_from("http://[::]:50051")?
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let socket = socket.clone();
                    async move {
                        Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(socket).await?))
                    }
                }))
                .await
                .context("connect to containerd's CRI")?;
        Ok(Self {
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
            log_root: log_root.to_path_buf(),
        })
    }

    /// Runs a pod of `scripts.len()` containers (`sh -c script` each) from
    /// `image`, returning once every container is started, as the kubelet's
    /// SyncPod does.
    pub async fn run_pod(
        &self,
        name: &str,
        image: &str,
        scripts: &[&str],
    ) -> anyhow::Result<CriPod> {
        let mut runtime = self.runtime.clone();
        let mut images = self.images.clone();
        let uid = format!("cri-{name}-{}", std::process::id());
        let log_directory = self.log_root.join(format!("default_{name}_{uid}"));
        let config = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.into(),
                uid: uid.clone(),
                namespace: "default".into(),
                attempt: 0,
            }),
            hostname: name.into(),
            log_directory: log_directory.display().to_string(),
            labels: HashMap::from([("io.kubernetes.pod.name".into(), name.into())]),
            linux: Some(LinuxPodSandboxConfig {
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(NamespaceOption {
                        network: NamespaceMode::Pod as i32,
                        pid: NamespaceMode::Container as i32,
                        ipc: NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let sandbox = runtime
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: String::new(),
            })
            .await
            .with_context(|| format!("RunPodSandbox {name}"))?
            .into_inner()
            .pod_sandbox_id;
        let mut containers = Vec::with_capacity(scripts.len());
        for (i, script) in scripts.iter().enumerate() {
            let container = format!("c{i}");
            let spec = ImageSpec {
                image: image.into(),
                ..Default::default()
            };
            // The kubelet's EnsureImageExists.
            images
                .image_status(ImageStatusRequest {
                    image: Some(spec.clone()),
                    verbose: false,
                })
                .await
                .context("ImageStatus")?;
            let id = runtime
                .create_container(CreateContainerRequest {
                    pod_sandbox_id: sandbox.clone(),
                    config: Some(ContainerConfig {
                        metadata: Some(ContainerMetadata {
                            name: container.clone(),
                            attempt: 0,
                        }),
                        image: Some(spec),
                        command: vec!["sh".into(), "-c".into(), (*script).into()],
                        log_path: format!("{container}/0.log"),
                        linux: Some(LinuxContainerConfig {
                            resources: Some(LinuxContainerResources::default()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    sandbox_config: Some(config.clone()),
                })
                .await
                .with_context(|| format!("CreateContainer {name}/{container}"))?
                .into_inner()
                .container_id;
            runtime
                .start_container(StartContainerRequest {
                    container_id: id.clone(),
                })
                .await
                .with_context(|| format!("StartContainer {name}/{container}"))?;
            containers.push(id);
        }
        Ok(CriPod {
            sandbox,
            containers,
        })
    }

    /// Deletes a pod as the kubelet does: its containers stopped with the
    /// grace period, then the sandbox stopped and removed.
    pub async fn delete_pod(&self, pod: &CriPod, grace_seconds: i64) -> anyhow::Result<()> {
        let mut runtime = self.runtime.clone();
        let stops = pod.containers.iter().map(|id| {
            let mut runtime = runtime.clone();
            async move {
                runtime
                    .stop_container(StopContainerRequest {
                        container_id: id.clone(),
                        timeout: grace_seconds,
                    })
                    .await
            }
        });
        for stopped in futures::future::join_all(stops).await {
            stopped.context("StopContainer")?;
        }
        runtime
            .stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: pod.sandbox.clone(),
            })
            .await
            .context("StopPodSandbox")?;
        runtime
            .remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: pod.sandbox.clone(),
            })
            .await
            .context("RemovePodSandbox")?;
        Ok(())
    }
}
