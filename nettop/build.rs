//! Provenance for `nettop --version`, the ready line and `/status`: the git
//! commit built, and the SHA-256 of the probe object the binary embeds.
use sha2::{Digest, Sha256};

fn main() {
    let object = "../assets/nettop.bpf.o";
    println!("cargo:rerun-if-changed={object}");
    let bytes = std::fs::read(object).expect("read the embedded probe object");
    let sha: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
    println!("cargo:rustc-env=NETTOP_PROBE_SHA256={sha}");

    // NETTOP_COMMIT overrides, for builds from a tarball without .git.
    println!("cargo:rerun-if-env-changed=NETTOP_COMMIT");
    println!("cargo:rerun-if-changed=../.git/HEAD");
    println!("cargo:rerun-if-changed=../.git/refs/heads");
    let commit = std::env::var("NETTOP_COMMIT").ok().or_else(|| {
        let out = std::process::Command::new("git").args(["rev-parse", "HEAD"]).output().ok()?;
        let hash = String::from_utf8(out.stdout).ok()?.trim().to_owned();
        (out.status.success() && hash.len() == 40).then_some(hash)
    });
    println!("cargo:rustc-env=NETTOP_COMMIT={}", commit.as_deref().unwrap_or("unknown"));
}
