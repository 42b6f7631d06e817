//! Helpers every test file shares; each file uses some of them.
#![allow(dead_code)]
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Mutex, MutexGuard};

/// One nettop (or tracer) at a time: tests look at what is attached
/// system-wide, and tracers would each see the others' connections.
pub fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The binary under test: NETTOP_BIN inside the qemu VMs, where the build
/// tree's path does not exist.
pub fn bin() -> String {
    std::env::var("NETTOP_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_nettop").to_owned())
}

/// The backend the tests ask for (NETTOP_BACKEND, set by the VM matrix).
pub fn backend() -> String {
    std::env::var("NETTOP_BACKEND").unwrap_or_else(|_| "auto".into())
}

/// NETTOP_DEBUG_EVENTS, read once: the tracer then logs every raw event.
pub fn debug_events() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("NETTOP_DEBUG_EVENTS").is_some())
}

pub fn ipv6_enabled() -> bool {
    std::fs::read_to_string("/proc/sys/net/ipv6/conf/all/disable_ipv6")
        .is_ok_and(|v| v.trim() == "0")
}

/// A client sends `up` bytes, the server answers `down` bytes, both close.
/// Returns (client port, server port).
pub fn exchange(listen: &str, up: usize, down: usize) -> (u16, u16) {
    let listener = TcpListener::bind(listen).expect("bind");
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut c, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; up];
        c.read_exact(&mut buf).unwrap();
        c.write_all(&vec![7u8; down]).unwrap();
    });
    let mut client = TcpStream::connect(addr).unwrap();
    let cport = client.local_addr().unwrap().port();
    client.write_all(&vec![1u8; up]).unwrap();
    let mut got = Vec::new();
    client.read_to_end(&mut got).unwrap();
    assert_eq!(got.len(), down);
    server.join().unwrap();
    (cport, addr.port())
}

/// A 64 KiB receive buffer on a listener, inherited by what it accepts: its
/// window closes after a few hundred KiB unread.
pub fn small_receive_buffer(listener: &TcpListener) {
    use std::os::fd::AsRawFd;
    let rcvbuf: libc::c_int = 64 << 10;
    // SAFETY: a c_int option on a socket we own.
    let rc = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&rcvbuf as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_RCVBUF");
}
