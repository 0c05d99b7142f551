//! `berth-mkimage [--reference REF] OUTPUT`: writes a busybox image, built
//! from the host's busybox-static, as an OCI archive for `berth image import`.
//! There is no registry here; this is how scripts/up.sh gets its image.

use std::path::PathBuf;

use anyhow::{bail, Context};

const DEFAULT_REFERENCE: &str = "docker.io/library/busybox:latest";

fn main() -> anyhow::Result<()> {
    let mut reference = DEFAULT_REFERENCE.to_owned();
    let mut output = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--reference" => reference = args.next().context("--reference needs a value")?,
            "-h" | "--help" => {
                println!("usage: berth-mkimage [--reference REF] OUTPUT (default REF {DEFAULT_REFERENCE})");
                return Ok(());
            }
            _ if output.is_none() && !arg.starts_with('-') => output = Some(PathBuf::from(arg)),
            _ => bail!("unexpected argument {arg:?}; see --help"),
        }
    }
    let output = output.context("missing OUTPUT; see --help")?;
    let file =
        std::fs::File::create(&output).with_context(|| format!("create {}", output.display()))?;
    let mut out = std::io::BufWriter::new(file);
    berth_testkit::busybox_image(&reference)
        .write_oci_archive(&mut out)
        .with_context(|| format!("write {}", output.display()))?;
    std::io::Write::flush(&mut out)?;
    println!("{} ({reference})", output.display());
    Ok(())
}
