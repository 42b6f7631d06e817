//! tracefs: where it is (mounting it if nobody has), and a check that the
//! tracepoint fields the probe reads at fixed offsets are where it expects.
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow, bail};

const MOUNTS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// The tracefs root, mounting it at /sys/kernel/tracing if it is absent
/// (fresh hosts and minimal VMs often have it unmounted).
pub fn root() -> Result<PathBuf> {
    if let Some(p) = MOUNTS.iter().map(Path::new).find(|p| p.join("events").is_dir()) {
        return Ok(p.to_owned());
    }
    let target = c"/sys/kernel/tracing";
    // SAFETY: mount(2) with static, NUL-terminated strings.
    let rc = unsafe {
        libc::mount(c"nodev".as_ptr(), target.as_ptr(), c"tracefs".as_ptr(), 0, std::ptr::null())
    };
    if rc != 0 {
        bail!(
            "tracefs is not mounted and mounting it at /sys/kernel/tracing failed: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(PathBuf::from(MOUNTS[0]))
}

/// Field offsets the probe reads from a tracepoint's record.
pub struct Expect {
    pub category: &'static str,
    pub name: &'static str,
    pub fields: &'static [(&'static str, u32)],
}

/// How far this kernel's record puts the fields past where the probe's
/// base program reads them: 0, or 8 on PREEMPT_RT kernels with a bigger
/// common header. Fails naming the field if they do not all move together,
/// or move by an amount no program variant reads.
pub fn check_format(tracefs: &Path, e: &Expect) -> Result<u32> {
    let path = tracefs.join("events").join(e.category).join(e.name).join("format");
    let format = fs::read_to_string(&path)
        .map_err(|err| anyhow!("tracepoint {}:{} is missing ({err})", e.category, e.name))?;
    let mut shift = None;
    for (field, want) in e.fields {
        let got = field_offset(&format, field)
            .ok_or_else(|| anyhow!("tracepoint {}:{} has no field {field}", e.category, e.name))?;
        let this = got.checked_sub(*want);
        if this.is_none() || shift.is_some_and(|s| Some(s) != this) || !matches!(this, Some(0 | 8))
        {
            bail!(
                "tracepoint {}:{} has {field} at offset {got}, the probe reads it at {want} (or {})",
                e.category,
                e.name,
                want + 8
            );
        }
        shift = this;
    }
    Ok(shift.unwrap_or(0))
}

/// `field:const void * skaddr; offset:8; size:8; signed:0;` (tab-separated) → 8 for "skaddr".
fn field_offset(format: &str, field: &str) -> Option<u32> {
    format.lines().find_map(|line| {
        let decl = line.trim().strip_prefix("field:")?;
        let (decl, rest) = decl.split_once(';')?;
        let name = decl.rsplit([' ', '*']).next()?;
        let name = name.split('[').next()?;
        if name != field {
            return None;
        }
        rest.split(';').find_map(|kv| kv.trim().strip_prefix("offset:")?.parse().ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORMAT: &str = "name: inet_sock_set_state\nformat:\n\
        \tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
        \tfield:const void * skaddr;\toffset:8;\tsize:8;\tsigned:0;\n\
        \tfield:int newstate;\toffset:20;\tsize:4;\tsigned:1;\n\
        \tfield:__u8 saddr_v6[16];\toffset:40;\tsize:16;\tsigned:0;\n";

    #[test]
    fn finds_the_common_header_shift() {
        let dir = std::env::temp_dir().join(format!("nettop-tp-{}", std::process::id()));
        let fmt = dir.join("events/sock/x");
        fs::create_dir_all(&fmt).unwrap();
        let e = Expect { category: "sock", name: "x", fields: &[("skaddr", 8), ("newstate", 20)] };
        fs::write(fmt.join("format"), FORMAT).unwrap();
        assert_eq!(check_format(&dir, &e).unwrap(), 0);
        // PREEMPT_RT 5.10: every field 8 bytes further.
        let rt = FORMAT.replace("offset:8;", "offset:16;").replace("offset:20;", "offset:28;");
        fs::write(fmt.join("format"), rt).unwrap();
        assert_eq!(check_format(&dir, &e).unwrap(), 8);
        // Fields that do not move together are refused, naming the field.
        fs::write(fmt.join("format"), FORMAT.replace("offset:20;", "offset:24;")).unwrap();
        assert!(check_format(&dir, &e).unwrap_err().to_string().contains("newstate"));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reads_field_offsets() {
        assert_eq!(field_offset(FORMAT, "skaddr"), Some(8));
        assert_eq!(field_offset(FORMAT, "newstate"), Some(20));
        assert_eq!(field_offset(FORMAT, "saddr_v6"), Some(40));
        assert_eq!(field_offset(FORMAT, "state"), None);
    }
}
