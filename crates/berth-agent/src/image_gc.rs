//! Image garbage collection, as the kubelet's image GC manager: when the
//! image filesystem is fuller than the high threshold, images that no
//! container uses are removed, least recently used first, until enough is
//! freed to reach the low threshold. Images seen for less than the minimum
//! age, and berth's built-in images, are kept.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use berth_api::reasons;
use berth_runtime::{ContainerRuntime, ImageInfo, ImageService};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Built-in images (the pause image) are never collected.
const BUILT_IN_PREFIX: &str = "berth.local/";

#[derive(Debug, Clone)]
pub struct ImageGcPolicy {
    pub image_fs_dir: PathBuf,
    pub high_percent: u8,
    pub low_percent: u8,
    pub minimum_age: Duration,
    pub period: Duration,
    /// A configured sandbox image, which is pinned like the built-in one.
    pub pinned: Option<String>,
}

/// When the agent first saw an image and when a container last used it.
#[derive(Debug, Clone, Copy)]
struct Record {
    first_seen: Instant,
    last_used: Instant,
}

/// The collector's memory of images, keyed by manifest digest.
#[derive(Debug, Default)]
pub struct ImageGc {
    records: HashMap<String, Record>,
}

/// Disk use of a filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsUsage {
    pub capacity: u64,
    pub available: u64,
}

impl FsUsage {
    pub fn of(dir: &std::path::Path) -> nix::Result<Self> {
        let stat = nix::sys::statvfs::statvfs(dir)?;
        let block = stat.fragment_size() as u64;
        Ok(Self {
            capacity: stat.blocks() as u64 * block,
            available: stat.blocks_available() as u64 * block,
        })
    }

    fn used_percent(self) -> u64 {
        if self.capacity == 0 {
            return 0;
        }
        (self.capacity - self.available.min(self.capacity)) * 100 / self.capacity
    }

    /// Bytes to free to get down to `low` percent (the kubelet's
    /// `capacity * (100 - low) / 100 - available`).
    fn to_free(self, low: u8) -> u64 {
        (self.capacity * (100 - u64::from(low.min(100))) / 100).saturating_sub(self.available)
    }
}

impl ImageGc {
    /// One pass: refreshes what is in use and, above the high threshold,
    /// removes unused images. Returns the references removed, or why the
    /// pass failed (including removing too little to reach the low
    /// threshold, after removing what it could).
    pub async fn collect<R: ContainerRuntime + ImageService>(
        &mut self,
        rt: &R,
        policy: &ImageGcPolicy,
        usage: FsUsage,
        pod_images: &[String],
    ) -> Result<Vec<String>, GcError> {
        let now = Instant::now();
        let images = rt.list_images().await.map_err(GcError::ListImages)?;
        let mut in_use = Self::images_in_use(rt, &images)
            .await
            .map_err(GcError::ListContainers)?;
        in_use.extend(Self::images_of_pods(rt, pod_images).await);
        self.observe(&images, &in_use, now);
        let Some(to_free) = wanted(usage, policy) else {
            return Ok(Vec::new());
        };
        let mut removed = Vec::new();
        let mut freed = 0;
        for image in self.plan(&images, &in_use, to_free, policy, now) {
            match rt.remove_image(&image.reference).await {
                Ok(()) => {
                    info!(image = %image.reference, size = image.size, "image GC: removed an unused image");
                    freed += image.size;
                    removed.push(image.reference.clone());
                }
                Err(e) => warn!(image = %image.reference, "image GC: remove: {e}"),
            }
        }
        if freed < to_free {
            return Err(GcError::NotEnough { to_free, freed });
        }
        Ok(removed)
    }

    /// The digests of the images the pods on the node name. A pod between
    /// its pull and its container's creation has no container yet; without
    /// this a pass in that moment (with a small minimum age) would take the
    /// image it just pulled.
    async fn images_of_pods<R: ContainerRuntime>(rt: &R, pod_images: &[String]) -> Vec<String> {
        let mut digests = Vec::new();
        for image in pod_images {
            if let Ok(Some(info)) = rt.image_status(image).await {
                digests.push(info.digest);
            }
        }
        digests
    }

    /// Remembers new images and when each image was last in use.
    fn observe(&mut self, images: &[ImageInfo], in_use: &[String], now: Instant) {
        self.records
            .retain(|digest, _| images.iter().any(|i| &i.digest == digest));
        for image in images {
            let record = self.records.entry(image.digest.clone()).or_insert(Record {
                first_seen: now,
                last_used: now,
            });
            if in_use.contains(&image.digest) {
                record.last_used = now;
            }
        }
    }

    /// The images to remove, in order: unused, unpinned images old enough,
    /// least recently used first, until their sizes cover `to_free`.
    fn plan<'a>(
        &self,
        images: &'a [ImageInfo],
        in_use: &[String],
        mut to_free: u64,
        policy: &ImageGcPolicy,
        now: Instant,
    ) -> Vec<&'a ImageInfo> {
        let mut candidates: Vec<(&Record, &ImageInfo)> = images
            .iter()
            .filter(|i| !in_use.contains(&i.digest) && !pinned(i, policy))
            .filter_map(|i| Some((self.records.get(&i.digest)?, i)))
            .filter(|(r, _)| now.duration_since(r.first_seen) >= policy.minimum_age)
            .collect();
        candidates.sort_by_key(|(r, _)| (r.last_used, r.first_seen));
        let mut plan = Vec::new();
        for (_, image) in candidates {
            if to_free == 0 {
                break;
            }
            to_free = to_free.saturating_sub(image.size);
            plan.push(image);
        }
        plan
    }

    /// The digests of the images of every container in the runtime (running
    /// or not, as the kubelet counts them), from the records alone (a wedged
    /// shim does not hold up the pass). A container names its image as the
    /// runtime listed it, so the listing resolves it without asking the
    /// runtime once per container.
    async fn images_in_use<R: ContainerRuntime>(
        rt: &R,
        images: &[ImageInfo],
    ) -> Result<Vec<String>, berth_runtime::RuntimeError> {
        let used: HashSet<String> = rt.container_images().await?.into_iter().collect();
        Ok(images
            .iter()
            .filter(|image| used.contains(&image.reference))
            .map(|image| image.digest.clone())
            .collect())
    }
}

/// Bytes to free: `None` below the high threshold (or with GC off), else
/// what reaching the low threshold takes.
fn wanted(usage: FsUsage, policy: &ImageGcPolicy) -> Option<u64> {
    let used = usage.used_percent();
    if policy.high_percent >= 100 || used < u64::from(policy.high_percent) {
        debug!(
            used,
            high = policy.high_percent,
            "image GC: below the threshold"
        );
        return None;
    }
    let to_free = usage.to_free(policy.low_percent);
    info!(used, to_free, "image GC: disk use over the high threshold");
    Some(to_free)
}

/// Why an image GC pass failed; the texts are the kubelet's.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error("failed to list images: {0}")]
    ListImages(berth_runtime::RuntimeError),
    #[error("failed to list containers: {0}")]
    ListContainers(berth_runtime::RuntimeError),
    #[error("Failed to garbage collect required amount of images. Attempted to free {to_free} bytes, but only found {freed} bytes eligible to free.")]
    NotEnough { to_free: u64, freed: u64 },
}

/// Built-in images and the configured sandbox image stay.
fn pinned(image: &ImageInfo, policy: &ImageGcPolicy) -> bool {
    image.reference.starts_with(BUILT_IN_PREFIX)
        || policy
            .pinned
            .as_deref()
            .is_some_and(|p| p == image.reference || image.reference.ends_with(&format!("/{p}")))
}

/// Runs a GC pass every period until `shutdown`. As the kubelet: a pass
/// that frees too little gives the node a `FreeDiskSpaceFailed` warning, and
/// a second failed pass in a row an `ImageGCFailed` one.
/// `pod_images`: the images the node's pods name, kept whatever the runtime
/// runs.
pub async fn run<R: ContainerRuntime + ImageService>(
    rt: std::sync::Arc<R>,
    policy: ImageGcPolicy,
    node_event: impl Fn(&'static str, String) + Send,
    pod_images: impl Fn() -> Vec<String> + Send,
    shutdown: CancellationToken,
) {
    let mut gc = ImageGc::default();
    let mut every = crate::periodic::Every::new(policy.period, &shutdown);
    let mut failed_before = false;
    while every.tick().await {
        let usage = match FsUsage::of(&policy.image_fs_dir) {
            Ok(usage) => usage,
            Err(e) => {
                warn!(dir = %policy.image_fs_dir.display(), "image GC: statfs: {e}");
                continue;
            }
        };
        let Err(e) = gc.collect(rt.as_ref(), &policy, usage, &pod_images()).await else {
            failed_before = false;
            continue;
        };
        if matches!(e, GcError::NotEnough { .. }) {
            node_event(reasons::FREE_DISK_SPACE_FAILED, e.to_string());
        }
        if failed_before {
            warn!("image GC failed again: {e}");
            node_event(reasons::IMAGE_GC_FAILED, e.to_string());
        } else {
            warn!("image GC failed: {e}");
        }
        failed_before = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn image(reference: &str, digest: &str, size: u64) -> ImageInfo {
        ImageInfo {
            reference: reference.into(),
            digest: digest.into(),
            size,
            config: Default::default(),
        }
    }

    fn policy() -> ImageGcPolicy {
        ImageGcPolicy {
            image_fs_dir: "/".into(),
            high_percent: 85,
            low_percent: 80,
            minimum_age: Duration::from_secs(120),
            period: Duration::from_secs(300),
            pinned: None,
        }
    }

    /// A 100 GiB disk with `used` GiB used.
    fn disk(used: u64) -> FsUsage {
        FsUsage {
            capacity: 100 * GIB,
            available: (100 - used) * GIB,
        }
    }

    fn planned(gc: &ImageGc, images: &[ImageInfo], in_use: &[&str], usage: FsUsage) -> Vec<String> {
        let in_use: Vec<String> = in_use.iter().map(|s| s.to_string()).collect();
        let Some(to_free) = wanted(usage, &policy()) else {
            return Vec::new();
        };
        gc.plan(images, &in_use, to_free, &policy(), Instant::now())
            .into_iter()
            .map(|i| i.reference.clone())
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn over_the_high_threshold_unused_images_go_least_recently_used_first() {
        let images = vec![
            image("r/used:1", "sha256:a", 3 * GIB),
            image("r/old:1", "sha256:b", 3 * GIB),
            image("r/newer:1", "sha256:c", 3 * GIB),
            image("r/last:1", "sha256:d", 3 * GIB),
            image("berth.local/pause:1", "sha256:e", GIB),
        ];
        let mut gc = ImageGc::default();
        let all: Vec<String> = ["sha256:a", "sha256:b", "sha256:c", "sha256:d"]
            .map(String::from)
            .to_vec();
        gc.observe(&images, &all, Instant::now());
        tokio::time::advance(Duration::from_secs(60)).await;
        gc.observe(
            &images,
            &["sha256:a".into(), "sha256:c".into(), "sha256:d".into()],
            Instant::now(),
        );
        tokio::time::advance(Duration::from_secs(60)).await;
        gc.observe(
            &images,
            &["sha256:a".into(), "sha256:d".into()],
            Instant::now(),
        );
        tokio::time::advance(Duration::from_secs(60)).await;
        gc.observe(&images, &["sha256:a".into()], Instant::now());

        // Below the high threshold nothing goes.
        assert!(planned(&gc, &images, &["sha256:a"], disk(84)).is_empty());
        // 86 % used, 80 % wanted: 6 GiB, i.e. the two least recently used.
        assert_eq!(
            planned(&gc, &images, &["sha256:a"], disk(86)),
            vec!["r/old:1", "r/newer:1"]
        );
        // Everything unused (never the one in use or the pause image).
        assert_eq!(
            planned(&gc, &images, &["sha256:a"], disk(99)),
            vec!["r/old:1", "r/newer:1", "r/last:1"]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_image_a_pod_names_is_kept_before_its_container_exists() {
        let rt = berth_runtime::fake::FakeRuntime::new();
        rt.add_image("r/pulled:1", Default::default());
        rt.add_image("r/never-used:1", Default::default());
        let policy = ImageGcPolicy {
            image_fs_dir: "/".into(),
            high_percent: 1,
            low_percent: 0,
            minimum_age: Duration::ZERO,
            period: Duration::from_secs(1),
            pinned: None,
        };
        let mut gc = ImageGc::default();
        let removed = gc
            .collect(&rt, &policy, disk(99), &["r/pulled:1".into()])
            .await;
        assert!(matches!(removed, Err(GcError::NotEnough { .. })));
        let left: Vec<String> = rt
            .list_images()
            .await
            .unwrap()
            .into_iter()
            .map(|i| i.reference)
            .collect();
        assert_eq!(left, vec!["r/pulled:1"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pass_asks_no_task_so_a_wedged_shim_does_not_hold_it_up() {
        let rt = berth_runtime::fake::FakeRuntime::new();
        rt.add_image("r/app:1", Default::default());
        rt.wedge(Duration::from_secs(10));
        let started = Instant::now();
        let mut gc = ImageGc::default();
        gc.collect(&rt, &policy(), disk(10), &[]).await.unwrap();
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn young_images_are_kept_and_100_percent_turns_gc_off() {
        let images = vec![image("r/app:1", "sha256:a", GIB)];
        let mut gc = ImageGc::default();
        gc.observe(&images, &[], Instant::now());
        assert!(
            planned(&gc, &images, &[], disk(99)).is_empty(),
            "younger than 2 minutes"
        );
        tokio::time::advance(Duration::from_secs(121)).await;
        assert_eq!(planned(&gc, &images, &[], disk(99)), vec!["r/app:1"]);
        let off = ImageGcPolicy {
            high_percent: 100,
            ..policy()
        };
        assert_eq!(wanted(disk(99), &off), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_short_pass_warns_the_node_and_a_second_one_in_a_row_fails_gc() {
        let rt = std::sync::Arc::new(berth_runtime::fake::FakeRuntime::new());
        rt.add_image("r/app:1", Default::default());
        // Any real disk is fuller than 1 %: every pass wants more than a
        // config-only image can give.
        let policy = ImageGcPolicy {
            high_percent: 1,
            low_percent: 0,
            minimum_age: Duration::ZERO,
            period: Duration::from_secs(1),
            ..policy()
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let shutdown = CancellationToken::new();
        let gc = tokio::spawn(run(
            rt.clone(),
            policy,
            move |reason, message| tx.send((reason, message)).unwrap(),
            Vec::new,
            shutdown.clone(),
        ));
        let mut reasons = Vec::new();
        while reasons.len() < 5 {
            let (reason, message) = rx.recv().await.expect("an event");
            assert!(
                message.starts_with(
                    "Failed to garbage collect required amount of images. Attempted to free "
                ),
                "{message}"
            );
            reasons.push(reason);
        }
        assert_eq!(
            reasons,
            [
                "FreeDiskSpaceFailed",
                "FreeDiskSpaceFailed",
                "ImageGCFailed",
                "FreeDiskSpaceFailed",
                "ImageGCFailed"
            ]
        );
        // It removed what it could.
        assert!(rt.list_images().await.unwrap().is_empty());
        shutdown.cancel();
        gc.await.unwrap();
    }
}
