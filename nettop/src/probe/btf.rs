//! The kernel's own BTF as an oracle for the guessed offsets: the few
//! members guessing stands for, found through anonymous structs and unions.
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};

use super::fn_args::{FuncProto, Param};
use super::guess::{FIELDS, Field};

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

pub fn read_offsets(path: &Path) -> Result<BtfOffsets> {
    let data = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    offsets_in(&data).with_context(|| format!("BTF in {}", path.display()))
}

/// `read_offsets` on BTF already read (`--btf FILE` is the user's: any
/// bytes give offsets or an error).
pub fn offsets_in(data: &[u8]) -> Result<BtfOffsets> {
    let btf = Btf::parse(data).context("parse BTF")?;
    // Each struct is found once: finding one is a walk over every type.
    let mut ids: Vec<(&str, u32)> = Vec::new();
    let mut out = Vec::new();
    for def in &FIELDS {
        let (field, (strukt, member)) = (def.field, def.btf);
        let id = match ids.iter().find(|(name, _)| *name == strukt) {
            Some(&(_, id)) => id,
            None => {
                let id = btf.struct_id(strukt).ok_or_else(|| anyhow!("no struct {strukt}"))?;
                ids.push((strukt, id));
                id
            }
        };
        // `a|b`: the member moved between kernels; the first that exists.
        let found = member.split('|').find_map(|m| btf.member_offset(id, m));
        let off = match found {
            Some(MemberOffset::Bytes(o)) => Some(o),
            Some(MemberOffset::Bitfield) => None,
            None if field.is_ipv6() => None,
            None => return Err(anyhow!("{strukt}.{member}: no such member")),
        };
        out.push((field, off));
    }
    Ok(BtfOffsets(out))
}

/// Just enough of the BTF format to find members' offsets and functions'
/// prototypes: one pass that notes where each type starts, then lookups on
/// demand. A general parser builds all of vmlinux's types first, too slow
/// for start-up (docs/performance.md).
struct Btf<'a> {
    types: &'a [u8],
    strings: &'a [u8],
    /// Byte offset of type id i+1 in `types` (id 0 is void).
    starts: Vec<u32>,
}

#[derive(Debug, PartialEq, Eq)]
enum MemberOffset {
    Bytes(u32),
    Bitfield,
}

const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FWD: u32 = 7;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_FLOAT: u32 = 16;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

impl<'a> Btf<'a> {
    fn parse(data: &'a [u8]) -> Result<Btf<'a>> {
        let magic = data.get(..2).map(|m| u16::from_le_bytes([m[0], m[1]]));
        if magic != Some(0xeb9f) {
            bail!("not little-endian BTF (magic {magic:x?})");
        }
        let field = |at| u32_at(data, at).map(|v| v as usize).context("truncated header");
        let hdr_len = field(4)?;
        let section = |off: usize, len: usize| {
            hdr_len
                .checked_add(off)
                .and_then(|s| data.get(s..s.checked_add(len)?))
                .context("section outside the file")
        };
        let types = section(field(8)?, field(12)?)?;
        let strings = section(field(16)?, field(20)?)?;
        let mut starts = Vec::with_capacity(types.len() / 24);
        let mut at = 0usize;
        while at < types.len() {
            starts.push(at as u32);
            let info = u32_at(types, at + 4).context("truncated type")?;
            let vlen = (info & 0xffff) as usize;
            let extra = match (info >> 24) & 0x1f {
                1 | 14 | 17 => 4,             // int, var, decl_tag
                3 => 12,                      // array
                4 | 5 | 15 | 19 => 12 * vlen, // struct, union, datasec, enum64
                6 | 13 => 8 * vlen,           // enum, func_proto
                2 | 7..=12 | 16 | 18 => 0,    // ptr, fwd, typedef, modifiers, func, float, type_tag
                k => bail!("unknown BTF kind {k}"),
            };
            at += 12 + extra;
        }
        Ok(Btf { types, strings, starts })
    }

    fn name(&self, off: u32) -> &'a [u8] {
        let rest = self.strings.get(off as usize..).unwrap_or_default();
        &rest[..rest.iter().position(|&b| b == 0).unwrap_or(rest.len())]
    }

    /// (name_off, info, size_or_type) of a type, and where its trailing
    /// records begin.
    fn header(&self, id: u32) -> Option<(u32, u32, u32, usize)> {
        let at = *self.starts.get((id as usize).checked_sub(1)?)? as usize;
        Some((
            u32_at(self.types, at)?,
            u32_at(self.types, at + 4)?,
            u32_at(self.types, at + 8)?,
            at + 12,
        ))
    }

    fn struct_id(&self, name: &str) -> Option<u32> {
        (1..=self.starts.len() as u32).find(|&id| {
            self.header(id).is_some_and(|(n, info, _, _)| {
                (info >> 24) & 0x1f == KIND_STRUCT && self.name(n) == name.as_bytes()
            })
        })
    }

    /// Through typedefs and qualifiers to a struct or union, if it is one.
    fn composite(&self, mut id: u32) -> Option<u32> {
        for _ in 0..32 {
            let (_, info, next, _) = self.header(id)?;
            match (info >> 24) & 0x1f {
                KIND_STRUCT | KIND_UNION => return Some(id),
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = next
                }
                _ => return None,
            }
        }
        None
    }

    /// A dotted member path; members of anonymous structs and unions count
    /// as members of the one around them, as in C.
    fn member_offset(&self, id: u32, path: &str) -> Option<MemberOffset> {
        let mut id = id;
        let mut bits = 0u32;
        let mut parts = path.split('.').peekable();
        while let Some(part) = parts.next() {
            let m = self.find_member(id, part.as_bytes(), 0)?;
            if m.bitfield || m.bit_offset % 8 != 0 {
                return Some(MemberOffset::Bitfield);
            }
            bits += m.bit_offset;
            if parts.peek().is_some() {
                id = self.composite(m.type_id)?;
            }
        }
        Some(MemberOffset::Bytes(bits / 8))
    }

    /// Member `name` of composite `id`, its offset relative to `id`;
    /// `depth` bounds the search through anonymous members.
    fn find_member(&self, id: u32, name: &[u8], depth: u32) -> Option<Member> {
        let (_, info, _, members) = self.header(id)?;
        let kind_flag = info >> 31 == 1;
        let vlen = (info & 0xffff) as usize;
        let mut anonymous = Vec::new();
        for i in 0..vlen {
            let at = members + 12 * i;
            let (n, type_id, word) =
                (u32_at(self.types, at)?, u32_at(self.types, at + 4)?, u32_at(self.types, at + 8)?);
            // With kind_flag the word is (bitfield size << 24 | bit offset);
            // without, a plain bit offset.
            let m = if kind_flag {
                Member { type_id, bit_offset: word & 0x00ff_ffff, bitfield: word >> 24 != 0 }
            } else {
                Member { type_id, bit_offset: word, bitfield: false }
            };
            if n == 0 {
                anonymous.push(m);
            } else if self.name(n) == name {
                return Some(m);
            }
        }
        if depth >= 8 {
            return None;
        }
        anonymous.into_iter().find_map(|outer| {
            let inner = self.find_member(self.composite(outer.type_id)?, name, depth + 1)?;
            Some(Member { bit_offset: outer.bit_offset + inner.bit_offset, ..inner })
        })
    }
}

/// The prototypes of `functions` in the BTF at `path` (the running
/// kernel's: fentry/fexit attach to its functions), in that order; `None`
/// for a function the kernel does not have. Where BTF names a function
/// twice (static functions of the same name), the first is taken, as the
/// loader does when it attaches.
pub fn read_func_protos(path: &Path, functions: &[&str]) -> Result<Vec<Option<FuncProto>>> {
    let data = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    func_protos(&data, functions).with_context(|| format!("BTF in {}", path.display()))
}

pub fn func_protos(data: &[u8], functions: &[&str]) -> Result<Vec<Option<FuncProto>>> {
    let b = Btf::parse(data)?;
    let mut out: Vec<Option<FuncProto>> = vec![None; functions.len()];
    for id in 1..=b.starts.len() as u32 {
        let Some((n, info, proto, _)) = b.header(id) else { continue };
        if (info >> 24) & 0x1f != KIND_FUNC {
            continue;
        }
        let name = b.name(n);
        let Some(i) = functions.iter().position(|f| f.as_bytes() == name) else { continue };
        if out[i].is_none() {
            out[i] =
                Some(b.func_proto(proto).with_context(|| format!("function {}", functions[i]))?);
        }
    }
    Ok(out)
}

impl Btf<'_> {
    fn func_proto(&self, id: u32) -> Result<FuncProto> {
        let (_, info, ret, params) = self.header(id).context("no such type")?;
        if (info >> 24) & 0x1f != KIND_FUNC_PROTO {
            bail!("type {id} is not a FUNC_PROTO");
        }
        let params = (0..(info & 0xffff) as usize)
            .map(|i| {
                let at = params + 8 * i;
                let name = u32_at(self.types, at).context("truncated parameter")?;
                let ty = u32_at(self.types, at + 4).context("truncated parameter")?;
                Ok(Param {
                    name: String::from_utf8_lossy(self.name(name)).into_owned(),
                    ty: self.c_type(ty, 0),
                })
            })
            .collect::<Result<_>>()?;
        Ok(FuncProto { ret: self.c_type(ret, 0), params })
    }

    /// A type as C writes it, enough to recognise one: `struct sock *`,
    /// `int`, `size_t` (typedefs by name), `const char *`.
    fn c_type(&self, id: u32, depth: u32) -> String {
        if id == 0 {
            return "void".into();
        }
        let Some((n, info, next, _)) = self.header(id) else { return "?".into() };
        if depth > 16 {
            return "?".into();
        }
        let name = String::from_utf8_lossy(self.name(n));
        let pointer = |inner: String| {
            if inner.ends_with('*') { format!("{inner}*") } else { format!("{inner} *") }
        };
        match (info >> 24) & 0x1f {
            KIND_INT | KIND_TYPEDEF | KIND_FLOAT => name.into_owned(),
            KIND_PTR => pointer(self.c_type(next, depth + 1)),
            KIND_STRUCT => format!("struct {name}"),
            KIND_UNION => format!("union {name}"),
            KIND_ENUM | KIND_ENUM64 => format!("enum {name}"),
            KIND_FWD if info >> 31 == 1 => format!("union {name}"),
            KIND_FWD => format!("struct {name}"),
            KIND_CONST => format!("const {}", self.c_type(next, depth + 1)),
            KIND_VOLATILE => format!("volatile {}", self.c_type(next, depth + 1)),
            KIND_RESTRICT | KIND_TYPE_TAG => self.c_type(next, depth + 1),
            KIND_ARRAY => "array".into(),
            KIND_FUNC_PROTO => "function".into(),
            _ => "?".into(),
        }
    }
}

/// Where, in a probe object's BTF, the `map_flags` of the BTF-defined map
/// `map` is held: the byte offset of the element count of the array type
/// that `__uint(map_flags, N)` declares.
pub fn map_flags_at(btf: &[u8], map: &str) -> Result<usize> {
    let b = Btf::parse(btf)?;
    let kind = |id: u32| b.header(id).map(|(_, info, _, _)| (info >> 24) & 0x1f);
    let var = (1..=b.starts.len() as u32)
        .find(|&id| {
            b.header(id).is_some_and(|(n, info, _, _)| {
                (info >> 24) & 0x1f == KIND_VAR && b.name(n) == map.as_bytes()
            })
        })
        .with_context(|| format!("no map {map} in the object's BTF"))?;
    let def = b.header(var).and_then(|(_, _, t, _)| b.composite(t)).context("map definition")?;
    let member = b
        .find_member(def, b"map_flags", 0)
        .with_context(|| format!("map {map} declares no map_flags"))?;
    let (_, _, array, _) = b.header(member.type_id).context("map_flags type")?;
    if kind(member.type_id) != Some(KIND_PTR) || kind(array) != Some(KIND_ARRAY) {
        bail!("map {map}: map_flags is not declared with __uint");
    }
    let (_, _, _, record) = b.header(array).context("map_flags array")?;
    // Header, then the types; btf_array is {type, index_type, nelems}.
    let types_at = u32_at(btf, 4).context("header")? + u32_at(btf, 8).context("header")?;
    Ok(types_at as usize + record + 8)
}

struct Member {
    type_id: u32,
    bit_offset: u32,
    bitfield: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reader against btfparse, a general BTF parser, on this host's
    /// kernel and on every kernel the VM matrix left a copy of.
    #[test]
    fn the_reader_agrees_with_a_general_parser() {
        let mut files = vec![std::path::PathBuf::from(VMLINUX)];
        let vm = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/vm");
        if let Ok(dirs) = std::fs::read_dir(vm) {
            files.extend(dirs.flatten().map(|d| d.path().join("btf")).filter(|p| p.is_file()));
        }
        let mut checked = 0;
        for f in files.iter().filter(|f| f.metadata().is_ok_and(|m| m.len() > 0)) {
            let ours = read_offsets(f).unwrap();
            assert_eq!(ours, with_btfparse(f), "{}", f.display());
            checked += 1;
        }
        assert!(checked > 0, "no BTF to check against");
    }

    fn with_btfparse(path: &Path) -> BtfOffsets {
        use super::super::guess::solver::FieldDef;
        use btfparse::{Offset, Readable, TypeInformation};
        struct Bytes(Vec<u8>);
        impl Readable for Bytes {
            fn read(&self, offset: u64, buffer: &mut [u8]) -> btfparse::Result<()> {
                let start = offset as usize;
                let src = self.0.get(start..start + buffer.len()).ok_or_else(|| {
                    btfparse::Error::new(btfparse::ErrorKind::EOF, "read past the end")
                })?;
                buffer.copy_from_slice(src);
                Ok(())
            }
        }
        let ti = TypeInformation::new(&Bytes(std::fs::read(path).unwrap())).unwrap();
        BtfOffsets(
            FIELDS
                .iter()
                .map(|&FieldDef { field, btf: (strukt, member), .. }| {
                    let id = ti.id_of(strukt).unwrap();
                    let off = member.split('|').find_map(|m| match ti.offset_of(id, m) {
                        Ok((_, Offset::ByteOffset(o))) => Some(o),
                        _ => None,
                    });
                    (field, off)
                })
                .collect(),
        )
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(Btf::parse(b"").is_err());
        assert!(Btf::parse(&[0x9f, 0xeb, 1, 0, 24, 0, 0, 0, 0, 0, 0, 0, 255, 255, 0, 0]).is_err());
        let mut header = vec![0x9f, 0xeb, 1, 0, 24, 0, 0, 0];
        header.extend([0u8; 16]);
        header.extend([0, 0, 0, 0, 0, 0, 0, 0x1f, 0, 0, 0, 0]); // kind 31
        header[12] = 12; // type_len
        assert!(Btf::parse(&header).is_err());
    }
}
