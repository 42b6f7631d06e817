// SPDX-License-Identifier: GPL-2.0 OR MIT
//
// nettop's probe. One object, three attach backends (kprobe, fentry,
// tracepoint): each backend's entry points are thin and all call the same
// handlers below, which read `struct sock` only at offsets that userspace
// guessed at run time and stored in the `offsets` map.
#include "nettop.h"

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

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 65536);
    __type(key, struct nettop_sock_key);
    __type(value, struct nettop_sock_info);
} socks SEC(".maps");

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

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 16384);
    __type(key, struct arg_key);
    __type(value, __u64);
} args SEC(".maps");

enum hook_id {
    HOOK_V4_CONNECT = 1,
    HOOK_V6_CONNECT,
    HOOK_TCP_SEND,
    HOOK_TCP_RECV,
    HOOK_UDP_SEND,
    HOOK_UDP_RECV,
    HOOK_UDP6_SEND,
    HOOK_UDP6_RECV,
};

#define GUESS_HOOK_CONNECT 1
#define GUESS_HOOK_TRACEPOINT 2

static __always_inline void count(__u32 idx)
{
    __u64 *c = bpf_map_lookup_elem(&counters, &idx);
    if (c)
        *c += 1;
}

static __always_inline struct nettop_offsets *ready_offsets(void)
{
    __u32 zero = 0;
    struct nettop_offsets *o = bpf_map_lookup_elem(&offsets, &zero);
    if (!o || !o->ready)
        return 0;
    return o;
}

static __always_inline void stash(__u32 hook, __u64 sk)
{
    struct arg_key key = {.pid_tgid = bpf_get_current_pid_tgid(), .hook = hook};
    bpf_map_update_elem(&args, &key, &sk, BPF_ANY);
}

static __always_inline __u64 unstash(__u32 hook)
{
    struct arg_key key = {.pid_tgid = bpf_get_current_pid_tgid(), .hook = hook};
    __u64 *p = bpf_map_lookup_elem(&args, &key);
    if (!p)
        return 0;
    __u64 sk = *p;
    bpf_map_delete_elem(&args, &key);
    return sk;
}

/* Guessing: when userspace has armed the status and the connecting thread
 * carries the guesser's unique name, copy a window of the socket (and of its
 * network namespace) for userspace to search. */
static __always_inline void on_guess(__u64 sk, __u32 hook)
{
    __u32 zero = 0;
    struct nettop_guess_status *st = bpf_map_lookup_elem(&guess_status, &zero);
    if (!st || st->state != NETTOP_GUESS_ARMED)
        return;
    char comm[16] __attribute__((aligned(8))) = {};
    bpf_get_current_comm(comm, sizeof(comm));
    __u64 *a = (__u64 *)comm;
    __u64 *b = (__u64 *)st->comm;
    if (a[0] != b[0] || a[1] != b[1])
        return;
    st->sk = sk;
    st->hook = hook;
    bpf_probe_read_kernel(st->sk_data, NETTOP_SK_WINDOW, (void *)sk);
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

/* The socket's addresses, ports and namespace, through the guessed offsets. */
static __always_inline void read_tuple(struct nettop_offsets *o, __u64 sk,
                                       struct nettop_sock_info *info)
{
    __u16 family = 0, port = 0;
    bpf_probe_read_kernel(&family, sizeof(family), (void *)(sk + o->family));
    info->family = family;
    if (family == AF_INET) {
        bpf_probe_read_kernel(info->saddr, 4, (void *)(sk + o->saddr));
        bpf_probe_read_kernel(info->daddr, 4, (void *)(sk + o->daddr));
    } else if (family == AF_INET6 && o->ipv6) {
        bpf_probe_read_kernel(info->saddr, 16, (void *)(sk + o->saddr_v6));
        bpf_probe_read_kernel(info->daddr, 16, (void *)(sk + o->daddr_v6));
    }
    bpf_probe_read_kernel(&port, sizeof(port), (void *)(sk + o->sport));
    info->sport = bswap16(port);
    port = 0;
    bpf_probe_read_kernel(&port, sizeof(port), (void *)(sk + o->dport));
    info->dport = bswap16(port);
    __u64 net = 0;
    bpf_probe_read_kernel(&net, sizeof(net), (void *)(sk + o->netns));
    if (net)
        bpf_probe_read_kernel(&info->netns, sizeof(info->netns), (void *)(net + o->netns_ino));
}

static __always_inline void set_owner(struct nettop_sock_info *info)
{
    info->tgid = bpf_get_current_pid_tgid() >> 32;
    bpf_get_current_comm(info->comm, sizeof(info->comm));
}

/* Find or create the socket's record. `owner` is false where the hook may
 * run in softirq context, whose current task is unrelated to the socket. */
static __always_inline struct nettop_sock_info *
sock_info(struct nettop_offsets *o, __u64 sk, __u8 proto, __u8 direction, int owner)
{
    struct nettop_sock_key key = {.sk = sk};
    struct nettop_sock_info *info = bpf_map_lookup_elem(&socks, &key);
    if (info) {
        if (direction != NETTOP_DIR_UNKNOWN && info->direction == NETTOP_DIR_UNKNOWN)
            info->direction = direction;
        if (owner && info->tgid == 0)
            set_owner(info);
        /* An unbound client's port is picked after SYN_SENT: complete it. */
        if (info->sport == 0 || info->dport == 0)
            read_tuple(o, sk, info);
        return info;
    }
    struct nettop_sock_info fresh = {};
    read_tuple(o, sk, &fresh);
    fresh.proto = proto;
    fresh.direction = direction;
    fresh.first_ns = bpf_ktime_get_ns();
    fresh.last_ns = fresh.first_ns;
    if (owner)
        set_owner(&fresh);
    if (bpf_map_update_elem(&socks, &key, &fresh, BPF_NOEXIST) != 0)
        count(NETTOP_CNT_MAP_FULL);
    return bpf_map_lookup_elem(&socks, &key);
}

static __always_inline void on_connect(__u64 sk, long ret)
{
    struct nettop_offsets *o = ready_offsets();
    if (!o || ret != 0)
        return;
    count(NETTOP_CNT_CONNECT);
    sock_info(o, sk, IPPROTO_TCP, NETTOP_DIR_OUTGOING, 1);
}

static __always_inline void on_accept(__u64 sk, int owner)
{
    struct nettop_offsets *o = ready_offsets();
    if (!o || !sk)
        return;
    count(NETTOP_CNT_ACCEPT);
    sock_info(o, sk, IPPROTO_TCP, NETTOP_DIR_INCOMING, owner);
}

static __always_inline void on_send(__u64 sk, __u8 proto, long ret)
{
    struct nettop_offsets *o = ready_offsets();
    if (!o || ret <= 0)
        return;
    struct nettop_sock_info *info = sock_info(o, sk, proto, NETTOP_DIR_UNKNOWN, 1);
    if (!info)
        return;
    count(NETTOP_CNT_SEND);
    __sync_fetch_and_add(&info->bytes_sent, ret);
    info->sends += 1;
    info->last_ns = bpf_ktime_get_ns();
}

static __always_inline void on_recv(__u64 sk, __u8 proto, long ret)
{
    struct nettop_offsets *o = ready_offsets();
    if (!o || ret <= 0)
        return;
    struct nettop_sock_info *info = sock_info(o, sk, proto, NETTOP_DIR_UNKNOWN, 1);
    if (!info)
        return;
    count(NETTOP_CNT_RECV);
    __sync_fetch_and_add(&info->bytes_recv, ret);
    info->recvs += 1;
    info->last_ns = bpf_ktime_get_ns();
}

static __always_inline void on_close(__u64 sk)
{
    struct nettop_offsets *o = ready_offsets();
    if (!o)
        return;
    struct nettop_sock_key key = {.sk = sk};
    struct nettop_sock_info *info = bpf_map_lookup_elem(&socks, &key);
    if (!info)
        return;
    count(NETTOP_CNT_CLOSE);
    info->flags |= NETTOP_FLAG_CLOSED;
    info->last_ns = bpf_ktime_get_ns();
}

static __always_inline void on_retransmit(__u64 sk)
{
    struct nettop_offsets *o = ready_offsets();
    if (!o)
        return;
    struct nettop_sock_key key = {.sk = sk};
    struct nettop_sock_info *info = bpf_map_lookup_elem(&socks, &key);
    if (!info)
        return;
    count(NETTOP_CNT_RETRANSMIT);
    __sync_fetch_and_add(&info->retransmits, 1);
}

/* ---------------- kprobe backend ---------------- */

#define KPROBE_STASH(fn, hook)                                                                     \
    SEC("kprobe/" #fn) int kp_##fn(struct pt_regs *ctx)                                           \
    {                                                                                              \
        stash(hook, PT_ARG1(ctx));                                                                 \
        return 0;                                                                                  \
    }

KPROBE_STASH(tcp_v4_connect, HOOK_V4_CONNECT)
KPROBE_STASH(tcp_v6_connect, HOOK_V6_CONNECT)
KPROBE_STASH(tcp_sendmsg, HOOK_TCP_SEND)
KPROBE_STASH(tcp_recvmsg, HOOK_TCP_RECV)
KPROBE_STASH(udp_sendmsg, HOOK_UDP_SEND)
KPROBE_STASH(udp_recvmsg, HOOK_UDP_RECV)
KPROBE_STASH(udpv6_sendmsg, HOOK_UDP6_SEND)
KPROBE_STASH(udpv6_recvmsg, HOOK_UDP6_RECV)

#define KRETPROBE_CONNECT(fn, hook)                                                                \
    SEC("kretprobe/" #fn) int krp_##fn(struct pt_regs *ctx)                                       \
    {                                                                                              \
        __u64 sk = unstash(hook);                                                                  \
        if (!sk)                                                                                   \
            return 0;                                                                              \
        on_guess(sk, GUESS_HOOK_CONNECT);                                                          \
        on_connect(sk, (long)PT_RET(ctx));                                                         \
        return 0;                                                                                  \
    }

KRETPROBE_CONNECT(tcp_v4_connect, HOOK_V4_CONNECT)
KRETPROBE_CONNECT(tcp_v6_connect, HOOK_V6_CONNECT)

#define KRETPROBE_BYTES(fn, hook, handler, proto)                                                  \
    SEC("kretprobe/" #fn) int krp_##fn(struct pt_regs *ctx)                                       \
    {                                                                                              \
        __u64 sk = unstash(hook);                                                                  \
        if (sk)                                                                                    \
            handler(sk, proto, (long)PT_RET(ctx));                                                 \
        return 0;                                                                                  \
    }

KRETPROBE_BYTES(tcp_sendmsg, HOOK_TCP_SEND, on_send, IPPROTO_TCP)
KRETPROBE_BYTES(tcp_recvmsg, HOOK_TCP_RECV, on_recv, IPPROTO_TCP)
KRETPROBE_BYTES(udp_sendmsg, HOOK_UDP_SEND, on_send, IPPROTO_UDP)
KRETPROBE_BYTES(udp_recvmsg, HOOK_UDP_RECV, on_recv, IPPROTO_UDP)
KRETPROBE_BYTES(udpv6_sendmsg, HOOK_UDP6_SEND, on_send, IPPROTO_UDP)
KRETPROBE_BYTES(udpv6_recvmsg, HOOK_UDP6_RECV, on_recv, IPPROTO_UDP)

SEC("kretprobe/inet_csk_accept") int krp_inet_csk_accept(struct pt_regs *ctx)
{
    on_accept(PT_RET(ctx), 1);
    return 0;
}

SEC("kprobe/tcp_close") int kp_tcp_close(struct pt_regs *ctx)
{
    on_close(PT_ARG1(ctx));
    return 0;
}

SEC("kprobe/tcp_retransmit_skb") int kp_tcp_retransmit_skb(struct pt_regs *ctx)
{
    on_retransmit(PT_ARG1(ctx));
    return 0;
}

/* ---------------- fentry backend ----------------
 * Arguments come as an array of u64. The socket pointer is copied out with
 * probe_read so that it is a plain number to the verifier, like the kprobe
 * backend's. Return values sit right after the last argument, so functions
 * whose arity changed between kernels have one program per arity; the loader
 * keeps whichever the verifier accepts. */

static __always_inline __u64 fentry_arg(__u64 *ctx, int i)
{
    __u64 v = 0;
    bpf_probe_read_kernel(&v, sizeof(v), &ctx[i]);
    return v;
}

#define FEXIT_CONNECT(fn)                                                                          \
    SEC("fexit/" #fn) int fx_##fn(__u64 *ctx)                                                     \
    {                                                                                              \
        __u64 sk = fentry_arg(ctx, 0);                                                             \
        on_guess(sk, GUESS_HOOK_CONNECT);                                                          \
        on_connect(sk, (long)(int)ctx[3]);                                                         \
        return 0;                                                                                  \
    }

FEXIT_CONNECT(tcp_v4_connect)
FEXIT_CONNECT(tcp_v6_connect)

/* name, kernel function, handler, protocol, index of the return value */
#define FEXIT_BYTES(name, fn, handler, proto, ret_idx)                                             \
    SEC("fexit/" #fn) int fx_##name(__u64 *ctx)                                                   \
    {                                                                                              \
        handler(fentry_arg(ctx, 0), proto, (long)(int)ctx[ret_idx]);                               \
        return 0;                                                                                  \
    }

FEXIT_BYTES(tcp_sendmsg, tcp_sendmsg, on_send, IPPROTO_TCP, 3)
FEXIT_BYTES(udp_sendmsg, udp_sendmsg, on_send, IPPROTO_UDP, 3)
FEXIT_BYTES(udpv6_sendmsg, udpv6_sendmsg, on_send, IPPROTO_UDP, 3)
/* recvmsg lost its `noblock` argument in 5.19: six arguments before, five after. */
FEXIT_BYTES(tcp_recvmsg, tcp_recvmsg, on_recv, IPPROTO_TCP, 5)
FEXIT_BYTES(tcp_recvmsg_old, tcp_recvmsg, on_recv, IPPROTO_TCP, 6)
FEXIT_BYTES(udp_recvmsg, udp_recvmsg, on_recv, IPPROTO_UDP, 5)
FEXIT_BYTES(udp_recvmsg_old, udp_recvmsg, on_recv, IPPROTO_UDP, 6)
FEXIT_BYTES(udpv6_recvmsg, udpv6_recvmsg, on_recv, IPPROTO_UDP, 5)
FEXIT_BYTES(udpv6_recvmsg_old, udpv6_recvmsg, on_recv, IPPROTO_UDP, 6)

/* inet_csk_accept(sk, arg) since 6.10; (sk, flags, err, kern) before. The
 * direct ctx access lets the verifier reject the wrong arity. */
#define FEXIT_ACCEPT(name, ret_idx)                                                                \
    SEC("fexit/inet_csk_accept") int fx_##name(__u64 *ctx)                                        \
    {                                                                                              \
        if (!ctx[ret_idx])                                                                         \
            return 0;                                                                              \
        on_accept(fentry_arg(ctx, ret_idx), 1);                                                    \
        return 0;                                                                                  \
    }

FEXIT_ACCEPT(inet_csk_accept, 2)
FEXIT_ACCEPT(inet_csk_accept_old, 4)

SEC("fentry/tcp_close") int fe_tcp_close(__u64 *ctx)
{
    on_close(fentry_arg(ctx, 0));
    return 0;
}

SEC("fentry/tcp_retransmit_skb") int fe_tcp_retransmit_skb(__u64 *ctx)
{
    on_retransmit(fentry_arg(ctx, 0));
    return 0;
}

/* ---------------- tracepoint backend ----------------
 * Field offsets from /sys/kernel/tracing/events/.../format; the loader checks
 * them against the running kernel's format files before attaching. */

#define TP_FIELD(ctx, type, off) (*(type *)((char *)(ctx) + (off)))

SEC("tracepoint/sock/inet_sock_set_state") int tp_inet_sock_set_state(void *ctx)
{
    __u64 sk = TP_FIELD(ctx, __u64, 8);
    int oldstate = TP_FIELD(ctx, int, 16);
    int newstate = TP_FIELD(ctx, int, 20);
    __u16 proto = TP_FIELD(ctx, __u16, 30);
    if (proto != IPPROTO_TCP)
        return 0;
    if (newstate == TCP_SYN_SENT) {
        /* Runs in the connecting task's context (connect(2)). */
        on_guess(sk, GUESS_HOOK_TRACEPOINT);
        on_connect(sk, 0);
    } else if (newstate == TCP_ESTABLISHED && oldstate == 3 /* SYN_RECV */) {
        /* A passive open completes in softirq: the owner comes later, from
         * the first send or receive in process context. */
        on_accept(sk, 0);
    } else if (newstate == TCP_CLOSE) {
        on_close(sk);
    }
    return 0;
}

static __always_inline int tp_length(void *ctx, int recv)
{
    __u64 sk = TP_FIELD(ctx, __u64, 8);
    __u16 family = TP_FIELD(ctx, __u16, 16);
    __u16 proto = TP_FIELD(ctx, __u16, 18);
    int ret = TP_FIELD(ctx, int, 20);
    int flags = TP_FIELD(ctx, int, 24);
    if (family != AF_INET && family != AF_INET6)
        return 0;
    if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
        return 0;
    if (recv) {
        if (flags & MSG_PEEK)
            return 0;
        on_recv(sk, proto, ret);
    } else {
        on_send(sk, proto, ret);
    }
    return 0;
}

SEC("tracepoint/sock/sock_send_length") int tp_sock_send_length(void *ctx)
{
    return tp_length(ctx, 0);
}

SEC("tracepoint/sock/sock_recv_length") int tp_sock_recv_length(void *ctx)
{
    return tp_length(ctx, 1);
}

SEC("tracepoint/tcp/tcp_retransmit_skb") int tp_tcp_retransmit_skb(void *ctx)
{
    on_retransmit(TP_FIELD(ctx, __u64, 16));
    return 0;
}
