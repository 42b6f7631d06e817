//! An oracle independent of nettop's own BTF code: bpftool's raw dump of a
//! kernel's BTF, walked here to the members the guesser's fields stand for.
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

struct Member {
    name: String,
    type_id: u32,
    bits: u32,
}

enum Ty {
    Composite(Vec<Member>),
    Alias(u32),
    Other,
}

pub struct Oracle {
    types: HashMap<u32, Ty>,
    structs: HashMap<String, u32>,
}

impl Oracle {
    pub fn load(btf: &Path) -> Oracle {
        let out = Command::new("bpftool")
            .args(["btf", "dump", "file"])
            .arg(btf)
            .args(["format", "raw"])
            .output()
            .expect("run bpftool (apt-get install bpftool)");
        assert!(
            out.status.success(),
            "bpftool btf dump failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).expect("utf-8 dump");
        let mut types = HashMap::new();
        let mut structs = HashMap::new();
        let mut current: Option<(u32, Vec<Member>)> = None;
        let attr = |line: &str, key: &str| -> Option<u32> {
            line.split_whitespace().find_map(|w| w.strip_prefix(key)?.parse().ok())
        };
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix('[') {
                if let Some((id, members)) = current.take() {
                    types.insert(id, Ty::Composite(members));
                }
                let (id, rest) = rest.split_once("] ").expect("[id] KIND");
                let id: u32 = id.parse().expect("type id");
                let kind = rest.split_whitespace().next().unwrap_or("");
                let name = rest.split('\'').nth(1).unwrap_or("");
                match kind {
                    "STRUCT" | "UNION" => {
                        if kind == "STRUCT" && !name.is_empty() {
                            structs.entry(name.to_owned()).or_insert(id);
                        }
                        current = Some((id, Vec::new()));
                    }
                    "TYPEDEF" | "CONST" | "VOLATILE" | "RESTRICT" | "TYPE_TAG" => {
                        types.insert(id, Ty::Alias(attr(rest, "type_id=").expect("alias target")));
                    }
                    _ => {
                        types.insert(id, Ty::Other);
                    }
                }
            } else if let Some((_, members)) = current.as_mut() {
                let line = line.trim();
                if let (Some(name), Some(type_id), Some(bits)) =
                    (line.split('\'').nth(1), attr(line, "type_id="), attr(line, "bits_offset="))
                {
                    members.push(Member { name: name.to_owned(), type_id, bits });
                }
            }
        }
        if let Some((id, members)) = current.take() {
            types.insert(id, Ty::Composite(members));
        }
        Oracle { types, structs }
    }

    fn resolve(&self, mut id: u32) -> u32 {
        while let Some(Ty::Alias(t)) = self.types.get(&id) {
            id = *t;
        }
        id
    }

    /// Byte offset and type of `name` in composite `id`, looking through
    /// anonymous members.
    fn member(&self, id: u32, name: &str) -> Option<(u32, u32)> {
        let Some(Ty::Composite(members)) = self.types.get(&self.resolve(id)) else {
            return None;
        };
        for m in members {
            if m.name == name {
                return Some((m.bits / 8, m.type_id));
            }
            if m.name == "(anon)"
                && let Some((off, t)) = self.member(m.type_id, name)
            {
                return Some((m.bits / 8 + off, t));
            }
        }
        None
    }

    /// `offset_of("sock", "__sk_common.skc_daddr")`.
    pub fn offset_of(&self, strukt: &str, path: &str) -> Option<u32> {
        let mut id = *self.structs.get(strukt)?;
        let mut total = 0;
        for part in path.split('.') {
            let (off, t) = self.member(id, part)?;
            total += off;
            id = t;
        }
        Some(total)
    }

    /// Where each of nettop's guessed fields lives, by its JSON name.
    pub fn field(&self, name: &str) -> Option<u32> {
        let (s, p) = match name {
            "saddr" => ("sock", "__sk_common.skc_rcv_saddr"),
            "daddr" => ("sock", "__sk_common.skc_daddr"),
            "sport" => ("inet_sock", "inet_sport"),
            "dport" => ("sock", "__sk_common.skc_dport"),
            "family" => ("sock", "__sk_common.skc_family"),
            "netns" => ("sock", "__sk_common.skc_net"),
            "netns_ino" => ("net", "ns.inum"),
            "saddr_v6" => ("sock", "__sk_common.skc_v6_rcv_saddr"),
            "daddr_v6" => ("sock", "__sk_common.skc_v6_daddr"),
            "sk_flags" => ("sock", "__sk_common.skc_flags"),
            "sk_protocol" => ("sock", "sk_protocol"),
            "bytes_received" => ("tcp_sock", "bytes_received"),
            "bytes_acked" => ("tcp_sock", "bytes_acked"),
            other => panic!("unknown field {other}"),
        };
        self.offset_of(s, p)
    }
}

pub const FIELDS: [&str; 13] = [
    "saddr",
    "daddr",
    "sport",
    "dport",
    "family",
    "netns",
    "netns_ino",
    "saddr_v6",
    "daddr_v6",
    "sk_flags",
    "sk_protocol",
    "bytes_received",
    "bytes_acked",
];
