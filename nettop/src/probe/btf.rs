//! The kernel's own BTF as an oracle for the guessed offsets (btfparse: it
//! resolves member offsets through anonymous unions). Parsing all of vmlinux
//! takes a while, so callers run it off the start-up path.
use std::path::Path;

use anyhow::{Context, Result, anyhow};
use btfparse::{Offset, Readable, TypeInformation};

use super::guess::Field;

pub const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

/// Where each field lives according to BTF; `None` where the kernel has no
/// such member (IPv6 fields on a kernel built without IPv6).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BtfOffsets(pub Vec<(Field, Option<u32>)>);

impl BtfOffsets {
    pub fn get(&self, field: Field) -> Option<u32> {
        self.0.iter().find(|(f, _)| *f == field).and_then(|(_, o)| *o)
    }

    /// Fields whose guessed offset BTF contradicts (unguessed ones aside).
    pub fn disagreements(&self, guessed: &super::guess::Guessed) -> Vec<Field> {
        Field::ALL
            .into_iter()
            .filter(|&f| matches!((guessed.get(f), self.get(f)), (Some(g), Some(b)) if g != b))
            .collect()
    }
}

/// (field, struct, member path) — the members the guesser's fields stand for.
const PATHS: [(Field, &str, &str); 9] = [
    (Field::Saddr, "sock", "__sk_common.skc_rcv_saddr"),
    (Field::Daddr, "sock", "__sk_common.skc_daddr"),
    (Field::Sport, "inet_sock", "inet_sport"),
    (Field::Dport, "sock", "__sk_common.skc_dport"),
    (Field::Family, "sock", "__sk_common.skc_family"),
    (Field::Netns, "sock", "__sk_common.skc_net"),
    (Field::NetnsIno, "net", "ns.inum"),
    (Field::SaddrV6, "sock", "__sk_common.skc_v6_rcv_saddr"),
    (Field::DaddrV6, "sock", "__sk_common.skc_v6_daddr"),
];

struct Bytes(Vec<u8>);

impl Readable for Bytes {
    fn read(&self, offset: u64, buffer: &mut [u8]) -> btfparse::Result<()> {
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        match start.checked_add(buffer.len()).and_then(|end| self.0.get(start..end)) {
            Some(src) => {
                buffer.copy_from_slice(src);
                Ok(())
            }
            None => Err(btfparse::Error::new(btfparse::ErrorKind::EOF, "read past the end of BTF")),
        }
    }
}

pub fn read_offsets(path: &Path) -> Result<BtfOffsets> {
    // One read, then parse from memory: btfparse issues many small reads.
    let data = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    let ti = TypeInformation::new(&Bytes(data))
        .map_err(|e| anyhow!("parse BTF in {}: {e:?}", path.display()))?;
    let mut out = Vec::new();
    for (field, strukt, member) in PATHS {
        let id = ti
            .id_of(strukt)
            .ok_or_else(|| anyhow!("BTF in {} has no struct {strukt}", path.display()))?;
        let off = match ti.offset_of(id, member) {
            Ok((_, Offset::ByteOffset(o))) => Some(o),
            Ok((_, Offset::BitOffsetAndSize(..))) => None,
            Err(_) if field.is_ipv6() => None,
            Err(e) => return Err(anyhow!("BTF: {strukt}.{member}: {e:?}")),
        };
        out.push((field, off));
    }
    Ok(BtfOffsets(out))
}
