/* SPDX-License-Identifier: GPL-2.0 OR MIT
 *
 * The types nettop's probe shares with userspace: the C twin of the Rust
 * `nettop-shared` crate (shared/src/lib.rs). Keep in step: a Rust test
 * compares both layouts through the probe object's BTF. Include after
 * nettop_abi.h, as libbpf-tools include theirs after vmlinux.h.
 */
#ifndef NETTOP_H
#define NETTOP_H

/* How much of `struct sock` (and of `struct net`) one guessing connection
 * copies out. Userspace searches these windows; they bound every guess. */
#define NETTOP_SK_WINDOW 4096
#define NETTOP_NET_WINDOW 1024

enum nettop_guess_state {
    NETTOP_GUESS_IDLE = 0,
    NETTOP_GUESS_ARMED = 1,   /* set by userspace: copy the next matching socket */
    NETTOP_GUESS_CHECKED = 2, /* set by the probe: windows filled */
};

struct nettop_guess_status {
    __u32 state;
    /* When deref_net is set, the probe also copies NETTOP_NET_WINDOW bytes
     * from the pointer stored at sk + net_ptr_offset. */
    __u32 deref_net;
    __u32 net_ptr_offset;
    /* 1 kprobe/fexit on connect, 2 tracepoint SYN_SENT, 3 the change to
     * FIN_WAIT1, 4 a UDP send: tells which hook fired. */
    __u32 hook;
    /* When to copy: 0 at connect, 1 at shutdown (FIN_WAIT1), after a
     * transfer of known size, for the byte counters; 2 at a UDP send, for
     * the protocol. */
    __u32 at;
    __u32 _pad;
    __u64 sk;
    /* The guessing thread's unique name: matched instead of a pid, which
     * differs inside a container's own pid namespace. */
    char comm[16];
    __u8 sk_data[NETTOP_SK_WINDOW];
    __u8 net_data[NETTOP_NET_WINDOW];
};

struct nettop_offsets {
    __u32 ready; /* 0 until guessing is over: every data hook ignores everything before */
    __u32 ipv6;  /* saddr_v6/daddr_v6 are valid */
    __u32 saddr;
    __u32 daddr;
    __u32 sport; /* network byte order (inet_sport) */
    __u32 dport; /* network byte order (skc_dport) */
    __u32 family;
    __u32 netns;     /* offset of the `struct net *` in struct sock */
    __u32 netns_ino; /* offset of the inode number in struct net */
    __u32 saddr_v6;
    __u32 daddr_v6;
    /* struct tcp_sock's own byte counters (u64), read at the change to CLOSE. */
    __u32 bytes_received;
    __u32 bytes_acked;
    __u32 sk_flags; /* struct sock's sk_flags: SOCK_DONE (bit 1) says a FIN came */
    __u32 sk_protocol; /* struct sock's sk_protocol (u16): UDP from TCP on raw_tp */
};

/* The connection table's key: one entry per (namespace, process, tuple).
 * Addresses are IPv4 in the first 4 bytes for AF_INET (v4-mapped IPv6 is
 * folded to AF_INET); a remote of all zeros and port 0 is "*", an
 * unconnected UDP socket whose peers the backend cannot see. */
struct nettop_conn_key {
    __u32 netns;
    __u32 tgid;
    __u8 proto;
    __u8 family;
    __u16 lport; /* host byte order */
    __u16 rport; /* host byte order */
    __u16 _pad;
    __u8 laddr[16];
    __u8 raddr[16];
};

#define NETTOP_DIR_UNKNOWN 0
#define NETTOP_DIR_OUTGOING 1
#define NETTOP_DIR_INCOMING 2

struct nettop_conn_stats {
    __u64 bytes_sent;
    __u64 bytes_recv;
    __u64 msgs_sent; /* successful send calls (datagrams for UDP) */
    __u64 msgs_recv;
    __u64 first_ns;
    __u64 last_ns; /* = first_ns: the probe does not date each packet */
    __u64 sk;
    __u32 retransmits;
    __u8 direction;
    __u8 _pad[3];
};

/* What the probe knows of one socket, keyed by its kernel address. */
struct nettop_sock_key {
    __u64 sk;
};

struct nettop_sock_state {
    struct nettop_conn_key key; /* valid when has_key */
    /* No byte counters: a TCP connection's are the kernel's own (tcp_sock's,
     * read at the end and through sock_diag); a UDP flow's are in `conns`.
     * Nothing here repeats what the map key or the other fields say: at
     * 100 000 connections each byte is 100 kB. */
    __u64 opened_ns; /* when has_key was set: the connection's first_ns */
    __u32 tgid;
    __u32 retransmits;
    __u8 has_key;
    __u8 direction;
    __u8 proto;
    __u8 established;
    __u8 owner_known;
    __u8 _pad[3];
    char comm[16];
};

enum nettop_event_type {
    NETTOP_EV_CONNECT = 1,
    NETTOP_EV_ACCEPT = 2,
    NETTOP_EV_CLOSE = 3,
    NETTOP_EV_CONNECT_FAILED = 4,
    NETTOP_EV_RETRANSMIT = 5,
    /* A UDP socket was destroyed: userspace ends every flow of `sk`. */
    NETTOP_EV_SOCK_CLOSE = 6,
    /* Tracepoint backend: an incoming connection is established, in softirq,
     * with no owner known yet (tgid 0). */
    NETTOP_EV_INCOMING = 7,
    /* 8 was accept()'s return (the accept syscall tracepoints, now gone). */
};

/* What made the probe report a connection's end: only the change to
 * TCP_CLOSE now (1 was the owner's close(), before the kernel's counters). */
#define NETTOP_CAUSE_STATE_CLOSE 2

struct nettop_event {
    struct nettop_conn_key key;
    __u64 ts_ns;
    __u64 sk;
    __u64 bytes_sent;
    __u64 bytes_recv;
    __u64 msgs_sent;
    __u64 msgs_recv;
    __u32 retransmits;
    __s32 err; /* errno of a failed connect; 0 when the backend cannot see it */
    __u8 type;
    __u8 direction;
    __u8 cause;    /* what ended a connection (NETTOP_CAUSE_*); 0 for other events */
    __u8 sk_state; /* the socket's TCP state when the event was made */
    __u8 close_flags; /* NETTOP_CLOSE_* */
    __u8 _pad[3];
    char comm[16]; /* the calling thread's name at the event, or at the socket's birth */
};

/* A close's bytes_sent/bytes_recv are tcp_sock's raw bytes_acked and
 * bytes_received. close_flags: a FIN had come (SOCK_DONE); the probe had no
 * record of the socket (older than nettop: tgid 0, direction unknown); a
 * reset came while our FIN waited for its acknowledgement. */
#define NETTOP_CLOSE_FIN_RECEIVED 2
#define NETTOP_CLOSE_NO_RECORD 4
#define NETTOP_CLOSE_RESET 8 /* a RST ended it in LAST_ACK or CLOSING: our FIN unacknowledged */


/* Where an fentry/fexit program finds what it reads in its context, an
 * array of u64: the function's arguments, then (fexit) its return value.
 * Userspace picks the indices from the running kernel's BTF (the hooked
 * function's FUNC_PROTO) and sets them at load, one `const volatile` per
 * hook (args_<function>); arities change between kernels. */
#define NETTOP_NO_ARG 0xff
struct nettop_fn_args {
    __u8 sk;    /* the struct sock * */
    __u8 msg;   /* sendmsg/recvmsg: the struct msghdr *; connect: the struct sockaddr * */
    __u8 flags; /* recvmsg: the flags (MSG_PEEK must not count) */
    __u8 ret;   /* fexit: the return value */
};

/* Counters, one slot each in a per-CPU array. */
enum nettop_counter {
    NETTOP_CNT_EVENTS_LOST = 0, /* ring buffer full */
    NETTOP_CNT_CONN_MAP_FULL,
    NETTOP_CNT_SOCK_MAP_FULL,
    NETTOP_CNT_GUESS,
    /* An incoming connection's report (tracepoint backend) found the ring
     * full: not a lost event, as its owner's close names it later. */
    NETTOP_CNT_INCOMING_LATE,
    NETTOP_CNT_MAX,
};

#endif
