//! Where an fentry/fexit hook finds what it reads: the arity chooser. The
//! kernel's functions gain and lose arguments between releases
//! (`tcp_recvmsg` had six in 5.10, five in 5.19, four in 7.2), and a fexit
//! program's context holds the arguments and then the return value, so the
//! indices come from the running kernel's BTF, never from a list of known
//! shapes. Pure: `btf.rs` reads the prototypes, `backend.rs` uses the choice.
use std::fmt;

use nettop_shared::{FnArgs, NO_ARG};

/// A function's prototype, each type written as C would (`struct sock *`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FuncProto {
    pub ret: String,
    pub params: Vec<Param>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Param {
    pub name: String,
    pub ty: String,
}

/// What a hook reads of the function it is attached to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reads {
    /// fentry: the socket.
    Sock,
    /// fexit of connect: the socket, the address asked for, the result.
    Connect,
    /// fexit of sendmsg: the socket, the message, the bytes sent.
    Send,
    /// fexit of recvmsg: the socket, the message, the flags, the bytes read.
    Recv,
    /// fexit of accept: the socket it returns.
    Accept,
}

impl Reads {
    /// fexit, as opposed to fentry.
    pub fn at_exit(self) -> bool {
        self != Reads::Sock
    }
}

/// The highest context index the probe can read (its `ctx_value` cases):
/// the kernel's trampolines take at most 12 arguments.
const MAX_INDEX: usize = 12;

/// The indices for `reads` in `proto`, or why the function cannot serve.
pub fn choose(reads: Reads, proto: &FuncProto) -> Result<FnArgs, String> {
    let mut args = FnArgs::default();
    let find = |fits: &dyn Fn(&str) -> bool, what: &str| {
        proto.params.iter().position(|p| fits(&p.ty)).ok_or_else(|| format!("no {what} argument"))
    };
    if reads != Reads::Accept {
        args.sk = index(find(&|ty| ty == "struct sock *", "socket (struct sock *)")?)?;
    }
    match reads {
        // 7.x passes a `struct sockaddr_unsized *`: any sockaddr has the
        // family first, which is what the probe reads.
        Reads::Connect => {
            let sockaddr = |ty: &str| ty.starts_with("struct sockaddr") && ty.ends_with(" *");
            args.msg = index(find(&sockaddr, "address (struct sockaddr *)")?)?;
        }
        Reads::Send | Reads::Recv => {
            args.msg = index(find(&|ty| ty == "struct msghdr *", "message (struct msghdr *)")?)?
        }
        Reads::Sock | Reads::Accept => {}
    }
    if reads == Reads::Recv {
        let flags = proto
            .params
            .iter()
            .position(|p| p.name == "flags")
            .ok_or("no `flags` argument (a MSG_PEEK read would count)")?;
        let ty = &proto.params[flags].ty;
        if !matches!(ty.as_str(), "int" | "unsigned int" | "u32" | "__u32" | "s32") {
            return Err(format!("`flags` is {ty}, not an int"));
        }
        args.flags = index(flags)?;
    }
    if reads.at_exit() {
        let want = if reads == Reads::Accept { "struct sock *" } else { "int" };
        if proto.ret != want {
            return Err(format!("returns {}, not {want}", proto.ret));
        }
        args.ret = index(proto.params.len())?;
    }
    Ok(args)
}

fn index(i: usize) -> Result<u8, String> {
    match u8::try_from(i) {
        Ok(i) if usize::from(i) <= MAX_INDEX => Ok(i),
        _ => Err(format!("context index {i} is past the {MAX_INDEX} the probe can read")),
    }
}

// An index is never NO_ARG, which means "not read".
const _: () = assert!(MAX_INDEX < NO_ARG as usize);

/// `name(a: type, b: type) -> type`: the fixtures' format, and how errors
/// name the prototype that did not fit.
pub struct Signature<'a>(pub &'a str, pub &'a FuncProto);

impl fmt::Display for Signature<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}(", self.0)?;
        for (i, p) in self.1.params.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{}: {}", p.name, p.ty)?;
        }
        write!(f, ") -> {}", self.1.ret)
    }
}

/// Reads a [`Signature`] back: (function, prototype).
pub fn parse_signature(line: &str) -> Option<(String, FuncProto)> {
    let (name, rest) = line.split_once('(')?;
    let (params, ret) = rest.rsplit_once(") -> ")?;
    let params = if params.is_empty() {
        Vec::new()
    } else {
        params
            .split(", ")
            .map(|p| {
                let (name, ty) = p.split_once(": ")?;
                Some(Param { name: name.into(), ty: ty.into() })
            })
            .collect::<Option<_>>()?
    };
    Some((name.trim().into(), FuncProto { ret: ret.trim().into(), params }))
}

#[cfg(test)]
mod tests;
