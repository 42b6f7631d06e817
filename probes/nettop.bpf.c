// SPDX-License-Identifier: GPL-2.0 OR MIT
//
// nettop's probe. One object, three attach backends (kprobe, fentry,
// tracepoint): each backend's entry points are thin and all call the same
// handlers below, which read `struct sock` only at offsets that userspace
// guessed at run time and stored in the `offsets` map.
#include "nettop_abi.h"
#include "nettop.h"

/* The data hook adds to a UDP flow's counters by index from bytes_sent. */
_Static_assert(__builtin_offsetof(struct nettop_conn_stats, bytes_recv) == 8 &&
                   __builtin_offsetof(struct nettop_conn_stats, msgs_sent) == 16 &&
                   __builtin_offsetof(struct nettop_conn_stats, msgs_recv) == 24,
               "nettop_conn_stats: counters out of order");

char _license[] SEC("license") = "GPL";

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct nettop_guess_status);
} guess_status SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct nettop_offsets);
} offsets SEC(".maps");

/* UDP flows' counters in `conns`; a TCP connection's live in its socket's
 * record in `socks`. Sized by userspace at load time (--max-connections).
 * Plain hashes, not LRU: a full table is counted, never silently evicted.
 * Preallocated as
 * declared; where the kernel allocates hash entries safely in tracing
 * programs (6.1 on), userspace rewrites map_flags to BPF_F_NO_PREALLOC in
 * the object's BTF before loading, so memory grows with use. The 0 here
 * must stay the only zero-length array type in the object: that array's
 * length is what gets rewritten. */
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 65536);
    __uint(map_flags, 0);
    __type(key, struct nettop_conn_key);
    __type(value, struct nettop_conn_stats);
} conns SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 65536);
    __uint(map_flags, 0);
    __type(key, struct nettop_sock_key);
    __type(value, struct nettop_sock_state);
} socks SEC(".maps");

/* Sockets a reset hit while their FIN waited for its acknowledgement
 * (LAST_ACK, CLOSING): at CLOSE, their FIN is not in bytes_acked. Rare, so
 * small; LRU, so never full. */
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 4096);
    __type(key, __u64);
    __type(value, __u8);
} resets SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 1 << 22);
} events SEC(".maps");

/* Settings, set by userspace at load (EbpfLoader::override_global). */
/* Tracepoint backend: the SYN_SENT state change is the connect hook, and
 * an incoming connection is reported without its owner, which userspace
 * finds (or the owner's close names, below). */
const volatile __u32 tp_connect = 0;
/* Which argument of udp_recvmsg holds the flags (4 since 5.19, 5 before):
 * kprobes cannot tell, so userspace says, from the kernel's version. */
const volatile __u32 recv_flags_arg = 5;

/* Never read or written: it puts struct nettop_event into the object's BTF
 * (events are built in ring-buffer slots, which carry no type), so that
 * userspace can check its Rust twin against it (shared/tests/layout.rs). */
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct nettop_event);
} event_layout SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, NETTOP_CNT_MAX);
    __type(key, __u32);
    __type(value, __u64);
} counters SEC(".maps");

/* kprobe entry → kretprobe: the socket argument, per thread and per hook
 * (tcp_v6_connect calls tcp_v4_connect for v4-mapped peers: both nest). */
struct arg_key {
    __u64 pid_tgid;
    __u32 hook;
    __u32 _pad;
};

/* The socket and one more argument (connect's address, send/recv's msghdr). */
struct args {
    __u64 sk;
    __u64 aux;
    __u64 flags;
};

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 16384);
    __type(key, struct arg_key);
    __type(value, struct args);
} args SEC(".maps");

enum hook_id {
    HOOK_V4_CONNECT = 1,
    HOOK_V6_CONNECT,
    HOOK_UDP_SEND,
    HOOK_UDP_RECV,
    HOOK_UDP6_SEND,
    HOOK_UDP6_RECV,
};

#define GUESS_HOOK_CONNECT 1
#define GUESS_HOOK_TRACEPOINT 2
#define GUESS_HOOK_SHUTDOWN 3
#define GUESS_HOOK_UDP 4

static __always_inline void count(__u32 idx)
{
    __u64 *c = bpf_map_lookup_elem(&counters, &idx);
    /* Atomic even per CPU: on PREEMPT_RT, fentry and fexit programs only
     * disable migration, so two can interleave on one CPU. */
    if (c)
        __sync_fetch_and_add(c, 1);
}

static __always_inline struct nettop_offsets *ready_offsets(void)
{
    __u32 zero = 0;
    struct nettop_offsets *o = bpf_map_lookup_elem(&offsets, &zero);
    if (!o || !o->ready)
        return 0;
    return o;
}

static __always_inline void stash(__u32 hook, __u64 sk, __u64 aux, __u64 flags)
{
    struct arg_key key = {.pid_tgid = bpf_get_current_pid_tgid(), .hook = hook};
    struct args a = {.sk = sk, .aux = aux, .flags = flags};
    bpf_map_update_elem(&args, &key, &a, BPF_ANY);
}

static __always_inline struct args unstash(__u32 hook)
{
    struct arg_key key = {.pid_tgid = bpf_get_current_pid_tgid(), .hook = hook};
    struct args out = {};
    struct args *p = bpf_map_lookup_elem(&args, &key);
    if (!p)
        return out;
    out = *p;
    bpf_map_delete_elem(&args, &key);
    return out;
}

/* Guessing: when userspace has armed the status and the connecting thread
 * carries the guesser's unique name, copy a window of the socket (and of its
 * network namespace) for userspace to search. An armed status says when:
 * at connect (addresses, ports, namespace), at shutdown, after a transfer
 * of known size (the byte counters), or at a UDP send (the protocol). */
static __always_inline void on_guess(__u64 sk, __u32 hook)
{
    __u32 zero = 0;
    struct nettop_guess_status *st = bpf_map_lookup_elem(&guess_status, &zero);
    if (!st || st->state != NETTOP_GUESS_ARMED)
        return;
    __u32 at = hook == GUESS_HOOK_SHUTDOWN ? 1 : hook == GUESS_HOOK_UDP ? 2 : 0;
    if (st->at != at)
        return;
    char comm[16] __attribute__((aligned(8))) = {};
    bpf_get_current_comm(comm, sizeof(comm));
    __u64 *a = (__u64 *)comm;
    __u64 *b = (__u64 *)st->comm;
    if (a[0] != b[0] || a[1] != b[1])
        return;
    st->sk = sk;
    st->hook = hook;
    /* In halves: a read that faults is zeroed whole, and the second half
     * can run past the end of a small slab object. */
    bpf_probe_read_kernel(st->sk_data, NETTOP_SK_WINDOW / 2, (void *)sk);
    bpf_probe_read_kernel(st->sk_data + NETTOP_SK_WINDOW / 2, NETTOP_SK_WINDOW / 2,
                          (void *)(sk + NETTOP_SK_WINDOW / 2));
    if (st->deref_net) {
        __u64 net = 0;
        __u32 off = st->net_ptr_offset & (NETTOP_SK_WINDOW - 1);
        bpf_probe_read_kernel(&net, sizeof(net), (void *)(sk + off));
        bpf_probe_read_kernel(st->net_data, NETTOP_NET_WINDOW, (void *)net);
    }
    st->state = NETTOP_GUESS_CHECKED;
    count(NETTOP_CNT_GUESS);
}

static __always_inline __u16 bswap16(__u16 v)
{
    return (v >> 8) | (v << 8);
}

static __always_inline int is_v4_mapped(const __u8 *a)
{
    const __u32 *w = (const __u32 *)a;
    return w[0] == 0 && w[1] == 0 && w[2] == 0xffff0000; /* ::ffff:0:0/96, little-endian word */
}

static __always_inline int is_zero16(const __u8 *a)
{
    const __u64 *w = (const __u64 *)a;
    return w[0] == 0 && w[1] == 0;
}

/* v4-mapped IPv6 (and the unspecified address beside one) becomes IPv4. */
static __always_inline void fold_v4_mapped(struct nettop_conn_key *k)
{
    if (k->family != AF_INET6)
        return;
    int lm = is_v4_mapped(k->laddr), rm = is_v4_mapped(k->raddr);
    if (!(lm || rm) || !(lm || is_zero16(k->laddr)) || !(rm || is_zero16(k->raddr)))
        return;
    __u32 l = lm ? *(__u32 *)&k->laddr[12] : 0;
    __u32 r = rm ? *(__u32 *)&k->raddr[12] : 0;
    __builtin_memset(k->laddr, 0, 16);
    __builtin_memset(k->raddr, 0, 16);
    *(__u32 *)k->laddr = l;
    *(__u32 *)k->raddr = r;
    k->family = AF_INET;
}

/* The socket's tuple and namespace through the guessed offsets. Returns
 * whether it is complete: a client's port is picked only after SYN_SENT. */
static __always_inline int read_key(struct nettop_offsets *o, __u64 sk, __u8 proto, __u32 tgid,
                                    struct nettop_conn_key *k)
{
    __u16 family = 0, port = 0;
    __builtin_memset(k, 0, sizeof(*k));
    k->proto = proto;
    k->tgid = tgid;
    bpf_probe_read_kernel(&family, sizeof(family), (void *)(sk + o->family));
    if (family == AF_INET) {
        bpf_probe_read_kernel(k->laddr, 4, (void *)(sk + o->saddr));
        bpf_probe_read_kernel(k->raddr, 4, (void *)(sk + o->daddr));
    } else if (family == AF_INET6 && o->ipv6) {
        bpf_probe_read_kernel(k->laddr, 16, (void *)(sk + o->saddr_v6));
        bpf_probe_read_kernel(k->raddr, 16, (void *)(sk + o->daddr_v6));
    } else {
        return 0;
    }
    k->family = family;
    bpf_probe_read_kernel(&port, sizeof(port), (void *)(sk + o->sport));
    k->lport = bswap16(port);
    port = 0;
    bpf_probe_read_kernel(&port, sizeof(port), (void *)(sk + o->dport));
    k->rport = bswap16(port);
    __u64 net = 0;
    bpf_probe_read_kernel(&net, sizeof(net), (void *)(sk + o->netns));
    if (net)
        bpf_probe_read_kernel(&k->netns, sizeof(k->netns), (void *)(net + o->netns_ino));
    fold_v4_mapped(k);
    return k->lport != 0 && (proto == IPPROTO_UDP || k->rport != 0);
}

/* A peer from a struct sockaddr in kernel memory (connect's address,
 * sendmsg/recvmsg's msg_name): stable UAPI layouts. */
static __always_inline int read_peer(__u64 sa, struct nettop_conn_key *k)
{
    __u16 family = 0, port = 0;
    if (!sa)
        return 0;
    bpf_probe_read_kernel(&family, sizeof(family), (void *)sa);
    bpf_probe_read_kernel(&port, sizeof(port), (void *)(sa + 2));
    __builtin_memset(k->raddr, 0, 16);
    if (family == AF_INET) {
        if (k->family != AF_INET)
            return 0;
        bpf_probe_read_kernel(k->raddr, 4, (void *)(sa + 4));
    } else if (family == AF_INET6) {
        bpf_probe_read_kernel(k->raddr, 16, (void *)(sa + 8));
        if (k->family == AF_INET) {
            if (!is_v4_mapped(k->raddr))
                return 0;
            *(__u32 *)k->raddr = *(__u32 *)&k->raddr[12];
            __builtin_memset(&k->raddr[4], 0, 12);
        }
    } else {
        return 0;
    }
    k->rport = bswap16(port);
    return 1;
}

/* skc_state: the byte after skc_family in struct sock_common, in every
 * kernel nettop supports. */
static __always_inline __u8 sk_state(struct nettop_offsets *o, __u64 sk)
{
    __u8 state = 0;
    bpf_probe_read_kernel(&state, sizeof(state), (void *)(sk + o->family + 2));
    return state;
}

/* A TCP connection's totals as an event reports them, copied from its
 * record. */
struct totals {
    __u64 bytes_sent;
    __u64 bytes_recv;
    __u64 msgs_sent;
    __u64 msgs_recv;
    __u32 retransmits;
};


static __always_inline void emit_flags(__u8 type, struct nettop_conn_key *key,
                                       const struct totals *st, __u64 sk, __s32 err,
                                       __u8 direction, const char *comm, __u8 close_flags)
{
    /* Built in its own ring-buffer slot: a per-CPU scratch buffer is not
     * safe where programs can be preempted (fentry/fexit on PREEMPT_RT). */
    struct nettop_event *ev = bpf_ringbuf_reserve(&events, sizeof(*ev), 0);
    if (!ev) {
        count(type == NETTOP_EV_INCOMING ? NETTOP_CNT_INCOMING_LATE : NETTOP_CNT_EVENTS_LOST);
        return;
    }
    __builtin_memset(ev, 0, sizeof(*ev));
    ev->key = *key;
    ev->ts_ns = bpf_ktime_get_ns();
    ev->sk = sk;
    ev->err = err;
    ev->type = type;
    ev->direction = direction;
    ev->close_flags = close_flags;
    if (type == NETTOP_EV_CLOSE)
        ev->cause = NETTOP_CAUSE_STATE_CLOSE;
    struct nettop_offsets *o = ready_offsets();
    if (o && sk)
        ev->sk_state = sk_state(o, sk);
    ev->bytes_sent = st ? st->bytes_sent : 0;
    ev->bytes_recv = st ? st->bytes_recv : 0;
    ev->msgs_sent = st ? st->msgs_sent : 0;
    ev->msgs_recv = st ? st->msgs_recv : 0;
    ev->retransmits = st ? st->retransmits : 0;
    if (comm)
        __builtin_memcpy(ev->comm, comm, sizeof(ev->comm));
    else
        bpf_get_current_comm(ev->comm, sizeof(ev->comm));
    bpf_ringbuf_submit(ev, 0);
}

static __always_inline void emit(__u8 type, struct nettop_conn_key *key, const struct totals *st,
                                 __u64 sk, __s32 err, __u8 direction, const char *comm)
{
    emit_flags(type, key, st, sk, err, direction, comm, 0);
}

static __always_inline struct nettop_sock_state *get_sock(__u64 sk)
{
    struct nettop_sock_key key = {.sk = sk};
    return bpf_map_lookup_elem(&socks, &key);
}

static __always_inline void set_owner(struct nettop_sock_state *s)
{
    s->tgid = bpf_get_current_pid_tgid() >> 32;
    bpf_get_current_comm(s->comm, sizeof(s->comm));
    s->owner_known = 1;
}

/* A new socket record; `owner` only in process context. `old` is the record
 * the caller found and means to replace, or 0: then one another CPU made
 * since the caller looked is kept and returned, not replaced (accept() and
 * the ESTABLISHED change can race so, and replacing a record just keyed
 * would restart its counts). */
static __always_inline struct nettop_sock_state *new_sock(__u64 sk, __u8 proto, __u8 direction,
                                                         __u8 established, int owner,
                                                         struct nettop_sock_state *old)
{
    struct nettop_sock_key key = {.sk = sk};
    struct nettop_sock_state s = {};
    s.proto = proto;
    s.direction = direction;
    s.established = established;
    if (owner)
        set_owner(&s);
    long err = bpf_map_update_elem(&socks, &key, &s, old ? BPF_ANY : BPF_NOEXIST);
    if (err == -EEXIST)
        /* Made meanwhile (or already gone again with a close: then none). */
        return bpf_map_lookup_elem(&socks, &key);
    if (err != 0) {
        count(NETTOP_CNT_SOCK_MAP_FULL);
        return 0;
    }
    return bpf_map_lookup_elem(&socks, &key);
}

static __always_inline struct nettop_conn_stats *get_conn(struct nettop_conn_key *key, __u64 sk,
                                                          __u8 direction)
{
    struct nettop_conn_stats *c = bpf_map_lookup_elem(&conns, key);
    if (c)
        return c;
    struct nettop_conn_stats fresh = {};
    fresh.first_ns = bpf_ktime_get_ns();
    fresh.last_ns = fresh.first_ns;
    fresh.sk = sk;
    fresh.direction = direction;
    if (bpf_map_update_elem(&conns, key, &fresh, BPF_NOEXIST) != 0) {
        c = bpf_map_lookup_elem(&conns, key);
        if (!c)
            count(NETTOP_CNT_CONN_MAP_FULL);
        return c;
    }
    return bpf_map_lookup_elem(&conns, key);
}

/* Give a TCP socket whose owner is known its connection entry, and say so:
 * connect or accept. */
static __always_inline void open_tcp(struct nettop_offsets *o, __u64 sk, struct nettop_sock_state *s)
{
    if (s->has_key || !s->owner_known || !s->established)
        return;
    /* Built on the stack, then published whole: two programs can get here
     * at once (a data hook in the process, the state change in a softirq
     * on another CPU), and s->key is what others look connections up by —
     * it must never be seen half-written or zeroed. */
    struct nettop_conn_key k;
    if (!read_key(o, sk, IPPROTO_TCP, s->tgid, &k))
        return;
    s->key = k;
    /* The key before the flag: userspace reads records it sees keyed
     * (and checks the key is whole, as the copy may race this store). */
    asm volatile("" ::: "memory");
    s->has_key = 1;
    /* After the flag, so that the window in which a racing opener also
     * finds the record unkeyed stays as short as it can be. The counters
     * are left as the record was made (zero): two racing openers must not
     * wipe what the first let through. */
    s->opened_ns = bpf_ktime_get_ns();
    __u8 type = s->direction == NETTOP_DIR_INCOMING ? NETTOP_EV_ACCEPT : NETTOP_EV_CONNECT;
    if (s->direction != NETTOP_DIR_UNKNOWN)
        emit(type, &k, 0, sk, 0, s->direction, s->comm);
}

/* A record left by an earlier socket at the same address (its end was
 * missed): its key no longer matches what the socket holds. */
static __always_inline int stale(struct nettop_offsets *o, __u64 sk, struct nettop_sock_state *s)
{
    if (!s->has_key)
        return 0;
    struct nettop_conn_key now;
    read_key(o, sk, s->key.proto, s->key.tgid, &now);
    return now.lport != s->key.lport || now.rport != s->key.rport ||
           __builtin_memcmp(now.laddr, s->key.laddr, 16) != 0 ||
           __builtin_memcmp(now.raddr, s->key.raddr, 16) != 0;
}

/* connect() returned (kprobe/fexit), or SYN_SENT (tracepoint): process context. */
static __always_inline void on_connect(__u64 sk, long ret, __u64 uaddr)
{
    struct nettop_offsets *o = ready_offsets();
    if (!o)
        return;
    if (ret != 0 && ret != -EINPROGRESS) {
        struct nettop_conn_key k;
        read_key(o, sk, IPPROTO_TCP, bpf_get_current_pid_tgid() >> 32, &k);
        read_peer(uaddr, &k);
        emit(NETTOP_EV_CONNECT_FAILED, &k, 0, sk, (__s32)-ret, NETTOP_DIR_OUTGOING, 0);
        return;
    }
    struct nettop_sock_state *s = get_sock(sk);
    /* Kept when nested (tcp_v6_connect → tcp_v4_connect for v4-mapped
     * peers): the inner call made it. */
    if (!s || !s->owner_known || s->tgid != bpf_get_current_pid_tgid() >> 32 || stale(o, sk, s))
        s = new_sock(sk, IPPROTO_TCP, NETTOP_DIR_OUTGOING, 0, 1, s);
    if (!s) {
        /* No record (the map busy on this CPU, or full): report it anyway
         * if it is up; its close comes keyed by tuple alone. */
        struct nettop_conn_key k;
        if (ret == 0 && sk_state(o, sk) == TCP_ESTABLISHED &&
            read_key(o, sk, IPPROTO_TCP, bpf_get_current_pid_tgid() >> 32, &k))
            emit(NETTOP_EV_CONNECT, &k, 0, sk, 0, NETTOP_DIR_OUTGOING, 0);
        return;
    }
    /* Over loopback the handshake can complete inside connect(), before
     * this hook made the record that ESTABLISHED would have found. */
    if (ret == 0 && sk_state(o, sk) == TCP_ESTABLISHED) {
        s->established = 1;
        open_tcp(o, sk, s);
    }
}

/* inet_csk_accept returned (kprobe/fexit): process context. */
static __always_inline void on_accept(__u64 sk)
{
    struct nettop_offsets *o = ready_offsets();
    if (!o || !sk)
        return;
    struct nettop_sock_state *s = get_sock(sk);
    if (!s || stale(o, sk, s))
        s = new_sock(sk, IPPROTO_TCP, NETTOP_DIR_INCOMING, 1, 1, s);
    if (!s) {
        /* No record (the map busy on this CPU, or full): report it anyway;
         * its close comes keyed by tuple alone. */
        struct nettop_conn_key k;
        if (read_key(o, sk, IPPROTO_TCP, bpf_get_current_pid_tgid() >> 32, &k))
            emit(NETTOP_EV_ACCEPT, &k, 0, sk, 0, NETTOP_DIR_INCOMING, 0);
        return;
    }
    if (!s->owner_known)
        set_owner(s);
    s->direction = NETTOP_DIR_INCOMING;
    s->established = 1;
    open_tcp(o, sk, s);
}

static __always_inline void on_established(__u64 sk, int oldstate)
{
    struct nettop_offsets *o = ready_offsets();
    if (!o)
        return;
    struct nettop_sock_state *s = get_sock(sk);
    /* A passive open is a newborn socket: an older record at this address
     * is stale. But the child joins the accept queue before this change,
     * so accept() on another CPU can have made its record, or be making it
     * right now (incoming, owner known, key not yet set): replacing that
     * would make the first data open it again, a second accept (seen on
     * 5.10 under emulation). So an incoming record is kept unless its key
     * is another socket's. Otherwise, in softirq, the owner comes with
     * accept(), or from userspace, or with the owner's close. */
    if (oldstate == TCP_SYN_RECV &&
        (!s || s->direction != NETTOP_DIR_INCOMING || (s->has_key && stale(o, sk, s))))
        s = new_sock(sk, IPPROTO_TCP, NETTOP_DIR_INCOMING, 1, 0, s);
    if (!s)
        return;
    s->established = 1;
    open_tcp(o, sk, s);
    /* No accept hook on the tracepoint backend: userspace finds the
     * process that holds the accepted socket (tracer/accepts.rs). */
    if (tp_connect && !s->has_key && s->direction == NETTOP_DIR_INCOMING) {
        struct nettop_conn_key k;
        char nobody[16] __attribute__((aligned(8))) = {};
        if (read_key(o, sk, IPPROTO_TCP, 0, &k))
            emit(NETTOP_EV_INCOMING, &k, 0, sk, 0, NETTOP_DIR_INCOMING, nobody);
    }
}

/* The owner closes or shuts down its end: close(2), shutdown(2) or its
 * exit, in its own context. An incoming connection nobody has named the
 * owner of yet (tracepoint backend: accepted and closed before userspace
 * looked) is opened in its name, so that its close has an owner. */
static __always_inline void on_owner_close(__u64 sk)
{
    struct nettop_offsets *o = ready_offsets();
    if (!o)
        return;
    struct nettop_sock_state *s = get_sock(sk);
    if (!s || s->owner_known || s->has_key || s->direction != NETTOP_DIR_INCOMING)
        return;
    set_owner(s);
    open_tcp(o, sk, s);
}

/* A UDP send or receive returned `ret` bytes: process context. `peer` is a
 * sockaddr (unconnected UDP on kprobe/fentry), or 0. */
static __always_inline void on_udp_bytes(__u64 sk, long ret, int sent, __u64 peer)
{
    struct nettop_offsets *o = ready_offsets();
    if (!o) {
        if (sent)
            on_guess(sk, GUESS_HOOK_UDP);
        return;
    }
    if (ret <= 0)
        return;
    struct nettop_sock_state *s = get_sock(sk);
    if (!s)
        /* Owned by whoever uses it first. */
        s = new_sock(sk, IPPROTO_UDP, NETTOP_DIR_UNKNOWN, 0, 1, 0);
    if (!s)
        return;
    if (!s->owner_known)
        set_owner(s);
    struct nettop_conn_key k;
    read_key(o, sk, IPPROTO_UDP, s->tgid, &k);
    if (peer && k.rport == 0)
        read_peer(peer, &k);
    struct nettop_conn_stats *flow = get_conn(&k, sk, s->direction);
    if (!flow)
        return;
    /* bytes_sent, bytes_recv, msgs_sent, msgs_recv, in that order. */
    __u64 *c = &flow->bytes_sent;
    if (sent) {
        __sync_fetch_and_add(&c[0], ret);
        __sync_fetch_and_add(&c[2], 1);
    } else {
        __sync_fetch_and_add(&c[1], ret);
        __sync_fetch_and_add(&c[3], 1);
    }
    /* No clock read here: at ~35 ns it was a fifth of this handler's cost
     * per packet. Userspace dates activity by when the counters move. */
}

/* The change to CLOSE (any context) ends a TCP connection, with the
 * kernel's own totals: tcp_sock's byte counters, which every data path
 * (sendfile, splice, kTLS, zero-copy...) moves. Userspace turns them into
 * payload bytes (the SYN and FINs count in sequence space). A socket older
 * than nettop has no record: it ends too, keyed without an owner. */
static __always_inline void on_tcp_close(__u64 sk)
{
    struct nettop_offsets *o = ready_offsets();
    if (!o)
        return;
    struct nettop_sock_key skey = {.sk = sk};
    struct nettop_sock_state *s = bpf_map_lookup_elem(&socks, &skey);
    if (s && s->proto != IPPROTO_TCP)
        return;
    if (s && !s->established) {
        if (s->direction == NETTOP_DIR_OUTGOING) {
            struct nettop_conn_key k;
            read_key(o, sk, IPPROTO_TCP, s->tgid, &k);
            emit(NETTOP_EV_CONNECT_FAILED, &k, 0, sk, 0, NETTOP_DIR_OUTGOING, s->comm);
        }
        bpf_map_delete_elem(&socks, &skey);
        return;
    }
    struct totals final = {};
    __u8 flags = 0;
    bpf_probe_read_kernel(&final.bytes_sent, 8, (void *)(sk + o->bytes_acked));
    bpf_probe_read_kernel(&final.bytes_recv, 8, (void *)(sk + o->bytes_received));
    __u8 sk_flags = 0;
    bpf_probe_read_kernel(&sk_flags, 1, (void *)(sk + o->sk_flags));
    if (sk_flags & (1 << 1)) /* SOCK_DONE */
        flags |= NETTOP_CLOSE_FIN_RECEIVED;
    __u8 left = sk_state(o, sk);
    if ((left == TCP_LAST_ACK || left == TCP_CLOSING) && bpf_map_lookup_elem(&resets, &sk)) {
        flags |= NETTOP_CLOSE_RESET;
        bpf_map_delete_elem(&resets, &sk);
    }
    if (!s || !s->has_key || stale(o, sk, s)) {
        /* Older than nettop, accepted with its owner learnt in userspace
         * (tracepoint backend), or its record not made (or left by an
         * earlier socket at this address): keyed by tuple alone. */
        struct nettop_conn_key k;
        char nobody[16] __attribute__((aligned(8))) = {};
        if (s)
            bpf_map_delete_elem(&socks, &skey);
        if (read_key(o, sk, IPPROTO_TCP, 0, &k))
            emit_flags(NETTOP_EV_CLOSE, &k, &final, sk, 0, NETTOP_DIR_UNKNOWN, nobody,
                       flags | NETTOP_CLOSE_NO_RECORD);
        return;
    }
    /* Copied first: once deleted, the record's memory can be reused by
     * another socket's at once. */
    struct nettop_conn_key k = s->key;
    final.retransmits = s->retransmits;
    __u8 direction = s->direction;
    char comm[16] __attribute__((aligned(8)));
    __builtin_memcpy(comm, s->comm, sizeof(comm));
    /* Reported even if the delete fails (the map busy on this CPU): the
     * change to CLOSE comes once per connection. */
    bpf_map_delete_elem(&socks, &skey);
    emit_flags(NETTOP_EV_CLOSE, &k, &final, sk, 0, direction, comm, flags);
}

/* A reset arrived (tcp:tcp_receive_reset, before the change to CLOSE). */
static __always_inline void on_receive_reset(__u64 sk)
{
    struct nettop_offsets *o = ready_offsets();
    if (!o)
        return;
    __u8 state = sk_state(o, sk);
    __u8 one = 1;
    if (state == TCP_LAST_ACK || state == TCP_CLOSING)
        bpf_map_update_elem(&resets, &sk, &one, BPF_ANY);
}

/* A UDP socket is destroyed (kprobe/fentry only). */
static __always_inline void on_udp_destroy(__u64 sk)
{
    struct nettop_offsets *o = ready_offsets();
    if (!o)
        return;
    struct nettop_sock_key skey = {.sk = sk};
    struct nettop_sock_state *s = bpf_map_lookup_elem(&socks, &skey);
    if (!s)
        return;
    struct nettop_conn_key k = {};
    k.tgid = s->tgid;
    k.proto = IPPROTO_UDP;
    emit(NETTOP_EV_SOCK_CLOSE, &k, 0, sk, 0, s->direction, s->comm);
    bpf_map_delete_elem(&socks, &skey);
}

static __always_inline void on_retransmit(__u64 sk)
{
    struct nettop_offsets *o = ready_offsets();
    if (!o)
        return;
    struct nettop_sock_state *s = get_sock(sk);
    if (!s || !s->has_key || s->proto != IPPROTO_TCP)
        return;
    struct nettop_conn_key k = s->key;
    __sync_fetch_and_add(&s->retransmits, 1);
    struct totals t = {.retransmits = s->retransmits};
    emit(NETTOP_EV_RETRANSMIT, &k, &t, sk, 0, s->direction, s->comm);
}

/* ---------------- kprobe backend ---------------- */

/* Both registers are read before choosing: a select between two ctx field
 * addresses becomes pointer arithmetic on ctx, which the verifier refuses. */
static __always_inline __u64 recv_flags(struct pt_regs *ctx)
{
    __u64 a4 = *(volatile unsigned long *)&ctx->cx;
    __u64 a5 = *(volatile unsigned long *)&ctx->r8;
    return recv_flags_arg == 5 ? a5 : a4;
}

/* msghdr.msg_name is its first member in every kernel. */
static __always_inline __u64 msg_name(__u64 msg)
{
    __u64 name = 0;
    if (msg)
        bpf_probe_read_kernel(&name, sizeof(name), (void *)msg);
    return name;
}

/* connect() returned: the socket and address its kprobe kept. */
static __always_inline int kretprobe_connect(struct pt_regs *ctx, __u32 hook)
{
    struct args a = unstash(hook);
    if (!a.sk)
        return 0;
    on_guess(a.sk, GUESS_HOOK_CONNECT);
    on_connect(a.sk, (long)PT_RET(ctx), a.aux);
    return 0;
}

/* A UDP send or receive returned; recvmsg's kprobe kept its flags too (a
 * MSG_PEEK read must not count). */
static __always_inline int kretprobe_udp(struct pt_regs *ctx, __u32 hook, int sent)
{
    struct args a = unstash(hook);
    if (a.sk && !(a.flags & MSG_PEEK))
        on_udp_bytes(a.sk, (long)PT_RET(ctx), sent, msg_name(a.aux));
    return 0;
}

SEC("kprobe/tcp_v4_connect") int kp_tcp_v4_connect(struct pt_regs *ctx)
{
    stash(HOOK_V4_CONNECT, PT_ARG1(ctx), PT_ARG2(ctx), 0);
    return 0;
}

SEC("kretprobe/tcp_v4_connect") int krp_tcp_v4_connect(struct pt_regs *ctx)
{
    return kretprobe_connect(ctx, HOOK_V4_CONNECT);
}

SEC("kprobe/tcp_v6_connect") int kp_tcp_v6_connect(struct pt_regs *ctx)
{
    stash(HOOK_V6_CONNECT, PT_ARG1(ctx), PT_ARG2(ctx), 0);
    return 0;
}

SEC("kretprobe/tcp_v6_connect") int krp_tcp_v6_connect(struct pt_regs *ctx)
{
    return kretprobe_connect(ctx, HOOK_V6_CONNECT);
}

SEC("kretprobe/inet_csk_accept") int krp_inet_csk_accept(struct pt_regs *ctx)
{
    on_accept(PT_RET(ctx));
    return 0;
}

SEC("kprobe/udp_sendmsg") int kp_udp_sendmsg(struct pt_regs *ctx)
{
    stash(HOOK_UDP_SEND, PT_ARG1(ctx), PT_ARG2(ctx), 0);
    return 0;
}

SEC("kretprobe/udp_sendmsg") int krp_udp_sendmsg(struct pt_regs *ctx)
{
    return kretprobe_udp(ctx, HOOK_UDP_SEND, 1);
}

SEC("kprobe/udp_recvmsg") int kp_udp_recvmsg(struct pt_regs *ctx)
{
    stash(HOOK_UDP_RECV, PT_ARG1(ctx), PT_ARG2(ctx), recv_flags(ctx));
    return 0;
}

SEC("kretprobe/udp_recvmsg") int krp_udp_recvmsg(struct pt_regs *ctx)
{
    return kretprobe_udp(ctx, HOOK_UDP_RECV, 0);
}

SEC("kprobe/udpv6_sendmsg") int kp_udpv6_sendmsg(struct pt_regs *ctx)
{
    stash(HOOK_UDP6_SEND, PT_ARG1(ctx), PT_ARG2(ctx), 0);
    return 0;
}

SEC("kretprobe/udpv6_sendmsg") int krp_udpv6_sendmsg(struct pt_regs *ctx)
{
    return kretprobe_udp(ctx, HOOK_UDP6_SEND, 1);
}

SEC("kprobe/udpv6_recvmsg") int kp_udpv6_recvmsg(struct pt_regs *ctx)
{
    stash(HOOK_UDP6_RECV, PT_ARG1(ctx), PT_ARG2(ctx), recv_flags(ctx));
    return 0;
}

SEC("kretprobe/udpv6_recvmsg") int krp_udpv6_recvmsg(struct pt_regs *ctx)
{
    return kretprobe_udp(ctx, HOOK_UDP6_RECV, 0);
}

SEC("kprobe/udp_destroy_sock") int kp_udp_destroy_sock(struct pt_regs *ctx)
{
    on_udp_destroy(PT_ARG1(ctx));
    return 0;
}

SEC("kprobe/udpv6_destroy_sock") int kp_udpv6_destroy_sock(struct pt_regs *ctx)
{
    on_udp_destroy(PT_ARG1(ctx));
    return 0;
}

SEC("kprobe/tcp_retransmit_skb") int kp_tcp_retransmit_skb(struct pt_regs *ctx)
{
    on_retransmit(PT_ARG1(ctx));
    return 0;
}

/* ---------------- fentry backend ----------------
 * Arguments come as an array of u64, the return value right after the last
 * argument. Which index holds what is set at load from the kernel's BTF
 * (struct nettop_fn_args): the verifier knows these constants and checks
 * only the branch each one takes. Pointers are copied out with probe_read
 * so that they are plain numbers to the verifier, like the kprobe backend's;
 * other values are read straight from the context, which the verifier holds
 * to the function's real arity. */

#define UNSET {NETTOP_NO_ARG, NETTOP_NO_ARG, NETTOP_NO_ARG, NETTOP_NO_ARG}
const volatile struct nettop_fn_args args_tcp_v4_connect = UNSET;
const volatile struct nettop_fn_args args_tcp_v6_connect = UNSET;
const volatile struct nettop_fn_args args_inet_csk_accept = UNSET;
const volatile struct nettop_fn_args args_udp_sendmsg = UNSET;
const volatile struct nettop_fn_args args_udp_recvmsg = UNSET;
const volatile struct nettop_fn_args args_udpv6_sendmsg = UNSET;
const volatile struct nettop_fn_args args_udpv6_recvmsg = UNSET;
const volatile struct nettop_fn_args args_udp_destroy_sock = UNSET;
const volatile struct nettop_fn_args args_udpv6_destroy_sock = UNSET;
const volatile struct nettop_fn_args args_tcp_retransmit_skb = UNSET;

/* One load per index, each at a constant offset: the verifier refuses
 * context reads at computed ones, and inline asm keeps the compiler from
 * merging the cases into one. An index left unset (NETTOP_NO_ARG) reads
 * far past any arity, so the program fails to load rather than read junk. */
#define CTX_LOAD(ctx, i)                                                                           \
    ({                                                                                             \
        __u64 __v;                                                                                 \
        asm volatile("%0 = *(u64 *)(%1 + %2)" : "=r"(__v) : "r"(ctx), "i"((i) * 8));               \
        __v;                                                                                       \
    })

static __always_inline __u64 ctx_value(__u64 *ctx, __u8 i)
{
    switch (i) {
    case 0: return CTX_LOAD(ctx, 0);
    case 1: return CTX_LOAD(ctx, 1);
    case 2: return CTX_LOAD(ctx, 2);
    case 3: return CTX_LOAD(ctx, 3);
    case 4: return CTX_LOAD(ctx, 4);
    case 5: return CTX_LOAD(ctx, 5);
    case 6: return CTX_LOAD(ctx, 6);
    case 7: return CTX_LOAD(ctx, 7);
    case 8: return CTX_LOAD(ctx, 8);
    case 9: return CTX_LOAD(ctx, 9);
    case 10: return CTX_LOAD(ctx, 10);
    case 11: return CTX_LOAD(ctx, 11);
    case 12: return CTX_LOAD(ctx, 12);
    default: return CTX_LOAD(ctx, 63);
    }
}

/* A pointer argument as a plain number. The context is read once directly
 * as well, so that the verifier holds the index to the function's arity and
 * refuses an unset one, as for the values above. */
static __always_inline __u64 fentry_arg(__u64 *ctx, __u8 i)
{
    ctx_value(ctx, i);
    __u64 v = 0;
    bpf_probe_read_kernel(&v, sizeof(v), &ctx[i]);
    return v;
}

/* connect() returned. */
static __always_inline int fexit_connect(__u64 *ctx, const volatile struct nettop_fn_args *a)
{
    __u64 sk = fentry_arg(ctx, a->sk);
    on_guess(sk, GUESS_HOOK_CONNECT);
    on_connect(sk, (long)(int)ctx_value(ctx, a->ret), fentry_arg(ctx, a->msg));
    return 0;
}

/* A UDP send or receive returned (a MSG_PEEK read does not count). */
static __always_inline int fexit_udp(__u64 *ctx, const volatile struct nettop_fn_args *a, int sent)
{
    if (a->flags != NETTOP_NO_ARG && (ctx_value(ctx, a->flags) & MSG_PEEK))
        return 0;
    __u64 sk = fentry_arg(ctx, a->sk);
    long ret = (long)(int)ctx_value(ctx, a->ret);
    on_udp_bytes(sk, ret, sent, msg_name(fentry_arg(ctx, a->msg)));
    return 0;
}

SEC("fexit/tcp_v4_connect") int fx_tcp_v4_connect(__u64 *ctx)
{
    return fexit_connect(ctx, &args_tcp_v4_connect);
}

SEC("fexit/tcp_v6_connect") int fx_tcp_v6_connect(__u64 *ctx)
{
    return fexit_connect(ctx, &args_tcp_v6_connect);
}

/* inet_csk_accept returns the new socket. */
SEC("fexit/inet_csk_accept") int fx_inet_csk_accept(__u64 *ctx)
{
    if (!ctx_value(ctx, args_inet_csk_accept.ret))
        return 0;
    on_accept(fentry_arg(ctx, args_inet_csk_accept.ret));
    return 0;
}

SEC("fexit/udp_sendmsg") int fx_udp_sendmsg(__u64 *ctx)
{
    return fexit_udp(ctx, &args_udp_sendmsg, 1);
}

SEC("fexit/udp_recvmsg") int fx_udp_recvmsg(__u64 *ctx)
{
    return fexit_udp(ctx, &args_udp_recvmsg, 0);
}

SEC("fexit/udpv6_sendmsg") int fx_udpv6_sendmsg(__u64 *ctx)
{
    return fexit_udp(ctx, &args_udpv6_sendmsg, 1);
}

SEC("fexit/udpv6_recvmsg") int fx_udpv6_recvmsg(__u64 *ctx)
{
    return fexit_udp(ctx, &args_udpv6_recvmsg, 0);
}

SEC("fentry/udp_destroy_sock") int fe_udp_destroy_sock(__u64 *ctx)
{
    on_udp_destroy(fentry_arg(ctx, args_udp_destroy_sock.sk));
    return 0;
}

SEC("fentry/udpv6_destroy_sock") int fe_udpv6_destroy_sock(__u64 *ctx)
{
    on_udp_destroy(fentry_arg(ctx, args_udpv6_destroy_sock.sk));
    return 0;
}

SEC("fentry/tcp_retransmit_skb") int fe_tcp_retransmit_skb(__u64 *ctx)
{
    on_retransmit(fentry_arg(ctx, args_tcp_retransmit_skb.sk));
    return 0;
}

/* ---------------- tracepoint backend ----------------
 * Field offsets from /sys/kernel/tracing/events/.../format; the loader checks
 * them against the running kernel's format files before attaching. The
 * state-change tracepoint is attached on every backend: it is how a
 * connection becomes established, fails, or ends. */

#define TP_FIELD(ctx, type, off) (*(type *)((char *)(ctx) + (off)))

/* Each tracepoint has a program per size of the common header in front of
 * its fields: 8 bytes, or 16 on PREEMPT_RT kernels that add fields to it
 * (5.10-rt). The loader keeps the one that matches the format file. */
static __always_inline int tp_set_state(void *ctx, const int S)
{
    __u64 sk = TP_FIELD(ctx, __u64, 8 + S);
    int oldstate = TP_FIELD(ctx, int, 16 + S);
    int newstate = TP_FIELD(ctx, int, 20 + S);
    __u16 proto = TP_FIELD(ctx, __u16, 30 + S);
    if (proto != IPPROTO_TCP)
        return 0;
    if (newstate == TCP_SYN_SENT) {
        /* connect(2)'s own context. */
        on_guess(sk, GUESS_HOOK_TRACEPOINT);
        if (tp_connect)
            on_connect(sk, 0, 0);
    } else if (newstate == TCP_ESTABLISHED) {
        on_established(sk, oldstate);
    } else if (newstate == TCP_CLOSE) {
        on_tcp_close(sk);
    } else if (newstate == TCP_FIN_WAIT1 && oldstate == TCP_ESTABLISHED) {
        /* shutdown(2)'s or close(2)'s own context, as below. */
        on_guess(sk, GUESS_HOOK_SHUTDOWN);
        on_owner_close(sk);
    } else if (newstate == TCP_LAST_ACK && oldstate == TCP_CLOSE_WAIT) {
        on_owner_close(sk);
    }
    return 0;
}

/* The programs for the 8-byte header (S = 0), then for the 16-byte one
 * (_s8). */
SEC("tracepoint/sock/inet_sock_set_state") int tp_inet_sock_set_state(void *ctx)
{
    return tp_set_state(ctx, 0);
}

SEC("tracepoint/tcp/tcp_retransmit_skb") int tp_tcp_retransmit_skb(void *ctx)
{
    on_retransmit(TP_FIELD(ctx, __u64, 16));
    return 0;
}

SEC("tracepoint/tcp/tcp_receive_reset") int tp_tcp_receive_reset(void *ctx)
{
    on_receive_reset(TP_FIELD(ctx, __u64, 8));
    return 0;
}

SEC("tracepoint/sock/inet_sock_set_state") int tp_inet_sock_set_state_s8(void *ctx)
{
    return tp_set_state(ctx, 8);
}

SEC("tracepoint/tcp/tcp_retransmit_skb") int tp_tcp_retransmit_skb_s8(void *ctx)
{
    on_retransmit(TP_FIELD(ctx, __u64, 16 + 8));
    return 0;
}

SEC("tracepoint/tcp/tcp_receive_reset") int tp_tcp_receive_reset_s8(void *ctx)
{
    on_receive_reset(TP_FIELD(ctx, __u64, 8 + 8));
    return 0;
}

/* ---------------- the length tracepoints, on raw_tp ----------------
 * sock_send_length and sock_recv_length (6.3+) fire for every send and
 * receive of every protocol. Only UDP is counted here (the kernel counts
 * TCP's bytes itself), so a TCP packet must cost as little as can be: a
 * raw_tp program gets the tracepoint's arguments (sk, ret, flags) without
 * the record a perf tracepoint builds, and tells UDP by the socket's
 * guessed sk_protocol. Reading that is a helper call, as costly as the rest
 * together (docs/performance.md), so the TCP sockets it found are
 * remembered, in a direct-mapped table of socket addresses: a socket is
 * entered by a send or receive that moved bytes, and leaves when it is
 * destroyed (tcp_destroy_sock), before its memory can be another socket's. */
#define TCP_SEEN_SLOTS 1024
__u64 tcp_seen[TCP_SEEN_SLOTS];

static __always_inline __u32 tcp_seen_slot(__u64 sk)
{
    return (__u32)((sk * 0x9E3779B97F4A7C15ULL) >> 54) & (TCP_SEEN_SLOTS - 1);
}

static __always_inline int raw_length(__u64 sk, long ret, int flags, int recv)
{
    __u32 slot = tcp_seen_slot(sk);
    if (tcp_seen[slot] == sk)
        return 0;
    struct nettop_offsets *o = ready_offsets();
    if (!o) {
        /* Guessing the protocol: the guesser's UDP send. */
        if (!recv)
            on_guess(sk, GUESS_HOOK_UDP);
        return 0;
    }
    /* The family first: other families number their protocols otherwise
     * (netlink's 6 and 17), and unix sockets end here. */
    __u16 family = 0, proto = 0;
    bpf_probe_read_kernel(&family, sizeof(family), (void *)(sk + o->family));
    if (family != AF_INET && family != AF_INET6)
        return 0;
    bpf_probe_read_kernel(&proto, sizeof(proto), (void *)(sk + o->sk_protocol));
    if (proto == IPPROTO_TCP && ret > 0)
        tcp_seen[slot] = sk;
    if (proto != IPPROTO_UDP)
        return 0;
    if (recv && (flags & MSG_PEEK))
        return 0;
    on_udp_bytes(sk, ret, !recv, 0);
    return 0;
}

SEC("raw_tp/sock_send_length") int raw_sock_send_length(struct bpf_raw_tracepoint_args *ctx)
{
    return raw_length(ctx->args[0], (int)ctx->args[1], (int)ctx->args[2], 0);
}

SEC("raw_tp/sock_recv_length") int raw_sock_recv_length(struct bpf_raw_tracepoint_args *ctx)
{
    return raw_length(ctx->args[0], (int)ctx->args[1], (int)ctx->args[2], 1);
}

SEC("raw_tp/tcp_destroy_sock") int raw_tcp_destroy_sock(struct bpf_raw_tracepoint_args *ctx)
{
    __u64 sk = ctx->args[0];
    __u32 slot = tcp_seen_slot(sk);
    if (tcp_seen[slot] == sk)
        tcp_seen[slot] = 0;
    return 0;
}
