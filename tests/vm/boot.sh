#!/bin/bash
# boot.sh — run one command inside a throw-away qemu VM and collect its results.
#
#   boot.sh --kernel VMLINUZ --payload DIR --run 'COMMAND' --out OUTDIR
#           [--append 'kernel args'] [--timeout SECONDS] [--mem MB] [-v]
#
# The VM boots VMLINUZ with a fresh initramfs (busybox, bpftool, DIR under
# /payload) whose /init mounts the usual pseudo file systems, brings lo up,
# runs `sh -c COMMAND` in /payload and powers off. Afterwards OUTDIR holds:
#   - whatever COMMAND wrote under /out in the VM,
#   - console.log  the serial console (kernel messages and COMMAND's output),
#   - exit_code    COMMAND's exit status; 124 if the VM timed out, 125 if it
#                  stopped without reporting (kernel panic, qemu error),
#   - btf          a copy of the guest's /sys/kernel/btf/vmlinux (if any).
# boot.sh exits with the same code as exit_code. The names console.log,
# exit_code and btf are boot.sh's: files of those names in /out are replaced.
#
# Speed (TCG boots are slow, so this matters):
#   - If VMLINUZ is .../vmlinuz-REL and an uncompressed .../vmlinux-REL sits
#     next to it (kernel.sh makes one), qemu boots that through its PVH entry
#     point: ≈ 3 s faster than letting the bzImage decompress itself.
#   - Sending the 4-6 MB BTF over the serial port takes ≈ 7 s. It is the same
#     for every boot of one kernel image, so the first boot of an image stores
#     it under ${NETTOP_CACHE:-$HOME/.cache/nettop}/btf/ (keyed by the image's
#     sha256) and later boots only send its md5, which the host checks against
#     the stored copy (a mismatch drops the copy). VM_FRESH_BTF=1 always sends it.
#
# Results leave the VM as a base64'd tar.gz on a second serial port (ttyS1),
# framed by marker lines: Debian kernels have 9p and virtio-console only as
# modules, while the 8250 UART is built in, and base64 survives any tty line
# discipline.
#
# Environment: VM_SMP (vCPUs, default 2), VM_VERBOSE=1 (same as -v: print the
# console to stderr after the run), VM_NO_PVH=1 (boot the bzImage as given),
# VM_QEMU_ARGS (extra qemu arguments, split on spaces). KVM hangs on the hosts
# this runs on, so this always uses TCG.
set -eu

die() { echo "boot.sh: $*" >&2; exit 2; }
usage() { sed -n '3,5p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

kernel="" payload="" run="" outdir="" append="" timeout_s=300 mem=1024
verbose=${VM_VERBOSE:-0}
while [ $# -gt 0 ]; do
    case $1 in
        --kernel) kernel=${2:?}; shift 2 ;;
        --payload) payload=${2:?}; shift 2 ;;
        --run) run=${2:?}; shift 2 ;;
        --out) outdir=${2:?}; shift 2 ;;
        --append) append=${2?}; shift 2 ;;
        --timeout) timeout_s=${2:?}; shift 2 ;;
        --mem) mem=${2:?}; shift 2 ;;
        -v|--verbose) verbose=1; shift ;;
        -h|--help) usage ;;
        *) echo "boot.sh: unknown argument: $1" >&2; usage ;;
    esac
done
if [ -z "$kernel" ] || [ -z "$payload" ] || [ -z "$run" ] || [ -z "$outdir" ]; then
    usage
fi
[ -f "$kernel" ] || die "no such kernel: $kernel"
[ -d "$payload" ] || die "no such payload directory: $payload"
case $timeout_s in ''|*[!0-9]*) die "--timeout wants whole seconds: $timeout_s" ;; esac
case $mem in ''|*[!0-9]*) die "--mem wants megabytes: $mem" ;; esac
for tool in qemu-system-x86_64 busybox bpftool cpio gzip ldd base64 timeout; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install qemu-system-x86 busybox-static bpftool cpio)"
done

# OUTDIR must be new, empty or a previous boot.sh result: stale results must
# not survive, but a mistyped --out must not wipe someone's directory.
marker=.nettop-vm-out
if [ -d "$outdir" ] && [ -n "$(ls -A "$outdir")" ]; then
    [ -f "$outdir/$marker" ] || die "$outdir is not empty and not a boot.sh result; refusing to clear it"
    find "$outdir" -mindepth 1 -delete
fi
mkdir -p "$outdir"
touch "$outdir/$marker"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/nettop-vm.XXXXXX")
qpid=""
# shellcheck disable=SC2317 # called from the EXIT trap
cleanup() {
    [ -z "$qpid" ] || kill -TERM "$qpid" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
t_start=$(date +%s.%N)

# --- initramfs ----------------------------------------------------------------
root=$tmp/root
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc/nettop-vm,proc,sys,dev,tmp,out,payload,boot,root}

# copy_libs FILE: put FILE's shared libraries (and the dynamic loader) into the
# initramfs at the paths ldd reports on the host, so the loader finds them in
# its default directories. Static binaries and scripts have none.
copy_libs() {
    local out lib
    out=$(ldd "$1" 2>&1) || return 0
    if grep -q 'not found' <<<"$out"; then
        die "$1: shared libraries not found on the host: $(grep 'not found' <<<"$out" | tr -s ' \t' ' ')"
    fi
    while read -r lib; do
        [ -e "$root$lib" ] && continue
        mkdir -p "$root${lib%/*}"
        cp -L "$lib" "$root$lib"
    done < <(awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i }' <<<"$out")
}

cp /bin/busybox "$root/bin/busybox"
# /init is a script: it needs /bin/sh before busybox installs its applets.
ln -s busybox "$root/bin/sh"
cp "$(command -v bpftool)" "$root/usr/sbin/bpftool"
copy_libs "$(command -v bpftool)"

# Dereference symlinks so a payload can link to build outputs elsewhere.
cp -RL --preserve=mode,timestamps "$payload/." "$root/payload/"
while IFS= read -r -d '' f; do
    copy_libs "$f"
done < <(find "$root/payload" -type f \( -perm /111 -o -name '*.so' -o -name '*.so.*' \) -print0)

# bpftool feature probe reads /boot/config-$(uname -r); the package keeps the
# config next to vmlinuz. /init renames it once it knows the release.
kdir=$(dirname "$kernel")
kbase=$(basename "$kernel")
config=$kdir/config-${kbase#vmlinuz-}
if [ ! -f "$config" ]; then
    config=$(find "$kdir" -maxdepth 1 -name 'config-*' -print -quit)
fi
[ -z "$config" ] || cp "$config" "$root/boot/config"

# Boot the uncompressed sibling through PVH when there is one (see the top).
qemu_kernel=$kernel
case $kbase in
    vmlinuz-*)
        if [ "${VM_NO_PVH:-0}" != 1 ] && [ -f "$kdir/vmlinux-${kbase#vmlinuz-}" ]; then
            qemu_kernel=$kdir/vmlinux-${kbase#vmlinuz-}
        fi ;;
esac

# A BTF copy from an earlier boot of the same image spares the transfer.
btf_cache=${NETTOP_CACHE:-$HOME/.cache/nettop}/btf
btf_key=$(sha256sum "$kernel" | cut -c1-32)
cached_btf=$btf_cache/$btf_key
if [ -f "$cached_btf" ] && [ "${VM_FRESH_BTF:-0}" != 1 ]; then
    touch "$root/etc/nettop-vm/skip-btf"
fi

printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\n' >"$root/etc/group"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
printf 'passwd: files\ngroup: files\nhosts: files\n' >"$root/etc/nsswitch.conf"
printf '%s\n' "$run" >"$root/etc/nettop-vm/command"

cat >"$root/init" <<'INIT'
#!/bin/sh
# /init generated by tests/vm/boot.sh. No `set -e`: whatever fails, the
# command's exit code and /out must still reach the host.
/bin/busybox mount -t proc proc /proc       # --install reads /proc/self/exe
/bin/busybox --install -s
export PATH=/payload:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mount -t devtmpfs devtmpfs /dev
# The kernel found no /dev/console in the initramfs: reopen stdio on it now.
exec </dev/console >/dev/console 2>&1
mount -t sysfs sysfs /sys
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t bpf bpf /sys/fs/bpf 2>/dev/null
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
# Host libraries found under /tmp (rpath into a build dir) were put in the
# initramfs's /tmp: carry them over onto the tmpfs instead of hiding them.
if [ -n "$(ls -A /tmp)" ]; then
    mv /tmp /.tmp-initramfs && mkdir /tmp
    mount -t tmpfs tmpfs /tmp
    cp -a /.tmp-initramfs/. /tmp/ && rm -rf /.tmp-initramfs
else
    mount -t tmpfs tmpfs /tmp
fi
[ -f /boot/config ] && mv /boot/config "/boot/config-$(uname -r)"
hostname nettop-vm

ip link set lo up
# The kernel adds ::1 when lo comes up; make sure of it if IPv6 is there.
if [ -d /proc/sys/net/ipv6 ] && ! grep -q '^0\{31\}1 ' /proc/net/if_inet6 2>/dev/null; then
    ip -6 addr add ::1/128 dev lo
fi

echo "nettop-vm: $(uname -r) up after $(cut -d' ' -f1 /proc/uptime) s, running the command"
cd /payload || exit 1
HOME=/root TERM=dumb NETTOP_VM=1 sh -c "$(cat /etc/nettop-vm/command)" </dev/null
rc=$?
cd /
echo "nettop-vm: command exited with $rc after $(cut -d' ' -f1 /proc/uptime) s"

mkdir -p /.vm
if [ -r /sys/kernel/btf/vmlinux ]; then
    md5sum </sys/kernel/btf/vmlinux | cut -d' ' -f1 >/.vm/btf.md5
    [ -f /etc/nettop-vm/skip-btf ] || cp /sys/kernel/btf/vmlinux /.vm/btf
fi
tar -czf /tmp/xfer.tgz out .vm
trc=$?
echo "nettop-vm: sending $(wc -c </tmp/xfer.tgz) bytes of results at $(cut -d' ' -f1 /proc/uptime) s"
stty -F /dev/ttyS1 raw -echo
# The redirection's close waits until the UART has sent everything, so
# nothing is lost to the poweroff below.
{
    echo NETTOP-XFER-BEGIN
    base64 /tmp/xfer.tgz
    echo "NETTOP-XFER-END rc=$rc tar=$trc"
} >/dev/ttyS1
echo "nettop-vm: sent at $(cut -d' ' -f1 /proc/uptime) s"
poweroff -f
INIT
chmod +x "$root/init"

(cd "$root" && find . -print0 | cpio --null -o -H newc -R 0:0 --quiet) | gzip -n -6 >"$tmp/initrd.gz"
t_initrd=$(date +%s.%N)

# --- run ----------------------------------------------------------------------
# Serial files live in $tmp: qemu's option syntax cannot take every path.
# -nodefaults and -monitor none: no NIC, no VGA, nothing on stdio.
# cryptomgr.notests skips the crypto self-tests, ≈ 0.5 s of a TCG boot.
read -r -a qemu_extra <<<"${VM_QEMU_ARGS:-}"
timeout -k 5 "$timeout_s" qemu-system-x86_64 \
    -accel tcg -cpu max -smp "${VM_SMP:-2}" -m "$mem" \
    -nographic -nodefaults -monitor none -no-reboot \
    -serial "file:$tmp/console.log" -serial "file:$tmp/ttyS1" \
    -kernel "$qemu_kernel" -initrd "$tmp/initrd.gz" \
    -append "console=ttyS0 quiet panic=-1 cryptomgr.notests $append" "${qemu_extra[@]}" </dev/null &
qpid=$!
qrc=0
wait "$qpid" || qrc=$?
qpid=""
t_end=$(date +%s.%N)

# --- results ------------------------------------------------------------------
# store_btf DIR: put the guest's BTF into OUTDIR, from DIR/btf if it was sent
# (and keep it for later boots) or else from the cache if its md5 matches.
store_btf() {
    local md5
    [ -f "$1/btf.md5" ] || return 0             # the guest has no BTF
    md5=$(cat "$1/btf.md5")
    if [ -f "$1/btf" ]; then
        mkdir -p "$btf_cache"
        cp "$1/btf" "$cached_btf.$$" && chmod 644 "$cached_btf.$$" && mv "$cached_btf.$$" "$cached_btf"
        cp "$1/btf" "$outdir/btf"
    elif [ "$(md5sum <"$cached_btf" | cut -d' ' -f1)" = "$md5" ]; then
        cp "$cached_btf" "$outdir/btf"
    else
        echo "boot.sh: cached BTF $cached_btf does not match the guest's; dropped it, the next boot sends it again" >&2
        rm -f "$cached_btf"
        return 0
    fi
    chmod 644 "$outdir/btf"                     # sysfs made it read-only
}

cp "$tmp/console.log" "$outdir/console.log" 2>/dev/null || : >"$outdir/console.log"
xfer=$tmp/ttyS1
end=$(tr -d '\r' <"$xfer" 2>/dev/null | grep -a '^NETTOP-XFER-END ' | tail -n 1 || true)
if [ -n "$end" ]; then
    rc=${end#*rc=}
    rc=${rc%% *}
    mkdir "$tmp/res"
    if tr -d '\r' <"$xfer" | sed -n '/^NETTOP-XFER-BEGIN$/,/^NETTOP-XFER-END /{/^NETTOP-XFER-/d;p}' |
        base64 -d | tar -xzf - -C "$tmp/res"; then
        cp -a "$tmp/res/out/." "$outdir/"
        store_btf "$tmp/res/.vm"
    else
        echo "boot.sh: could not unpack the results sent by the VM" >&2
        [ "$rc" -ne 0 ] || rc=125
    fi
    case $end in *" tar=0") ;; *) echo "boot.sh: tar in the VM failed: $end" >&2 ;; esac
elif [ "$qrc" -eq 124 ] || [ "$qrc" -eq 137 ]; then
    echo "boot.sh: VM timed out after $timeout_s s" >&2
    rc=124
else
    echo "boot.sh: VM stopped without reporting (qemu exit $qrc; kernel panic?)" >&2
    rc=125
fi
echo "$rc" >"$outdir/exit_code"

if [ "$verbose" = 1 ]; then
    cat "$outdir/console.log" >&2
    echo >&2        # the console's last line has no newline
elif [ "$rc" -ne 0 ]; then
    echo "boot.sh: last console lines:" >&2
    tail -n 20 "$outdir/console.log" >&2
    echo >&2
fi
awk -v a="$t_start" -v b="$t_initrd" -v c="$t_end" -v rc="$rc" 'BEGIN {
    printf "boot.sh: initramfs %.1f s, VM %.1f s, exit code %d\n", b - a, c - b, rc }' >&2
exit "$rc"
