#!/bin/sh
# kernel.sh PKG — fetch a Debian kernel package once and print its vmlinuz.
#
#   stdout line 1: path of the vmlinuz
#   stdout line 2: kernel release (the directory name under lib/modules/)
#
# PKG is one of
#   linux-image-6.1.0-56-amd64         a concrete package name
#   linux-image-6.12.*+deb12-amd64     a glob: the newest matching package
#                                      (* and ? do not match "-", so the
#                                      plain flavour never picks -rt/-cloud)
#   default-6.1 | default-6.12 | default-5.10
#                                      the newest plain -amd64 of that series
#
# Packages are looked up in the system's apt sources first (bookworm and its
# security/updates suites carry 6.1 and 6.12). Names containing "5.10.0-", and
# names the system does not know, are looked up in a private bullseye sources
# list with its own state under the cache: the system's apt configuration is
# never touched.
#
# Cache: ${NETTOP_CACHE:-$HOME/.cache/nettop}/kernels/PKG/ holds the unpacked
# package plus the files "release" and "version". Once it exists a rerun does
# no network and no apt call at all (for a concrete name).
set -eu

die() { echo "kernel.sh: $*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: kernel.sh PKG (e.g. default-6.1, linux-image-6.1.0-56-amd64)"
want=$1
cache=${NETTOP_CACHE:-$HOME/.cache/nettop}/kernels
mkdir -p "$cache"

# Private apt state for Debian 11 (bullseye). Bullseye is LTS now and its
# newest kernels are in bullseye-security, so list that suite too.
bdir=$cache/.apt-bullseye
bapt_opts() {
    # Printed one per line and split by the caller's word splitting; none of
    # the values may contain spaces (the cache path is checked below).
    printf '%s\n' \
        -o "Dir::Etc::SourceList=$bdir/sources.list" \
        -o Dir::Etc::SourceParts=/nonexistent \
        -o "Dir::State::Lists=$bdir/lists" \
        -o "Dir::Cache=$bdir/cache"
}
case $cache in *[[:space:]]*) die "NETTOP_CACHE must not contain whitespace: $cache" ;; esac

# apt drops to user _apt for downloads, which cannot write under /root; as
# root, download as root instead of getting a warning on every run.
sandbox_opt=""
[ "$(id -u)" -ne 0 ] || sandbox_opt="-o APT::Sandbox::User=root"

bullseye_ready() {
    # One network `apt-get update` for the private lists, then never again
    # (unless asked with NETTOP_APT_UPDATE=1, for newer bullseye kernels).
    if [ -f "$bdir/updated" ] && [ "${NETTOP_APT_UPDATE:-0}" != 1 ]; then
        return 0
    fi
    mkdir -p "$bdir/lists/partial" "$bdir/cache/archives/partial"
    cat >"$bdir/sources.list" <<'EOF'
deb http://deb.debian.org/debian bullseye main
deb http://deb.debian.org/debian-security bullseye-security main
EOF
    echo "kernel.sh: apt-get update (private bullseye lists in $bdir)" >&2
    # shellcheck disable=SC2046,SC2086 # word splitting of the option lists is intended
    apt-get -q $(bapt_opts) $sandbox_opt update >&2 ||
        die "apt-get update of the private bullseye lists failed"
    touch "$bdir/updated"
}

# search REGEX [bullseye] — newest package name matching REGEX, or nothing.
search() {
    if [ "${2:-}" = bullseye ]; then
        bullseye_ready
        # shellcheck disable=SC2046 # word splitting of the option list is intended
        apt-cache $(bapt_opts) search --names-only "$1"
    else
        apt-cache search --names-only "$1"
    fi | cut -d' ' -f1 | { grep -vxF -e "-" ${NETTOP_KERNEL_SKIP:+$(printf -- ' -e %s' $NETTOP_KERNEL_SKIP)} || true; } |
        sort -V | tail -n 1
}

# known NAME [bullseye] — does apt have a downloadable candidate for NAME?
known() {
    if [ "${2:-}" = bullseye ]; then
        bullseye_ready
        # shellcheck disable=SC2046 # word splitting of the option list is intended
        out=$(apt-cache $(bapt_opts) policy "$1" 2>/dev/null)
    else
        out=$(apt-cache policy "$1" 2>/dev/null)
    fi
    # `apt-cache policy` prints nothing for unknown names and
    # "Candidate: (none)" for names without a version in the sources.
    case $out in *"Candidate: (none)"*|"") return 1 ;; *) return 0 ;; esac
}

# Turn a shell glob into an anchored regex for `apt-cache search`. * and ?
# stop at "-": linux-image-6.1.0-*-amd64 must not match ...-56-rt-amd64.
glob_to_regex() {
    # shellcheck disable=SC2016 # the $ in the sed bracket is a literal character
    printf '^%s$\n' "$(printf '%s' "$1" | sed -e 's/[].+^$(){}|\\[]/\\&/g' -e 's/\*/[^-]*/g' -e 's/?/[^-]/g')"
}

print_cached() {
    d=$cache/$1
    [ -f "$d/release" ] || return 1
    set -- "$d"/boot/vmlinuz-*
    [ -f "$1" ] || return 1
    printf '%s\n%s\n' "$1" "$(cat "$d/release")"
}

# shellcheck disable=SC2013 # the offsets are numbers, one per line
# extract_vmlinux VMLINUZ CONFIG OUT — decompress the kernel proper into OUT.
# qemu boots an uncompressed vmlinux through its PVH entry point ≈ 3 s faster
# under TCG than a bzImage, which first decompresses itself in emulation;
# boot.sh uses OUT when it sits next to the vmlinuz. Optional: on any failure
# OUT is simply not made.
extract_vmlinux() {
    grep -q '^CONFIG_PVH=y' "$2" 2>/dev/null || return 0
    for magic_tool in '\xfd7zXZ\x00:xz' '\x28\xb5\x2f\xfd:zstd' '\x1f\x8b\x08:gzip'; do
        magic=${magic_tool%:*} tool=${magic_tool#*:}
        command -v "$tool" >/dev/null 2>&1 || continue
        for off in $(LC_ALL=C grep -obUaP "$magic" "$1" | cut -d: -f1 | head -n 3); do
            # The compressed kernel is followed by other data, so the tool
            # complains about trailing garbage: judge by the output instead.
            tail -c +"$((off + 1))" "$1" | "$tool" -dc >"$3.tmp" 2>/dev/null || true
            if [ "$(head -c 4 "$3.tmp" | od -An -c | tr -d ' ')" = '177ELF' ]; then
                mv "$3.tmp" "$3"
                return 0
            fi
        done
    done
    rm -f "$3.tmp"
}

# --- resolve WANT to a concrete package name and a source ------------------
src=system
glob=0
case $want in
    default-6.1) re='^linux-image-6\.1\.0-[0-9]+-amd64$' ;;
    default-6.12) re='^linux-image-6\.12\.[0-9]+\+deb12-amd64$' ;;
    default-5.10) re='^linux-image-5\.10\.0-[0-9]+-amd64$'; src=bullseye ;;
    default-*) die "unknown series '$want' (known: default-6.1, default-6.12, default-5.10)" ;;
    *'*'*|*'?'*) re=$(glob_to_regex "$want"); glob=1 ;;
    linux-image-*) re="" ;;
    *) die "not a kernel image package name: '$want'" ;;
esac
case $want in *5.10.0-*) src=bullseye ;; esac

if [ -n "$re" ]; then
    pkg=$(search "$re" "$src")
    # A glob the system does not match may name a bullseye package; the
    # default-6.x series are bookworm's only.
    if [ -z "$pkg" ] && [ "$src" = system ] && [ "$glob" = 1 ]; then
        src=bullseye
        pkg=$(search "$re" bullseye)
    fi
    [ -n "$pkg" ] || die "no package matches '$want' in the $src apt lists (run apt-get update first?)"
else
    pkg=$want
fi

# A concrete name that is already unpacked: no apt, no network.
print_cached "$pkg" && exit 0

if [ "$src" = system ] && ! known "$pkg"; then
    src=bullseye
fi
if [ "$src" = bullseye ] && ! known "$pkg" bullseye; then
    die "package '$pkg' is in neither the system's apt sources nor bullseye (try: apt-get update; apt-cache search linux-image)"
fi

# --- download and unpack once ----------------------------------------------
# Serialise concurrent runs (a CI matrix may resolve the same kernel twice).
if command -v flock >/dev/null 2>&1; then
    exec 9>"$cache/.lock"
    flock 9
    print_cached "$pkg" && exit 0
fi

work=$(mktemp -d "$cache/.tmp.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

echo "kernel.sh: downloading $pkg ($src)" >&2
t0=$(date +%s)
# A listed package the mirror does not serve (seen: the newest bullseye rt
# kernel): a glob or default-* falls back to the next newest (20 tries at most; each 404 is quick).
retry_older() {
    if [ -n "$re" ] && [ "$(echo "${NETTOP_KERNEL_SKIP:-}" | wc -w)" -lt 20 ]; then
        echo "kernel.sh: $pkg cannot be downloaded; trying the next newest" >&2
        rm -rf "$work"
        NETTOP_KERNEL_SKIP="${NETTOP_KERNEL_SKIP:-} $pkg" exec "$0" "$want"
    fi
    die "$1"
}
if [ "$src" = bullseye ]; then
    # shellcheck disable=SC2046,SC2086 # word splitting of the option lists is intended
    (cd "$work" && apt-get -q $(bapt_opts) $sandbox_opt download "$pkg" >&2) ||
        retry_older "apt-get download $pkg (bullseye) failed"
else
    # shellcheck disable=SC2086 # word splitting of the option is intended
    (cd "$work" && apt-get -q $sandbox_opt download "$pkg" >&2) ||
        retry_older "apt-get download $pkg failed (stale lists? try: apt-get update)"
fi
t1=$(date +%s)

set -- "$work"/*.deb
[ -f "$1" ] || die "apt-get download produced no .deb for $pkg"
deb=$1
mkdir "$work/root"
dpkg-deb -x "$deb" "$work/root"
dpkg-deb -f "$deb" Version >"$work/root/version"

# Modules live in lib/modules (bookworm, bullseye) or usr/lib/modules (later).
release=""
for m in "$work"/root/lib/modules/* "$work"/root/usr/lib/modules/*; do
    [ -d "$m" ] && release=${m##*/} && break
done
[ -n "$release" ] || die "$pkg has no lib/modules/<release> directory"
[ -f "$work/root/boot/vmlinuz-$release" ] || die "$pkg has no boot/vmlinuz-$release"
echo "$release" >"$work/root/release"
t2=$(date +%s)
extract_vmlinux "$work/root/boot/vmlinuz-$release" "$work/root/boot/config-$release" \
    "$work/root/boot/vmlinux-$release"
t3=$(date +%s)
echo "kernel.sh: $pkg: download $((t1 - t0)) s, unpack $((t2 - t1)) s, extract vmlinux $((t3 - t2)) s" >&2

# Publish atomically: a half-unpacked tree is never seen as cached. The .deb
# is dropped; the unpacked tree (with modules, for tests that need one) is
# the cache.
rm -rf "${cache:?}/$pkg"
mv "$work/root" "$cache/$pkg"
print_cached "$pkg"
