//! Link-time layout of the `berth` binary in release builds.
//!
//! The agent is a long-lived process whose resident memory is mostly its
//! own code pages. The kernel maps a binary's code in 64 KiB windows around
//! each page a process touches (fault-around), so code the agent runs,
//! scattered among code it never runs, keeps most of the binary resident.
//! `hot-code.order` lists the functions the agent runs with pods on it
//! (measured by `scripts/hot-code-order.sh`), and the linker puts them
//! first, together. Names it does not find (after a change of toolchain or
//! dependencies) are skipped: the binary is as before, only less compact.
//!
//! `BERTH_LINK_MAP=<path>` also writes the linker's map there, from which
//! the script reads where each function went.

use std::path::Path;

fn main() {
    let order = Path::new(env!("CARGO_MANIFEST_DIR")).join("hot-code.order");
    println!("cargo:rerun-if-changed={}", order.display());
    println!("cargo:rerun-if-env-changed=BERTH_LINK_MAP");
    if std::env::var("PROFILE").as_deref() != Ok("release") {
        return;
    }
    // Through the C compiler driver to LLD (GNU ld has no such option).
    if order.exists() && linker_is_lld() {
        println!(
            "cargo:rustc-link-arg-bin=berth=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        println!("cargo:rustc-link-arg-bin=berth=-Wl,--no-warn-symbol-ordering");
    }
    if glibc_reads_relr() {
        // Relative relocations packed (DT_RELR): the table the loader reads
        // at start-up, and which stays mapped, is 13 KiB instead of 690.
        println!("cargo:rustc-link-arg-bin=berth=-Wl,-z,pack-relative-relocs");
    }
    if let Ok(map) = std::env::var("BERTH_LINK_MAP") {
        println!("cargo:rustc-link-arg-bin=berth=-Wl,-Map={map}");
    }
}

/// Whether rustc links with its own LLD: its default on x86_64 Linux (GNU)
/// since Rust 1.90.
fn linker_is_lld() -> bool {
    let target = |key: &str| std::env::var(format!("CARGO_CFG_TARGET_{key}")).unwrap_or_default();
    if (target("ARCH"), target("OS"), target("ENV"))
        != ("x86_64".into(), "linux".into(), "gnu".into())
    {
        return false;
    }
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let Ok(out) = std::process::Command::new(rustc).arg("-V").output() else {
        return false;
    };
    // "rustc 1.95.0 (...)"
    let version = String::from_utf8_lossy(&out.stdout);
    let minor = version
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.split('.').nth(1))
        .and_then(|m| m.parse::<u32>().ok());
    minor.is_some_and(|m| m >= 90)
}

/// Whether this machine's C library applies packed relocations (glibc 2.36
/// and later; an older loader would skip them and the binary would crash).
fn glibc_reads_relr() -> bool {
    let Ok(out) = std::process::Command::new("getconf")
        .arg("GNU_LIBC_VERSION")
        .output()
    else {
        return false;
    };
    let version = String::from_utf8_lossy(&out.stdout);
    let mut numbers = version
        .trim()
        .trim_start_matches("glibc ")
        .split('.')
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let (major, minor) = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    (major, minor) >= (2, 36)
}
