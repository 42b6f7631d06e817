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
#   default-6.1 | default-6.12 | default-5.10 | default-trixie | default-sid
#                                      the newest plain -amd64 of that series
#
# Packages are looked up in the system's apt sources first (bookworm and its
# security/updates suites carry 6.1 and 6.12). Other suites (bullseye for
# 5.10, trixie for +deb13, sid for +deb14 and later) have private sources
# lists with their own state under the cache: the system's apt configuration
# is never touched. A name the system does not know is tried in each.
#
# From trixie on, linux-image-REL is a stub depending on linux-binary-REL
# (usr/lib/modules/REL/vmlinuz), linux-modules-REL and linux-base-REL (the
# config): those are fetched with it, and the tree is laid out as the older
# packages' (boot/vmlinuz-REL, boot/config-REL, lib/modules/REL).
#
# sid deletes superseded kernels: a concrete sid package that cannot be
# downloaded refreshes the private sid lists once and tries again; if sid no
# longer has it, its newest plain kernel is taken instead, and kernel.sh says
# so on stderr (the release printed is the one really fetched).
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

# Private apt state per suite, under the cache. "system" is the machine's own
# apt configuration. Bullseye is LTS now and its newest kernels are in
# bullseye-security; trixie's come through trixie-security and point
# releases.
PRIVATE_SUITES="bullseye trixie sid"
suite_dir() { echo "$cache/.apt-$1"; }
suite_sources() {
    case $1 in
        bullseye) printf '%s\n' "deb http://deb.debian.org/debian bullseye main" \
            "deb http://deb.debian.org/debian-security bullseye-security main" ;;
        trixie) printf '%s\n' "deb http://deb.debian.org/debian trixie main" \
            "deb http://deb.debian.org/debian trixie-updates main" \
            "deb http://deb.debian.org/debian-security trixie-security main" ;;
        sid) printf '%s\n' "deb http://deb.debian.org/debian sid main" ;;
        *) die "no private sources for suite '$1'" ;;
    esac
}
suite_opts() {
    # Printed one per line and split by the caller's word splitting; none of
    # the values may contain spaces (the cache path is checked below).
    [ "$1" = system ] && return 0
    d=$(suite_dir "$1")
    printf '%s\n' \
        -o "Dir::Etc::SourceList=$d/sources.list" \
        -o Dir::Etc::SourceParts=/nonexistent \
        -o "Dir::State::Lists=$d/lists" \
        -o "Dir::Cache=$d/cache"
}
case $cache in *[[:space:]]*) die "NETTOP_CACHE must not contain whitespace: $cache" ;; esac

# apt drops to user _apt for downloads, which cannot write under /root; as
# root, download as root instead of getting a warning on every run.
sandbox_opt=""
[ "$(id -u)" -ne 0 ] || sandbox_opt="-o APT::Sandbox::User=root"

# update_suite SUITE — fetch a private suite's lists (network). One at a
# time per suite: two VMs of a matrix may ask at once.
update_suite() {
    d=$(suite_dir "$1")
    mkdir -p "$d/lists/partial" "$d/cache/archives/partial"
    (
        if command -v flock >/dev/null 2>&1; then flock 8; fi
        suite_sources "$1" >"$d/sources.list"
        echo "kernel.sh: apt-get update (private $1 lists in $d)" >&2
        # shellcheck disable=SC2046,SC2086 # word splitting of the option lists is intended
        apt-get -q $(suite_opts "$1") $sandbox_opt update >&2 ||
            die "apt-get update of the private $1 lists failed"
        touch "$d/updated"
    ) 8>"$d.lock" || exit 1
}

# suite_ready SUITE — one network `apt-get update` for a private suite's
# lists, then never again (unless asked with NETTOP_APT_UPDATE=1, for newer
# kernels, or after a download that failed: see fetch below).
suite_ready() {
    [ "$1" = system ] && return 0
    if [ -f "$(suite_dir "$1")/updated" ] && [ "${NETTOP_APT_UPDATE:-0}" != 1 ]; then
        return 0
    fi
    update_suite "$1"
}

# search REGEX SUITE — newest package name matching REGEX, or nothing.
search() {
    suite_ready "$2"
    # shellcheck disable=SC2046,SC2086 # word splitting of the option and skip lists is intended
    apt-cache $(suite_opts "$2") search --names-only "$1" |
        cut -d' ' -f1 | { grep -vxF -e "-" ${NETTOP_KERNEL_SKIP:+$(printf -- ' -e %s' $NETTOP_KERNEL_SKIP)} || true; } |
        sort -V | tail -n 1
}

# known NAME SUITE — does apt have a downloadable candidate for NAME?
known() {
    suite_ready "$2"
    # shellcheck disable=SC2046 # word splitting of the option list is intended
    out=$(apt-cache $(suite_opts "$2") policy "$1" 2>/dev/null)
    # `apt-cache policy` prints nothing for unknown names and
    # "Candidate: (none)" for names without a version in the sources.
    case $out in *"Candidate: (none)"*|"") return 1 ;; *) return 0 ;; esac
}

# The suite a package name belongs to, by its version tag; "system" for
# bookworm's and for names without one.
suite_of() {
    case $1 in
        *5.10.0-*) echo bullseye ;;
        *+deb13-*) echo trixie ;;
        *+deb1[4-9]-*) echo sid ;;
        *) echo system ;;
    esac
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

# --- resolve WANT to a concrete package name and a suite -------------------
glob=0
case $want in
    default-6.1) re='^linux-image-6\.1\.0-[0-9]+-amd64$'; src=system ;;
    default-6.12) re='^linux-image-6\.12\.[0-9]+\+deb12-amd64$'; src=system ;;
    default-5.10) re='^linux-image-5\.10\.0-[0-9]+-amd64$'; src=bullseye ;;
    default-trixie) re='^linux-image-[0-9.]+\+deb13-amd64$'; src=trixie ;;
    default-sid) re='^linux-image-[0-9.]+\+deb[0-9]+-amd64$'; src=sid ;;
    default-*) die "unknown series '$want' (known: default-5.10, default-6.1, default-6.12, default-trixie, default-sid)" ;;
    *'*'*|*'?'*) re=$(glob_to_regex "$want"); glob=1; src=$(suite_of "$want") ;;
    linux-image-*) re=""; src=$(suite_of "$want") ;;
    *) die "not a kernel image package name: '$want'" ;;
esac

if [ -n "$re" ]; then
    pkg=$(search "$re" "$src")
    # A glob the system does not match may name another suite's package.
    if [ -z "$pkg" ] && [ "$src" = system ] && [ "$glob" = 1 ]; then
        for s in $PRIVATE_SUITES; do
            pkg=$(search "$re" "$s") && [ -n "$pkg" ] && src=$s && break
        done
    fi
    [ -n "$pkg" ] || die "no package matches '$want' in the $src apt lists (run apt-get update first?)"
else
    pkg=$want
fi

# A concrete name that is already unpacked: no apt, no network.
print_cached "$pkg" && exit 0

if ! known "$pkg" "$src"; then
    found=""
    for s in system $PRIVATE_SUITES; do
        [ "$s" = "$src" ] && continue
        known "$pkg" "$s" && found=$s && break
    done
    if [ -z "$found" ] && [ "$src" = sid ] && [ -z "$re" ]; then
        found=gone # sid dropped it since the lists were fetched: see fetch
    fi
    [ -n "$found" ] || die "package '$pkg' is in none of the apt sources tried (system $PRIVATE_SUITES; try: apt-get update; apt-cache search linux-image)"
    [ "$found" = gone ] || src=$found
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

# download NAME… — into $work, from $src.
download() {
    # shellcheck disable=SC2046,SC2086 # word splitting of the option lists is intended
    (cd "$work" && apt-get -q $(suite_opts "$src") $sandbox_opt download "$@" >&2)
}

# The packages that make up the kernel: the image itself, and from trixie on
# the split parts it depends on, at the versions its Depends names
# ("linux-binary-REL (= VER)" becomes "linux-binary-REL=VER").
parts() {
    # shellcheck disable=SC2046 # word splitting of the option list is intended
    apt-cache $(suite_opts "$src") show --no-all-versions "$pkg" 2>/dev/null |
        sed -n 's/^Depends: //p' | tr ',' '\n' |
        sed -n -e 's/^ *\(linux-\(binary\|modules\|base\)-[^ ]*\) *(= *\([^)]*\)).*/\1=\3/p; t' \
            -e 's/^ *\(linux-\(binary\|modules\|base\)-[^ (]*\) *$/\1/p'
}

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
# sid deletes superseded kernels: refresh its lists once, then take the
# concrete package if sid still has it, else sid's newest plain kernel.
sid_moved() {
    [ "$src" = sid ] && [ -z "$re" ] && [ -z "${NETTOP_SID_REFRESHED:-}" ] || return 1
    echo "kernel.sh: $pkg cannot be downloaded from sid; refreshing the private sid lists once" >&2
    update_suite sid
    rm -rf "$work"
    if known "$pkg" sid; then
        NETTOP_SID_REFRESHED=1 exec "$0" "$want"
    fi
    newest=$(search '^linux-image-[0-9.]+\+deb[0-9]+-amd64$' sid)
    [ -n "$newest" ] || die "sid has no plain amd64 kernel"
    echo "kernel.sh: sid no longer has $pkg; taking sid's newest plain kernel, $newest, instead (update the pinned release in tests/vm/run and docs/kernels.md)" >&2
    # Later runs find the substitute under the pinned name, with no network.
    NETTOP_SID_REFRESHED=1 "$0" "$newest" >/dev/null && ln -sfn "$newest" "$cache/$pkg" && exec "$0" "$pkg"
    exit 1
}
if ! download "$pkg"; then
    sid_moved || retry_older "apt-get download $pkg ($src) failed (stale lists? try: apt-get update, or NETTOP_APT_UPDATE=1)"
fi
extra=$(parts)
if [ -n "$extra" ]; then
    # shellcheck disable=SC2086 # one package name per word
    download $extra || { sid_moved || retry_older "apt-get download of $pkg's parts ($src) failed: $extra"; }
fi
t1=$(date +%s)

set -- "$work"/*.deb
[ -f "$1" ] || die "apt-get download produced no .deb for $pkg"
mkdir "$work/root"
for deb in "$work"/*.deb; do
    dpkg-deb -x "$deb" "$work/root"
done
set -- "$work"/linux-image-*.deb
dpkg-deb -f "$1" Version >"$work/root/version"

# Modules live in lib/modules (bookworm, bullseye) or usr/lib/modules (later).
release=""
for m in "$work"/root/lib/modules/* "$work"/root/usr/lib/modules/*; do
    [ -d "$m" ] && release=${m##*/} && break
done
[ -n "$release" ] || die "$pkg has no lib/modules/<release> directory"
# The split packages' layout, laid out as the older packages': the harness
# finds the kernel and its config in boot/ and the modules in lib/modules.
r=$work/root
if [ ! -d "$r/lib/modules/$release" ] && [ -d "$r/usr/lib/modules/$release" ]; then
    mkdir -p "$r/lib/modules" "$r/boot"
    mv "$r/usr/lib/modules/$release" "$r/lib/modules/$release"
    for f in vmlinuz config System.map; do
        [ -f "$r/lib/modules/$release/$f" ] && mv "$r/lib/modules/$release/$f" "$r/boot/$f-$release"
    done
fi
[ -f "$r/boot/vmlinuz-$release" ] || die "$pkg has no boot/vmlinuz-$release (nor usr/lib/modules/$release/vmlinuz)"
echo "$release" >"$r/release"
t2=$(date +%s)
extract_vmlinux "$r/boot/vmlinuz-$release" "$r/boot/config-$release" "$r/boot/vmlinux-$release"
t3=$(date +%s)
echo "kernel.sh: $pkg: download $((t1 - t0)) s, unpack $((t2 - t1)) s, extract vmlinux $((t3 - t2)) s" >&2

# Publish atomically: a half-unpacked tree is never seen as cached. The .debs
# are dropped; the unpacked tree (with modules, for tests that need one) is
# the cache.
rm -rf "${cache:?}/$pkg"
mv "$r" "$cache/$pkg"
print_cached "$pkg"
