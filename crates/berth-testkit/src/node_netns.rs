//! A network namespace standing in for a node's own host: `berth-n<N>`,
//! joined to the test's host by a veth pair on `10.87.<N>.0/24` (the host
//! side `.1`, the node's `eth0` `.2`, its default route via the host side).
//! An agent run in it (see [`crate::AgentOptions::netns`]) has its own
//! interfaces, pod bridge and routes, as on a machine of its own; the
//! control plane's loopback port is made reachable on the node's own
//! loopback by [`NodeNetns::bind_loopback`].

use std::fs::File;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use nix::sched::{setns, CloneFlags};

use crate::net::TestNetwork;

/// A node's network namespace; deleted (with its veth pair) on drop.
#[derive(Debug)]
pub struct NodeNetns {
    /// Holds N, so that concurrent tests never share a name or a link.
    slot: TestNetwork,
}

impl NodeNetns {
    /// Creates the namespace and its link to the host.
    pub fn create() -> Self {
        let this = Self {
            slot: TestNetwork::claim(),
        };
        let (ns, host_if) = (this.name(), this.host_interface());
        // A namespace left by a killed run of this slot goes first.
        let _ = Command::new("ip")
            .args(["netns", "delete", &ns])
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("ip")
            .args(["link", "delete", &host_if])
            .stderr(Stdio::null())
            .status();
        let host_cidr = format!("{}/24", this.host_ip());
        let node_cidr = format!("{}/24", this.node_ip());
        for args in [
            vec!["netns", "add", &ns],
            vec![
                "link", "add", &host_if, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ],
            vec!["addr", "add", &host_cidr, "dev", &host_if],
            vec!["link", "set", &host_if, "up"],
            vec!["-n", &ns, "link", "set", "lo", "up"],
            vec!["-n", &ns, "addr", "add", &node_cidr, "dev", "eth0"],
            vec!["-n", &ns, "link", "set", "eth0", "up"],
            vec!["-n", &ns, "route", "add", "default", "via", &this.host_ip()],
        ] {
            run_ip(&args);
        }
        this
    }

    /// `berth-n<N>`, as `ip netns` names it.
    pub fn name(&self) -> String {
        format!("berth-n{}", self.slot.slot())
    }

    /// Its bind-mounted handle, for `nsenter --net=`.
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/var/run/netns").join(self.name())
    }

    /// The node's address, on its `eth0`: its `--node-ip`.
    pub fn node_ip(&self) -> String {
        format!("10.87.{}.2", self.slot.slot())
    }

    /// The host side of the link.
    pub fn host_ip(&self) -> String {
        format!("10.87.{}.1", self.slot.slot())
    }

    fn host_interface(&self) -> String {
        format!("berth-v{}", self.slot.slot())
    }

    /// A listener on `127.0.0.1:port` inside the namespace: what it
    /// accepts comes from the node's processes, while the caller's
    /// connections onward are made from the host (a socket belongs to the
    /// namespace of the thread that made it).
    pub fn bind_loopback(&self, port: u16) -> std::io::Result<TcpListener> {
        let handle = File::open(self.path())?;
        // setns moves the calling thread only: a throwaway one.
        std::thread::spawn(move || {
            setns(&handle, CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
            TcpListener::bind(("127.0.0.1", port))
        })
        .join()
        .expect("the binding thread panicked")
    }
}

impl Drop for NodeNetns {
    fn drop(&mut self) {
        // Deleting the namespace deletes its end of the veth, and so both.
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name()])
            .stderr(Stdio::null())
            .status();
    }
}

fn run_ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}
