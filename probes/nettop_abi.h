/* SPDX-License-Identifier: GPL-2.0 OR MIT
 *
 * Our own minimal kernel ABI, in place of vmlinux.h and libbpf's headers:
 * fixed-width types, map and helper declarations, stable UAPI numbers and
 * x86_64 pt_regs. Nothing here depends on one kernel's struct layouts:
 * where the probe needs a field of `struct sock` it reads it at an offset
 * guessed at run time (see `struct nettop_offsets` in nettop.h).
 */
#ifndef NETTOP_ABI_H
#define NETTOP_ABI_H

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef signed int __s32;
typedef signed long long __s64;

#define SEC(name) __attribute__((section(name), used))
#define __always_inline inline __attribute__((always_inline))
#define __uint(name, val) int(*name)[val]
#define __type(name, val) typeof(val) *name

/* Stable UAPI numbers (include/uapi/linux/bpf.h, socket.h, in.h). */
#define BPF_MAP_TYPE_HASH 1
#define BPF_MAP_TYPE_ARRAY 2
#define BPF_MAP_TYPE_PERCPU_ARRAY 6
#define BPF_MAP_TYPE_LRU_HASH 9
#define BPF_MAP_TYPE_RINGBUF 27
#define BPF_ANY 0
#define BPF_NOEXIST 1
#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define MSG_PEEK 2

/* A raw_tp program's context: the tracepoint's arguments, as u64s. */
struct bpf_raw_tracepoint_args {
    __u64 args[0];
};
#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_SYN_RECV 3
#define TCP_FIN_WAIT1 4
#define TCP_CLOSE 7
#define TCP_CLOSE_WAIT 8
#define TCP_LAST_ACK 9
#define TCP_CLOSING 11
#define EINPROGRESS 115
#define EEXIST 17

/* Helpers by their stable ids. */
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static long (*bpf_map_update_elem)(void *map, const void *key, const void *value,
                                   __u64 flags) = (void *)2;
static long (*bpf_map_delete_elem)(void *map, const void *key) = (void *)3;
static __u64 (*bpf_ktime_get_ns)(void) = (void *)5;
static __u64 (*bpf_get_current_pid_tgid)(void) = (void *)14;
static long (*bpf_get_current_comm)(void *buf, __u32 size) = (void *)16;
static long (*bpf_probe_read_user)(void *dst, __u32 size, const void *src) = (void *)112;
static long (*bpf_probe_read_kernel)(void *dst, __u32 size, const void *src) = (void *)113;
static void *(*bpf_ringbuf_reserve)(void *ringbuf, __u64 size, __u64 flags) = (void *)131;
static void (*bpf_ringbuf_submit)(void *data, __u64 flags) = (void *)132;

/* x86_64 `struct pt_regs` (arch/x86/include/uapi/asm/ptrace.h): stable ABI. */
struct pt_regs {
    unsigned long r15, r14, r13, r12, bp, bx, r11, r10, r9, r8;
    unsigned long ax, cx, dx, si, di, orig_ax, ip, cs, flags, sp, ss;
};
#define PT_ARG1(r) ((r)->di)
#define PT_ARG2(r) ((r)->si)
#define PT_ARG4(r) ((r)->cx)
#define PT_ARG5(r) ((r)->r8)
#define PT_RET(r) ((r)->ax)

#endif
