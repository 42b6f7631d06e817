#compdef nettop

autoload -U is-at-least

_nettop() {
    typeset -A opt_args
    typeset -a _arguments_options
    local ret=1

    if is-at-least 5.2; then
        _arguments_options=(-s -S -C)
    else
        _arguments_options=(-s -C)
    fi

    local context curcontext="$curcontext" state line
    _arguments "${_arguments_options[@]}" : \
'--backend=[Attach backend\: kprobe where it attaches, else fentry, else tracepoint]:BACKEND:((auto\:"kprobe where it attaches, else fentry, else tracepoint"
kprobe\:""
fentry\:""
tracepoint\:""))' \
'--offsets=[Where struct sock offsets come from\: guess and cross-check with BTF (auto), guess only, or BTF only]:OFFSETS:((auto\:"Guess, and cross-check against BTF where the kernel has it"
guess\:"Guess only; never read BTF"
btf\:"Read BTF only"))' \
'--btf=[Read BTF from this file instead of /sys/kernel/btf/vmlinux]:FILE:_files' \
'-f+[Only connections matching this filter, e.g. "proc\:nginx !port\:22 addr\:10.0.0.0/8" (keys\: port lport rport pid proc proto state health addr user cgroup container netns; ! negates)]:TERMS:_default' \
'--filter=[Only connections matching this filter, e.g. "proc\:nginx !port\:22 addr\:10.0.0.0/8" (keys\: port lport rport pid proc proto state health addr user cgroup container netns; ! negates)]:TERMS:_default' \
'--pid=[Only this process (thread-group id)]:PID:_default' \
'--port=[Only connections with this port at either end]:PORT:_default' \
'--proto=[Only this protocol]:PROTO:(tcp udp)' \
'--comm=[Only processes whose name or command line contains this text]:COMM:_default' \
'--udp-timeout=[Seconds without traffic after which a UDP flow ends]:SECONDS:_default' \
'--linger=[Seconds a closed connection stays listed]:SECONDS:_default' \
'--max-closed=[At most this many closed connections stay listed (the latest); under churn they go before their linger is over]:N:_default' \
'--max-connections=[Open connections tracked at most, in the kernel'\''s tables and in nettop'\''s own; past it new ones are refused and counted as evicted]:N:_default' \
'--ring-bytes=[Size of the kernel'\''s event ring buffer in bytes\: a power of two, at least 4096]:BYTES:_default' \
'-d+[Seconds between refreshes of the interactive table]:SECONDS:_default' \
'--interval=[Seconds between refreshes of the interactive table]:SECONDS:_default' \
'--columns=[Columns of the interactive table, comma-separated, in order\: pid, process, proto, local, remote, state, send-rate, recv-rate, sent, recv, age, rtt, retrans, send-q, recv-q, cwnd, delivery, limit \[default\: pid,process,proto,local,remote,state,rtt,send-rate,recv-rate,sent,recv,age\]]:LIST:_default' \
'(--no-resolve)--dns-server=[Reverse DNS from this server only, not those of /etc/resolv.conf (/etc/hosts is read either way)]:IP:PORT:_default' \
'--no-ipv6[Leave out IPv6 connections]' \
'--no-resolve[Show remote addresses as numbers\: no reverse DNS lookups (the table; \`d\` toggles names otherwise)]' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
'-V[Print version]' \
'--version[Print version]' \
":: :_nettop_commands" \
"*::: :->nettop" \
&& ret=0
    case $state in
    (nettop)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:nettop-command-$line[1]:"
        case $line[1] in
            (completions)
_arguments "${_arguments_options[@]}" : \
'--backend=[Attach backend\: kprobe where it attaches, else fentry, else tracepoint]:BACKEND:((auto\:"kprobe where it attaches, else fentry, else tracepoint"
kprobe\:""
fentry\:""
tracepoint\:""))' \
'--offsets=[Where struct sock offsets come from\: guess and cross-check with BTF (auto), guess only, or BTF only]:OFFSETS:((auto\:"Guess, and cross-check against BTF where the kernel has it"
guess\:"Guess only; never read BTF"
btf\:"Read BTF only"))' \
'--btf=[Read BTF from this file instead of /sys/kernel/btf/vmlinux]:FILE:_files' \
'-f+[Only connections matching this filter, e.g. "proc\:nginx !port\:22 addr\:10.0.0.0/8" (keys\: port lport rport pid proc proto state health addr user cgroup container netns; ! negates)]:TERMS:_default' \
'--filter=[Only connections matching this filter, e.g. "proc\:nginx !port\:22 addr\:10.0.0.0/8" (keys\: port lport rport pid proc proto state health addr user cgroup container netns; ! negates)]:TERMS:_default' \
'--pid=[Only this process (thread-group id)]:PID:_default' \
'--port=[Only connections with this port at either end]:PORT:_default' \
'--proto=[Only this protocol]:PROTO:(tcp udp)' \
'--comm=[Only processes whose name or command line contains this text]:COMM:_default' \
'--udp-timeout=[Seconds without traffic after which a UDP flow ends]:SECONDS:_default' \
'--linger=[Seconds a closed connection stays listed]:SECONDS:_default' \
'--max-closed=[At most this many closed connections stay listed (the latest); under churn they go before their linger is over]:N:_default' \
'--max-connections=[Open connections tracked at most, in the kernel'\''s tables and in nettop'\''s own; past it new ones are refused and counted as evicted]:N:_default' \
'--ring-bytes=[Size of the kernel'\''s event ring buffer in bytes\: a power of two, at least 4096]:BYTES:_default' \
'--no-ipv6[Leave out IPv6 connections]' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
':shell:(bash elvish fish powershell zsh)' \
&& ret=0
;;
(manpage)
_arguments "${_arguments_options[@]}" : \
'--backend=[Attach backend\: kprobe where it attaches, else fentry, else tracepoint]:BACKEND:((auto\:"kprobe where it attaches, else fentry, else tracepoint"
kprobe\:""
fentry\:""
tracepoint\:""))' \
'--offsets=[Where struct sock offsets come from\: guess and cross-check with BTF (auto), guess only, or BTF only]:OFFSETS:((auto\:"Guess, and cross-check against BTF where the kernel has it"
guess\:"Guess only; never read BTF"
btf\:"Read BTF only"))' \
'--btf=[Read BTF from this file instead of /sys/kernel/btf/vmlinux]:FILE:_files' \
'-f+[Only connections matching this filter, e.g. "proc\:nginx !port\:22 addr\:10.0.0.0/8" (keys\: port lport rport pid proc proto state health addr user cgroup container netns; ! negates)]:TERMS:_default' \
'--filter=[Only connections matching this filter, e.g. "proc\:nginx !port\:22 addr\:10.0.0.0/8" (keys\: port lport rport pid proc proto state health addr user cgroup container netns; ! negates)]:TERMS:_default' \
'--pid=[Only this process (thread-group id)]:PID:_default' \
'--port=[Only connections with this port at either end]:PORT:_default' \
'--proto=[Only this protocol]:PROTO:(tcp udp)' \
'--comm=[Only processes whose name or command line contains this text]:COMM:_default' \
'--udp-timeout=[Seconds without traffic after which a UDP flow ends]:SECONDS:_default' \
'--linger=[Seconds a closed connection stays listed]:SECONDS:_default' \
'--max-closed=[At most this many closed connections stay listed (the latest); under churn they go before their linger is over]:N:_default' \
'--max-connections=[Open connections tracked at most, in the kernel'\''s tables and in nettop'\''s own; past it new ones are refused and counted as evicted]:N:_default' \
'--ring-bytes=[Size of the kernel'\''s event ring buffer in bytes\: a power of two, at least 4096]:BYTES:_default' \
'--no-ipv6[Leave out IPv6 connections]' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
&& ret=0
;;
(offsets)
_arguments "${_arguments_options[@]}" : \
'--backend=[Attach backend\: kprobe where it attaches, else fentry, else tracepoint]:BACKEND:((auto\:"kprobe where it attaches, else fentry, else tracepoint"
kprobe\:""
fentry\:""
tracepoint\:""))' \
'--offsets=[Where struct sock offsets come from\: guess and cross-check with BTF (auto), guess only, or BTF only]:OFFSETS:((auto\:"Guess, and cross-check against BTF where the kernel has it"
guess\:"Guess only; never read BTF"
btf\:"Read BTF only"))' \
'--btf=[Read BTF from this file instead of /sys/kernel/btf/vmlinux]:FILE:_files' \
'-f+[Only connections matching this filter, e.g. "proc\:nginx !port\:22 addr\:10.0.0.0/8" (keys\: port lport rport pid proc proto state health addr user cgroup container netns; ! negates)]:TERMS:_default' \
'--filter=[Only connections matching this filter, e.g. "proc\:nginx !port\:22 addr\:10.0.0.0/8" (keys\: port lport rport pid proc proto state health addr user cgroup container netns; ! negates)]:TERMS:_default' \
'--pid=[Only this process (thread-group id)]:PID:_default' \
'--port=[Only connections with this port at either end]:PORT:_default' \
'--proto=[Only this protocol]:PROTO:(tcp udp)' \
'--comm=[Only processes whose name or command line contains this text]:COMM:_default' \
'--udp-timeout=[Seconds without traffic after which a UDP flow ends]:SECONDS:_default' \
'--linger=[Seconds a closed connection stays listed]:SECONDS:_default' \
'--max-closed=[At most this many closed connections stay listed (the latest); under churn they go before their linger is over]:N:_default' \
'--max-connections=[Open connections tracked at most, in the kernel'\''s tables and in nettop'\''s own; past it new ones are refused and counted as evicted]:N:_default' \
'--ring-bytes=[Size of the kernel'\''s event ring buffer in bytes\: a power of two, at least 4096]:BYTES:_default' \
'--json[One JSON object instead of a table]' \
'--no-ipv6[Leave out IPv6 connections]' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
&& ret=0
;;
(trace)
_arguments "${_arguments_options[@]}" : \
'--backend=[Attach backend\: kprobe where it attaches, else fentry, else tracepoint]:BACKEND:((auto\:"kprobe where it attaches, else fentry, else tracepoint"
kprobe\:""
fentry\:""
tracepoint\:""))' \
'--offsets=[Where struct sock offsets come from\: guess and cross-check with BTF (auto), guess only, or BTF only]:OFFSETS:((auto\:"Guess, and cross-check against BTF where the kernel has it"
guess\:"Guess only; never read BTF"
btf\:"Read BTF only"))' \
'--btf=[Read BTF from this file instead of /sys/kernel/btf/vmlinux]:FILE:_files' \
'-f+[Only connections matching this filter, e.g. "proc\:nginx !port\:22 addr\:10.0.0.0/8" (keys\: port lport rport pid proc proto state health addr user cgroup container netns; ! negates)]:TERMS:_default' \
'--filter=[Only connections matching this filter, e.g. "proc\:nginx !port\:22 addr\:10.0.0.0/8" (keys\: port lport rport pid proc proto state health addr user cgroup container netns; ! negates)]:TERMS:_default' \
'--pid=[Only this process (thread-group id)]:PID:_default' \
'--port=[Only connections with this port at either end]:PORT:_default' \
'--proto=[Only this protocol]:PROTO:(tcp udp)' \
'--comm=[Only processes whose name or command line contains this text]:COMM:_default' \
'--udp-timeout=[Seconds without traffic after which a UDP flow ends]:SECONDS:_default' \
'--linger=[Seconds a closed connection stays listed]:SECONDS:_default' \
'--max-closed=[At most this many closed connections stay listed (the latest); under churn they go before their linger is over]:N:_default' \
'--max-connections=[Open connections tracked at most, in the kernel'\''s tables and in nettop'\''s own; past it new ones are refused and counted as evicted]:N:_default' \
'--ring-bytes=[Size of the kernel'\''s event ring buffer in bytes\: a power of two, at least 4096]:BYTES:_default' \
'--json[One JSON object per line; the first is {"event"\:"ready",…}]' \
'--no-ipv6[Leave out IPv6 connections]' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
&& ret=0
;;
(list)
_arguments "${_arguments_options[@]}" : \
'--interval=[Read the kernel'\''s table twice, this far apart, so that TCP connections also have their health over the interval (retransmits, stalls, send limit). At least 0.2]:SECONDS:_default' \
'--backend=[Attach backend\: kprobe where it attaches, else fentry, else tracepoint]:BACKEND:((auto\:"kprobe where it attaches, else fentry, else tracepoint"
kprobe\:""
fentry\:""
tracepoint\:""))' \
'--offsets=[Where struct sock offsets come from\: guess and cross-check with BTF (auto), guess only, or BTF only]:OFFSETS:((auto\:"Guess, and cross-check against BTF where the kernel has it"
guess\:"Guess only; never read BTF"
btf\:"Read BTF only"))' \
'--btf=[Read BTF from this file instead of /sys/kernel/btf/vmlinux]:FILE:_files' \
'-f+[Only connections matching this filter, e.g. "proc\:nginx !port\:22 addr\:10.0.0.0/8" (keys\: port lport rport pid proc proto state health addr user cgroup container netns; ! negates)]:TERMS:_default' \
'--filter=[Only connections matching this filter, e.g. "proc\:nginx !port\:22 addr\:10.0.0.0/8" (keys\: port lport rport pid proc proto state health addr user cgroup container netns; ! negates)]:TERMS:_default' \
'--pid=[Only this process (thread-group id)]:PID:_default' \
'--port=[Only connections with this port at either end]:PORT:_default' \
'--proto=[Only this protocol]:PROTO:(tcp udp)' \
'--comm=[Only processes whose name or command line contains this text]:COMM:_default' \
'--udp-timeout=[Seconds without traffic after which a UDP flow ends]:SECONDS:_default' \
'--linger=[Seconds a closed connection stays listed]:SECONDS:_default' \
'--max-closed=[At most this many closed connections stay listed (the latest); under churn they go before their linger is over]:N:_default' \
'--max-connections=[Open connections tracked at most, in the kernel'\''s tables and in nettop'\''s own; past it new ones are refused and counted as evicted]:N:_default' \
'--ring-bytes=[Size of the kernel'\''s event ring buffer in bytes\: a power of two, at least 4096]:BYTES:_default' \
'--json[A JSON array]' \
'--no-ipv6[Leave out IPv6 connections]' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
&& ret=0
;;
(serve)
_arguments "${_arguments_options[@]}" : \
'--listen=[IP address and port to listen on \[default\: 127.0.0.1\:9633\]. Anything but loopback must be asked for here]:ADDR:PORT:_default' \
'--unix=[Serve on this unix socket too (mode 0600); without --listen, only on it]:PATH:_files' \
'--labels=[Labels of the per-process series, comma-separated\: process, proto, port (remote port; ephemeral ones folded), container]:LIST:_default' \
'--max-series=[The most label sets kept apart; the rest are summed into one "_overflow" set]:N:_default' \
'--max-clients=[The most agents polling /connections?client_id=ID at once; a new id past it is refused (503)]:N:_default' \
'--client-buffer=[Closed connections kept for one agent between its polls; past it the oldest go, counted in its next reply]:N:_default' \
'--client-timeout=[Seconds after which an agent that has not polled is forgotten]:SECONDS:_default' \
'--backend=[Attach backend\: kprobe where it attaches, else fentry, else tracepoint]:BACKEND:((auto\:"kprobe where it attaches, else fentry, else tracepoint"
kprobe\:""
fentry\:""
tracepoint\:""))' \
'--offsets=[Where struct sock offsets come from\: guess and cross-check with BTF (auto), guess only, or BTF only]:OFFSETS:((auto\:"Guess, and cross-check against BTF where the kernel has it"
guess\:"Guess only; never read BTF"
btf\:"Read BTF only"))' \
'--btf=[Read BTF from this file instead of /sys/kernel/btf/vmlinux]:FILE:_files' \
'-f+[Only connections matching this filter, e.g. "proc\:nginx !port\:22 addr\:10.0.0.0/8" (keys\: port lport rport pid proc proto state health addr user cgroup container netns; ! negates)]:TERMS:_default' \
'--filter=[Only connections matching this filter, e.g. "proc\:nginx !port\:22 addr\:10.0.0.0/8" (keys\: port lport rport pid proc proto state health addr user cgroup container netns; ! negates)]:TERMS:_default' \
'--pid=[Only this process (thread-group id)]:PID:_default' \
'--port=[Only connections with this port at either end]:PORT:_default' \
'--proto=[Only this protocol]:PROTO:(tcp udp)' \
'--comm=[Only processes whose name or command line contains this text]:COMM:_default' \
'--udp-timeout=[Seconds without traffic after which a UDP flow ends]:SECONDS:_default' \
'--linger=[Seconds a closed connection stays listed]:SECONDS:_default' \
'--max-closed=[At most this many closed connections stay listed (the latest); under churn they go before their linger is over]:N:_default' \
'--max-connections=[Open connections tracked at most, in the kernel'\''s tables and in nettop'\''s own; past it new ones are refused and counted as evicted]:N:_default' \
'--ring-bytes=[Size of the kernel'\''s event ring buffer in bytes\: a power of two, at least 4096]:BYTES:_default' \
'--no-ipv6[Leave out IPv6 connections]' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
":: :_nettop__subcmd__help_commands" \
"*::: :->help" \
&& ret=0

    case $state in
    (help)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:nettop-help-command-$line[1]:"
        case $line[1] in
            (completions)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(manpage)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(offsets)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(trace)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(list)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(serve)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
        esac
    ;;
esac
}

(( $+functions[_nettop_commands] )) ||
_nettop_commands() {
    local commands; commands=(
'completions:Print shell completions for nettop (bash, zsh, fish, elvish or powershell)' \
'manpage:Print the man page (roff), made from these very flags' \
'offsets:Guess the kernel'\''s struct sock offsets, print each field, and exit' \
'trace:Stream connect, accept, close, failed-connect and retransmit events until interrupted' \
'list:Print every current connection once (with exact TCP totals) and exit' \
'serve:Serve Prometheus metrics (/metrics), the connections (/connections), the tracer'\''s state (/status) and /healthz over HTTP until SIGTERM or Ctrl-C' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'nettop commands' commands "$@"
}
(( $+functions[_nettop__subcmd__completions_commands] )) ||
_nettop__subcmd__completions_commands() {
    local commands; commands=()
    _describe -t commands 'nettop completions commands' commands "$@"
}
(( $+functions[_nettop__subcmd__help_commands] )) ||
_nettop__subcmd__help_commands() {
    local commands; commands=(
'completions:Print shell completions for nettop (bash, zsh, fish, elvish or powershell)' \
'manpage:Print the man page (roff), made from these very flags' \
'offsets:Guess the kernel'\''s struct sock offsets, print each field, and exit' \
'trace:Stream connect, accept, close, failed-connect and retransmit events until interrupted' \
'list:Print every current connection once (with exact TCP totals) and exit' \
'serve:Serve Prometheus metrics (/metrics), the connections (/connections), the tracer'\''s state (/status) and /healthz over HTTP until SIGTERM or Ctrl-C' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'nettop help commands' commands "$@"
}
(( $+functions[_nettop__subcmd__help__subcmd__completions_commands] )) ||
_nettop__subcmd__help__subcmd__completions_commands() {
    local commands; commands=()
    _describe -t commands 'nettop help completions commands' commands "$@"
}
(( $+functions[_nettop__subcmd__help__subcmd__help_commands] )) ||
_nettop__subcmd__help__subcmd__help_commands() {
    local commands; commands=()
    _describe -t commands 'nettop help help commands' commands "$@"
}
(( $+functions[_nettop__subcmd__help__subcmd__list_commands] )) ||
_nettop__subcmd__help__subcmd__list_commands() {
    local commands; commands=()
    _describe -t commands 'nettop help list commands' commands "$@"
}
(( $+functions[_nettop__subcmd__help__subcmd__manpage_commands] )) ||
_nettop__subcmd__help__subcmd__manpage_commands() {
    local commands; commands=()
    _describe -t commands 'nettop help manpage commands' commands "$@"
}
(( $+functions[_nettop__subcmd__help__subcmd__offsets_commands] )) ||
_nettop__subcmd__help__subcmd__offsets_commands() {
    local commands; commands=()
    _describe -t commands 'nettop help offsets commands' commands "$@"
}
(( $+functions[_nettop__subcmd__help__subcmd__serve_commands] )) ||
_nettop__subcmd__help__subcmd__serve_commands() {
    local commands; commands=()
    _describe -t commands 'nettop help serve commands' commands "$@"
}
(( $+functions[_nettop__subcmd__help__subcmd__trace_commands] )) ||
_nettop__subcmd__help__subcmd__trace_commands() {
    local commands; commands=()
    _describe -t commands 'nettop help trace commands' commands "$@"
}
(( $+functions[_nettop__subcmd__list_commands] )) ||
_nettop__subcmd__list_commands() {
    local commands; commands=()
    _describe -t commands 'nettop list commands' commands "$@"
}
(( $+functions[_nettop__subcmd__manpage_commands] )) ||
_nettop__subcmd__manpage_commands() {
    local commands; commands=()
    _describe -t commands 'nettop manpage commands' commands "$@"
}
(( $+functions[_nettop__subcmd__offsets_commands] )) ||
_nettop__subcmd__offsets_commands() {
    local commands; commands=()
    _describe -t commands 'nettop offsets commands' commands "$@"
}
(( $+functions[_nettop__subcmd__serve_commands] )) ||
_nettop__subcmd__serve_commands() {
    local commands; commands=()
    _describe -t commands 'nettop serve commands' commands "$@"
}
(( $+functions[_nettop__subcmd__trace_commands] )) ||
_nettop__subcmd__trace_commands() {
    local commands; commands=()
    _describe -t commands 'nettop trace commands' commands "$@"
}

if [ "$funcstack[1]" = "_nettop" ]; then
    _nettop "$@"
else
    compdef _nettop nettop
fi
