# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_nettop_global_optspecs
    string join \n backend= offsets= btf= f/filter= pid= port= proto= comm= udp-timeout= linger= max-closed= max-connections= ring-bytes= no-ipv6 d/interval= columns= no-resolve dns-server= h/help V/version
end

function __fish_nettop_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_nettop_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_nettop_using_subcommand
    set -l cmd (__fish_nettop_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c nettop -n "__fish_nettop_needs_command" -l backend -d 'Attach backend: kprobe where it attaches, else fentry, else tracepoint' -r -f -a "auto\t'kprobe where it attaches, else fentry, else tracepoint'
kprobe\t''
fentry\t''
tracepoint\t''"
complete -c nettop -n "__fish_nettop_needs_command" -l offsets -d 'Where struct sock offsets come from: guess and cross-check with BTF (auto), guess only, or BTF only' -r -f -a "auto\t'Guess, and cross-check against BTF where the kernel has it'
guess\t'Guess only; never read BTF'
btf\t'Read BTF only'"
complete -c nettop -n "__fish_nettop_needs_command" -l btf -d 'Read BTF from this file instead of /sys/kernel/btf/vmlinux' -r -F
complete -c nettop -n "__fish_nettop_needs_command" -s f -l filter -d 'Only connections matching this filter, e.g. "proc:nginx !port:22 addr:10.0.0.0/8" (keys: port lport rport pid proc proto state health addr user cgroup container netns; ! negates)' -r
complete -c nettop -n "__fish_nettop_needs_command" -l pid -d 'Only this process (thread-group id)' -r
complete -c nettop -n "__fish_nettop_needs_command" -l port -d 'Only connections with this port at either end' -r
complete -c nettop -n "__fish_nettop_needs_command" -l proto -d 'Only this protocol' -r -f -a "tcp\t''
udp\t''"
complete -c nettop -n "__fish_nettop_needs_command" -l comm -d 'Only processes whose name or command line contains this text' -r
complete -c nettop -n "__fish_nettop_needs_command" -l udp-timeout -d 'Seconds without traffic after which a UDP flow ends' -r
complete -c nettop -n "__fish_nettop_needs_command" -l linger -d 'Seconds a closed connection stays listed' -r
complete -c nettop -n "__fish_nettop_needs_command" -l max-closed -d 'At most this many closed connections stay listed (the latest); under churn they go before their linger is over' -r
complete -c nettop -n "__fish_nettop_needs_command" -l max-connections -d 'Open connections tracked at most, in the kernel\'s tables and in nettop\'s own; past it new ones are refused and counted as evicted' -r
complete -c nettop -n "__fish_nettop_needs_command" -l ring-bytes -d 'Size of the kernel\'s event ring buffer in bytes: a power of two, at least 4096' -r
complete -c nettop -n "__fish_nettop_needs_command" -s d -l interval -d 'Seconds between refreshes of the interactive table' -r
complete -c nettop -n "__fish_nettop_needs_command" -l columns -d 'Columns of the interactive table, comma-separated, in order: pid, process, proto, local, remote, state, send-rate, recv-rate, sent, recv, age, rtt, retrans, send-q, recv-q, cwnd, delivery, limit [default: pid,process,proto,local,remote,state,rtt,send-rate,recv-rate,sent,recv,age]' -r
complete -c nettop -n "__fish_nettop_needs_command" -l dns-server -d 'Reverse DNS from this server only, not those of /etc/resolv.conf (/etc/hosts is read either way)' -r
complete -c nettop -n "__fish_nettop_needs_command" -l no-ipv6 -d 'Leave out IPv6 connections'
complete -c nettop -n "__fish_nettop_needs_command" -l no-resolve -d 'Show remote addresses as numbers: no reverse DNS lookups (the table; `d` toggles names otherwise)'
complete -c nettop -n "__fish_nettop_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c nettop -n "__fish_nettop_needs_command" -s V -l version -d 'Print version'
complete -c nettop -n "__fish_nettop_needs_command" -f -a "completions" -d 'Print shell completions for nettop (bash, zsh, fish, elvish or powershell)'
complete -c nettop -n "__fish_nettop_needs_command" -f -a "manpage" -d 'Print the man page (roff), made from these very flags'
complete -c nettop -n "__fish_nettop_needs_command" -f -a "offsets" -d 'Guess the kernel\'s struct sock offsets, print each field, and exit'
complete -c nettop -n "__fish_nettop_needs_command" -f -a "trace" -d 'Stream connect, accept, close, failed-connect and retransmit events until interrupted'
complete -c nettop -n "__fish_nettop_needs_command" -f -a "list" -d 'Print every current connection once (with exact TCP totals) and exit'
complete -c nettop -n "__fish_nettop_needs_command" -f -a "serve" -d 'Serve Prometheus metrics (/metrics), the connections (/connections), the tracer\'s state (/status) and /healthz over HTTP until SIGTERM or Ctrl-C'
complete -c nettop -n "__fish_nettop_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c nettop -n "__fish_nettop_using_subcommand completions" -l backend -d 'Attach backend: kprobe where it attaches, else fentry, else tracepoint' -r -f -a "auto\t'kprobe where it attaches, else fentry, else tracepoint'
kprobe\t''
fentry\t''
tracepoint\t''"
complete -c nettop -n "__fish_nettop_using_subcommand completions" -l offsets -d 'Where struct sock offsets come from: guess and cross-check with BTF (auto), guess only, or BTF only' -r -f -a "auto\t'Guess, and cross-check against BTF where the kernel has it'
guess\t'Guess only; never read BTF'
btf\t'Read BTF only'"
complete -c nettop -n "__fish_nettop_using_subcommand completions" -l btf -d 'Read BTF from this file instead of /sys/kernel/btf/vmlinux' -r -F
complete -c nettop -n "__fish_nettop_using_subcommand completions" -s f -l filter -d 'Only connections matching this filter, e.g. "proc:nginx !port:22 addr:10.0.0.0/8" (keys: port lport rport pid proc proto state health addr user cgroup container netns; ! negates)' -r
complete -c nettop -n "__fish_nettop_using_subcommand completions" -l pid -d 'Only this process (thread-group id)' -r
complete -c nettop -n "__fish_nettop_using_subcommand completions" -l port -d 'Only connections with this port at either end' -r
complete -c nettop -n "__fish_nettop_using_subcommand completions" -l proto -d 'Only this protocol' -r -f -a "tcp\t''
udp\t''"
complete -c nettop -n "__fish_nettop_using_subcommand completions" -l comm -d 'Only processes whose name or command line contains this text' -r
complete -c nettop -n "__fish_nettop_using_subcommand completions" -l udp-timeout -d 'Seconds without traffic after which a UDP flow ends' -r
complete -c nettop -n "__fish_nettop_using_subcommand completions" -l linger -d 'Seconds a closed connection stays listed' -r
complete -c nettop -n "__fish_nettop_using_subcommand completions" -l max-closed -d 'At most this many closed connections stay listed (the latest); under churn they go before their linger is over' -r
complete -c nettop -n "__fish_nettop_using_subcommand completions" -l max-connections -d 'Open connections tracked at most, in the kernel\'s tables and in nettop\'s own; past it new ones are refused and counted as evicted' -r
complete -c nettop -n "__fish_nettop_using_subcommand completions" -l ring-bytes -d 'Size of the kernel\'s event ring buffer in bytes: a power of two, at least 4096' -r
complete -c nettop -n "__fish_nettop_using_subcommand completions" -l no-ipv6 -d 'Leave out IPv6 connections'
complete -c nettop -n "__fish_nettop_using_subcommand completions" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c nettop -n "__fish_nettop_using_subcommand manpage" -l backend -d 'Attach backend: kprobe where it attaches, else fentry, else tracepoint' -r -f -a "auto\t'kprobe where it attaches, else fentry, else tracepoint'
kprobe\t''
fentry\t''
tracepoint\t''"
complete -c nettop -n "__fish_nettop_using_subcommand manpage" -l offsets -d 'Where struct sock offsets come from: guess and cross-check with BTF (auto), guess only, or BTF only' -r -f -a "auto\t'Guess, and cross-check against BTF where the kernel has it'
guess\t'Guess only; never read BTF'
btf\t'Read BTF only'"
complete -c nettop -n "__fish_nettop_using_subcommand manpage" -l btf -d 'Read BTF from this file instead of /sys/kernel/btf/vmlinux' -r -F
complete -c nettop -n "__fish_nettop_using_subcommand manpage" -s f -l filter -d 'Only connections matching this filter, e.g. "proc:nginx !port:22 addr:10.0.0.0/8" (keys: port lport rport pid proc proto state health addr user cgroup container netns; ! negates)' -r
complete -c nettop -n "__fish_nettop_using_subcommand manpage" -l pid -d 'Only this process (thread-group id)' -r
complete -c nettop -n "__fish_nettop_using_subcommand manpage" -l port -d 'Only connections with this port at either end' -r
complete -c nettop -n "__fish_nettop_using_subcommand manpage" -l proto -d 'Only this protocol' -r -f -a "tcp\t''
udp\t''"
complete -c nettop -n "__fish_nettop_using_subcommand manpage" -l comm -d 'Only processes whose name or command line contains this text' -r
complete -c nettop -n "__fish_nettop_using_subcommand manpage" -l udp-timeout -d 'Seconds without traffic after which a UDP flow ends' -r
complete -c nettop -n "__fish_nettop_using_subcommand manpage" -l linger -d 'Seconds a closed connection stays listed' -r
complete -c nettop -n "__fish_nettop_using_subcommand manpage" -l max-closed -d 'At most this many closed connections stay listed (the latest); under churn they go before their linger is over' -r
complete -c nettop -n "__fish_nettop_using_subcommand manpage" -l max-connections -d 'Open connections tracked at most, in the kernel\'s tables and in nettop\'s own; past it new ones are refused and counted as evicted' -r
complete -c nettop -n "__fish_nettop_using_subcommand manpage" -l ring-bytes -d 'Size of the kernel\'s event ring buffer in bytes: a power of two, at least 4096' -r
complete -c nettop -n "__fish_nettop_using_subcommand manpage" -l no-ipv6 -d 'Leave out IPv6 connections'
complete -c nettop -n "__fish_nettop_using_subcommand manpage" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c nettop -n "__fish_nettop_using_subcommand offsets" -l backend -d 'Attach backend: kprobe where it attaches, else fentry, else tracepoint' -r -f -a "auto\t'kprobe where it attaches, else fentry, else tracepoint'
kprobe\t''
fentry\t''
tracepoint\t''"
complete -c nettop -n "__fish_nettop_using_subcommand offsets" -l offsets -d 'Where struct sock offsets come from: guess and cross-check with BTF (auto), guess only, or BTF only' -r -f -a "auto\t'Guess, and cross-check against BTF where the kernel has it'
guess\t'Guess only; never read BTF'
btf\t'Read BTF only'"
complete -c nettop -n "__fish_nettop_using_subcommand offsets" -l btf -d 'Read BTF from this file instead of /sys/kernel/btf/vmlinux' -r -F
complete -c nettop -n "__fish_nettop_using_subcommand offsets" -s f -l filter -d 'Only connections matching this filter, e.g. "proc:nginx !port:22 addr:10.0.0.0/8" (keys: port lport rport pid proc proto state health addr user cgroup container netns; ! negates)' -r
complete -c nettop -n "__fish_nettop_using_subcommand offsets" -l pid -d 'Only this process (thread-group id)' -r
complete -c nettop -n "__fish_nettop_using_subcommand offsets" -l port -d 'Only connections with this port at either end' -r
complete -c nettop -n "__fish_nettop_using_subcommand offsets" -l proto -d 'Only this protocol' -r -f -a "tcp\t''
udp\t''"
complete -c nettop -n "__fish_nettop_using_subcommand offsets" -l comm -d 'Only processes whose name or command line contains this text' -r
complete -c nettop -n "__fish_nettop_using_subcommand offsets" -l udp-timeout -d 'Seconds without traffic after which a UDP flow ends' -r
complete -c nettop -n "__fish_nettop_using_subcommand offsets" -l linger -d 'Seconds a closed connection stays listed' -r
complete -c nettop -n "__fish_nettop_using_subcommand offsets" -l max-closed -d 'At most this many closed connections stay listed (the latest); under churn they go before their linger is over' -r
complete -c nettop -n "__fish_nettop_using_subcommand offsets" -l max-connections -d 'Open connections tracked at most, in the kernel\'s tables and in nettop\'s own; past it new ones are refused and counted as evicted' -r
complete -c nettop -n "__fish_nettop_using_subcommand offsets" -l ring-bytes -d 'Size of the kernel\'s event ring buffer in bytes: a power of two, at least 4096' -r
complete -c nettop -n "__fish_nettop_using_subcommand offsets" -l json -d 'One JSON object instead of a table'
complete -c nettop -n "__fish_nettop_using_subcommand offsets" -l no-ipv6 -d 'Leave out IPv6 connections'
complete -c nettop -n "__fish_nettop_using_subcommand offsets" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c nettop -n "__fish_nettop_using_subcommand trace" -l backend -d 'Attach backend: kprobe where it attaches, else fentry, else tracepoint' -r -f -a "auto\t'kprobe where it attaches, else fentry, else tracepoint'
kprobe\t''
fentry\t''
tracepoint\t''"
complete -c nettop -n "__fish_nettop_using_subcommand trace" -l offsets -d 'Where struct sock offsets come from: guess and cross-check with BTF (auto), guess only, or BTF only' -r -f -a "auto\t'Guess, and cross-check against BTF where the kernel has it'
guess\t'Guess only; never read BTF'
btf\t'Read BTF only'"
complete -c nettop -n "__fish_nettop_using_subcommand trace" -l btf -d 'Read BTF from this file instead of /sys/kernel/btf/vmlinux' -r -F
complete -c nettop -n "__fish_nettop_using_subcommand trace" -s f -l filter -d 'Only connections matching this filter, e.g. "proc:nginx !port:22 addr:10.0.0.0/8" (keys: port lport rport pid proc proto state health addr user cgroup container netns; ! negates)' -r
complete -c nettop -n "__fish_nettop_using_subcommand trace" -l pid -d 'Only this process (thread-group id)' -r
complete -c nettop -n "__fish_nettop_using_subcommand trace" -l port -d 'Only connections with this port at either end' -r
complete -c nettop -n "__fish_nettop_using_subcommand trace" -l proto -d 'Only this protocol' -r -f -a "tcp\t''
udp\t''"
complete -c nettop -n "__fish_nettop_using_subcommand trace" -l comm -d 'Only processes whose name or command line contains this text' -r
complete -c nettop -n "__fish_nettop_using_subcommand trace" -l udp-timeout -d 'Seconds without traffic after which a UDP flow ends' -r
complete -c nettop -n "__fish_nettop_using_subcommand trace" -l linger -d 'Seconds a closed connection stays listed' -r
complete -c nettop -n "__fish_nettop_using_subcommand trace" -l max-closed -d 'At most this many closed connections stay listed (the latest); under churn they go before their linger is over' -r
complete -c nettop -n "__fish_nettop_using_subcommand trace" -l max-connections -d 'Open connections tracked at most, in the kernel\'s tables and in nettop\'s own; past it new ones are refused and counted as evicted' -r
complete -c nettop -n "__fish_nettop_using_subcommand trace" -l ring-bytes -d 'Size of the kernel\'s event ring buffer in bytes: a power of two, at least 4096' -r
complete -c nettop -n "__fish_nettop_using_subcommand trace" -l json -d 'One JSON object per line; the first is {"event":"ready",…}'
complete -c nettop -n "__fish_nettop_using_subcommand trace" -l no-ipv6 -d 'Leave out IPv6 connections'
complete -c nettop -n "__fish_nettop_using_subcommand trace" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c nettop -n "__fish_nettop_using_subcommand list" -l interval -d 'Read the kernel\'s table twice, this far apart, so that TCP connections also have their health over the interval (retransmits, stalls, send limit). At least 0.2' -r
complete -c nettop -n "__fish_nettop_using_subcommand list" -l backend -d 'Attach backend: kprobe where it attaches, else fentry, else tracepoint' -r -f -a "auto\t'kprobe where it attaches, else fentry, else tracepoint'
kprobe\t''
fentry\t''
tracepoint\t''"
complete -c nettop -n "__fish_nettop_using_subcommand list" -l offsets -d 'Where struct sock offsets come from: guess and cross-check with BTF (auto), guess only, or BTF only' -r -f -a "auto\t'Guess, and cross-check against BTF where the kernel has it'
guess\t'Guess only; never read BTF'
btf\t'Read BTF only'"
complete -c nettop -n "__fish_nettop_using_subcommand list" -l btf -d 'Read BTF from this file instead of /sys/kernel/btf/vmlinux' -r -F
complete -c nettop -n "__fish_nettop_using_subcommand list" -s f -l filter -d 'Only connections matching this filter, e.g. "proc:nginx !port:22 addr:10.0.0.0/8" (keys: port lport rport pid proc proto state health addr user cgroup container netns; ! negates)' -r
complete -c nettop -n "__fish_nettop_using_subcommand list" -l pid -d 'Only this process (thread-group id)' -r
complete -c nettop -n "__fish_nettop_using_subcommand list" -l port -d 'Only connections with this port at either end' -r
complete -c nettop -n "__fish_nettop_using_subcommand list" -l proto -d 'Only this protocol' -r -f -a "tcp\t''
udp\t''"
complete -c nettop -n "__fish_nettop_using_subcommand list" -l comm -d 'Only processes whose name or command line contains this text' -r
complete -c nettop -n "__fish_nettop_using_subcommand list" -l udp-timeout -d 'Seconds without traffic after which a UDP flow ends' -r
complete -c nettop -n "__fish_nettop_using_subcommand list" -l linger -d 'Seconds a closed connection stays listed' -r
complete -c nettop -n "__fish_nettop_using_subcommand list" -l max-closed -d 'At most this many closed connections stay listed (the latest); under churn they go before their linger is over' -r
complete -c nettop -n "__fish_nettop_using_subcommand list" -l max-connections -d 'Open connections tracked at most, in the kernel\'s tables and in nettop\'s own; past it new ones are refused and counted as evicted' -r
complete -c nettop -n "__fish_nettop_using_subcommand list" -l ring-bytes -d 'Size of the kernel\'s event ring buffer in bytes: a power of two, at least 4096' -r
complete -c nettop -n "__fish_nettop_using_subcommand list" -l json -d 'A JSON array'
complete -c nettop -n "__fish_nettop_using_subcommand list" -l no-ipv6 -d 'Leave out IPv6 connections'
complete -c nettop -n "__fish_nettop_using_subcommand list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c nettop -n "__fish_nettop_using_subcommand serve" -l listen -d 'IP address and port to listen on [default: 127.0.0.1:9633]. Anything but loopback must be asked for here' -r
complete -c nettop -n "__fish_nettop_using_subcommand serve" -l unix -d 'Serve on this unix socket too (mode 0600); without --listen, only on it' -r -F
complete -c nettop -n "__fish_nettop_using_subcommand serve" -l labels -d 'Labels of the per-process series, comma-separated: process, proto, port (remote port; ephemeral ones folded), container' -r
complete -c nettop -n "__fish_nettop_using_subcommand serve" -l max-series -d 'The most label sets kept apart; the rest are summed into one "_overflow" set' -r
complete -c nettop -n "__fish_nettop_using_subcommand serve" -l max-clients -d 'The most agents polling /connections?client_id=ID at once; a new id past it is refused (503)' -r
complete -c nettop -n "__fish_nettop_using_subcommand serve" -l client-buffer -d 'Closed connections kept for one agent between its polls; past it the oldest go, counted in its next reply' -r
complete -c nettop -n "__fish_nettop_using_subcommand serve" -l client-timeout -d 'Seconds after which an agent that has not polled is forgotten' -r
complete -c nettop -n "__fish_nettop_using_subcommand serve" -l backend -d 'Attach backend: kprobe where it attaches, else fentry, else tracepoint' -r -f -a "auto\t'kprobe where it attaches, else fentry, else tracepoint'
kprobe\t''
fentry\t''
tracepoint\t''"
complete -c nettop -n "__fish_nettop_using_subcommand serve" -l offsets -d 'Where struct sock offsets come from: guess and cross-check with BTF (auto), guess only, or BTF only' -r -f -a "auto\t'Guess, and cross-check against BTF where the kernel has it'
guess\t'Guess only; never read BTF'
btf\t'Read BTF only'"
complete -c nettop -n "__fish_nettop_using_subcommand serve" -l btf -d 'Read BTF from this file instead of /sys/kernel/btf/vmlinux' -r -F
complete -c nettop -n "__fish_nettop_using_subcommand serve" -s f -l filter -d 'Only connections matching this filter, e.g. "proc:nginx !port:22 addr:10.0.0.0/8" (keys: port lport rport pid proc proto state health addr user cgroup container netns; ! negates)' -r
complete -c nettop -n "__fish_nettop_using_subcommand serve" -l pid -d 'Only this process (thread-group id)' -r
complete -c nettop -n "__fish_nettop_using_subcommand serve" -l port -d 'Only connections with this port at either end' -r
complete -c nettop -n "__fish_nettop_using_subcommand serve" -l proto -d 'Only this protocol' -r -f -a "tcp\t''
udp\t''"
complete -c nettop -n "__fish_nettop_using_subcommand serve" -l comm -d 'Only processes whose name or command line contains this text' -r
complete -c nettop -n "__fish_nettop_using_subcommand serve" -l udp-timeout -d 'Seconds without traffic after which a UDP flow ends' -r
complete -c nettop -n "__fish_nettop_using_subcommand serve" -l linger -d 'Seconds a closed connection stays listed' -r
complete -c nettop -n "__fish_nettop_using_subcommand serve" -l max-closed -d 'At most this many closed connections stay listed (the latest); under churn they go before their linger is over' -r
complete -c nettop -n "__fish_nettop_using_subcommand serve" -l max-connections -d 'Open connections tracked at most, in the kernel\'s tables and in nettop\'s own; past it new ones are refused and counted as evicted' -r
complete -c nettop -n "__fish_nettop_using_subcommand serve" -l ring-bytes -d 'Size of the kernel\'s event ring buffer in bytes: a power of two, at least 4096' -r
complete -c nettop -n "__fish_nettop_using_subcommand serve" -l no-ipv6 -d 'Leave out IPv6 connections'
complete -c nettop -n "__fish_nettop_using_subcommand serve" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c nettop -n "__fish_nettop_using_subcommand help; and not __fish_seen_subcommand_from completions manpage offsets trace list serve help" -f -a "completions" -d 'Print shell completions for nettop (bash, zsh, fish, elvish or powershell)'
complete -c nettop -n "__fish_nettop_using_subcommand help; and not __fish_seen_subcommand_from completions manpage offsets trace list serve help" -f -a "manpage" -d 'Print the man page (roff), made from these very flags'
complete -c nettop -n "__fish_nettop_using_subcommand help; and not __fish_seen_subcommand_from completions manpage offsets trace list serve help" -f -a "offsets" -d 'Guess the kernel\'s struct sock offsets, print each field, and exit'
complete -c nettop -n "__fish_nettop_using_subcommand help; and not __fish_seen_subcommand_from completions manpage offsets trace list serve help" -f -a "trace" -d 'Stream connect, accept, close, failed-connect and retransmit events until interrupted'
complete -c nettop -n "__fish_nettop_using_subcommand help; and not __fish_seen_subcommand_from completions manpage offsets trace list serve help" -f -a "list" -d 'Print every current connection once (with exact TCP totals) and exit'
complete -c nettop -n "__fish_nettop_using_subcommand help; and not __fish_seen_subcommand_from completions manpage offsets trace list serve help" -f -a "serve" -d 'Serve Prometheus metrics (/metrics), the connections (/connections), the tracer\'s state (/status) and /healthz over HTTP until SIGTERM or Ctrl-C'
complete -c nettop -n "__fish_nettop_using_subcommand help; and not __fish_seen_subcommand_from completions manpage offsets trace list serve help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
