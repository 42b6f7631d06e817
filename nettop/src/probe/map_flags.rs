//! Map flags fitted to the running kernel before the probe object is loaded.
//!
//! aya's loader can resize a map but not change its flags, so the flags are
//! rewritten in the object's BTF map definitions instead (see the comment
//! on the `conns` map in nettop.bpf.c).
use anyhow::{Context, Result, bail};
use object::{Object, ObjectSection};

use super::btf;

/// The kernel's flag: hash entries allocated on insert, not up front.
pub const BPF_F_NO_PREALLOC: u32 = 1;

/// The maps whose memory should follow use.
pub const GROWING_MAPS: [&str; 2] = ["conns", "socks"];

/// Whether hash maps used by tracing programs can be left unpreallocated.
/// From 6.1 the kernel allocates their entries safely in any context.
/// Before, PREEMPT_RT kernels refuse such maps in tracing programs, and
/// others accept them with a one-time kernel warning (a stack trace in the
/// log, and a crash under panic_on_warn).
pub fn can_grow(release: (u32, u32)) -> bool {
    release >= (6, 1)
}

/// `object` with the declared map_flags of `maps` replaced by `flags`.
pub fn with_map_flags(object: &[u8], maps: &[&str], flags: u32) -> Result<Vec<u8>> {
    let file = object::File::parse(object).context("parse the probe object")?;
    let section = file.section_by_name(".BTF").context("the probe object has no BTF")?;
    let (start, len) = section.file_range().context("the probe object's BTF has no data")?;
    let start = start as usize;
    let blob = object.get(start..start + len as usize).context("BTF outside the object")?;
    // Maps that declare the same value share one array type: one place.
    let mut places = Vec::new();
    for map in maps {
        let at = start + btf::map_flags_at(blob, map)?;
        let declared = u32::from_le_bytes(object[at..at + 4].try_into().expect("4 bytes"));
        if declared != 0 {
            // Another value could be an array type shared with other
            // declarations (max_entries of 1, say): rewriting it would
            // change them too.
            bail!("map {map} declares map_flags {declared}; the probe must declare 0");
        }
        places.push(at);
    }
    places.sort_unstable();
    places.dedup();
    let mut out = object.to_vec();
    for at in places {
        out[at..at + 4].copy_from_slice(&flags.to_le_bytes());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aya_obj::Map;

    fn maps(object: &[u8]) -> Vec<(String, u32, u32, u32, u32, u32)> {
        let obj = aya_obj::Object::parse(object).unwrap();
        let mut v: Vec<_> = obj
            .maps
            .iter()
            .map(|(name, m): (&String, &Map)| {
                (
                    name.clone(),
                    m.map_type(),
                    m.map_flags(),
                    m.max_entries(),
                    m.key_size(),
                    m.value_size(),
                )
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn only_the_named_maps_flags_change() {
        let before = maps(super::super::OBJECT);
        let patched =
            with_map_flags(super::super::OBJECT, &GROWING_MAPS, BPF_F_NO_PREALLOC).unwrap();
        let after = maps(&patched);
        assert_eq!(before.len(), after.len());
        let mut changed = Vec::new();
        for (b, a) in before.iter().zip(&after) {
            if b != a {
                assert_eq!((b.0.as_str(), b.2, a.2), (a.0.as_str(), 0, BPF_F_NO_PREALLOC));
                assert_eq!((b.1, b.3, b.4, b.5), (a.1, a.3, a.4, a.5), "only the flags");
                changed.push(a.0.clone());
            }
        }
        assert_eq!(changed, ["conns", "socks"]);
    }

    #[test]
    fn a_map_without_declared_flags_is_an_error() {
        let e = with_map_flags(super::super::OBJECT, &["events"], 1).unwrap_err();
        assert!(format!("{e:#}").contains("map events declares no map_flags"), "{e:#}");
    }

    #[test]
    fn maps_grow_from_6_1() {
        assert!(!can_grow((5, 10)));
        assert!(!can_grow((6, 0)));
        assert!(can_grow((6, 1)));
        assert!(can_grow((6, 18)));
    }
}
