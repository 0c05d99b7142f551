//! `berth-e2e-images --agnhost BIN --curl BIN --pause BIN [--nnp BIN] [--busybox BIN] [--kitten-dir DIR] --out DIR KIND=REF...`: writes
//! the images the upstream Kubernetes node e2e specs run, built locally, as
//! one OCI archive per reference (`DIR/<ref with / and : as _>.oci.tar`), for
//! `berth image import` or a registry push. scripts/conformance.sh calls it
//! with the references the suite's `--list-images` prints.
//!
//! KIND is what is built under REF:
//! - `busybox`: the test kit's busybox image, from the static busybox given
//!   (`--busybox`; the host's Debian busybox-static without it). Every image
//!   below but pause is made on it.
//! - `agnhost`: upstream's agnhost (the static binary given) on that busybox,
//!   with what its specs call: `sh` (also as `bash`), `nc`, `curl` (the
//!   static binary given, `--curl`, built from integration/k8s/cmd/curl),
//!   `/agnhost-2`, porter's `localhost.crt`/`.key` (`--porter-dir`),
//!   `/uploads`, the user `user-defined-in-image` (uid 1000) in the group
//!   `group-defined-in-image` (gid 50000), and the pause image (`--pause`)
//!   as `pause:testing` in `/var/registry`, which `agnhost
//!   fake-registry-server` serves; Entrypoint `/agnhost`, Cmd `pause`.
//! - `pause`: the static pause program given, Entrypoint `/pause`.
//! - `nginx`: a stand-in on busybox: `httpd` serving port 80.
//! - `nonroot`: busybox running as uid 1234, as upstream's nonroot image.
//! - `nonewprivs`: upstream's `nnp` (the static binary given, `--nnp`, built
//!   from test/images/nonewprivs) on busybox as `/usr/local/bin/nnp`, setuid
//!   and setgid root as upstream's Dockerfile makes it (`chmod +s`); Cmd `nnp`.
//! - `kitten`: upstream's kitten (agnhost with `/kitten.jpg` and
//!   `/data.json` from test/images/kitten/html, `--kitten-dir`; Cmd
//!   `test-webserver`), made on the agnhost above. Upstream's agnhost is
//!   Alpine's, and the ImageVolume specs read that from `/etc/os-release`:
//!   the stand-in carries Alpine 3.21's (the base upstream names), marked as
//!   a stand-in in a comment.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use berth_containerd::archive::ImageBuilder;

const USAGE: &str =
    "usage: berth-e2e-images --agnhost BIN --curl BIN --pause BIN [--nnp BIN] [--busybox BIN] [--porter-dir DIR] [--kitten-dir DIR] --out DIR KIND=REF...\n\
                     KIND: busybox, agnhost, pause, nginx, nonroot, nonewprivs, kitten";

const AGNHOST_PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
                              nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n\
                              user-defined-in-image:x:1000:1000::/home/user-defined-in-image:/bin/sh\n";
const AGNHOST_GROUP: &str = "root:x:0:\n\
                             nobody:x:65534:\n\
                             user-defined-in-image:x:1000:\n\
                             group-defined-in-image:x:50000:user-defined-in-image\n";

/// Alpine 3.21's `/etc/os-release` (agnhost's base upstream), which the
/// ImageVolume specs read through the kitten image.
const ALPINE_OS_RELEASE: &str = "# berth's stand-in for upstream's kitten image, whose base is alpine:3.21\n\
                                 NAME=\"Alpine Linux\"\n\
                                 ID=alpine\n\
                                 VERSION_ID=3.21.0\n\
                                 PRETTY_NAME=\"Alpine Linux v3.21\"\n\
                                 HOME_URL=\"https://alpinelinux.org/\"\n\
                                 BUG_REPORT_URL=\"https://gitlab.alpinelinux.org/alpine/aports/-/issues\"\n";

/// Specs run `/bin/bash -c SCRIPT` in agnhost (upstream's has bash); their
/// scripts are POSIX shell with `trap`, which busybox's sh runs.
const BASH_SHIM: &str = "#!/bin/sh\nexec /bin/sh \"$@\"\n";

struct Inputs {
    agnhost: Option<Vec<u8>>,
    curl: Option<Vec<u8>>,
    pause: Option<Vec<u8>>,
    nnp: Option<Vec<u8>>,
    busybox: PathBuf,
    porter_dir: Option<PathBuf>,
    kitten_dir: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let mut agnhost = None;
    let mut curl = None;
    let mut pause = None;
    let mut nnp = None;
    let mut busybox = PathBuf::from(berth_testkit::busybox::BUSYBOX_BIN);
    let mut porter_dir = None;
    let mut kitten_dir = None;
    let mut out = None;
    let mut images = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--agnhost" => {
                agnhost = Some(PathBuf::from(
                    args.next().context("--agnhost needs a value")?,
                ))
            }
            "--curl" => curl = Some(PathBuf::from(args.next().context("--curl needs a value")?)),
            "--pause" => pause = Some(PathBuf::from(args.next().context("--pause needs a value")?)),
            "--nnp" => nnp = Some(PathBuf::from(args.next().context("--nnp needs a value")?)),
            "--busybox" => busybox = PathBuf::from(args.next().context("--busybox needs a value")?),
            "--porter-dir" => {
                porter_dir = Some(PathBuf::from(
                    args.next().context("--porter-dir needs a value")?,
                ))
            }
            "--kitten-dir" => {
                kitten_dir = Some(PathBuf::from(
                    args.next().context("--kitten-dir needs a value")?,
                ))
            }
            "--out" => out = Some(PathBuf::from(args.next().context("--out needs a value")?)),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            _ => match arg.split_once('=') {
                Some((kind, reference)) if !kind.starts_with('-') && !reference.is_empty() => {
                    images.push((kind.to_owned(), reference.to_owned()))
                }
                _ => bail!("unexpected argument {arg:?}\n{USAGE}"),
            },
        }
    }
    let out = out.context("missing --out")?;
    std::fs::create_dir_all(&out).with_context(|| format!("create {}", out.display()))?;
    let read = |path: Option<PathBuf>| -> anyhow::Result<Option<Vec<u8>>> {
        path.map(|p| std::fs::read(&p).with_context(|| format!("read {}", p.display())))
            .transpose()
    };
    let inputs = Inputs {
        agnhost: read(agnhost)?,
        curl: read(curl)?,
        pause: read(pause)?,
        nnp: read(nnp)?,
        busybox,
        porter_dir,
        kitten_dir,
    };
    for (kind, reference) in &images {
        let image = build(kind, reference, &inputs)?;
        let path = write(&out, &image)?;
        println!("{} ({})", path.display(), image.reference());
    }
    Ok(())
}

fn build(kind: &str, reference: &str, inputs: &Inputs) -> anyhow::Result<ImageBuilder> {
    Ok(match kind {
        "busybox" => busybox(reference, inputs),
        "agnhost" => agnhost_image(reference, inputs)?,
        "pause" => {
            let pause = inputs
                .pause
                .clone()
                .context("pause=REF needs --pause BIN")?;
            ImageBuilder::new(reference)
                .file("pause", pause, 0o755)
                .entrypoint(vec!["/pause".to_owned()])
        }
        "nginx" => busybox(reference, inputs)
            .dir("usr/share/nginx/html", 0o755)
            .file(
                "usr/share/nginx/html/index.html",
                b"<h1>Welcome to nginx!</h1>\n".to_vec(),
                0o644,
            )
            .cmd(
                ["httpd", "-f", "-p", "80", "-h", "/usr/share/nginx/html"]
                    .map(str::to_owned)
                    .to_vec(),
            ),
        "nonroot" => busybox(reference, inputs).user("1234".to_owned()),
        "nonewprivs" => {
            let nnp = inputs
                .nnp
                .clone()
                .context("nonewprivs=REF needs --nnp BIN")?;
            // Setuid and setgid root: with privilege escalation allowed, a
            // non-root user runs it with effective uid 0.
            busybox(reference, inputs)
                .file("usr/local/bin/nnp", nnp, 0o6755)
                .cmd(vec!["nnp".to_owned()])
        }
        "kitten" => kitten_image(reference, inputs)?,
        _ => bail!("unknown image kind {kind:?} for {reference}\n{USAGE}"),
    })
}

/// The busybox image every other image (but pause) is made on.
fn busybox(reference: &str, inputs: &Inputs) -> ImageBuilder {
    berth_testkit::busybox_image_from(reference, &inputs.busybox)
}

fn agnhost_image(reference: &str, inputs: &Inputs) -> anyhow::Result<ImageBuilder> {
    let binary = inputs
        .agnhost
        .clone()
        .context("agnhost=REF needs --agnhost BIN")?;
    let curl = inputs
        .curl
        .clone()
        .context("agnhost=REF needs --curl BIN")?;
    let mut image = busybox(reference, inputs)
        .file("agnhost", binary, 0o755)
        .symlink("agnhost-2", "agnhost")
        .file("usr/bin/curl", curl, 0o755)
        .file("bin/bash", BASH_SHIM.as_bytes().to_vec(), 0o755)
        .file("etc/passwd", AGNHOST_PASSWD.as_bytes().to_vec(), 0o644)
        .file("etc/group", AGNHOST_GROUP.as_bytes().to_vec(), 0o644)
        .dir("home/user-defined-in-image", 0o755)
        .dir("uploads", 0o755)
        // Tags differ only here, so each tag is an image of its own.
        .label("org.opencontainers.image.ref.name", reference)
        .entrypoint(vec!["/agnhost".to_owned()])
        .cmd(vec!["pause".to_owned()]);
    if inputs.pause.is_some() {
        for (path, contents) in fake_registry("pause", "testing", &pause_image("pause", inputs)?)? {
            image = image.file(&path, contents, 0o644);
        }
    }
    if let Some(dir) = &inputs.porter_dir {
        for name in ["localhost.crt", "localhost.key"] {
            let path = dir.join(name);
            let contents =
                std::fs::read(&path).with_context(|| format!("read {}", path.display()))?;
            image = image.file(name, contents, 0o644);
        }
    }
    Ok(image)
}

fn kitten_image(reference: &str, inputs: &Inputs) -> anyhow::Result<ImageBuilder> {
    let dir = inputs
        .kitten_dir
        .as_ref()
        .context("kitten=REF needs --kitten-dir DIR")?;
    let mut image = agnhost_image(reference, inputs)?
        .file(
            "etc/os-release",
            ALPINE_OS_RELEASE.as_bytes().to_vec(),
            0o644,
        )
        .cmd(vec!["test-webserver".to_owned()]);
    for name in ["kitten.jpg", "data.json"] {
        let path = dir.join(name);
        let contents = std::fs::read(&path).with_context(|| format!("read {}", path.display()))?;
        image = image.file(name, contents, 0o644);
    }
    Ok(image)
}

fn pause_image(reference: &str, inputs: &Inputs) -> anyhow::Result<ImageBuilder> {
    let pause = inputs
        .pause
        .clone()
        .context("pause=REF needs --pause BIN")?;
    Ok(ImageBuilder::new(reference)
        .file("pause", pause, 0o755)
        .entrypoint(vec!["/pause".to_owned()]))
}

/// `image` as `name:tag` in the layout of agnhost's fake-registry-server
/// (`var/registry/<name>/{manifests,blobs}/sha256/<2 hex>/<hex>/data`, and
/// the tag as a file holding the manifest's digest).
fn fake_registry(
    name: &str,
    tag: &str,
    image: &ImageBuilder,
) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut archive = Vec::new();
    image.write_oci_archive(&mut archive)?;
    let mut blobs = Vec::new();
    let mut index = None;
    for entry in tar::Archive::new(archive.as_slice()).entries()? {
        let mut entry = entry?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path()?.to_string_lossy().into_owned();
        let mut contents = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut contents)?;
        if path == "index.json" {
            index = Some(contents);
        } else if let Some(hex) = path.strip_prefix("blobs/sha256/") {
            blobs.push((hex.to_owned(), contents));
        }
    }
    let index: serde_json::Value = serde_json::from_slice(&index.context("no index.json")?)?;
    let manifest = index["manifests"][0]["digest"]
        .as_str()
        .context("index.json names no manifest")?
        .to_owned();
    let base = format!("var/registry/{name}");
    let mut files = vec![(
        format!("{base}/manifests/{tag}"),
        manifest.clone().into_bytes(),
    )];
    for (hex, contents) in blobs {
        let kind = if manifest == format!("sha256:{hex}") {
            "manifests"
        } else {
            "blobs"
        };
        files.push((
            format!("{base}/{kind}/sha256/{}/{hex}/data", &hex[..2]),
            contents,
        ));
    }
    Ok(files)
}

fn write(dir: &Path, image: &ImageBuilder) -> anyhow::Result<PathBuf> {
    let name: String = image
        .reference()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let path = dir.join(format!("{name}.oci.tar"));
    let file =
        std::fs::File::create(&path).with_context(|| format!("create {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    image
        .write_oci_archive(&mut out)
        .with_context(|| format!("write {}", path.display()))?;
    std::io::Write::flush(&mut out)?;
    Ok(path)
}
