//! The privileged helper: a process forked before nettop drops its
//! capabilities, which keeps the three that reading other processes'
//! sockets needs (CAP_SYS_ADMIN to enter a network namespace,
//! CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH to read another user's
//! `/proc/PID/fd` and `/proc/PID/ns/net`) and does only that, on request,
//! over a socket pair. Threads share memory, so a thread that kept them
//! would be no boundary; a process is (docs/security.md).
//!
//! Three requests, over two connections (a thread of the helper each),
//! answered one at a time on each:
//! - a sock_diag socket made inside the network namespace `netns`, entered
//!   through one of the given processes (its descriptor comes back);
//! - every network namespace some process or thread is in, with a process
//!   to enter it by;
//! - the socket inodes the given processes (or all) hold.
//!
//! The tracer asks through `get()` when a helper was started, and does the
//! same itself otherwise (a library user, or nettop before it drops).
use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

use anyhow::{Context, Result, anyhow, bail};
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, recvmsg, sendmsg,
};

use crate::tracer::sock_diag;

/// The capabilities the helper keeps (bit numbers).
pub const KEPT: [u32; 3] = [CAP_DAC_READ_SEARCH, CAP_SYS_PTRACE, CAP_SYS_ADMIN];
const CAP_DAC_READ_SEARCH: u32 = 2;
const CAP_SYS_PTRACE: u32 = 19;
const CAP_SYS_ADMIN: u32 = 21;

/// A request or reply larger than this is refused: the largest real one
/// is a host's every socket, 12 bytes each.
const MAX_FRAME: usize = 64 << 20;
/// At most this many processes named in one request.
const MAX_PIDS: usize = 1 << 16;

const ASK_NETNS_SOCKET: u8 = 1;
const ASK_NAMESPACES: u8 = 2;
const ASK_SOCKET_OWNERS: u8 = 3;

/// The tracer's way to the helper: two connections, each served by a
/// thread of its own there, so that a long scan of `/proc` for the accepts
/// resolver never holds up the reader's request for a namespace's socket.
pub struct Helper {
    scans: Link,
    namespaces: Link,
    pub pid: u32,
}

/// One connection to the helper. Once a request on it fails part way it
/// is shut for good: what was left unread would be taken for the next
/// reply.
struct Link {
    stream: Mutex<UnixStream>,
    broken: AtomicBool,
}

impl Link {
    fn new(stream: UnixStream) -> Link {
        Link { stream: Mutex::new(stream), broken: AtomicBool::new(false) }
    }

    fn ask(&self, ask: u8, body: &[u8]) -> Result<(Vec<u8>, Option<OwnedFd>)> {
        let stream = self.stream.lock().unwrap_or_else(|e| e.into_inner());
        if self.broken.load(Ordering::Relaxed) {
            bail!("the connection to the helper broke earlier");
        }
        let answered = send_frame(&stream, ask, body, None)
            .context("ask the helper")
            .and_then(|()| read_reply(&stream).context("hear from the helper"));
        let (status, body, fd) = answered.inspect_err(|_| {
            self.broken.store(true, Ordering::Relaxed);
            let _ = stream.shutdown(std::net::Shutdown::Both);
        })?;
        if status != 0 {
            bail!("{}", String::from_utf8_lossy(&body));
        }
        Ok((body, fd))
    }
}

static HELPER: OnceLock<Helper> = OnceLock::new();

/// The helper, if this process started one.
pub fn get() -> Option<&'static Helper> {
    HELPER.get()
}

/// Fork the helper. Call it while this process has one thread and all
/// its capabilities: the child keeps only `KEPT`, and serves until this
/// process exits. Returns its pid.
pub fn start() -> Result<u32> {
    if HELPER.get().is_some() {
        bail!("the helper is already running");
    }
    let (scans, their_scans) = UnixStream::pair().context("make the helper's socket pair")?;
    let (namespaces, their_namespaces) =
        UnixStream::pair().context("make the helper's socket pair")?;
    let parent = std::process::id();
    // SAFETY: fork in a process with one thread (the caller's promise):
    // the child runs only this module's code and ends with _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error()).context("fork the helper");
    }
    if pid == 0 {
        drop((scans, namespaces));
        let code = match child([their_scans, their_namespaces], parent) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("nettop: helper: {}", crate::text::escape(&format!("{e:#}")));
                1
            }
        };
        // SAFETY: ends the child without running the parent's exit hooks.
        unsafe { libc::_exit(code) };
    }
    drop((their_scans, their_namespaces));
    let pid = pid as u32;
    let _ = HELPER.set(Helper { scans: Link::new(scans), namespaces: Link::new(namespaces), pid });
    Ok(pid)
}

fn child(streams: [UnixStream; 2], parent: u32) -> Result<()> {
    // Gone with nettop, even if it is killed.
    // SAFETY: prctl with plain integer arguments.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    if std::os::unix::process::parent_id() != parent {
        return Ok(());
    }
    // SAFETY: prctl with a static name.
    unsafe { libc::prctl(libc::PR_SET_NAME, c"nettop-helper".as_ptr()) };
    // Not into the TUI's screen: on a terminal its errors go nowhere.
    // SAFETY: isatty, open, dup2 and close on this process's descriptors.
    unsafe {
        if libc::isatty(2) == 1 {
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY);
            if null >= 0 {
                libc::dup2(null, 2);
                libc::close(null);
            }
        }
    }
    crate::sandbox::confine_helper()?;
    let [scans, namespaces] = streams;
    let other = std::thread::Builder::new()
        .name("nettop-helper".into())
        .spawn(move || serve(&namespaces))
        .context("spawn the helper's second thread")?;
    let first = serve(&scans);
    let second = other.join().unwrap_or_else(|_| Err(anyhow!("the helper's thread panicked")));
    first.and(second)
}

/// Answer requests until the other end closes. A request it cannot make
/// sense of gets an error reply; only a broken connection ends it.
fn serve(mut stream: &UnixStream) -> Result<()> {
    while let Some((ask, body)) = read_frame(&mut stream)? {
        match answer(ask, &body) {
            Ok((body, fd)) => send_frame(stream, 0, &body, fd.as_ref().map(|f| f.as_fd()))?,
            Err(e) => send_frame(stream, 1, format!("{e:#}").as_bytes(), None)?,
        }
    }
    Ok(())
}

/// One request's answer: a body, and for a namespace, its socket.
fn answer(ask: u8, body: &[u8]) -> Result<(Vec<u8>, Option<OwnedFd>)> {
    match ask {
        ASK_NETNS_SOCKET => {
            let (netns, pids) = decode_netns_ask(body)?;
            let fd = sock_diag::DiagSocket::entered(netns, &pids)?.into_fd()?;
            Ok((Vec::new(), Some(fd)))
        }
        ASK_NAMESPACES => {
            let mut out = Vec::new();
            for (ns, pid) in sock_diag::every_process_namespace() {
                out.extend_from_slice(&ns.to_le_bytes());
                out.extend_from_slice(&pid.to_le_bytes());
            }
            Ok((out, None))
        }
        ASK_SOCKET_OWNERS => {
            // A first byte of 1: the processes follow; 0: every one.
            let pids = match body.split_first() {
                Some((1, rest)) => Some(decode_pids(rest)?),
                _ => None,
            };
            let found = crate::tracer::backfill::scan_socket_inodes(pids.as_deref());
            let mut out = Vec::with_capacity(found.len() * 12);
            for (inode, pid) in found.into_iter().take(MAX_FRAME / 12) {
                out.extend_from_slice(&inode.to_le_bytes());
                out.extend_from_slice(&pid.to_le_bytes());
            }
            Ok((out, None))
        }
        other => bail!("unknown request {other}"),
    }
}

impl Helper {
    /// A sock_diag socket in namespace `netns`, entered through the first
    /// of `pids` (or one of its threads) that is in it.
    pub fn netns_socket(&self, netns: u32, pids: &[u32]) -> Result<OwnedFd> {
        let mut body = netns.to_le_bytes().to_vec();
        body.extend(encode_pids(pids));
        let (body, fd) = self.namespaces.ask(ASK_NETNS_SOCKET, &body)?;
        fd.ok_or_else(|| anyhow!("the helper sent no socket ({} bytes)", body.len()))
    }

    /// Every network namespace a process or thread is in, with a process
    /// to enter it by.
    pub fn namespaces(&self) -> Result<Vec<(u32, u32)>> {
        let (body, _) = self.namespaces.ask(ASK_NAMESPACES, &[])?;
        Ok(body.chunks_exact(8).map(|c| (le_u32(&c[..4]), le_u32(&c[4..]))).collect())
    }

    /// (socket inode, pid) for each socket descriptor of `pids`, or of
    /// every process.
    pub fn socket_inodes(&self, pids: Option<&[u32]>) -> Result<Vec<(u64, u32)>> {
        let body = match pids {
            Some(pids) => [vec![1], encode_pids(pids)].concat(),
            None => vec![0],
        };
        let (body, _) = self.scans.ask(ASK_SOCKET_OWNERS, &body)?;
        Ok(body
            .chunks_exact(12)
            .map(|c| (u64::from_le_bytes(c[..8].try_into().unwrap_or_default()), le_u32(&c[8..])))
            .collect())
    }
}

fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes(b.try_into().unwrap_or_default())
}

fn encode_pids(pids: &[u32]) -> Vec<u8> {
    pids.iter().take(MAX_PIDS).flat_map(|p| p.to_le_bytes()).collect()
}

fn decode_pids(body: &[u8]) -> Result<Vec<u32>> {
    if !body.len().is_multiple_of(4) || body.len() / 4 > MAX_PIDS {
        bail!("a list of processes of {} bytes", body.len());
    }
    Ok(body.chunks_exact(4).map(le_u32).collect())
}

fn decode_netns_ask(body: &[u8]) -> Result<(u32, Vec<u32>)> {
    if body.len() < 4 {
        bail!("a namespace request of {} bytes", body.len());
    }
    Ok((le_u32(&body[..4]), decode_pids(&body[4..])?))
}

/// A frame: kind (a request, or a reply's status), length, body; a
/// descriptor, if any, rides with its first bytes.
fn send_frame(
    stream: &UnixStream,
    kind: u8,
    body: &[u8],
    fd: Option<std::os::fd::BorrowedFd>,
) -> Result<()> {
    if body.len() > MAX_FRAME {
        bail!("a frame of {} bytes", body.len());
    }
    let mut head = [0u8; 5];
    head[0] = kind;
    head[1..].copy_from_slice(&(body.len() as u32).to_le_bytes());
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    let fds;
    if let Some(fd) = fd {
        fds = [fd];
        control.push(SendAncillaryMessage::ScmRights(&fds));
    }
    let sent = sendmsg(stream, &[IoSlice::new(&head)], &mut control, SendFlags::NOSIGNAL)?;
    if sent != head.len() {
        bail!("a short write to the helper's socket");
    }
    let mut w = stream;
    w.write_all(body)?;
    Ok(())
}

/// A request, or None at the end of the stream.
fn read_frame(stream: &mut &UnixStream) -> Result<Option<(u8, Vec<u8>)>> {
    let mut head = [0u8; 5];
    match stream.read_exact(&mut head) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = le_u32(&head[1..]) as usize;
    if len > MAX_FRAME {
        bail!("a request of {len} bytes");
    }
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body)?;
    Ok(Some((head[0], body)))
}

fn read_reply(stream: &UnixStream) -> Result<(u8, Vec<u8>, Option<OwnedFd>)> {
    let mut head = [0u8; 5];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = loop {
        let flags = RecvFlags::CMSG_CLOEXEC;
        match recvmsg(stream, &mut [IoSliceMut::new(&mut head)], &mut control, flags) {
            Err(rustix::io::Errno::INTR) => continue,
            other => break other?,
        }
    };
    let mut fd = None;
    for msg in control.drain() {
        if let RecvAncillaryMessage::ScmRights(fds) = msg {
            for f in fds {
                fd.get_or_insert(f);
            }
        }
    }
    if got.bytes == 0 {
        bail!("the helper has gone");
    }
    let mut r = stream;
    r.read_exact(&mut head[got.bytes..])?;
    let len = le_u32(&head[1..]) as usize;
    if len > MAX_FRAME {
        bail!("a reply of {len} bytes");
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    Ok((head[0], body, fd))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame and its descriptor survive the trip whole.
    #[test]
    fn frames_carry_their_bodies_and_a_descriptor() {
        let (a, b) = UnixStream::pair().unwrap();
        let (keep, _other) = UnixStream::pair().unwrap();
        send_frame(&a, 0, b"hello", Some(keep.as_fd())).unwrap();
        let (status, body, fd) = read_reply(&b).unwrap();
        assert_eq!((status, &body[..]), (0, &b"hello"[..]));
        assert!(fd.is_some());
        send_frame(&a, ASK_SOCKET_OWNERS, &encode_pids(&[1, 2, 3]), None).unwrap();
        let (ask, body) = read_frame(&mut &b).unwrap().unwrap();
        assert_eq!((ask, decode_pids(&body).unwrap()), (ASK_SOCKET_OWNERS, vec![1, 2, 3]));
        // Malformed requests are errors, not panics.
        assert!(decode_pids(&[1, 2, 3]).is_err());
        assert!(decode_netns_ask(&[1]).is_err());
        drop(a);
        assert!(read_frame(&mut &b).unwrap().is_none());
    }

    /// A request the helper cannot make sense of gets an error reply, and
    /// the helper serves the next one.
    #[test]
    fn a_bad_request_is_answered_and_serving_goes_on() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let server = std::thread::spawn(move || serve(&theirs));
        let link = Link::new(ours);
        let bad = link.ask(99, b"junk").unwrap_err();
        assert!(format!("{bad:#}").contains("unknown request 99"), "{bad:#}");
        let short = link.ask(ASK_NETNS_SOCKET, &[1]).unwrap_err();
        assert!(format!("{short:#}").contains("namespace request of 1 bytes"), "{short:#}");
        let (body, fd) = link.ask(ASK_SOCKET_OWNERS, &[1, 0, 0, 0, 0]).unwrap();
        assert!(body.is_empty() && fd.is_none(), "pid 0 holds no sockets");
        drop(link);
        server.join().unwrap().unwrap();
    }
}
