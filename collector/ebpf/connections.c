/*
 * connections.c - count TCP connections and UDP datagrams per container and
 *                 endpoint, aggregated in the kernel.
 *
 * What it traces
 *   Every TCP connect (success, failure by reason, latency), every accepted
 *   TCP connection, bytes each way on those connections, TCP resets and
 *   retransmits, UDP datagrams and bytes by peer address, and listening TCP
 *   sockets. Nothing per connection crosses to userspace: the programs only
 *   add to counters in BPF hash maps, which userspace reads once an interval.
 *
 * The parts
 *   connections.c  this file: the TCP state machine and every hook.
 *   counters.h     the flow counters, double-buffered for exact deltas.
 *   sockets.h      the tracked TCP sockets (a table; a hash map before 5.12).
 *   udp_route.h    UDP: each send joined to its route lookup.
 *   raw_hooks.h    with RAW_HOOKS: the state-change and route hooks as raw
 *                  tracepoints (no event record), fields at BTF offsets.
 *   collector/ebpf/tracer.py loads them as one text (the headers inlined,
 *   `collect --ebpf-dump` prints it) with the -D flags below.
 *
 * Kernel facility
 *   Tracepoints only (no kprobes, no fentry, and no syscalls: tracepoints):
 *   sock:inet_sock_set_state (4.16+), tcp:tcp_retransmit_skb,
 *   tcp:tcp_receive_reset / tcp_send_reset (4.15+), sock:sock_send_length /
 *   sock_recv_length (6.3+, attached raw: 4.17+), fib:fib_table_lookup and
 *   fib6:fib6_table_lookup, cgroup:cgroup_mkdir, sched:sched_process_exec.
 *   The tracepoint program reads only tracepoint arguments, never a kernel
 *   struct field, so it is correct whatever headers bcc compiles it with.
 *   With RAW_HOOKS the state-change and route hooks are raw tracepoints
 *   instead (raw_hooks.h): they read struct fields at offsets from the
 *   kernel's own BTF, checked by the collector's self-test at start. Socket
 *   addresses (skaddr, sk) are used as opaque keys only. bpf_get_current_cgroup_id() (4.18+) gives the
 *   cgroup v2 id; compare-and-swap in BPF (5.12+) claims socket slots.
 *
 * Why each hook
 *   No syscall tracepoint: enabling any one of them puts every syscall of
 *   every process on the kernel's tracing slow path, and socket syscalls run
 *   for every connection. Everything they gave (UDP peer addresses, connects
 *   failing before a SYN) comes from the route lookup instead.
 *
 *   inet_sock_set_state CLOSE->SYN_SENT runs inside connect() in the caller's
 *                       context: remember skaddr -> flow key (cgroup, tgid,
 *                       comm, peer, start time). SYN_SENT->ESTABLISHED is a
 *                       success (+latency), SYN_SENT->CLOSE a failure:
 *                       refused if an RST arrived on it, else timeout.
 *                       SYN_RECV->ESTABLISHED is an accept (softirq, no
 *                       process: keyed by local addr:port and peer, cgroup
 *                       0). CLOSE->LISTEN (listen(), process context) adds a
 *                       listening socket; any ->CLOSE forgets the socket.
 *                       A connect that fails after SYN_SENT but before any
 *                       packet (no free local port) also ends SYN_SENT->CLOSE.
 *   fib_table_lookup /  the output route lookup, in the sending process:
 *   fib6_table_lookup   for UDP, the peer address and both ports of the
 *                       datagram being sent (joined to sock_send_length on
 *                       the same thread, udp_route.h); for TCP, a lookup in
 *                       the main table that fails is a connect that fails
 *                       before any SYN (no route: unreachable). They run on
 *                       every routed packet, not only on sends:
 *                       PORTOLAN_TRACE_UDP=0 leaves them out (no HAVE_FIB*:
 *                       no UDP counting).
 *   tcp_receive_reset   marks refused connects; counts resets.
 *   tcp_send_reset      counts resets we send on a tracked socket.
 *   tcp_retransmit_skb  counts retransmits (SYN retransmits included).
 *   sock_send_length /  bytes on tracked TCP sockets (process context, sk is
 *   sock_recv_length    the opaque key); UDP datagrams and bytes, on the
 *                       peer the route lookup named (sends) or the socket's
 *                       last peer (receives, see udp_route.h). Raw
 *                       tracepoints: the kernel builds no event record, so
 *                       they cost a third as much per run, but their
 *                       arguments (the socket, the result, the flags) do not
 *                       name the protocol: a socket the TCP table tracks is
 *                       TCP; a send this thread's UDP route lookup named is
 *                       UDP, and so is the socket from then on.
 *   cgroup_mkdir        v2 cgroup id -> path as cgroups are created, so that
 *                       a container that exits before userspace scans
 *                       /sys/fs/cgroup is still attributed (one event per
 *                       cgroup, not per connection).
 *   sched_process_exec  tgid -> the name it was executed under, so that a
 *                       process that exits before userspace reads /proc is
 *                       named after itself, not after the thread that made
 *                       the call (bpf_get_current_comm() is the thread's).
 *                       One event per exec; userspace looks it up.
 *
 * Overhead
 *   A few map operations per TCP state change and per socket send/recv, and
 *   per UDP route lookup; no syscall hook, so no syscall slow path.
 *
 * Caveats
 *   Sockets that existed before the tracer started are not tracked (no bytes,
 *   resets or retransmits for them). Server-side flows carry cgroup 0 (the
 *   handshake completes in softirq); userspace attributes them by local IP.
 *   A connect whose SYN_SENT ends in CLOSE without an RST (timeout, ICMP
 *   unreachable, no free local port, or the application giving up) counts as
 *   a timeout. Connects failing for want of a route are counted from the
 *   main table's lookup: with policy routing, a miss in the main table that
 *   another table then routes is counted too, and an unreachable route in
 *   another table is not; only a socket not bound before connect() is seen
 *   failing so (a bound one's lookup looks like an established socket's).
 *   A simultaneous open (a socket connecting to its own address is one) is
 *   the connect it is, not an accept. Peeks (MSG_PEEK) and the error queue
 *   are not received bytes. UDP has its own caveats (udp_route.h), and so
 *   do the counters and the socket table (lost counts: counters.h,
 *   sockets.h).
 *
 * Compiled with (-D flags from collector/ebpf/tracer.py, nothing else)
 *   FLOW_MAP_SIZE, SOCK_SLOTS (a power of two), SOCK_MAP_SIZE,
 *   LISTEN_MAP_SIZE, CGROUP_PATH_LEN: sizes. HAVE_*: the optional hooks this
 *   kernel has. COMPAT_PRE_5_12: kernels before 5.12 (no compare-and-swap in
 *   BPF); every block for them is marked "XXX: delete with kernels before
 *   5.12". NEED_SK_RST_REASON: see tcp_send_reset. RAW_HOOKS and
 *   F_<FIELD>_OFF/_SIZE/_SHIFT/_BITS: the raw hooks and the kernel fields they
 *   read (collector/ebpf/kernel_fields.py, from the kernel's BTF).
 */

#include <uapi/linux/ptrace.h>

#if !defined(FLOW_MAP_SIZE) || !defined(SOCK_SLOTS) || !defined(SOCK_MAP_SIZE) || \
    !defined(LISTEN_MAP_SIZE) || !defined(CGROUP_PATH_LEN)
#error "sizes come as -D flags from collector/ebpf/tracer.py"
#endif

#include "counters.h"
#include "sockets.h"
#include "udp_route.h"

#define AF_INET_ 2
#define AF_INET6_ 10

#define ST_ESTABLISHED 1
#define ST_SYN_SENT 2
#define ST_SYN_RECV 3
#define ST_CLOSE 7
#define ST_LISTEN 10

struct listen_t {
    u64 cgroup_id;
    u32 tgid;
    u16 port;
    u8 family;
    u8 pad;
    u8 addr[16];
    char comm[16];
};

struct cgroup_path_t {
    char path[CGROUP_PATH_LEN];
};

BPF_HASH(listens, u64, struct listen_t, LISTEN_MAP_SIZE);
/* v2 cgroup id -> path of cgroups created since userspace last drained it. */
BPF_TABLE("lru_hash", u64, struct cgroup_path_t, cgroup_paths, 4096);

struct exec_name_t {
    char comm[16];
};
/* tgid -> its comm right after exec; LRU: nothing says when a process ends,
 * and an exited one is what userspace asks about. */
BPF_TABLE("lru_hash", u32, struct exec_name_t, exec_names, 16384);

/* --------------------------------------------------------- state machine */

static __always_inline void fill_addrs(struct flow_key_t *k, u16 family,
                                       const u8 *saddr, const u8 *daddr,
                                       const u8 *saddr6, const u8 *daddr6,
                                       int remote_is_daddr)
{
    if (family == AF_INET_) {
        k->family = 4;
        if (remote_is_daddr) {
            copy4(k->addr, daddr);
            copy4(k->laddr, saddr);
        } else {
            copy4(k->addr, saddr);
            copy4(k->laddr, daddr);
        }
    } else {
        k->family = 6;
        if (remote_is_daddr) {
            copy16(k->addr, daddr6);
            copy16(k->laddr, saddr6);
        } else {
            copy16(k->addr, saddr6);
            copy16(k->laddr, daddr6);
        }
    }
}

/* Our own connect, half-way through a simultaneous open (SYN_SENT ->
 * SYN_RECV; a socket connecting to its own address is one). A freed or fresh
 * slot says CLOSE (or 0), never SYN_RECV. */
static __always_inline int simultaneous_open(const struct sock_info_t *si)
{
    return si->state == ST_SYN_RECV && si->key.direction == DIR_OUT;
}

/* The end of our own connect on tracked socket si: established or failed. */
static __always_inline void connect_done(struct sock_info_t *si, int ns)
{
    u32 buf = buf_enter();
    struct flow_val_t *v = flow_get(buf, &si->key);
    if (v) {
        if (ns == ST_ESTABLISHED) {
            __sync_fetch_and_add(&v->connections, 1);
            u64 us = (bpf_ktime_get_ns() - si->start_ns) / 1000;
            __sync_fetch_and_add(&v->connect_latency_us_sum, us);
            __sync_fetch_and_add(&v->connect_latency_count, 1);
        } else {
            count_failure(v, si->rst ? 0 : 1);
        }
        /* The connecting process, not whoever runs the softirq. */
        v->last_tgid = si->key.tgid;
        __builtin_memcpy(v->comm, si->comm, sizeof(v->comm));
    }
    buf_exit(buf);
}

/* The state changes that give a socket an entry (a connect, a listen, an
 * accept): the only ones that read the socket's protocol, family, addresses
 * and ports (sock_state_claim). */
static __always_inline int state_change_claims(int os, int ns)
{
    return (os == ST_CLOSE && (ns == ST_SYN_SENT || ns == ST_LISTEN)) ||
           (os == ST_SYN_RECV && ns == ST_ESTABLISHED);
}

/* The state changes that end what an entry stands for (a connect's outcome,
 * a socket's or a listener's close): sock_state_end, which needs the socket's
 * address only. The others (most teardown ones) need nothing. */
static __always_inline int state_change_ends(int os, int ns)
{
    return os == ST_SYN_SENT || ns == ST_CLOSE;
}

/* TCP socket sk (an opaque key) went from state os to ns, one of the
 * state_change_claims changes: what the state hooks read of a socket, from
 * the tracepoint's fields (below) or the struct sock's at BTF offsets
 * (raw_hooks.h). Ports in host order; v4 addresses in saddr/daddr (4 bytes),
 * v6 in saddr6/daddr6 (16). Plain values, not a struct: the tracepoint's
 * pointers into its record cost no stack (the program before 5.12 is near
 * the 512-byte limit). */
static __always_inline int sock_state_claim(u64 sk, int os, int ns, u16 family,
                                            u16 protocol, u16 sport, u16 dport,
                                            const u8 *saddr, const u8 *daddr,
                                            const u8 *saddr6, const u8 *daddr6)
{
    if (protocol != PROTO_TCP)
        return 0;
    if (family != AF_INET_ && family != AF_INET6_)
        return 0;

    if (os == ST_CLOSE && ns == ST_SYN_SENT) {
        /* Inside connect(): the caller's cgroup, tgid and comm. */
        u64 id = bpf_get_current_pid_tgid();
#if defined(HAVE_FIB4) || defined(HAVE_FIB6)
        udp_route_drop(id);
#endif
        struct sock_info_t si = {};
        si.key.cgroup_id = bpf_get_current_cgroup_id();
        si.key.tgid = id >> 32;
        si.key.direction = DIR_OUT;
        si.key.proto = PROTO_TCP;
        si.key.port = dport;
        fill_addrs(&si.key, family, saddr, daddr, saddr6, daddr6, 1);
        si.start_ns = bpf_ktime_get_ns();
        si.state = ns;
        bpf_get_current_comm(&si.comm, sizeof(si.comm));
        struct sock_info_t *slot = sock_claim(sk);
        if (slot)
            *slot = si;
        return 0;
    }

    if (os == ST_CLOSE && ns == ST_LISTEN) {
        u64 id = bpf_get_current_pid_tgid();
        struct listen_t l = {};
        l.cgroup_id = bpf_get_current_cgroup_id();
        l.tgid = id >> 32;
        l.port = sport;
        if (family == AF_INET_) {
            l.family = 4;
            copy4(l.addr, saddr);
        } else {
            l.family = 6;
            copy16(l.addr, saddr6);
        }
        bpf_get_current_comm(&l.comm, sizeof(l.comm));
        if (listens.update(&sk, &l))
            count_lost(LOST_LISTEN);
        return 0;
    }

    /* SYN_RECV -> ESTABLISHED: server side, usually in softirq, no
     * meaningful current task. The claim returns a tracked connect's own slot
     * (a simultaneous open). */
    struct sock_info_t *slot = sock_claim(sk);
    if (slot && simultaneous_open(slot)) {
        /* Our own connect completing, not an accept. */
        connect_done(slot, ns);
        slot->state = ns;
        return 0;
    }
    struct sock_info_t si = {};
    si.key.direction = DIR_IN;
    si.key.proto = PROTO_TCP;
    si.key.port = sport;
    fill_addrs(&si.key, family, saddr, daddr, saddr6, daddr6, 1);
    si.state = ns;
    if (slot)
        *slot = si;
    u32 buf = buf_enter();
    struct flow_val_t *v = flow_get(buf, &si.key);
    if (v)
        __sync_fetch_and_add(&v->accepts, 1);
    buf_exit(buf);
    return 0;
}

/* Socket sk went from os to ns, one of the state_change_ends changes: the end
 * of a connect or of a socket. Only the socket's address is needed, not its
 * protocol: only TCP sockets have entries (sock_state_claim checks), so the
 * socket an entry is found for is TCP, and one not found (SCTP, say) is left
 * alone. */
static __always_inline int sock_state_end(u64 sk, int os, int ns)
{
    if (os == ST_LISTEN && ns == ST_CLOSE) {
        listens.delete(&sk);
        return 0;
    }
    struct sock_info_t *si = sock_find(sk);
    if (!si)
        return 0;

    if (os == ST_SYN_SENT && (ns == ST_ESTABLISHED || ns == ST_CLOSE))
        connect_done(si, ns);
    else if (os == ST_SYN_RECV && ns == ST_CLOSE && simultaneous_open(si))
        connect_done(si, ns);  /* a simultaneous open that failed */
    si->state = ns;
    if (ns == ST_CLOSE)
        sock_release(sk);
    return 0;
}

#ifndef RAW_HOOKS
/* The raw twin, reading the struct sock itself, is in raw_hooks.h. */
TRACEPOINT_PROBE(sock, inet_sock_set_state)
{
    int os = args->oldstate, ns = args->newstate;
    if (state_change_claims(os, ns))
        return sock_state_claim((u64)args->skaddr, os, ns, args->family,
                                args->protocol, args->sport, args->dport,
                                args->saddr, args->daddr, args->saddr_v6,
                                args->daddr_v6);
    if (state_change_ends(os, ns))
        return sock_state_end((u64)args->skaddr, os, ns);
    return 0;
}
#endif

/* ------------------------------------------------------------ routes */

#define RT_TABLE_MAIN_ 254

/* A TCP connect with no route: it fails before any state change. */
static __always_inline void route_failure(u8 family, const u8 *dst, u16 dport, int err)
{
    struct flow_key_t k = {};
    u64 id = bpf_get_current_pid_tgid();
    k.cgroup_id = bpf_get_current_cgroup_id();
    k.tgid = id >> 32;
    k.direction = DIR_OUT;
    k.proto = PROTO_TCP;
    k.family = family;
    k.port = dport;
    copy_addr(k.addr, dst, family);
    u32 buf = buf_enter();
    struct flow_val_t *v = flow_get(buf, &k);
    if (v) {
        count_failure(v, fail_index(err));
        set_owner(v, k.tgid);
    }
    buf_exit(buf);
}

/* No source address yet (all zero: 4 bytes for family 4, else 16). */
static __always_inline int unset_source(const u8 *src, u8 family)
{
    u8 any = 0;
#pragma unroll
    for (int i = 0; i < 16; i++)
        if (i < 4 || family == 6)
            any |= src[i];
    return any == 0;
}

/* What the route hooks read of a lookup: the tracepoint's fields
 * (connections.c) or the flowi4/flowi6's at BTF offsets (raw_hooks.h). Ports
 * in host order; v4 addresses in the first 4 bytes. */
struct route_t {
    int err;
    u32 tb_id;
    int oif;
    u16 sport;
    u16 dport;
    u8 proto;
    u8 pad[3];
    u8 src[16];
    u8 dst[16];
};

/* A lookup route_lookup may act on, from its protocol and result alone: a
 * UDP datagram's route that was found, a TCP connect's that was not. */
static __always_inline int route_matters(const struct route_t *r)
{
    if (r->proto == PROTO_UDP)
        return r->err == 0;
    return r->proto == PROTO_TCP && r->err != 0;
}

/* The route hooks: a UDP datagram's route (udp_route.h), or a TCP connect
 * with no route. A TCP lookup that fails counts as a failed connect only as
 * connect() on an unbound socket makes it: no source address, port or
 * interface yet. That leaves out an established socket's lookups after a
 * route went away (source set), a socket bound to a device (the kernel goes
 * on as if on-link) and IPv6's second lookup, made once a source address is
 * chosen. */
static __always_inline int route_lookup(u8 family, const struct route_t *r)
{
    if (!route_matters(r))
        return 0;
    if (r->proto == PROTO_UDP) {
        if (r->dport)
            udp_route(family, r->src, r->dst, r->sport, r->dport);
        return 0;
    }
    if (r->tb_id == RT_TABLE_MAIN_ && r->sport == 0 && r->oif == 0 &&
        unset_source(r->src, family))
        route_failure(family, r->dst, r->dport, r->err);
    return 0;
}

#ifdef RAW_HOOKS
/* The same hooks raw, reading the kernel's structs at BTF offsets. */
#include "raw_hooks.h"
#else
/* Both families' lookups carry the same fields (v4 addresses in 4 bytes). */
#define ROUTE_FROM_ARGS(r, FAMILY)                                            \
    struct route_t r = {};                                                    \
    r.err = args->err;                                                        \
    r.tb_id = args->tb_id;                                                    \
    r.oif = args->oif;                                                        \
    r.sport = args->sport;                                                    \
    r.dport = args->dport;                                                    \
    r.proto = args->proto;                                                    \
    copy_addr(r.src, args->src, FAMILY);                                      \
    copy_addr(r.dst, args->dst, FAMILY);

#ifdef HAVE_FIB4
TRACEPOINT_PROBE(fib, fib_table_lookup)
{
    ROUTE_FROM_ARGS(r, 4)
    return route_lookup(4, &r);
}
#endif

#ifdef HAVE_FIB6
TRACEPOINT_PROBE(fib6, fib6_table_lookup)
{
    ROUTE_FROM_ARGS(r, 6)
    return route_lookup(6, &r);
}
#endif
#endif /* RAW_HOOKS */

/* ---------------------------------------------------------------- execs */

#ifdef HAVE_SCHED_PROCESS_EXEC
/* After exec the process has one thread, named after the file it runs. */
TRACEPOINT_PROBE(sched, sched_process_exec)
{
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    struct exec_name_t name = {};
    bpf_get_current_comm(&name.comm, sizeof(name.comm));
    exec_names.update(&tgid, &name);
    return 0;
}
#endif

/* ---------------------------------------------------------------- cgroups */

#ifdef HAVE_CGROUP_MKDIR
/* New v2 cgroups (root 0 is the default hierarchy) -> path. */
TRACEPOINT_PROBE(cgroup, cgroup_mkdir)
{
    if (args->root != 0)
        return 0;
    u64 id = args->id;
    struct cgroup_path_t p = {};
    TP_DATA_LOC_READ_STR(p.path, path, sizeof(p.path));
    cgroup_paths.update(&id, &p);
    return 0;
}
#endif

/* ----------------------------------------------------- resets, retransmits */

#ifdef HAVE_TCP_RECEIVE_RESET
TRACEPOINT_PROBE(tcp, tcp_receive_reset)
{
    u64 sk = (u64)args->skaddr;
    struct sock_info_t *si = sock_find(sk);
    if (!si)
        return 0;
    if (si->state == ST_SYN_SENT || simultaneous_open(si)) {
        /* A refused connect (a simultaneous open's too): counted as
         * failed_refused when it closes. */
        si->rst = 1;
        return 0;
    }
    u32 buf = buf_enter();
    struct flow_val_t *v = flow_get(buf, &si->key);
    if (v)
        __sync_fetch_and_add(&v->resets, 1);
    buf_exit(buf);
    return 0;
}
#endif

#ifdef HAVE_TCP_SEND_RESET
#ifdef NEED_SK_RST_REASON
/* XXX: 6.10+ declares tcp_send_reset's `reason` as enum sk_rst_reason, which
 * older headers lack; bcc generates the args struct from the format file and
 * needs the type. Declared here (4 bytes, never read) until headers match. */
enum sk_rst_reason { PORTOLAN_SK_RST_REASON_UNUSED = 0 };
#endif
TRACEPOINT_PROBE(tcp, tcp_send_reset)
{
    u64 sk = (u64)args->skaddr;
    if (!sk)
        return 0;
    struct sock_info_t *si = sock_find(sk);
    if (!si)
        return 0;
    u32 buf = buf_enter();
    struct flow_val_t *v = flow_get(buf, &si->key);
    if (v)
        __sync_fetch_and_add(&v->resets, 1);
    buf_exit(buf);
    return 0;
}
#endif

#ifdef HAVE_TCP_RETRANSMIT_SKB
TRACEPOINT_PROBE(tcp, tcp_retransmit_skb)
{
    u64 sk = (u64)args->skaddr;
    struct sock_info_t *si = sock_find(sk);
    if (!si)
        return 0;
    u32 buf = buf_enter();
    struct flow_val_t *v = flow_get(buf, &si->key);
    if (v)
        __sync_fetch_and_add(&v->retransmits, 1);
    buf_exit(buf);
    return 0;
}
#endif

/* ------------------------------------------------------------------ bytes */

#ifdef HAVE_SOCK_LENGTH
static __always_inline void tcp_length(struct sock_info_t *si, int ret, int sent)
{
    u32 buf = buf_enter();
    struct flow_val_t *v = flow_get(buf, &si->key);
    if (v) {
        if (sent)
            __sync_fetch_and_add(&v->bytes_sent, ret);
        else
            __sync_fetch_and_add(&v->bytes_received, ret);
    }
    buf_exit(buf);
}

/* A send or receive of ret bytes on socket sk (raw tracepoints, see "Why
 * each hook"): TCP if the table tracks sk, else UDP as udp_sent and
 * udp_received decide. */
static __always_inline int sock_length(u64 sk, int ret, int sent)
{
    /* A receive that got nothing (end of stream, EAGAIN) counts nowhere; a
     * send that failed still consumes its route lookup (udp_sent). */
    if (!sent && ret <= 0)
        return 0;
    struct sock_info_t *si = sock_find(sk);
    if (si) {
        if (ret > 0)
            tcp_length(si, ret, sent);
        return 0;
    }
#ifdef COUNT_UDP
    if (sent)
        udp_sent(sk, ret);
    else if (ret > 0)
        udp_received(sk, ret);
#endif
    return 0;
}

RAW_TRACEPOINT_PROBE(sock_send_length)
{
    return sock_length(ctx->args[0], (int)ctx->args[1], 1);
}

#define MSG_PEEK_ 0x2
#define MSG_ERRQUEUE_ 0x2000

RAW_TRACEPOINT_PROBE(sock_recv_length)
{
    /* A peek leaves the data to be received again; the error queue holds
     * the kernel's reports (ICMP errors, timestamps), not the peer's data. */
    if ((int)ctx->args[2] & (MSG_PEEK_ | MSG_ERRQUEUE_))
        return 0;
    return sock_length(ctx->args[0], (int)ctx->args[1], 0);
}
#endif /* HAVE_SOCK_LENGTH */
