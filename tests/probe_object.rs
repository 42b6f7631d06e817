//! The committed probe object must be exactly what probes/build.sh makes
//! from the committed source, in any checkout folder.
use std::path::Path;
use std::process::Command;

#[test]
fn committed_probe_object_is_reproducible() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = std::env::temp_dir().join(format!("nettop-probe-{}.o", std::process::id()));
    let status = Command::new(root.join("probes/build.sh"))
        .arg(&out)
        .status()
        .expect("run probes/build.sh (needs clang-19: apt-get install clang-19)");
    assert!(status.success(), "probes/build.sh failed");
    let built = std::fs::read(&out).expect("built object");
    let _ = std::fs::remove_file(&out);
    let committed = std::fs::read(root.join("assets/nettop.bpf.o")).expect("assets/nettop.bpf.o");
    assert!(
        built == committed,
        "assets/nettop.bpf.o differs from what probes/ builds: run probes/build.sh and commit the result"
    );
    // Nothing of this machine's paths may leak into the debug info.
    let cwd = std::env::current_dir().unwrap();
    let needle = cwd.to_string_lossy();
    assert!(
        !committed.windows(needle.len()).any(|w| w == needle.as_bytes()),
        "absolute path {needle} in the object"
    );
}
