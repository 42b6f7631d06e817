//! Every way an application moves TCP bytes, counted exactly at both ends.
//! Each case sends an odd-sized payload of more than 1 MiB one way by one
//! path (writev, sendfile, splice, vmsplice, MSG_ZEROCOPY...), reads it by
//! another, and answers a few bytes; while open and at rest, both ends are
//! listed with exactly what the applications moved, and after a graceful
//! close both ends' `close` events carry it. nettop counts
//! with the kernel's own per-socket counters, so no path can slip by; a
//! per-call hook would miss splice and sendfile. NETTOP_BACKEND picks the
//! backend, so the VM matrix runs these once per backend.
use std::fs::File;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nettop::tracer::Event;

#[path = "support/common.rs"]
mod common;
use common::serial;
#[path = "support/exactness.rs"]
mod exactness;
#[allow(dead_code)] // not every helper is used here
#[path = "support/watch.rs"]
mod watch;
use watch::{Watch, closes};

/// Odd, and more than 1 MiB: no path's chunking divides it.
const PAYLOAD: usize = 1_052_897;
/// The answer, plain, the other way.
const REPLY: usize = 333;

#[derive(Clone, Copy, Debug)]
enum Send {
    Write,
    Writev,
    Sendfile,
    /// write(2) into a pipe, splice(2) from it into the socket.
    SplicePipe,
    /// vmsplice(2) user memory into a pipe, splice(2) into the socket.
    Vmsplice,
    /// send(2) with MSG_ZEROCOPY on a SO_ZEROCOPY socket.
    Zerocopy,
    /// io_uring's IORING_OP_SEND.
    IoUring,
    /// write(2) on a kTLS socket (TLS_TX, AES-GCM-128), in 16 KiB writes:
    /// the kernel encrypts, and one TLS record goes out per write.
    Ktls,
}

#[derive(Clone, Copy, Debug)]
enum Recv {
    Read,
    Readv,
    /// splice(2) from the socket into a pipe, read from the pipe.
    SplicePipe,
    /// io_uring's IORING_OP_RECV.
    IoUring,
    /// read(2) on a kTLS socket (TLS_RX): the kernel decrypts.
    Ktls,
    /// getsockopt(TCP_ZEROCOPY_RECEIVE) into a mapping of the socket, and
    /// read(2) for what the kernel cannot map.
    ZerocopyReceive,
}

/// TLS 1.2, AES-GCM-128 (include/uapi/linux/tls.h).
const SOL_TLS: libc::c_int = 282;
const TLS_TX: libc::c_int = 1;
const TLS_RX: libc::c_int = 2;
const TLS_PLAINTEXT_MAX: usize = 16 * 1024;
/// What each record adds on the wire: header 5, explicit nonce 8, tag 16.
const TLS_RECORD_OVERHEAD: usize = 5 + 8 + 16;

/// `struct tls12_crypto_info_aes_gcm_128`: fixed keys, no handshake.
#[repr(C)]
struct TlsCryptoInfo {
    version: u16,
    cipher_type: u16,
    iv: [u8; 8],
    key: [u8; 16],
    salt: [u8; 4],
    rec_seq: [u8; 8],
}

/// Make `fd` a kTLS socket in one direction (`TLS_TX` or `TLS_RX`).
fn ktls(fd: RawFd, direction: libc::c_int) -> std::io::Result<()> {
    let set = |level, name, value: *const libc::c_void, len: usize| {
        // SAFETY: `value` points at `len` bytes that outlive the call.
        let rc = unsafe { libc::setsockopt(fd, level, name, value, len as libc::socklen_t) };
        if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
    };
    set(libc::SOL_TCP, libc::TCP_ULP, c"tls".as_ptr().cast(), 3)?;
    let info = TlsCryptoInfo {
        version: 0x0303,
        cipher_type: 51,
        iv: [1; 8],
        key: [2; 16],
        salt: [3; 4],
        rec_seq: [0; 8],
    };
    set(SOL_TLS, direction, (&raw const info).cast(), size_of::<TlsCryptoInfo>())
}

/// Whether this kernel does kTLS (the `tls` module, loaded: nettop's VMs
/// have no modprobe), and if not, why.
fn ktls_available() -> Result<(), String> {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (s, _) = l.accept().unwrap();
    ktls(c.as_raw_fd(), TLS_TX).map_err(|e| format!("TLS_TX: {e}"))?;
    ktls(s.as_raw_fd(), TLS_RX).map_err(|e| format!("TLS_RX: {e}"))
}

/// `struct tcp_zerocopy_receive` as of 5.11 (the kernel takes the length
/// we pass as the fields we know).
#[repr(C)]
#[derive(Default)]
struct ZerocopyReceive {
    address: u64,
    length: u32,
    recv_skip_hint: u32,
    inq: u32,
    err: i32,
    copybuf_address: u64,
    copybuf_len: i32,
    flags: u32,
}
const TCP_ZEROCOPY_RECEIVE: libc::c_int = 35;

/// Bytes moved by TCP_ZEROCOPY_RECEIVE mappings, in this process (the
/// rest of that case's bytes came by read(2)): printed, for the record.
static ZEROCOPY_MAPPED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Up to `buf.len()` bytes by TCP_ZEROCOPY_RECEIVE (blocking until some
/// come, 0 at the peer's FIN), copied into `buf` as the application would
/// use them.
fn zerocopy_receive(fd: RawFd, buf: &mut [u8]) -> usize {
    const MAP: usize = 1 << 20;
    let page = 4096;
    // SAFETY: a fresh shared read-only mapping of the socket; unmapped below.
    let map =
        unsafe { libc::mmap(std::ptr::null_mut(), MAP, libc::PROT_READ, libc::MAP_SHARED, fd, 0) };
    assert_ne!(map, libc::MAP_FAILED, "mmap a TCP socket: {}", std::io::Error::last_os_error());
    let mut got = 0;
    loop {
        let whole_pages = (buf.len() - got).min(MAP) / page * page;
        let mut zc = ZerocopyReceive {
            address: map as u64,
            length: whole_pages as u32,
            ..Default::default()
        };
        let mut len = size_of::<ZerocopyReceive>() as libc::socklen_t;
        if whole_pages > 0 {
            // SAFETY: the kernel reads and writes `len` bytes of `zc`.
            let rc = unsafe {
                libc::getsockopt(
                    fd,
                    libc::SOL_TCP,
                    TCP_ZEROCOPY_RECEIVE,
                    (&raw mut zc).cast(),
                    &mut len,
                )
            };
            if rc < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EIO) {
                // Nothing left and the peer's FIN in: the end.
                break;
            }
            check(rc as isize, "getsockopt TCP_ZEROCOPY_RECEIVE");
            let mapped = zc.length as usize;
            // SAFETY: the kernel mapped `mapped` bytes at `map`.
            let bytes = unsafe { std::slice::from_raw_parts(map.cast::<u8>(), mapped) };
            buf[got..got + mapped].copy_from_slice(bytes);
            got += mapped;
            ZEROCOPY_MAPPED.fetch_add(mapped, std::sync::atomic::Ordering::Relaxed);
        }
        // What cannot be mapped (not whole pages), or nothing yet: read(2),
        // which also blocks until data or the FIN comes.
        let room = buf.len() - got;
        let skip =
            if zc.recv_skip_hint > 0 { (zc.recv_skip_hint as usize).min(room) } else { room };
        if got > 0 && zc.recv_skip_hint == 0 || room == 0 {
            break;
        }
        // SAFETY: reads into `buf`'s free part.
        let n = check(unsafe { libc::read(fd, buf[got..].as_mut_ptr().cast(), skip) }, "read");
        got += n;
        if n == 0 || got > 0 {
            break;
        }
    }
    // SAFETY: the mapping made above.
    unsafe { libc::munmap(map, MAP) };
    got
}

/// One io_uring operation on a socket, waited for; its result.
fn uring_op(entry: io_uring::squeue::Entry) -> isize {
    let mut ring = io_uring::IoUring::new(4).expect("io_uring_setup");
    // SAFETY: the entry's buffer outlives this call, which waits for it.
    unsafe { ring.submission().push(&entry).expect("a free submission slot") };
    ring.submit_and_wait(1).expect("io_uring_enter");
    let cqe = ring.completion().next().expect("a completion");
    let res = cqe.result() as isize;
    if res < 0 {
        // The check() below reports errno.
        // SAFETY: sets this thread's errno to what the operation returned.
        unsafe { *libc::__errno_location() = -res as i32 };
        return -1;
    }
    res
}

/// Whether this kernel lets us use io_uring (5.1+; a sysctl can turn it off).
fn io_uring_available() -> bool {
    io_uring::IoUring::new(2).is_ok()
}

fn check(rc: isize, what: &str) -> usize {
    assert!(rc >= 0, "{what}: {}", std::io::Error::last_os_error());
    rc as usize
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two fds we then own.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } as isize, "pipe2");
    // SAFETY: both fds are fresh and ours.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// Move all of `pipe_r`'s `n` bytes into `sock` with splice(2).
fn splice_all(pipe_r: RawFd, sock: RawFd, mut n: usize) {
    while n > 0 {
        // SAFETY: plain fds; null offsets (neither end is seekable).
        let rc =
            unsafe { libc::splice(pipe_r, std::ptr::null_mut(), sock, std::ptr::null_mut(), n, 0) };
        n -= check(rc, "splice pipe -> socket");
    }
}

fn send_payload(how: Send, sock: &mut TcpStream, data: &[u8]) {
    let fd = sock.as_raw_fd();
    match how {
        Send::Write => sock.write_all(data).unwrap(),
        Send::Ktls => {
            for record in data.chunks(TLS_PLAINTEXT_MAX) {
                sock.write_all(record).unwrap();
            }
        }
        Send::Writev => {
            let mut off = 0;
            while off < data.len() {
                let rest = &data[off..];
                let (a, b) = rest.split_at(rest.len() / 3);
                let iov = [
                    libc::iovec { iov_base: a.as_ptr() as *mut _, iov_len: a.len() },
                    libc::iovec { iov_base: b.as_ptr() as *mut _, iov_len: b.len() },
                ];
                // SAFETY: both iovecs point into `data`, alive for the call.
                off += check(unsafe { libc::writev(fd, iov.as_ptr(), 2) }, "writev");
            }
        }
        Send::Sendfile => {
            let path = std::env::temp_dir().join(format!("nettop-sendfile-{}", std::process::id()));
            std::fs::write(&path, data).unwrap();
            let file = File::open(&path).unwrap();
            std::fs::remove_file(&path).unwrap();
            let mut off: libc::off_t = 0;
            while (off as usize) < data.len() {
                let left = data.len() - off as usize;
                // SAFETY: valid fds; the kernel advances `off`.
                check(unsafe { libc::sendfile(fd, file.as_raw_fd(), &mut off, left) }, "sendfile");
            }
        }
        Send::SplicePipe | Send::Vmsplice => {
            let (r, w) = pipe();
            for chunk in data.chunks(16 * 1024) {
                if matches!(how, Send::Vmsplice) {
                    let mut put = 0;
                    while put < chunk.len() {
                        let iov = libc::iovec {
                            iov_base: chunk[put..].as_ptr() as *mut _,
                            iov_len: chunk.len() - put,
                        };
                        // SAFETY: the iovec points into `data`, which outlives the
                        // splice below that drains the pipe.
                        put +=
                            check(unsafe { libc::vmsplice(w.as_raw_fd(), &iov, 1, 0) }, "vmsplice");
                    }
                } else {
                    let mut pw = File::from(w.try_clone().unwrap());
                    pw.write_all(chunk).unwrap();
                }
                splice_all(r.as_raw_fd(), fd, chunk.len());
            }
        }
        Send::IoUring => {
            let mut off = 0;
            while off < data.len() {
                let rest = &data[off..];
                let len = rest.len().min(1 << 20) as u32;
                let op = io_uring::opcode::Send::new(io_uring::types::Fd(fd), rest.as_ptr(), len);
                off += check(uring_op(op.build()), "io_uring send");
            }
        }
        Send::Zerocopy => {
            let one: libc::c_int = 1;
            // SAFETY: setsockopt with an int option.
            let rc = unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_ZEROCOPY,
                    (&raw const one).cast(),
                    size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            check(rc as isize, "SO_ZEROCOPY");
            let mut off = 0;
            while off < data.len() {
                let rest = &data[off..];
                // SAFETY: the buffer outlives the call; with MSG_ZEROCOPY the
                // kernel pins its pages until it has sent them, and `data`
                // lives until the peer has read all of it.
                let rc =
                    unsafe { libc::send(fd, rest.as_ptr().cast(), rest.len(), libc::MSG_ZEROCOPY) };
                if rc < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOBUFS) {
                    // Too many notifications pending: read them, then go on.
                    drain_error_queue(fd);
                    continue;
                }
                off += check(rc, "send MSG_ZEROCOPY");
            }
        }
    }
}

/// Zero-copy completions queue on the socket's error queue.
fn drain_error_queue(fd: RawFd) {
    let mut control = [0u8; 256];
    loop {
        // SAFETY: msghdr with only a control buffer, which outlives the call.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = control.len();
        let rc = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT) };
        if rc < 0 {
            return;
        }
    }
}

/// Read `want` bytes, or until the peer's FIN when `want` is None;
/// returns how many bytes came.
fn recv_some(how: Recv, sock: &mut TcpStream, want: Option<usize>) -> usize {
    let fd = sock.as_raw_fd();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0;
    let pipe = matches!(how, Recv::SplicePipe).then(pipe);
    loop {
        let room = want.map_or(buf.len(), |w| (w - total).min(buf.len()));
        if room == 0 {
            return total;
        }
        let n = match (how, &pipe) {
            (Recv::Read | Recv::Ktls, _) => sock.read(&mut buf[..room]).unwrap(),
            (Recv::ZerocopyReceive, _) => zerocopy_receive(fd, &mut buf[..room]),
            (Recv::Readv, _) => {
                let (a, b) = buf[..room].split_at_mut(room.min(1000));
                let iov = [
                    libc::iovec { iov_base: a.as_mut_ptr().cast(), iov_len: a.len() },
                    libc::iovec { iov_base: b.as_mut_ptr().cast(), iov_len: b.len() },
                ];
                // SAFETY: both iovecs point into `buf`.
                check(unsafe { libc::readv(fd, iov.as_ptr(), 2) }, "readv")
            }
            (Recv::SplicePipe, Some((r, w))) => {
                // SAFETY: plain fds, null offsets.
                let rc = unsafe {
                    libc::splice(
                        fd,
                        std::ptr::null_mut(),
                        w.as_raw_fd(),
                        std::ptr::null_mut(),
                        room,
                        0,
                    )
                };
                let n = check(rc, "splice socket -> pipe");
                let mut from_pipe = File::from(r.try_clone().unwrap());
                from_pipe.read_exact(&mut buf[..n]).unwrap();
                n
            }
            (Recv::SplicePipe, None) => unreachable!(),
            (Recv::IoUring, _) => {
                let op = io_uring::opcode::Recv::new(
                    io_uring::types::Fd(fd),
                    buf.as_mut_ptr(),
                    room as u32,
                );
                check(uring_op(op.build()), "io_uring recv")
            }
        };
        if n == 0 {
            return total;
        }
        total += n;
    }
}

/// The payload, in whole pages of its own: MSG_ZEROCOPY then hands the
/// kernel whole pages, which TCP_ZEROCOPY_RECEIVE can map at the other end.
struct PageAligned(*mut u8, std::alloc::Layout);

impl PageAligned {
    fn new(len: usize) -> PageAligned {
        let layout = std::alloc::Layout::from_size_align(len, 4096).unwrap();
        // SAFETY: a non-zero size; filled below before any read.
        let p = unsafe { std::alloc::alloc(layout) };
        assert!(!p.is_null());
        for i in 0..len {
            // SAFETY: within the allocation.
            unsafe { *p.add(i) = (i % 251) as u8 };
        }
        PageAligned(p, layout)
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: `new` allocated and filled this many bytes.
        unsafe { std::slice::from_raw_parts(self.0, self.1.size()) }
    }
}

impl Drop for PageAligned {
    fn drop(&mut self) {
        // SAFETY: allocated by `new` with this layout.
        unsafe { std::alloc::dealloc(self.0, self.1) }
    }
}

/// One case, in two steps. First the client sends PAYLOAD by `send`, the
/// server takes it by `recv` and answers REPLY plainly; both stay open.
/// Then (`Case::close`) the client shuts down, the server reads the FIN,
/// and both close.
struct Case {
    send: Send,
    recv: Recv,
    client: TcpStream,
    server: std::thread::JoinHandle<usize>,
    close_server: std::sync::mpsc::Sender<()>,
    ports: (u16, u16),
    /// What the payload is on the wire: the kernel's counters count TCP
    /// payload, so kTLS's record framing is in it.
    wire: u64,
}

impl Case {
    fn open(send: Send, recv: Recv) -> Case {
        let listener = TcpListener::bind("127.0.0.7:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (close_server, closing) = std::sync::mpsc::channel::<()>();
        let (ready, server_ready) = std::sync::mpsc::channel::<()>();
        let server = std::thread::spawn(move || {
            let (mut c, _) = listener.accept().unwrap();
            if matches!(recv, Recv::Ktls) {
                ktls(c.as_raw_fd(), TLS_RX).unwrap();
            }
            ready.send(()).unwrap();
            let got = recv_some(recv, &mut c, Some(PAYLOAD));
            c.write_all(&[3u8; REPLY]).unwrap();
            closing.recv().unwrap();
            // Nothing more comes: the client's FIN.
            assert_eq!(recv_some(recv, &mut c, None), 0, "{send:?}/{recv:?}: after the payload");
            got
        });
        let mut client = TcpStream::connect(addr).unwrap();
        let cport = client.local_addr().unwrap().port();
        let mut wire = PAYLOAD as u64;
        if matches!(send, Send::Ktls) {
            ktls(client.as_raw_fd(), TLS_TX).unwrap();
            wire += (PAYLOAD.div_ceil(TLS_PLAINTEXT_MAX) * TLS_RECORD_OVERHEAD) as u64;
        }
        server_ready.recv().unwrap();
        // Page-aligned, as zero-copy senders and receivers want it.
        let data = PageAligned::new(PAYLOAD);
        send_payload(send, &mut client, data.bytes());
        let mut answer = vec![0u8; REPLY];
        client.read_exact(&mut answer).unwrap();
        Case { send, recv, client, server, close_server, ports: (cport, addr.port()), wire }
    }

    fn close(self) {
        let Case { send, recv, mut client, server, close_server, .. } = self;
        client.shutdown(Shutdown::Write).unwrap();
        close_server.send(()).unwrap();
        assert_eq!(server.join().unwrap(), PAYLOAD, "{send:?}/{recv:?}: what the server read");
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
        drain_error_queue(client.as_raw_fd());
    }
}

/// (bytes_sent, bytes_recv) of the close event of (lport, rport), if any.
fn closed(evs: &[Event], lport: u16, rport: u16) -> Option<(Option<u64>, Option<u64>)> {
    closes(evs, lport, rport).first().map(|e| (e.bytes_sent, e.bytes_recv))
}

#[test]
fn every_data_path_is_counted_exactly_at_both_ends() {
    let _g = serial();
    let w = Watch::start();
    let mut cases = vec![
        (Send::Write, Recv::Read),
        (Send::Writev, Recv::Readv),
        (Send::Sendfile, Recv::Read),
        (Send::Write, Recv::SplicePipe),
        (Send::SplicePipe, Recv::Read),
        (Send::Vmsplice, Recv::Read),
        (Send::Zerocopy, Recv::Read),
        (Send::Zerocopy, Recv::ZerocopyReceive),
    ];
    // Where the kernel has them.
    if io_uring_available() {
        cases.push((Send::IoUring, Recv::IoUring));
    } else {
        eprintln!("io_uring is not available here: its case is left out");
    }
    match ktls_available() {
        Ok(()) => cases.push((Send::Ktls, Recv::Ktls)),
        Err(why) => eprintln!("kTLS is not available here ({why}): its case is left out"),
    }
    eprintln!("cases (send -> receive): {cases:?}");
    let open: Vec<Case> = cases.iter().map(|&(s, r)| Case::open(s, r)).collect();
    let down = REPLY as u64;
    // Open, at rest (every byte acknowledged; the client's count has its
    // SYN): what the tracer lists now is exact.
    let at_rest: Vec<_> = (open.iter())
        .flat_map(|c| [(c.ports, c.wire + 1), ((c.ports.1, c.ports.0), down)])
        .collect();
    exactness::wait_acked(&at_rest);
    // Each server end is listed once its owner is known: at once where the
    // backend has an accept hook, at the next refresh on the tracepoint one.
    let servers: Vec<_> = open.iter().map(|c| (c.ports.1, c.ports.0)).collect();
    w.wait_accepted(&servers);
    let listed = w.tracer.connections();
    let mut wrong = Vec::new();
    for c in &open {
        let (cp, sp) = c.ports;
        let row = |l: u16, r: u16| {
            listed
                .iter()
                .find(|x| (x.tuple.lport, x.tuple.rport) == (l, r))
                .map(|x| (x.bytes_sent, x.bytes_recv))
        };
        let got = (row(cp, sp), row(sp, cp));
        let up = c.wire;
        if got != (Some((up, down)), Some((down, up))) {
            wrong.push(format!(
                "{:?} -> {:?}, listed open: client, server {got:?}, not ({up}, {down})",
                c.send, c.recv
            ));
        }
    }
    let ports: Vec<_> = open.iter().map(|c| ((c.send, c.recv), c.ports, c.wire)).collect();
    open.into_iter().for_each(Case::close);
    w.wait_for("every close", |evs| {
        ports.iter().all(|(_, (c, s), _)| {
            !closes(evs, *c, *s).is_empty() && !closes(evs, *s, *c).is_empty()
        })
    });
    let (_, events, _) = w.finish();
    for ((send, recv), (c, s), up) in &ports {
        let got = (closed(&events, *c, *s), closed(&events, *s, *c));
        let (up, down) = (Some(*up), Some(down));
        if got != (Some((up, down)), Some((down, up))) {
            wrong.push(format!(
                "{send:?} -> {recv:?}, closes: client, server {got:?}, not ({up:?}, {down:?})"
            ));
        }
    }
    eprintln!(
        "TCP_ZEROCOPY_RECEIVE mapped {} of its case's {PAYLOAD} bytes (read(2) took the rest)",
        ZEROCOPY_MAPPED.load(std::sync::atomic::Ordering::Relaxed)
    );
    assert!(
        wrong.is_empty(),
        "the client's sent and received, the server's the other way:\n{}",
        wrong.join("\n")
    );
}
