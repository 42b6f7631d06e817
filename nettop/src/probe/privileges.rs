//! Say up front what is missing instead of failing deep inside a BPF call.
use anyhow::{Result, bail};

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// The exit code for missing privileges.
pub const EXIT_PRIVILEGES: i32 = 2;

#[derive(Debug, thiserror::Error)]
#[error("nettop needs root, or CAP_BPF + CAP_PERFMON + CAP_NET_ADMIN (missing: {missing})")]
pub struct PrivilegeError {
    pub missing: String,
}

/// A process's effective capabilities (`CapEff` of `/proc/PID/status`;
/// "self" for this one).
pub fn effective_caps(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?.trim();
    u64::from_str_radix(hex, 16).ok()
}

/// Whether a capability set is enough: CAP_SYS_ADMIN stands in for
/// CAP_BPF and CAP_PERFMON on kernels older than 5.8.
pub fn missing(caps: u64) -> Vec<&'static str> {
    let has = |c: u32| caps & (1 << c) != 0;
    let mut missing = Vec::new();
    if !has(CAP_BPF) && !has(CAP_SYS_ADMIN) {
        missing.push("CAP_BPF");
    }
    if !has(CAP_PERFMON) && !has(CAP_SYS_ADMIN) {
        missing.push("CAP_PERFMON");
    }
    if !has(CAP_NET_ADMIN) {
        missing.push("CAP_NET_ADMIN");
    }
    missing
}

pub fn check() -> Result<()> {
    let caps = effective_caps("self").unwrap_or(0);
    let missing = missing(caps);
    if !missing.is_empty() {
        bail!(PrivilegeError { missing: missing.join(", ") });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_the_three_capabilities_suffice() {
        assert!(missing(u64::MAX).is_empty());
        assert!(missing(1 << CAP_BPF | 1 << CAP_PERFMON | 1 << CAP_NET_ADMIN).is_empty());
        assert!(missing(1 << CAP_SYS_ADMIN | 1 << CAP_NET_ADMIN).is_empty());
    }

    #[test]
    fn names_what_is_missing() {
        assert_eq!(missing(0), ["CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN"]);
        assert_eq!(missing(1 << CAP_BPF | 1 << CAP_NET_ADMIN), ["CAP_PERFMON"]);
    }
}
