//! `trace --json`'s lines, byte for byte what serde_json makes of an `Event`
//! (the tests hold the two equal), made for less: the fixed keys go out
//! without escaping, and each owner's fields, the same in every event of its
//! process, are serialised once. serde_json still escapes every string the
//! host controls.
use std::io::Write;
use std::sync::Arc;

use nettop::tracer::{Direction, Event, EventKind, Owner, Proto, Tuple};
use rustc_hash::FxHashMap;

/// Owners kept serialised: about one per live process; cleared when full.
const MAX_OWNERS: usize = 4096;

#[derive(Default)]
pub struct EventWriter {
    /// By the owner's address; holding the `Arc` keeps that address from
    /// being reused for another owner while the entry lives.
    owners: FxHashMap<usize, (Arc<Owner>, Vec<u8>)>,
    kinds: EnumTexts<EventKind>,
    protos: EnumTexts<Proto>,
    directions: EnumTexts<Direction>,
}

/// serde_json's text of each value of a field-less enum, made once: its
/// escaping machinery was a visible part of every line.
struct EnumTexts<T>(Vec<(T, Vec<u8>)>);

impl<T> Default for EnumTexts<T> {
    fn default() -> Self {
        EnumTexts(Vec::new())
    }
}

impl<T: serde::Serialize + Copy + PartialEq> EnumTexts<T> {
    fn put(&mut self, out: &mut Vec<u8>, v: T) -> serde_json::Result<()> {
        match self.0.iter().find(|(k, _)| *k == v) {
            Some((_, text)) => out.extend_from_slice(text),
            None => {
                let text = serde_json::to_vec(&v)?;
                out.extend_from_slice(&text);
                self.0.push((v, text));
            }
        }
        Ok(())
    }
}

/// An integer as serde_json writes it (it uses itoa too).
fn int(out: &mut Vec<u8>, n: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// An address as `Display` writes it, IPv4 without the formatting
/// machinery (padding support and all), which was the costliest part of a
/// line.
fn addr(out: &mut Vec<u8>, a: &std::net::IpAddr) {
    match a {
        std::net::IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            int(out, a);
            out.push(b'.');
            int(out, b);
            out.push(b'.');
            int(out, c);
            out.push(b'.');
            int(out, d);
        }
        std::net::IpAddr::V6(_) => {
            let _ = write!(out, "{a}");
        }
    }
}

impl EventWriter {
    /// One event as a JSON object (no newline).
    pub fn write(&mut self, out: &mut Vec<u8>, ev: &Event) -> serde_json::Result<()> {
        out.extend_from_slice(b"{\"event\":");
        self.kinds.put(out, ev.event)?;
        out.extend_from_slice(b",\"ts_ns\":");
        int(out, ev.ts_ns);
        if let Some(c) = &ev.conn {
            out.extend_from_slice(b",\"id\":");
            match c.id {
                Some(id) => int(out, id),
                None => out.extend_from_slice(b"null"),
            }
            self.tuple(out, &c.tuple)?;
            out.push(b',');
            out.extend_from_slice(self.owner(&c.owner)?);
            out.extend_from_slice(b",\"direction\":");
            self.directions.put(out, c.direction)?;
        }
        field(out, b"bytes_sent", &ev.bytes_sent);
        field(out, b"bytes_recv", &ev.bytes_recv);
        field(out, b"errno", &ev.errno);
        field(out, b"lost", &ev.lost);
        if ev.vanished {
            out.extend_from_slice(b",\"vanished\":true");
        }
        out.push(b'}');
        Ok(())
    }

    fn tuple(&mut self, out: &mut Vec<u8>, t: &Tuple) -> serde_json::Result<()> {
        out.extend_from_slice(b",\"proto\":");
        self.protos.put(out, t.proto)?;
        out.extend_from_slice(b",\"family\":");
        int(out, t.family);
        // An address's text is digits, hex letters, dots and colons:
        // nothing to escape.
        out.extend_from_slice(b",\"laddr\":\"");
        addr(out, &t.laddr);
        out.extend_from_slice(b"\",\"lport\":");
        int(out, t.lport);
        match &t.raddr {
            Some(a) => {
                out.extend_from_slice(b",\"raddr\":\"");
                addr(out, a);
                out.extend_from_slice(b"\",\"rport\":");
            }
            None => out.extend_from_slice(b",\"raddr\":\"*\",\"rport\":"),
        }
        int(out, t.rport);
        out.extend_from_slice(b",\"netns\":");
        int(out, t.netns);
        Ok(())
    }

    /// The owner's fields without the braces around them.
    fn owner(&mut self, owner: &Arc<Owner>) -> serde_json::Result<&[u8]> {
        let at = Arc::as_ptr(owner) as usize;
        if !self.owners.contains_key(&at) {
            if self.owners.len() >= MAX_OWNERS {
                self.owners.clear();
            }
            let mut json = serde_json::to_vec(&**owner)?;
            json.pop();
            json.remove(0);
            self.owners.insert(at, (owner.clone(), json));
        }
        Ok(&self.owners[&at].1)
    }
}

fn field<T: itoa::Integer + Copy>(out: &mut Vec<u8>, key: &[u8], v: &Option<T>) {
    if let Some(v) = *v {
        out.extend_from_slice(b",\"");
        out.extend_from_slice(key);
        out.extend_from_slice(b"\":");
        int(out, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nettop::tracer::{Direction, EventConn, EventKind, Proto};
    use proptest::prelude::*;
    use std::net::IpAddr;

    fn event(kind: EventKind, conn: Option<EventConn>) -> Event {
        Event {
            event: kind,
            ts_ns: 1,
            conn,
            bytes_sent: None,
            bytes_recv: None,
            errno: None,
            lost: None,
            vanished: false,
            row: None,
        }
    }

    fn written(w: &mut EventWriter, ev: &Event) -> String {
        let mut out = Vec::new();
        w.write(&mut out, ev).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn owner() -> impl Strategy<Value = Owner> {
        let text = "(?s).{0,12}"; // any characters, control ones included
        (
            any::<u32>(),
            text,
            text,
            proptest::option::of(text),
            proptest::option::of(text),
            proptest::option::of(text),
            proptest::option::of(text),
        )
            .prop_map(|(pid, comm, cmdline, user, cgroup, container, owner_note)| Owner {
                pid,
                comm,
                cmdline,
                user,
                cgroup,
                container,
                owner_note,
            })
    }

    fn conn() -> impl Strategy<Value = EventConn> {
        (
            proptest::option::of(any::<u64>()),
            any::<bool>(),
            any::<IpAddr>(),
            any::<u16>(),
            proptest::option::of(any::<IpAddr>()),
            any::<u16>(),
            any::<u32>(),
            owner(),
            prop_oneof![
                Just(Direction::Outgoing),
                Just(Direction::Incoming),
                Just(Direction::Unknown)
            ],
        )
            .prop_map(|(id, udp, laddr, lport, raddr, rport, netns, owner, direction)| {
                EventConn {
                    id,
                    tuple: Tuple {
                        proto: if udp { Proto::Udp } else { Proto::Tcp },
                        family: if laddr.is_ipv4() { 4 } else { 6 },
                        laddr,
                        lport,
                        raddr,
                        rport,
                        netns,
                    },
                    owner: Arc::new(owner),
                    direction,
                }
            })
    }

    fn any_event() -> impl Strategy<Value = Event> {
        (
            (
                prop_oneof![
                    Just(EventKind::Connect),
                    Just(EventKind::Accept),
                    Just(EventKind::Close),
                    Just(EventKind::ConnectFailed),
                    Just(EventKind::Retransmit),
                    Just(EventKind::Lost),
                ],
                any::<u64>(),
                proptest::option::of(conn()),
                proptest::option::of(any::<u64>()),
                proptest::option::of(any::<u64>()),
                proptest::option::of(any::<i32>()),
                proptest::option::of(any::<u64>()),
            ),
            any::<bool>(),
        )
            .prop_map(
                |((event, ts_ns, conn, bytes_sent, bytes_recv, errno, lost), vanished)| Event {
                    row: None,
                    vanished,
                    event,
                    ts_ns,
                    conn,
                    bytes_sent,
                    bytes_recv,
                    errno,
                    lost,
                },
            )
    }

    proptest! {
        #[test]
        fn lines_are_what_serde_json_makes(ev in any_event()) {
            let mut w = EventWriter::default();
            let expected = serde_json::to_string(&ev).unwrap();
            prop_assert_eq!(&written(&mut w, &ev), &expected);
            // Again, with the owner's fields from the cache.
            prop_assert_eq!(&written(&mut w, &ev), &expected);
        }

        #[test]
        fn one_writer_writes_every_kind_of_line_right(
            evs in proptest::collection::vec(any_event(), 1..12)
        ) {
            // The caches of enum texts and owners fill as lines come.
            let mut w = EventWriter::default();
            for ev in evs.iter().chain(&evs) {
                prop_assert_eq!(written(&mut w, ev), serde_json::to_string(ev).unwrap());
            }
        }
    }

    #[test]
    fn an_owner_is_cached_by_identity_not_by_pid() {
        let mut w = EventWriter::default();
        let tuple = Tuple {
            proto: Proto::Tcp,
            family: 4,
            laddr: [127, 0, 0, 1].into(),
            lport: 1,
            raddr: None,
            rport: 0,
            netns: 1,
        };
        let conn = |comm: &str| EventConn {
            id: Some(1),
            tuple: tuple.clone(),
            owner: Arc::new(Owner { pid: 7, comm: comm.into(), ..Owner::default() }),
            direction: Direction::Outgoing,
        };
        let a = written(&mut w, &event(EventKind::Connect, Some(conn("before\u{1b}[2J"))));
        // Same pid, a new owner (exec, or the attribution's refresh).
        let b = written(&mut w, &event(EventKind::Close, Some(conn("after"))));
        assert!(a.contains(r#""comm":"before\u001b[2J""#), "{a}");
        assert!(b.contains(r#""comm":"after""#), "{b}");
    }
}
