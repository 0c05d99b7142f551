//! A pod network of the test's own: bridge `berth-t<N>` and subnet
//! `10.89.<N>.0/24`, with N held by a file lock so that concurrent agents —
//! threads of one test binary or separate nextest processes — never share a
//! bridge or an address range.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::fcntl::{Flock, FlockArg};

const LOCK_DIR: &str = "/tmp/berth-testnet";
const SLOTS: std::ops::RangeInclusive<u8> = 1..=250;

/// A claimed slot; released (and its bridge deleted) on drop.
#[derive(Debug)]
pub struct TestNetwork {
    n: u8,
    _lock: Flock<File>,
}

impl TestNetwork {
    /// Claims the first free slot.
    pub fn claim() -> Self {
        fs::create_dir_all(LOCK_DIR).expect("create the test network lock dir");
        for n in SLOTS {
            let path = Path::new(LOCK_DIR).join(format!("slot-{n}.lock"));
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .expect("open a test network lock");
            if let Ok(lock) = Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                return Self { n, _lock: lock };
            }
        }
        panic!("all {} test network slots are taken", SLOTS.count());
    }

    /// The slot's number N.
    pub fn slot(&self) -> u8 {
        self.n
    }

    /// The bridge's name (at most 10 bytes, within IFNAMSIZ).
    pub fn bridge(&self) -> String {
        format!("berth-t{}", self.n)
    }

    /// The pod subnet.
    pub fn subnet(&self) -> String {
        format!("10.89.{}.0/24", self.n)
    }

    /// A CNI conflist for this network: bridge (gateway, no masquerade, so no
    /// NAT rules are left on the host) and host-local IPAM with its state in
    /// `ipam_dir`.
    pub fn conflist(&self, ipam_dir: &Path) -> String {
        serde_json::json!({
            "cniVersion": "1.0.0",
            "name": self.bridge(),
            "plugins": [{
                "type": "bridge",
                "bridge": self.bridge(),
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{ "subnet": self.subnet() }]],
                    "routes": [{ "dst": "0.0.0.0/0" }],
                    "dataDir": ipam_dir,
                }
            }]
        })
        .to_string()
    }

    /// Where host-local keeps this network's allocations under `ipam_dir`.
    pub fn ipam_network_dir(&self, ipam_dir: &Path) -> PathBuf {
        ipam_dir.join(self.bridge())
    }
}

impl Drop for TestNetwork {
    fn drop(&mut self) {
        // The bridge plugin never deletes its bridge; the next holder of this
        // slot would reuse it, but a clean host is nicer.
        let _ = Command::new("ip")
            .args(["link", "delete", &self.bridge()])
            .stderr(Stdio::null())
            .status();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_claims_get_distinct_slots() {
        let a = TestNetwork::claim();
        let b = TestNetwork::claim();
        assert_ne!(a.bridge(), b.bridge());
        assert_ne!(a.subnet(), b.subnet());
        assert!(a.bridge().len() <= 15);
        let conf: serde_json::Value =
            serde_json::from_str(&a.conflist(Path::new("/x/ipam"))).unwrap();
        assert_eq!(conf["plugins"][0]["ipam"]["dataDir"], "/x/ipam");
    }
}
