//! A whole hash map in a few system calls (`BPF_MAP_LOOKUP_BATCH`, Linux
//! 5.6). aya 0.14 reads a map one key at a time, two system calls per
//! entry: with 100 000 connections, 400 000 calls per refresh.
use std::io;
use std::mem::{MaybeUninit, size_of};
use std::os::fd::{AsRawFd, BorrowedFd};

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

/// `union bpf_attr`'s batch member.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Entries per call at first; grown if one hash bucket holds more.
pub const CHUNK: usize = 4096;

/// Every (key, value) of the hash map `fd`, `chunk` at a time. Each hash
/// bucket is read whole under its lock; the map as a whole is not a
/// snapshot, as with any iteration while programs write to it.
///
/// # Safety
/// `K` and `V` must be the map's key and value types: the kernel writes
/// whole keys and values of the map's sizes into buffers of these types.
pub unsafe fn lookup_all<K: aya::Pod, V: aya::Pod>(
    fd: BorrowedFd<'_>,
    chunk: usize,
) -> io::Result<Vec<(K, V)>> {
    let mut out = Vec::new();
    // SAFETY: the caller's promise, passed on.
    unsafe { lookup_each(fd, chunk, |k: &K, v: &V| out.push((*k, *v)))? };
    Ok(out)
}

/// `each` for every (key, value) of the hash map `fd`: only a chunk is held
/// at a time, so a caller keeping a few of the entries never holds them all.
///
/// # Safety
/// As for `lookup_all`.
pub unsafe fn lookup_each<K: aya::Pod, V: aya::Pod>(
    fd: BorrowedFd<'_>,
    chunk: usize,
    mut each: impl FnMut(&K, &V),
) -> io::Result<()> {
    let mut chunk = chunk.max(1);
    // The kernel's position between calls (a bucket index for hash maps)
    // goes in and comes out in buffers the size of a key. The outgoing one
    // starts as a mark: a call the kernel refuses before reading anything
    // leaves it, and `count`, untouched.
    const UNTOUCHED: u8 = 0xa5;
    let mut token_in = vec![0u8; size_of::<K>().max(8)];
    let mut token_out = vec![UNTOUCHED; token_in.len()];
    let mut first = true;
    loop {
        let mut keys: Vec<MaybeUninit<K>> = Vec::with_capacity(chunk);
        let mut values: Vec<MaybeUninit<V>> = Vec::with_capacity(chunk);
        token_out.fill(UNTOUCHED);
        let mut attr = BatchAttr {
            in_batch: if first { 0 } else { token_in.as_ptr() as u64 },
            out_batch: token_out.as_mut_ptr() as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: chunk as u32,
            map_fd: fd.as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        // SAFETY: the attribute points at buffers of `count` keys and
        // values and a token of at least a key's size, all live for the call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_LOOKUP_BATCH,
                &mut attr as *mut BatchAttr,
                size_of::<BatchAttr>() as u32,
            )
        };
        let err = (rc < 0).then(io::Error::last_os_error);
        let untouched = token_out.iter().all(|&b| b == UNTOUCHED);
        let got = if untouched { 0 } else { (attr.count as usize).min(chunk) };
        match err.as_ref().and_then(io::Error::raw_os_error) {
            // A bucket larger than the chunk, before anything was read:
            // again with room for it.
            Some(libc::ENOSPC) if got == 0 => {
                chunk *= 2;
                continue;
            }
            None | Some(libc::ENOENT) => {}
            _ => return Err(err.expect("an error")),
        }
        // SAFETY: the kernel filled the first `got` keys and values.
        unsafe {
            keys.set_len(got);
            values.set_len(got);
        }
        for (k, v) in keys.iter().zip(&values) {
            // SAFETY: as above; K and V are plain data.
            unsafe { each(k.assume_init_ref(), v.assume_init_ref()) };
        }
        if err.is_some() {
            // ENOENT: no bucket left.
            return Ok(());
        }
        token_in.copy_from_slice(&token_out);
        first = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aya::maps::{HashMap, Map, MapData};
    use nettop_shared::{ConnKey, ConnStats};
    use std::os::fd::AsFd;

    /// The probe's own `conns` map, created by loading the object (no
    /// program is loaded or attached). Needs root, like every test here.
    fn conns_map(entries: u32) -> aya::Ebpf {
        aya::EbpfLoader::new()
            .btf(None)
            .map_max_entries("conns", entries)
            .load(super::super::OBJECT)
            .expect("load the probe object's maps")
    }

    fn sorted(mut v: Vec<(ConnKey, ConnStats)>) -> Vec<(ConnKey, ConnStats)> {
        v.sort_by_key(|(k, _)| (k.lport, k.rport));
        v
    }

    #[test]
    fn reads_every_entry_as_key_by_key_iteration_does() {
        let mut ebpf = conns_map(8192);
        let mut map: HashMap<&mut MapData, ConnKey, ConnStats> =
            HashMap::try_from(ebpf.map_mut("conns").unwrap()).unwrap();
        for i in 0..5000u16 {
            let k = ConnKey { lport: i, rport: !i, proto: 6, family: 2, ..Default::default() };
            let v = ConnStats { bytes_sent: u64::from(i) * 3, msgs_recv: 7, ..Default::default() };
            map.insert(k, v, 0).unwrap();
        }
        let map: HashMap<&MapData, ConnKey, ConnStats> =
            HashMap::try_from(ebpf.map("conns").unwrap()).unwrap();
        let one_by_one = sorted(map.iter().map(Result::unwrap).collect());
        assert_eq!(one_by_one.len(), 5000);
        let Some(Map::HashMap(data)) = ebpf.map("conns") else { panic!("conns is a hash") };
        // Chunks of 1 and 7: most calls end mid-map, and buckets holding
        // more than one entry must grow the chunk, not lose entries.
        for chunk in [1, 7, CHUNK] {
            // SAFETY: the conns map's own key and value types.
            let all =
                unsafe { lookup_all::<ConnKey, ConnStats>(data.fd().as_fd(), chunk) }.unwrap();
            assert_eq!(sorted(all), one_by_one, "chunk {chunk}");
        }
    }

    #[test]
    fn an_empty_map_is_empty() {
        let ebpf = conns_map(16);
        let Some(Map::HashMap(data)) = ebpf.map("conns") else { panic!("conns is a hash") };
        // SAFETY: as above.
        let all = unsafe { lookup_all::<ConnKey, ConnStats>(data.fd().as_fd(), CHUNK) }.unwrap();
        assert!(all.is_empty());
    }
}
