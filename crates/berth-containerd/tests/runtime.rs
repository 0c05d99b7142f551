//! Sandboxes, containers, exec, logs and cleanup against a private containerd
//! (root, runc and the CNI plugins needed). Skips with a message when
//! containerd is missing or the test is not root, unless
//! BERTH_REQUIRE_CONTAINERD=1.
//!
//! The test binary doubles as the container log writer: the shim runs it as
//! `<test-binary> logger <path>`, which selects `logger_process_entry` below.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use berth_containerd::{Containerd, ContainerdConfig};
use berth_runtime::{
    ContainerConfig, ContainerId, ContainerKind, ContainerRuntime, ExecSession, ExecSignal,
    ExecStreamRequest, ExitInfo, ExitWaiter, ImageInfo, ObservedState, PauseProcess, PidNamespace,
    PodRef, PodTimes, PortMapping, Resources, RuntimeErrorKind, SandboxConfig, SandboxInfo, Signal,
};
use berth_testkit::{busybox_image, PrivateContainerd, TEST_IMAGE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

const CNI_BIN: &str = "/usr/lib/cni";

/// Runs only when the shim spawned this binary as the log writer.
#[test]
fn logger_process_entry() {
    berth_testkit::containerd::serve_as_logger_if_spawned();
}

/// A containerd of the test's own, plus what the test leaves on the host
/// outside it. Fields drop in order: containerd (tasks, shims, mounts) goes
/// first, so the pod cgroups are empty when `host` removes them.
struct Daemon {
    containerd: PrivateContainerd,
    host: HostLeftovers,
}

/// The bridge the test's CNI network made and the pods' cgroups.
#[derive(Default)]
struct HostLeftovers {
    bridge: Option<String>,
    pod_uids: Vec<String>,
}

impl Daemon {
    async fn start() -> Option<Self> {
        Some(Self {
            containerd: PrivateContainerd::start_or_skip().await?,
            host: HostLeftovers::default(),
        })
    }

    fn dir(&self) -> &Path {
        self.containerd.dir()
    }

    fn root(&self) -> PathBuf {
        self.dir().join("berth")
    }

    fn config(&self) -> ContainerdConfig {
        ContainerdConfig {
            root_dir: self.root(),
            cni_bin_dirs: vec!["/nonexistent/cni".into(), CNI_BIN.into()],
            logger_binary: std::env::current_exe().unwrap(),
            ..self.containerd.runtime_config()
        }
    }

    /// A network of this test's own (bridge and subnet), so parallel runs do not collide.
    fn write_network(&mut self, tag: u8) {
        let n = std::process::id() % 200 + 20;
        let bridge = format!("bt{n}x{tag}");
        let conflist = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": "berth-test",
            "plugins": [
                {"type": "bridge", "bridge": bridge, "isGateway": true, "ipMasq": false,
                 "hairpinMode": true,
                 "ipam": {"type": "host-local", "ranges": [[{"subnet": format!("10.{}.{n}.0/24", 230 + tag)}]],
                          "routes": [{"dst": "0.0.0.0/0"}],
                          "dataDir": self.root().join("cni/networks")}},
                {"type": "portmap", "capabilities": {"portMappings": true}}
            ]
        });
        let conf_dir = self.config().cni_conf_dir;
        std::fs::create_dir_all(&conf_dir).unwrap();
        std::fs::write(conf_dir.join("10-test.conflist"), conflist.to_string()).unwrap();
        self.host.bridge = Some(bridge);
    }

    async fn connect(&self) -> Containerd {
        Containerd::connect(self.config())
            .await
            .expect("connect to the private containerd")
    }

    fn ctr(&self, args: &[&str]) -> String {
        self.containerd.ctr_stdout(args)
    }
}

impl Drop for HostLeftovers {
    /// Best effort after a failed test.
    fn drop(&mut self) {
        for uid in &self.pod_uids {
            for hierarchy in std::fs::read_dir("/sys/fs/cgroup")
                .into_iter()
                .flatten()
                .flatten()
            {
                let pod = hierarchy.path().join("berth").join(format!("pod{uid}"));
                for child in std::fs::read_dir(&pod).into_iter().flatten().flatten() {
                    let _ = std::fs::remove_dir(child.path());
                }
                let _ = std::fs::remove_dir(&pod);
            }
        }
        if let Some(bridge) = &self.bridge {
            let _ = Command::new("ip").args(["link", "del", bridge]).status();
        }
    }
}

/// The test kit's busybox with a `www` user (and no `nobody`) and a page for
/// httpd to serve.
async fn import_busybox(runtime: &Containerd, dir: &Path) -> ImageInfo {
    let image = busybox_image(TEST_IMAGE)
        .file(
            "/etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/www:/bin/false\n".to_vec(),
            0o644,
        )
        .file(
            "/etc/group",
            b"root:x:0:\nwheel:x:10:root\nwww:x:33:\n".to_vec(),
            0o644,
        )
        .file("/www/index.html", b"hello from berth\n".to_vec(), 0o644);
    let archive = dir.join("busybox.tar");
    image
        .write_oci_archive(std::fs::File::create(&archive).unwrap())
        .unwrap();
    runtime
        .import_archive(&archive)
        .await
        .expect("import busybox");
    runtime
        .image_status(TEST_IMAGE)
        .await
        .unwrap()
        .expect("busybox is present after import")
}

/// What each test starts from: a daemon, a client of it with busybox
/// imported, and the pod the test runs, with its log directory. `network`:
/// the tag of a CNI network of the test's own (the pause image is made ready
/// too); `None` for a test of host-network pods only.
async fn set_up(
    pod_name: &str,
    network: Option<u8>,
) -> Option<(Daemon, Containerd, ImageInfo, PodRef, PathBuf)> {
    let mut daemon = Daemon::start().await?;
    if let Some(tag) = network {
        daemon.write_network(tag);
    }
    let pod = pod(pod_name);
    daemon.host.pod_uids.push(pod.uid.clone());
    let runtime = daemon.connect().await;
    let image = import_busybox(&runtime, daemon.dir()).await;
    if network.is_some() {
        runtime.pause_image().await.expect("pause image");
    }
    let logs = daemon.dir().join("logs").join(pod_name);
    Some((daemon, runtime, image, pod, logs))
}

fn pod(name: &str) -> PodRef {
    PodRef {
        // Unique per run: a killed run leaves its pod cgroups behind.
        uid: format!("{name}-{:08x}-1111-2222-333344445555", std::process::id()),
        namespace: "default".into(),
        name: name.into(),
    }
}

fn sandbox_config(pod: &PodRef, host_network: bool, log_dir: &Path) -> SandboxConfig {
    SandboxConfig {
        pod: pod.clone(),
        hostname: pod.name.clone(),
        host_network,
        log_dir: log_dir.to_path_buf(),
        port_mappings: vec![],
        labels: BTreeMap::new(),
        times: PodTimes {
            created: jiff::Timestamp::UNIX_EPOCH,
            started: jiff::Timestamp::now(),
        },
        security: Default::default(),
        defer_network: false,
    }
}

fn container(
    pod: &PodRef,
    image: &ImageInfo,
    name: &str,
    args: &[&str],
    log_dir: &Path,
) -> ContainerConfig {
    ContainerConfig {
        pod: pod.clone(),
        name: name.into(),
        kind: ContainerKind::Regular,
        attempt: 0,
        image: image.clone(),
        args: args.iter().map(|a| a.to_string()).collect(),
        env: vec![("PATH".into(), "/bin".into())],
        working_dir: String::new(),
        user: None,
        mounts: vec![],
        log_path: log_dir.join(name).join("0.log"),
        read_only_root: false,
        privileged: false,
        security: Default::default(),
        resources: Resources::default(),
        annotations: BTreeMap::new(),
        stdio: Default::default(),
    }
}

/// What the waiter reports, which must come within `timeout`.
async fn exit_within(timeout: Duration, waiter: ExitWaiter) -> ExitInfo {
    tokio::time::timeout(timeout, waiter)
        .await
        .expect("the container exits in time")
        .expect("the exit is reported")
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

/// Polls `check` until it returns `Some`, or panics at the deadline.
async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn http_get(ip: IpAddr, port: u16) -> Option<String> {
    let mut stream = tokio::time::timeout(
        Duration::from_secs(1),
        tokio::net::TcpStream::connect((ip, port)),
    )
    .await
    .ok()?
    .ok()?;
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n").await.ok()?;
    let mut body = String::new();
    tokio::time::timeout(Duration::from_secs(2), stream.read_to_string(&mut body))
        .await
        .ok()?
        .ok()?;
    Some(body)
}

fn mounts() -> String {
    std::fs::read_to_string("/proc/mounts").unwrap()
}

/// Nothing of the sandbox left anywhere: containerd, mounts, IPAM, cgroups, CNI cache.
fn assert_sandbox_gone(daemon: &Daemon, sandbox: &SandboxInfo, ids: &[&str]) {
    let root = daemon.root();
    let mounts = mounts();
    assert!(
        !mounts.contains(&root.join("ns").display().to_string()),
        "namespace pin left: {mounts}"
    );
    let pins = root.join("ns").join(&sandbox.id.0);
    assert!(!pins.exists(), "pin directory left: {}", pins.display());
    assert!(
        !mounts.contains(&root.join("sandboxes").display().to_string()),
        "shm left"
    );
    for ip in &sandbox.ips {
        let lease = root.join("cni/networks/berth-test").join(ip.to_string());
        assert!(
            !lease.exists(),
            "IPAM reservation left: {}",
            lease.display()
        );
    }
    if let Ok(nat) = Command::new("iptables").args(["-t", "nat", "-S"]).output() {
        let nat = String::from_utf8_lossy(&nat.stdout);
        let tag = format!("id: \\\"{}\\\"", sandbox.id);
        assert!(!nat.contains(&tag), "port mapping rules left: {nat}");
    }
    let cache = std::fs::read_dir(root.join("cni/results"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(cache, 0, "CNI result cache left");
    let cgroup = Path::new("/sys/fs/cgroup/memory/berth").join(format!("pod{}", sandbox.pod.uid));
    assert!(!cgroup.exists(), "pod cgroup left: {}", cgroup.display());
    let containers = daemon.ctr(&["containers", "ls", "-q"]);
    let tasks = daemon.ctr(&["tasks", "ls"]);
    let snapshots = daemon.ctr(&["snapshots", "ls"]);
    for id in ids.iter().copied().chain([sandbox.id.0.as_str()]) {
        assert!(
            !containers.contains(id),
            "container {id} left: {containers}"
        );
        assert!(!tasks.contains(id), "task {id} left: {tasks}");
        assert!(!snapshots.contains(id), "snapshot {id} left: {snapshots}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_network_shared_namespaces_exec_and_logs() {
    let Some((daemon, runtime, image, pod, logs)) = set_up("web", Some(0)).await else {
        return;
    };

    let host_port = 18000 + (std::process::id() % 1000) as u16;
    let mut config = sandbox_config(&pod, false, &logs);
    config.port_mappings.push(PortMapping {
        host_port,
        container_port: 8080,
        protocol: "TCP".into(),
        host_ip: Some("127.0.0.1".into()),
    });
    let t = Instant::now();
    let sandbox = runtime
        .create_sandbox(&config)
        .await
        .expect("create sandbox");
    eprintln!("create_sandbox: {:.1} ms", ms(t));
    let ip = *sandbox.ips.first().expect("the pod has an IP");
    let netns = sandbox.netns.clone().expect("own network namespace");
    assert!(mounts().contains(&netns.display().to_string()));

    // A server in one container, reachable from the host at the pod IP.
    let t = Instant::now();
    let web_config = container(
        &pod,
        &image,
        "web",
        &["httpd", "-f", "-p", "8080", "-h", "/www"],
        &logs,
    );
    let web = runtime
        .create_container(&sandbox, &web_config)
        .await
        .expect("create web");
    let web_exit = runtime.wait_container(&web).await.expect("arm web waiter");
    let started = runtime.start_container(&web).await.expect("start web");
    eprintln!("create+start container: {:.1} ms", ms(t));
    assert!(started.pid > 0);
    let body = eventually("httpd at the pod IP", Duration::from_secs(5), || {
        http_get(ip, 8080)
    })
    .await;
    assert!(body.contains("hello from berth"), "{body}");
    let localhost = IpAddr::from([127, 0, 0, 1]);
    let body = eventually("httpd at the host port", Duration::from_secs(5), || {
        http_get(localhost, host_port)
    })
    .await;
    assert!(body.contains("hello from berth"), "{body}");

    // A second container: same localhost, same hostname; its output is logged.
    let client_config = container(
        &pod,
        &image,
        "client",
        &[
            "sh",
            "-c",
            "echo out-line; echo err-line >&2; exec sleep 3600",
        ],
        &logs,
    );
    let client = runtime
        .create_container(&sandbox, &client_config)
        .await
        .expect("create client");
    runtime
        .start_container(&client)
        .await
        .expect("start client");
    let log = eventually("both log lines", Duration::from_secs(5), || async {
        let text = std::fs::read_to_string(&client_config.log_path).ok()?;
        (text.contains("out-line") && text.contains("err-line")).then_some(text)
    })
    .await;
    for line in log.lines() {
        let fields: Vec<&str> = line.splitn(4, ' ').collect();
        assert_eq!(fields.len(), 4, "{line}");
        fields[0].parse::<jiff::Timestamp>().expect("RFC 3339 time");
        assert!(matches!(fields[1], "stdout" | "stderr"), "{line}");
        assert_eq!(fields[2], "F", "{line}");
    }
    assert!(log.contains(" stdout F out-line\n"), "{log}");
    assert!(log.contains(" stderr F err-line\n"), "{log}");

    let wget = runtime
        .exec(
            &client,
            &[
                "wget".into(),
                "-q".into(),
                "-O-".into(),
                "http://127.0.0.1:8080/".into(),
            ],
            None,
        )
        .await
        .expect("exec wget");
    assert_eq!(wget.exit_code, 0, "{wget:?}");
    assert_eq!(String::from_utf8_lossy(&wget.stdout), "hello from berth\n");
    for id in [&web, &client] {
        let out = runtime
            .exec(id, &["hostname".into()], None)
            .await
            .expect("exec hostname");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "web\n");
    }
    let out = runtime
        .exec(
            &client,
            &[
                "sh".into(),
                "-c".into(),
                "echo o; echo e >&2; exit 3".into(),
            ],
            Some(Duration::from_secs(10)),
        )
        .await
        .expect("exec sh");
    assert_eq!(
        (out.exit_code, out.stdout.as_slice(), out.stderr.as_slice()),
        (3, &b"o\n"[..], &b"e\n"[..])
    );
    let t = Instant::now();
    let err = runtime
        .exec(
            &client,
            &["sleep".into(), "30".into()],
            Some(Duration::from_millis(300)),
        )
        .await
        .expect_err("exec times out");
    assert_eq!(err.kind, RuntimeErrorKind::Timeout, "{err}");
    assert!(t.elapsed() < Duration::from_secs(5));
    let err = runtime
        .exec(&client, &["/no/such/binary".into()], None)
        .await
        .expect_err("no binary");
    assert_ne!(err.kind, RuntimeErrorKind::Timeout);

    streamed_exec(&runtime, &client).await;
    // port-forward's namespace: the sandbox's.
    let named = runtime
        .network_namespace(&client)
        .await
        .expect("network namespace");
    assert_eq!(ns_inode(&named), ns_inode(&netns));

    // Teardown: containers first, then the sandbox; twice, since removal is idempotent.
    runtime.signal_container(&web, Signal::KILL).await.unwrap();
    let exit = exit_within(Duration::from_secs(10), web_exit).await;
    assert_eq!(exit.exit_code, 137);
    for id in [&web, &client] {
        runtime
            .remove_container(id)
            .await
            .expect("remove container");
        runtime
            .remove_container(id)
            .await
            .expect("remove container again");
    }
    runtime
        .remove_sandbox(&sandbox)
        .await
        .expect("remove sandbox");
    runtime
        .remove_sandbox(&sandbox)
        .await
        .expect("remove sandbox again");
    assert_sandbox_gone(&daemon, &sandbox, &[&web.0, &client.0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exits_signals_list_and_oom() {
    let Some((daemon, runtime, image, pod, logs)) = set_up("life", None).await else {
        return;
    };
    let sandbox = runtime
        .create_sandbox(&sandbox_config(&pod, true, &logs))
        .await
        .expect("create host-network sandbox");
    assert!(sandbox.netns.is_none() && sandbox.ips.is_empty());

    let run = |name: &str, args: &[&str]| container(&pod, &image, name, args, &logs);
    let start = |config: ContainerConfig| {
        let runtime = runtime.clone();
        let sandbox = sandbox.clone();
        async move {
            let id = runtime
                .create_container(&sandbox, &config)
                .await
                .expect("create");
            let waiter = runtime.wait_container(&id).await.expect("arm waiter");
            runtime.start_container(&id).await.expect("start");
            (id, waiter)
        }
    };

    // An exit code propagates through the waiter.
    let (seven, waiter) = start(run("seven", &["sh", "-c", "exit 7"])).await;
    let exit = exit_within(Duration::from_secs(10), waiter).await;
    assert_eq!(exit.exit_code, 7);
    assert!(!exit.oom_killed);

    // Host network: the node's hostname.
    let node = nix::unistd::gethostname().unwrap().into_string().unwrap();
    let (sleeper, _) = start(run("sleeper", &["sleep", "3600"])).await;
    let out = runtime
        .exec(&sleeper, &["hostname".into()], None)
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), node);

    // SIGTERM ignored; SIGKILL is not.
    let (stubborn, mut waiter) = start(run(
        "stubborn",
        &["sh", "-c", "trap '' TERM; while true; do sleep 1; done"],
    ))
    .await;
    runtime
        .signal_container(&stubborn, Signal::TERM)
        .await
        .unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(500), &mut waiter)
            .await
            .is_err(),
        "a container ignoring SIGTERM must survive it"
    );
    runtime
        .signal_container(&stubborn, Signal::KILL)
        .await
        .unwrap();
    let exit = exit_within(Duration::from_secs(10), waiter).await;
    assert_eq!(exit.exit_code, 137);
    runtime
        .signal_container(&stubborn, Signal::KILL)
        .await
        .expect("signalling the dead is fine");

    // A trap turns SIGTERM into a chosen exit code.
    let (trapper, waiter) = start(run(
        "trapper",
        &[
            "sh",
            "-c",
            "trap 'exit 42' TERM; while true; do sleep 0.1; done",
        ],
    ))
    .await;
    runtime
        .exec(&trapper, &["true".into()], None)
        .await
        .unwrap();
    runtime
        .signal_container(&trapper, Signal::TERM)
        .await
        .unwrap();
    let exit = exit_within(Duration::from_secs(10), waiter).await;
    assert_eq!(exit.exit_code, 42);

    // A missing binary fails at start; the armed waiter sees 128 (StartError).
    let missing = runtime
        .create_container(&sandbox, &run("missing", &["/no/such/binary"]))
        .await
        .unwrap();
    let waiter = runtime.wait_container(&missing).await.unwrap();
    let err = runtime
        .start_container(&missing)
        .await
        .expect_err("start fails");
    assert!(err.message.contains("/no/such/binary"), "{err}");
    let exit = exit_within(Duration::from_secs(10), waiter).await;
    assert_eq!(exit.exit_code, 128);

    // A user name that the image does not know is a spec error.
    let mut nobody = run("nobody", &["true"]);
    nobody.user = Some("nobody".into());
    let err = runtime
        .create_container(&sandbox, &nobody)
        .await
        .expect_err("unknown user");
    assert_eq!(err.kind, RuntimeErrorKind::InvalidSpec, "{err}");
    let mut www = run("www", &["sleep", "3600"]);
    www.user = Some("www".into());
    let (www, _) = start(www).await;
    let id = runtime.exec(&www, &["id".into()], None).await.unwrap();
    // The primary group is a supplementary one too, as containerd 1.6.18+
    // sets it.
    assert_eq!(
        String::from_utf8_lossy(&id.stdout).trim(),
        "uid=33(www) gid=33(www) groups=33(www)"
    );

    // The memory limit holds, and its kill is reported as an OOM kill.
    let mut hog = run("hog", &["sh", "-c", "cat /dev/zero | tail"]);
    hog.resources.memory_limit_bytes = Some(32 << 20);
    let (hog, waiter) = start(hog).await;
    let exit = exit_within(Duration::from_secs(30), waiter).await;
    assert_eq!(exit.exit_code, 137, "{exit:?}");
    assert!(exit.oom_killed, "{exit:?}");

    // What is there, as a restarted agent would find it.
    let observed = runtime.list().await.unwrap();
    assert_eq!(observed.sandboxes.len(), 1);
    let found = &observed.sandboxes[0];
    assert_eq!(
        (found.id.clone(), found.pod.clone(), found.host_network),
        (sandbox.id.clone(), pod.clone(), true)
    );
    assert_eq!(
        found.pause,
        PauseProcess::Pinned,
        "no pause process, the pins in place"
    );
    assert_eq!(
        found.pod_times, sandbox.pod_times,
        "the pod's times are kept"
    );
    assert!(found.pod_times.is_some());
    let state = |id: &ContainerId| {
        let c = observed
            .containers
            .iter()
            .find(|c| &c.id == id)
            .expect("listed");
        assert_eq!(
            (c.pod.clone(), c.sandbox.clone(), c.kind, c.attempt),
            (pod.clone(), sandbox.id.clone(), ContainerKind::Regular, 0)
        );
        c.state
    };
    assert!(matches!(state(&seven), ObservedState::Exited { exit, .. } if exit.exit_code == 7));
    assert!(
        matches!(state(&stubborn), ObservedState::Exited { exit, .. } if exit.exit_code == 137)
    );
    assert!(matches!(state(&sleeper), ObservedState::Running { .. }));
    assert!(matches!(state(&missing), ObservedState::Created));
    assert_eq!(observed.containers.len(), 7);

    for id in [&seven, &sleeper, &stubborn, &trapper, &missing, &www, &hog] {
        runtime.remove_container(id).await.expect("remove");
    }
    let err = runtime
        .wait_container(&seven)
        .await
        .err()
        .expect("waiting for a removed container");
    assert_eq!(err.kind, RuntimeErrorKind::NotFound);
    runtime
        .remove_sandbox(&sandbox)
        .await
        .expect("remove sandbox");
    assert_sandbox_gone(&daemon, &sandbox, &[&seven.0, &sleeper.0, &hog.0]);
    assert!(runtime.list().await.unwrap() == Default::default());
}

/// Streamed exec in a running container: stdin to its end, a terminal that
/// is resized, and a session dropped early killing its process.
async fn streamed_exec(runtime: &Containerd, id: &ContainerId) {
    let request = |command: &str, stdin: bool, tty: bool| ExecStreamRequest {
        command: vec!["sh".into(), "-c".into(), command.into()],
        stdin,
        tty,
    };
    let mut cat = runtime
        .exec_stream(id, &request("cat; echo e >&2", true, false))
        .await
        .expect("exec cat");
    let mut stdin = cat.stdin.take().expect("stdin");
    stdin.write_all(b"through stdin\n").await.unwrap();
    drop(stdin);
    cat.control.send(ExecSignal::CloseStdin).unwrap();
    let mut out = String::new();
    cat.stdout.read_to_string(&mut out).await.unwrap();
    let mut err = String::new();
    cat.stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .await
        .unwrap();
    assert_eq!((out.as_str(), err.as_str()), ("through stdin\n", "e\n"));
    assert_eq!(cat.exit.await.unwrap().unwrap(), 0);

    let mut tty = runtime
        .exec_stream(
            id,
            &request("sleep 0.5; stty size; [ -t 1 ] && exit 4", false, true),
        )
        .await
        .expect("exec on a terminal");
    assert!(tty.stderr.is_none(), "a terminal has one output");
    tty.control
        .send(ExecSignal::Resize {
            width: 91,
            height: 17,
        })
        .unwrap();
    let mut out = String::new();
    tty.stdout.read_to_string(&mut out).await.unwrap();
    assert_eq!(out, "17 91\r\n");
    assert_eq!(tty.exit.await.unwrap().unwrap(), 4);

    let abandoned = runtime
        .exec_stream(id, &request("exec sleep 4242", true, false))
        .await
        .expect("exec sleep");
    let ExecSession { control, exit, .. } = abandoned;
    drop(control);
    let code = tokio::time::timeout(Duration::from_secs(10), exit)
        .await
        .expect("the abandoned exec ends")
        .unwrap()
        .unwrap();
    assert_eq!(code, 137);
    let ps = runtime
        .exec(id, &["ps".into(), "-o".into(), "args".into()], None)
        .await
        .unwrap();
    assert!(!String::from_utf8_lossy(&ps.stdout).contains("sleep 4242"));
}

/// The inode of a namespace file (`/proc/<pid>/ns/<kind>` or a pin).
fn ns_inode(path: impl AsRef<Path>) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path.as_ref())
        .unwrap_or_else(|e| panic!("{}: {e}", path.as_ref().display()))
        .ino()
}

/// The parent pid of a process (its shim, for a container's init).
fn parent_pid(pid: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
    after_comm
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap()
}

/// The shims serving this test's containerd.
fn shims_of(socket: &Path) -> Vec<u32> {
    let address = socket.display().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            args.first()
                .is_some_and(|a| a.ends_with(b"containerd-shim-runc-v2"))
                && args.contains(&address.as_bytes())
        })
        .collect()
}

/// The pause pid of a sandbox whose pod shares its process namespace.
async fn pause_pid(runtime: &Containerd, sandbox: &SandboxInfo) -> u32 {
    let observed = runtime.list().await.expect("list");
    let found = observed.sandboxes.iter().find(|s| s.id == sandbox.id);
    found
        .and_then(|s| s.pause.pid())
        .expect("the pause container runs")
}

/// A sandbox config whose pod shares its process namespace (it has a pause).
fn shared_pid_sandbox_config(pod: &PodRef, host_network: bool, log_dir: &Path) -> SandboxConfig {
    let mut config = sandbox_config(pod, host_network, log_dir);
    config.security.namespaces.pid = PidNamespace::Pod;
    config
}

/// Two containers of each pod, started right after `create_sandbox`
/// returns, land in one shim and in the pod's pinned IPC, UTS and network
/// namespaces, with no pause process unless the pod shares its process
/// namespace (then the pause shares them too); removal unpins them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_share_the_pinned_namespaces_in_one_shim() {
    let Some((mut daemon, runtime, image, _, logs)) = set_up("share", Some(1)).await else {
        return;
    };
    let socket = daemon.config().socket;
    let shims_before = shims_of(&socket).len();
    let pods: Vec<PodRef> = (0..3).map(|i| pod(&format!("share{i}"))).collect();
    daemon
        .host
        .pod_uids
        .extend(pods.iter().map(|p| p.uid.clone()));
    let host_pod = pod("sharehost");
    daemon.host.pod_uids.push(host_pod.uid.clone());
    // The first pod shares its process namespace.
    let configs: Vec<SandboxConfig> = pods
        .iter()
        .enumerate()
        .map(|(i, p)| match i {
            0 => shared_pid_sandbox_config(p, false, &logs),
            _ => sandbox_config(p, false, &logs),
        })
        .chain([sandbox_config(&host_pod, true, &logs)])
        .collect();
    let runs = configs.iter().map(|config| {
        let (runtime, image, logs) = (&runtime, &image, &logs);
        async move {
            let sandbox = runtime
                .create_sandbox(config)
                .await
                .expect("create sandbox");
            let mut started = Vec::new();
            for name in ["app", "peer"] {
                let mut app = container(&config.pod, image, name, &["sleep", "3600"], logs);
                app.security.namespaces.pid = config.security.namespaces.pid;
                let id = runtime
                    .create_container(&sandbox, &app)
                    .await
                    .expect("create");
                let pid = runtime.start_container(&id).await.expect("start").pid;
                started.push((id, pid));
            }
            (sandbox, started)
        }
    });
    let pods_up = futures::future::join_all(runs).await;

    let root = daemon.root();
    for (sandbox, started) in &pods_up {
        let [(id, app), (_, peer)] = started.as_slice() else {
            unreachable!()
        };
        let shared_pid = sandbox.pod == pods[0];
        let pause = sandbox.pause.pid();
        assert_eq!(pause.is_some(), shared_pid, "{:?}", sandbox.pause);
        let pins = root.join("ns").join(&sandbox.id.0);
        let host_network = sandbox.host_network;
        for kind in ["ipc", "uts", "net"] {
            let a = ns_inode(format!("/proc/{app}/ns/{kind}"));
            for other in pause.iter().chain([peer]) {
                let o = ns_inode(format!("/proc/{other}/ns/{kind}"));
                assert_eq!(o, a, "{kind} shared by {other} and app of {}", sandbox.id);
            }
            let own = kind == "ipc" || !host_network;
            let expected = if own {
                ns_inode(pins.join(kind))
            } else {
                ns_inode(format!("/proc/self/ns/{kind}"))
            };
            assert_eq!(
                a, expected,
                "{kind} of {} (host network: {host_network})",
                sandbox.id
            );
        }
        if let Some(pause) = pause {
            assert_eq!(
                ns_inode(format!("/proc/{pause}/ns/pid")),
                ns_inode(format!("/proc/{app}/ns/pid")),
                "the pod's process namespace is the pause's"
            );
        }
        assert_ne!(
            ns_inode(format!("/proc/{app}/ns/ipc")),
            ns_inode("/proc/self/ns/ipc"),
            "IPC is the pod's own even on host network"
        );
        let hostname = runtime
            .exec(id, &["hostname".into()], None)
            .await
            .expect("exec hostname");
        let expected = if host_network {
            nix::unistd::gethostname()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        } else {
            sandbox.pod.name.clone()
        };
        assert_eq!(String::from_utf8_lossy(&hostname.stdout).trim(), expected);
        for other in pause.iter().chain([peer]) {
            assert_eq!(
                parent_pid(*other),
                parent_pid(*app),
                "{other} and app of {} share a shim",
                sandbox.id
            );
        }
    }
    assert_eq!(
        shims_of(&socket).len() - shims_before,
        pods_up.len(),
        "one shim per pod"
    );
    // As a restarted agent finds them: alive, with or without a pause.
    let observed = runtime.list().await.expect("list");
    for (sandbox, _) in &pods_up {
        let found = observed.sandboxes.iter().find(|s| s.id == sandbox.id);
        assert_eq!(found.map(|s| s.pause), Some(sandbox.pause));
    }

    for (sandbox, started) in &pods_up {
        // Stopped first (as the kubelet does once the containers have been
        // killed): the network and the pause go, the record stays.
        for (id, _) in started {
            let waiter = runtime.wait_container(id).await.expect("wait");
            runtime
                .signal_container(id, Signal::KILL)
                .await
                .expect("kill");
            exit_within(Duration::from_secs(10), waiter).await;
        }
        runtime.stop_sandbox(sandbox).await.expect("stop sandbox");
        runtime.stop_sandbox(sandbox).await.expect("stop again");
        for ip in &sandbox.ips {
            let lease = root.join("cni/networks/berth-test").join(ip.to_string());
            assert!(!lease.exists(), "address kept after the stop: {ip}");
        }
        let observed = runtime.list().await.expect("list");
        let found = observed.sandboxes.iter().find(|s| s.id == sandbox.id);
        assert_eq!(
            found.map(|s| s.pause.pid()),
            Some(None),
            "the record stays, the pause goes"
        );
        for (id, _) in started {
            runtime
                .remove_container(id)
                .await
                .expect("remove container");
        }
        runtime
            .remove_sandbox(sandbox)
            .await
            .expect("remove sandbox");
        runtime
            .remove_sandbox(sandbox)
            .await
            .expect("remove sandbox again");
    }
    for (sandbox, started) in &pods_up {
        let ids: Vec<&str> = started.iter().map(|(id, _)| id.0.as_str()).collect();
        assert_sandbox_gone(&daemon, sandbox, &ids);
    }
    assert!(
        !mounts().contains(&root.join("ns").display().to_string()),
        "no namespace pin is mounted"
    );
}

/// Start latency of a one-container pod (sandbox with CNI, then the
/// container). Run on purpose: `cargo test --release -p berth-containerd
/// --test runtime -- --ignored --nocapture start_latency`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn start_latency() {
    let Some((_daemon, runtime, image, pod, logs)) = set_up("bench", Some(2)).await else {
        return;
    };
    let (mut sandboxes, mut containers, mut totals) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..15 {
        let t = Instant::now();
        let sandbox = runtime
            .create_sandbox(&sandbox_config(&pod, false, &logs))
            .await
            .unwrap();
        let sandbox_ms = ms(t);
        let t2 = Instant::now();
        let config = container(&pod, &image, "app", &["sleep", "3600"], &logs);
        let id = runtime.create_container(&sandbox, &config).await.unwrap();
        let _waiter = runtime.wait_container(&id).await.unwrap();
        runtime.start_container(&id).await.unwrap();
        containers.push(ms(t2));
        totals.push(ms(t));
        sandboxes.push(sandbox_ms);
        runtime.remove_container(&id).await.unwrap();
        runtime.remove_sandbox(&sandbox).await.unwrap();
    }
    for (what, mut samples) in [
        ("create_sandbox", sandboxes),
        ("create+start container", containers),
        ("pod total", totals),
    ] {
        samples.sort_by(f64::total_cmp);
        eprintln!(
            "{what}: p50 {:.1} ms, p90 {:.1} ms, min {:.1}, max {:.1}",
            samples[samples.len() / 2],
            samples[samples.len() * 9 / 10],
            samples[0],
            samples[samples.len() - 1]
        );
    }
}

/// A pod's shim that stops answering (here: stopped with SIGSTOP) holds no
/// removal for longer than the shim timeout: the calls time out, forcing
/// the sandbox down kills the shim and what it ran, and the removals then
/// finish, leaving no task, container, process or shim.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wedged_shim_is_forced_down_and_its_pod_removed() {
    let Some((daemon, _, image, pod, logs)) = set_up("wedge", None).await else {
        return;
    };
    const SHIM_TIMEOUT: Duration = Duration::from_secs(2);
    let runtime = Containerd::connect(ContainerdConfig {
        shim_timeout: SHIM_TIMEOUT,
        ..daemon.config()
    })
    .await
    .unwrap();
    let socket = daemon.config().socket;
    let shims_before = shims_of(&socket);
    // With a pause (a shared process namespace): runc must speak for it too.
    let sandbox = runtime
        .create_sandbox(&shared_pid_sandbox_config(&pod, true, &logs))
        .await
        .expect("create sandbox");
    let mut ids = Vec::new();
    let mut pids = Vec::new();
    for name in ["a", "b"] {
        let config = container(&pod, &image, name, &["sleep", "3600"], &logs);
        let id = runtime.create_container(&sandbox, &config).await.unwrap();
        pids.push(runtime.start_container(&id).await.unwrap().pid);
        ids.push(id);
    }
    let pause = pause_pid(&runtime, &sandbox).await;
    let shim = parent_pid(pause);
    assert_eq!(parent_pid(pids[0]), shim, "one shim for the pod");
    let waiter = runtime.wait_container(&ids[0]).await.unwrap();
    /// Lets a stopped shim go on if the test fails before it is killed, so
    /// that the daemon's cleanup does not hang on it.
    struct Continue(nix::unistd::Pid);
    impl Drop for Continue {
        fn drop(&mut self) {
            let _ = nix::sys::signal::kill(self.0, nix::sys::signal::Signal::SIGCONT);
        }
    }
    let shim = nix::unistd::Pid::from_raw(shim as i32);
    let _continue = Continue(shim);
    nix::sys::signal::kill(shim, nix::sys::signal::Signal::SIGSTOP).unwrap();

    let asked = Instant::now();
    let err = runtime
        .signal_container(&ids[0], Signal::TERM)
        .await
        .unwrap_err();
    assert_eq!(err.kind, RuntimeErrorKind::Timeout, "{err}");
    let err = runtime.remove_container(&ids[1]).await.unwrap_err();
    assert_eq!(err.kind, RuntimeErrorKind::Timeout, "{err}");
    let took = asked.elapsed();
    // Bounded (the machine may be busy), not held until the shim answers.
    assert!(took < 2 * SHIM_TIMEOUT + Duration::from_secs(5), "{took:?}");

    // Listing does not hang on the shim either: runc speaks for its tasks.
    let asked = Instant::now();
    let observed = runtime.list().await.expect("list");
    let listed = asked.elapsed();
    assert!(
        listed < 2 * SHIM_TIMEOUT + Duration::from_secs(5),
        "{listed:?}"
    );
    let found = observed
        .sandboxes
        .iter()
        .find(|s| s.id == sandbox.id)
        .unwrap();
    assert_eq!(
        found.pause.pid(),
        Some(pause),
        "the pause task as runc sees it"
    );
    for id in &ids {
        let c = observed.containers.iter().find(|c| &c.id == id).unwrap();
        assert!(matches!(c.state, ObservedState::Running { .. }), "{c:?}");
    }

    let forced = Instant::now();
    runtime.force_stop_sandbox(&sandbox).await.expect("force");
    // containerd learns of the dead shim on its own: a removal may fail
    // (not time out) until it has.
    let removed = eventually("the removals finish", Duration::from_secs(20), || async {
        for id in &ids {
            runtime.remove_container(id).await.ok()?;
        }
        runtime.remove_sandbox(&sandbox).await.ok()
    })
    .await;
    let _: () = removed;
    eprintln!(
        "calls timed out in {took:?}; listed in {listed:?}; forced down and removed in {:?}",
        forced.elapsed()
    );
    assert!(
        tokio::time::timeout(SHIM_TIMEOUT, waiter).await.is_ok(),
        "the exit waiter ended"
    );
    assert_sandbox_gone(&daemon, &sandbox, &[&ids[0].0, &ids[1].0]);
    // containerd runs the shim binary's cleanup (`delete`) for each task of
    // a dead shim; those end by themselves.
    eventually("no shim left", Duration::from_secs(10), || async {
        let left: Vec<String> = shims_of(&socket)
            .into_iter()
            .filter(|pid| !shims_before.contains(pid))
            .map(|pid| std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default())
            .collect();
        left.is_empty().then_some(())
    })
    .await;
    for pid in pids.into_iter().chain([pause]) {
        // Dead: gone, or a zombie its new parent (the shim's is gone) has
        // yet to reap.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rfind(')')
            .and_then(|end| stat[end + 1..].split_whitespace().next());
        assert!(
            matches!(state, None | Some("Z")),
            "process {pid} of the pod left: {stat}"
        );
    }
    let runc = Command::new("runc")
        .args([
            "--root",
            &format!("/run/containerd/runc/{}", daemon.config().namespace),
        ])
        .args(["list", "-q"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&runc.stdout).trim(),
        "",
        "runc state left"
    );
}

/// A sandbox made with its network deferred has no IP until
/// `attach_network`; a container created and prepared meanwhile starts in
/// the network it then has. When the network cannot be set up, the
/// prepared container and the sandbox are removed without a trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deferred_network_is_there_when_the_prepared_container_starts() {
    let Some((daemon, runtime, image, pod, logs)) = set_up("latenet", Some(3)).await else {
        return;
    };
    let mut config = sandbox_config(&pod, false, &logs);
    config.defer_network = true;
    let sandbox = runtime
        .create_sandbox(&config)
        .await
        .expect("create sandbox");
    assert!(sandbox.ips.is_empty(), "no IP before attach: {sandbox:?}");
    assert_eq!(sandbox.network_ready_at, None);
    let show = container(
        &pod,
        &image,
        "show",
        &["sh", "-c", "ip -4 -o addr show dev eth0"],
        &logs,
    );
    let id = runtime
        .create_container(&sandbox, &show)
        .await
        .expect("create");
    let waiter = runtime.wait_container(&id).await.expect("arm the waiter");
    runtime.prepare_start(&id).await.expect("prepare the start");
    let network = runtime
        .attach_network(&sandbox, &config)
        .await
        .expect("attach the network");
    let ip = *network.ips.first().expect("an IP once attached");
    runtime.start_container(&id).await.expect("start");
    assert_eq!(
        exit_within(Duration::from_secs(10), waiter).await.exit_code,
        0
    );
    let log = std::fs::read_to_string(&show.log_path).expect("the log");
    assert!(log.contains(&format!("inet {ip}/")), "eth0 has {ip}: {log}");
    runtime.remove_container(&id).await.expect("remove");
    let attached = SandboxInfo {
        ips: network.ips.clone(),
        ..sandbox.clone()
    };
    runtime
        .remove_sandbox(&attached)
        .await
        .expect("remove sandbox");
    assert_sandbox_gone(&daemon, &attached, &[&id.0]);

    // A network whose plugin is missing: the first in lexical order.
    let conf_dir = daemon.config().cni_conf_dir;
    let broken = serde_json::json!({"cniVersion": "1.0.0", "name": "broken",
        "plugins": [{"type": "no-such-plugin"}]});
    std::fs::write(conf_dir.join("00-broken.conflist"), broken.to_string()).unwrap();
    let sandbox = runtime
        .create_sandbox(&config)
        .await
        .expect("create sandbox");
    let id = runtime
        .create_container(&sandbox, &show)
        .await
        .expect("create");
    runtime.prepare_start(&id).await.expect("prepare the start");
    let error = runtime
        .attach_network(&sandbox, &config)
        .await
        .expect_err("a missing plugin fails");
    assert!(
        error
            .message
            .starts_with(&format!("create sandbox for pod {pod}: "))
            && error.message.contains("no-such-plugin"),
        "{error}"
    );
    runtime.remove_container(&id).await.expect("remove");
    // Its CNI DEL fails as its ADD did; the rest goes all the same.
    let removal = runtime.remove_sandbox(&sandbox).await;
    assert!(
        removal
            .as_ref()
            .is_err_and(|e| e.message.contains("no-such-plugin DEL")),
        "{removal:?}"
    );
    assert_sandbox_gone(&daemon, &sandbox, &[&id.0]);
}

/// A process that looks like a shim of `sandbox` to this containerd
/// (`-namespace`, `-id`, `-address`), as one a dead agent's cut-off task
/// create leaves: it waits on its stdin.
fn stray_shim(daemon: &Daemon, sandbox: &SandboxInfo) -> std::process::Child {
    use std::os::unix::process::CommandExt;
    let config = daemon.config();
    Command::new("/bin/sh")
        .arg0(daemon.dir().join("containerd-shim-runc-v2"))
        .args(["-c", "read line", "shim", "-namespace", &config.namespace])
        .args(["-id", &format!("{}-main-0", sandbox.id)])
        .arg("-address")
        .arg(&config.socket)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("spawn the stray")
}

/// A shim left serving a sandbox an agent before this one made is ended
/// when the sandbox is removed; a sandbox this agent made is not searched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shim_left_serving_a_sandbox_made_before_is_ended_with_it() {
    let Some((daemon, before, _, pod, logs)) = set_up("leftover", None).await else {
        return;
    };
    let config = sandbox_config(&pod, true, &logs);
    let made_before = before.create_sandbox(&config).await.expect("create");
    let mut stray = stray_shim(&daemon, &made_before);
    // The next agent's connection finds the sandbox.
    let after = daemon.connect().await;
    let listed = after.list().await.expect("list");
    let adopted = listed
        .sandboxes
        .iter()
        .find(|s| s.id == made_before.id)
        .expect("the sandbox is listed");
    after.remove_sandbox(adopted).await.expect("remove");
    let ended = eventually("the stray shim ended", Duration::from_secs(5), || {
        std::future::ready(stray.try_wait().expect("wait").is_some().then_some(()))
    });
    ended.await;

    let own = after.create_sandbox(&config).await.expect("create");
    let mut spared = stray_shim(&daemon, &own);
    after.remove_sandbox(&own).await.expect("remove");
    assert!(
        spared.try_wait().expect("wait").is_none(),
        "a sandbox this agent made has no shim of a dead agent's"
    );
    spared.kill().expect("kill");
    spared.wait().expect("reap");
}

/// The pause of a sandbox can be waited for: its exit (here a kill) ends
/// the wait with the kill's code; a sandbox without a pause has nothing to
/// wait for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_exit_ends_its_sandbox_wait() {
    let Some((_daemon, runtime, _, pod, logs)) = set_up("pausewait", None).await else {
        return;
    };
    let pinned = runtime
        .create_sandbox(&sandbox_config(&pod, true, &logs))
        .await
        .expect("create");
    assert!(runtime.wait_sandbox(&pinned).await.expect("wait").is_none());
    runtime.remove_sandbox(&pinned).await.expect("remove");

    let shared = runtime
        .create_sandbox(&shared_pid_sandbox_config(&pod, true, &logs))
        .await
        .expect("create");
    let waiter = runtime
        .wait_sandbox(&shared)
        .await
        .expect("wait")
        .expect("a pause to wait for");
    let pid = pause_pid(&runtime, &shared).await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the pause");
    let exit = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("the wait ends")
        .expect("an exit");
    assert_eq!(exit.exit_code, 137);
    runtime.remove_sandbox(&shared).await.expect("remove");
}
