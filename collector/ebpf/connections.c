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
 * Kernel facility
 *   Tracepoints only (no kprobes, no fentry): sock:inet_sock_set_state (4.16+),
 *   tcp:tcp_retransmit_skb, tcp:tcp_receive_reset / tcp_send_reset (4.15+),
 *   sock:sock_send_length / sock_recv_length (6.3+), and the syscalls:
 *   tracepoints. Only tracepoint arguments, syscall arguments and return
 *   values and user memory (bpf_probe_read_user) are read, never a kernel
 *   struct field, so the program is correct whatever headers bcc compiles it
 *   with. Socket addresses (skaddr, sk) are used as opaque map keys only.
 *   bpf_get_current_cgroup_id() (4.18+) gives the cgroup v2 id.
 *
 * Why each hook
 *   sys_enter_connect   the destination sockaddr, read from user memory, for
 *                       errors that happen before any TCP state change
 *                       (ENETUNREACH, EACCES, ...).
 *   sys_exit_connect    counts those synchronous failures, and only those: a
 *                       connect that reached SYN_SENT is counted by the state
 *                       machine, and a repeated connect() on a socket that
 *                       already reached SYN_SENT (non-blocking polling) is
 *                       ignored, so nothing is counted twice.
 *   sys_enter_close     forgets the (tgid, fd) -> "reached SYN_SENT" mark.
 *   inet_sock_set_state CLOSE->SYN_SENT runs inside connect() in the caller's
 *                       context: remember skaddr -> flow key (cgroup, tgid,
 *                       comm, peer, start time). SYN_SENT->ESTABLISHED is a
 *                       success (+latency), SYN_SENT->CLOSE a failure:
 *                       refused if an RST arrived on it, else timeout.
 *                       SYN_RECV->ESTABLISHED is an accept (softirq, no
 *                       process: keyed by local addr:port and peer, cgroup
 *                       0). CLOSE->LISTEN (listen(), process context) adds a
 *                       listening socket; any ->CLOSE forgets the socket.
 *   tcp_receive_reset   marks refused connects; counts resets.
 *   tcp_send_reset      counts resets we send on a tracked socket.
 *   tcp_retransmit_skb  counts retransmits (SYN retransmits included).
 *   sock_send_length /  bytes on tracked TCP sockets (process context, sk is
 *   sock_recv_length    the opaque key); for UDP, joined to the peer address
 *                       that the enclosing sendto/sendmsg/recvfrom/recvmsg
 *                       syscall carries.
 *   sys_enter/exit_sendto, sendmsg, recvfrom, recvmsg
 *                       the UDP peer address (user memory) for the above.
 *                       A datagram received from a peer we never sent to
 *                       makes that peer a client: its datagrams both ways go
 *                       on an "in" key with our local port.
 *   sys_enter/exit_bind the local port of a socket (per tgid and fd), for
 *                       the local port of "in" UDP flows.
 *   cgroup_mkdir        v2 cgroup id -> path as cgroups are created, so that
 *                       a container that lived less than one scan interval
 *                       is still attributed (one event per cgroup, not per
 *                       connection).
 *
 * Exact, race-free deltas
 *   Counters live in two hash maps (flows_a, flows_b); control[0] selects the
 *   active one. A program announces itself in inflight[buffer] (per-CPU,
 *   atomic add) before it re-checks control and writes, and withdraws after.
 *   Userspace flips control, waits until inflight[old] sums to zero, then
 *   reads and clears the old map: no increment can land in a map that is
 *   being read. Failed map inserts are counted in lost[0], never silent.
 *
 * Overhead
 *   A few map operations per connection state change and per socket
 *   send/recv; syscall hooks on close/sendto/sendmsg/recvfrom/recvmsg return
 *   after one map operation for non-INET traffic.
 *
 * Caveats
 *   Sockets that existed before the tracer started are not tracked (no bytes,
 *   resets or retransmits for them). Server-side flows carry cgroup 0 (the
 *   handshake completes in softirq); userspace attributes them by local IP.
 *   A connect whose SYN_SENT ends in CLOSE without an RST (timeout, ICMP
 *   unreachable, or the application giving up) counts as a timeout. A UDP
 *   connect() that fails synchronously (ENETUNREACH) counts as a TCP failure:
 *   the socket type is not known without kernel structs. UDP on connected
 *   sockets without an address (send/write), and sendmmsg / recvmmsg, are not
 *   counted; a UDP socket bound before the tracer started gives "in" flows
 *   local port 0. The drain in read() relies on every program leaving
 *   inflight[] as it found it, which each handler does on every path.
 *
 * Placeholders filled by collector/ebpf/tracer.py: FLOW_MAP_SIZE,
 * SOCK_MAP_SIZE, LISTEN_MAP_SIZE, CGROUP_PATH_LEN. Optional hooks are compiled in by the
 * -DHAVE_* flags the tracer passes after checking the kernel.
 */

#include <uapi/linux/ptrace.h>

#define AF_INET_ 2
#define AF_INET6_ 10
#define PROTO_TCP 6
#define PROTO_UDP 17
#define DIR_OUT 0
#define DIR_IN 1
#define DIR_PEER 2 /* udp_clients keys only */

#define ST_ESTABLISHED 1
#define ST_SYN_SENT 2
#define ST_SYN_RECV 3
#define ST_CLOSE 7
#define ST_LISTEN 10

/* Flow key: who (cgroup, tgid) talks to whom, which way. */
struct flow_key_t {
    u64 cgroup_id;
    u32 tgid;
    u16 port;       /* out: remote port; in: local port */
    u8 direction;   /* DIR_OUT or DIR_IN */
    u8 proto;       /* PROTO_TCP or PROTO_UDP */
    u8 family;      /* 4 or 6 */
    u8 pad[7];
    u8 addr[16];    /* remote address */
    u8 laddr[16];   /* local address, zero if unknown */
};

/* Counter fields, in collector.schema.COUNTERS order. */
struct flow_val_t {
    u64 connections;
    u64 failed;
    u64 failed_refused;
    u64 failed_timeout;
    u64 failed_unreachable;
    u64 failed_other;
    u64 accepts;
    u64 bytes_sent;
    u64 bytes_received;
    u64 datagrams_sent;
    u64 datagrams_received;
    u64 resets;
    u64 retransmits;
    u64 connect_latency_us_sum;
    u64 connect_latency_count;
    u32 last_tgid;
    u32 pad;
    char comm[16];
};

/* Per tracked TCP socket, keyed by the opaque skaddr. */
struct sock_info_t {
    struct flow_key_t key;
    u64 start_ns;
    u32 rst;        /* an RST was received */
    u32 state;      /* last state we saw */
    char comm[16];  /* the connecting process (empty on the server side) */
};

struct listen_t {
    u64 cgroup_id;
    u32 tgid;
    u16 port;
    u8 family;
    u8 pad;
    u8 addr[16];
    char comm[16];
};

/* connect() in flight, per thread. */
struct connect_arg_t {
    u64 fd;
    u16 port;
    u8 family;
    u8 syn_sent;
    u8 pad[4];
    u8 addr[16];
};

/* UDP send/recv syscall in flight, per thread. */
struct dgram_arg_t {
    u64 uaddr;      /* user pointer to the sockaddr (recv: filled at exit) */
    u64 fd;
    u32 bytes;      /* from sock_*_length */
    u32 seen;       /* a UDP sock_*_length fired inside this syscall */
    u16 port;
    u8 family;
    u8 pad[5];
    u8 addr[16];
};

struct cgroup_path_t {
    char path[CGROUP_PATH_LEN];
};

struct sockaddr_in_t {
    u16 family;
    u16 port;
    u8 addr[4];
    u8 zero[8];
};

struct sockaddr_in6_t {
    u16 family;
    u16 port;
    u32 flowinfo;
    u8 addr[16];
    u32 scope_id;
};

struct user_msghdr_t {
    u64 msg_name;
    u32 msg_namelen;
};

BPF_HASH(flows_a, struct flow_key_t, struct flow_val_t, FLOW_MAP_SIZE);
BPF_HASH(flows_b, struct flow_key_t, struct flow_val_t, FLOW_MAP_SIZE);
BPF_ARRAY(control, u32, 1);            /* [0]: active flow map, 0=a 1=b */
BPF_PERCPU_ARRAY(inflight, s64, 2);    /* programs writing to map [i] */
BPF_ARRAY(lost, u64, 4);               /* [0] flows [1] socks [2] listens [3] args */
BPF_ARRAY(zero_val, struct flow_val_t, 1);
BPF_HASH(socks, u64, struct sock_info_t, SOCK_MAP_SIZE);
BPF_HASH(listens, u64, struct listen_t, LISTEN_MAP_SIZE);
BPF_HASH(connect_args, u64, struct connect_arg_t, 10240);
BPF_HASH(dgram_args, u64, struct dgram_arg_t, 10240);
/* (tgid << 32 | fd) of sockets whose connect reached SYN_SENT; LRU because a
 * missed close only costs a stale mark. */
BPF_TABLE("lru_hash", u64, u8, connected_fds, SOCK_MAP_SIZE);
/* UDP: peers that sent to us first (keys with direction DIR_PEER and the
 * peer's port), and bound local ports per (tgid << 32 | fd). */
BPF_TABLE("lru_hash", struct flow_key_t, u8, udp_clients, SOCK_MAP_SIZE);
BPF_TABLE("lru_hash", u64, u16, bound_ports, SOCK_MAP_SIZE);
BPF_HASH(bind_args, u64, struct connect_arg_t, 10240);
/* v2 cgroup id -> path of cgroups created since userspace last drained it. */
BPF_TABLE("lru_hash", u64, struct cgroup_path_t, cgroup_paths, 4096);

static __always_inline void count_lost(u32 what)
{
    u64 *l = lost.lookup(&what);
    if (l)
        __sync_fetch_and_add(l, 1);
}

/* Enter the active buffer: announce, then re-check the selector. */
static __always_inline u32 buf_enter(void)
{
    u32 zero = 0;
    u32 *act = control.lookup(&zero);
    if (!act)
        return 0;
    u32 e = *(volatile u32 *)act & 1;
    s64 *c = inflight.lookup(&e);
    if (c)
        __sync_fetch_and_add(c, 1);
    u32 e2 = *(volatile u32 *)act & 1;
    if (e2 != e) {
        if (c)
            __sync_fetch_and_add(c, -1);
        e = e2;
        c = inflight.lookup(&e);
        if (c)
            __sync_fetch_and_add(c, 1);
    }
    return e;
}

static __always_inline void buf_exit(u32 e)
{
    s64 *c = inflight.lookup(&e);
    if (c)
        __sync_fetch_and_add(c, -1);
}

static __always_inline struct flow_val_t *flow_get(u32 buf, struct flow_key_t *k)
{
    u32 zero = 0;
    struct flow_val_t *zv = zero_val.lookup(&zero);
    struct flow_val_t *v = 0;
    if (!zv)
        return 0;
    if (buf)
        v = flows_b.lookup_or_try_init(k, zv);
    else
        v = flows_a.lookup_or_try_init(k, zv);
    if (!v)
        count_lost(0);
    return v;
}

/* Existing entry only, in either buffer (used to match UDP replies). */
static __always_inline int flow_exists(struct flow_key_t *k)
{
    return flows_a.lookup(k) != 0 || flows_b.lookup(k) != 0;
}

static __always_inline void set_owner(struct flow_val_t *v, u32 tgid)
{
    v->last_tgid = tgid;
    bpf_get_current_comm(&v->comm, sizeof(v->comm));
}

static __always_inline void copy16(u8 *dst, const u8 *src)
{
#pragma unroll
    for (int i = 0; i < 16; i++)
        dst[i] = src[i];
}

static __always_inline void copy4(u8 *dst, const u8 *src)
{
#pragma unroll
    for (int i = 0; i < 4; i++)
        dst[i] = src[i];
}

/* Read a user sockaddr; returns 1 and fills family/port/addr for INET(6). */
static __always_inline int read_sockaddr(u64 uaddr, u8 *family, u16 *port, u8 *addr)
{
    u16 fam = 0;
    if (!uaddr)
        return 0;
    if (bpf_probe_read_user(&fam, sizeof(fam), (void *)uaddr))
        return 0;
    if (fam == AF_INET_) {
        struct sockaddr_in_t sa = {};
        if (bpf_probe_read_user(&sa, sizeof(sa), (void *)uaddr))
            return 0;
        *family = 4;
        *port = ntohs(sa.port);
        copy4(addr, sa.addr);
        return 1;
    }
    if (fam == AF_INET6_) {
        struct sockaddr_in6_t sa6 = {};
        if (bpf_probe_read_user(&sa6, sizeof(sa6), (void *)uaddr))
            return 0;
        *family = 6;
        *port = ntohs(sa6.port);
        copy16(addr, sa6.addr);
        return 1;
    }
    return 0;
}

static __always_inline u32 fail_index(long err)
{
    /* 0 refused, 1 timeout, 2 unreachable, 3 other */
    if (err == -111)                /* ECONNREFUSED */
        return 0;
    if (err == -110)                /* ETIMEDOUT */
        return 1;
    if (err == -101 || err == -113) /* ENETUNREACH, EHOSTUNREACH */
        return 2;
    return 3;
}

static __always_inline void count_failure(struct flow_val_t *v, u32 idx)
{
    __sync_fetch_and_add(&v->failed, 1);
    if (idx == 0)
        __sync_fetch_and_add(&v->failed_refused, 1);
    else if (idx == 1)
        __sync_fetch_and_add(&v->failed_timeout, 1);
    else if (idx == 2)
        __sync_fetch_and_add(&v->failed_unreachable, 1);
    else
        __sync_fetch_and_add(&v->failed_other, 1);
}

/* ------------------------------------------------------------- connect() */

TRACEPOINT_PROBE(syscalls, sys_enter_connect)
{
    struct connect_arg_t a = {};
    if (!read_sockaddr((u64)args->uservaddr, &a.family, &a.port, a.addr))
        return 0;
    a.fd = args->fd;
    u64 id = bpf_get_current_pid_tgid();
    if (connect_args.update(&id, &a))
        count_lost(3);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_connect)
{
    u64 id = bpf_get_current_pid_tgid();
    struct connect_arg_t *a = connect_args.lookup(&id);
    if (!a)
        return 0;
    long ret = args->ret;
    u64 fdkey = (id & 0xffffffff00000000ULL) | (u32)a->fd;
    if (a->syn_sent) {
        u8 one = 1;
        connected_fds.update(&fdkey, &one);
    } else if (ret < 0 && ret != -115 && ret != -114 && ret != -106 && ret != -4 &&
               !connected_fds.lookup(&fdkey)) {
        /* Failed before any TCP state change (not EINPROGRESS, EALREADY,
         * EISCONN, EINTR), on a socket that never reached SYN_SENT. */
        struct flow_key_t k = {};
        k.cgroup_id = bpf_get_current_cgroup_id();
        k.tgid = id >> 32;
        k.direction = DIR_OUT;
        k.proto = PROTO_TCP;
        k.family = a->family;
        k.port = a->port;
        copy16(k.addr, a->addr);
        u32 buf = buf_enter();
        struct flow_val_t *v = flow_get(buf, &k);
        if (v) {
            count_failure(v, fail_index(ret));
            set_owner(v, k.tgid);
        }
        buf_exit(buf);
    }
    connect_args.delete(&id);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_close)
{
    u64 fdkey = (bpf_get_current_pid_tgid() & 0xffffffff00000000ULL) | (u32)args->fd;
    connected_fds.delete(&fdkey);
    bound_ports.delete(&fdkey);
    return 0;
}

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

TRACEPOINT_PROBE(sock, inet_sock_set_state)
{
    if (args->protocol != PROTO_TCP)
        return 0;
    if (args->family != AF_INET_ && args->family != AF_INET6_)
        return 0;
    u64 sk = (u64)args->skaddr;
    int os = args->oldstate, ns = args->newstate;

    if (os == ST_CLOSE && ns == ST_SYN_SENT) {
        /* Inside connect(): the caller's cgroup, tgid and comm. */
        u64 id = bpf_get_current_pid_tgid();
        struct sock_info_t si = {};
        si.key.cgroup_id = bpf_get_current_cgroup_id();
        si.key.tgid = id >> 32;
        si.key.direction = DIR_OUT;
        si.key.proto = PROTO_TCP;
        si.key.port = args->dport;
        fill_addrs(&si.key, args->family, args->saddr, args->daddr,
                   args->saddr_v6, args->daddr_v6, 1);
        si.start_ns = bpf_ktime_get_ns();
        si.state = ns;
        bpf_get_current_comm(&si.comm, sizeof(si.comm));
        if (socks.update(&sk, &si))
            count_lost(1);
        struct connect_arg_t *a = connect_args.lookup(&id);
        if (a)
            a->syn_sent = 1;
        return 0;
    }

    if (os == ST_CLOSE && ns == ST_LISTEN) {
        u64 id = bpf_get_current_pid_tgid();
        struct listen_t l = {};
        l.cgroup_id = bpf_get_current_cgroup_id();
        l.tgid = id >> 32;
        l.port = args->sport;
        if (args->family == AF_INET_) {
            l.family = 4;
            copy4(l.addr, args->saddr);
        } else {
            l.family = 6;
            copy16(l.addr, args->saddr_v6);
        }
        bpf_get_current_comm(&l.comm, sizeof(l.comm));
        if (listens.update(&sk, &l))
            count_lost(2);
        return 0;
    }

    if (os == ST_LISTEN && ns == ST_CLOSE) {
        listens.delete(&sk);
        return 0;
    }

    if (os == ST_SYN_RECV && ns == ST_ESTABLISHED) {
        /* Server side, usually in softirq: no meaningful current task. */
        struct sock_info_t si = {};
        si.key.direction = DIR_IN;
        si.key.proto = PROTO_TCP;
        si.key.port = args->sport;
        fill_addrs(&si.key, args->family, args->saddr, args->daddr,
                   args->saddr_v6, args->daddr_v6, 1);
        si.state = ns;
        if (socks.update(&sk, &si))
            count_lost(1);
        u32 buf = buf_enter();
        struct flow_val_t *v = flow_get(buf, &si.key);
        if (v)
            __sync_fetch_and_add(&v->accepts, 1);
        buf_exit(buf);
        return 0;
    }

    /* Only the end of a connect and the end of a socket matter from here:
     * the teardown states in between (FIN_WAIT*, CLOSE_WAIT, LAST_ACK...) skip
     * the socket lookup, half of this hook's runs per connection. */
    if (os != ST_SYN_SENT && ns != ST_CLOSE)
        return 0;
    struct sock_info_t *si = socks.lookup(&sk);
    if (!si)
        return 0;

    if (os == ST_SYN_SENT && (ns == ST_ESTABLISHED || ns == ST_CLOSE)) {
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
    si->state = ns;
    if (ns == ST_CLOSE)
        socks.delete(&sk);
    return 0;
}

/* ---------------------------------------------------------------- cgroups */

#ifdef HAVE_CGROUP_MKDIR
/* New v2 cgroups (root 0 is the default hierarchy) -> path, so that a
 * container that exits before userspace scans /sys/fs/cgroup is still
 * attributed. One event per cgroup creation, not per connection. */
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
    struct sock_info_t *si = socks.lookup(&sk);
    if (!si)
        return 0;
    if (si->state == ST_SYN_SENT) {
        /* A refused connect: counted as failed_refused at SYN_SENT->CLOSE. */
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
    struct sock_info_t *si = socks.lookup(&sk);
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
    struct sock_info_t *si = socks.lookup(&sk);
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
static __always_inline void udp_length(int ret)
{
    u64 id = bpf_get_current_pid_tgid();
    struct dgram_arg_t *d = dgram_args.lookup(&id);
    if (!d)
        return;
    d->seen = 1;
    d->bytes = ret > 0 ? ret : 0;
}

static __always_inline void tcp_length(u64 sk, int ret, int sent)
{
    struct sock_info_t *si = socks.lookup(&sk);
    if (!si)
        return;
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

TRACEPOINT_PROBE(sock, sock_send_length)
{
    int ret = args->ret;
    if (args->protocol == PROTO_UDP) {
        udp_length(ret);
        return 0;
    }
    if (ret <= 0 || args->protocol != PROTO_TCP)
        return 0;
    tcp_length((u64)args->sk, ret, 1);
    return 0;
}

TRACEPOINT_PROBE(sock, sock_recv_length)
{
    int ret = args->ret;
    if (args->protocol == PROTO_UDP) {
        udp_length(ret);
        return 0;
    }
    if (ret <= 0 || args->protocol != PROTO_TCP)
        return 0;
    tcp_length((u64)args->sk, ret, 0);
    return 0;
}

/* ------------------------------------------------------------------- UDP */

static __always_inline void dgram_enter_send(u64 uaddr, u64 fd)
{
    struct dgram_arg_t d = {};
    if (!read_sockaddr(uaddr, &d.family, &d.port, d.addr))
        return;
    d.fd = fd;
    u64 id = bpf_get_current_pid_tgid();
    if (dgram_args.update(&id, &d))
        count_lost(3);
}

static __always_inline void dgram_enter_recv(u64 uaddr, u64 fd)
{
    if (!uaddr)
        return;
    struct dgram_arg_t d = {};
    d.uaddr = uaddr;
    d.fd = fd;
    u64 id = bpf_get_current_pid_tgid();
    if (dgram_args.update(&id, &d))
        count_lost(3);
}

static __always_inline void dgram_exit(long ret, int sent)
{
    u64 id = bpf_get_current_pid_tgid();
    struct dgram_arg_t *d = dgram_args.lookup(&id);
    if (!d)
        return;
    if (ret < 0 || !d->seen) {
        dgram_args.delete(&id);
        return;
    }
    struct flow_key_t k = {};
    k.cgroup_id = bpf_get_current_cgroup_id();
    k.tgid = id >> 32;
    k.proto = PROTO_UDP;
    k.direction = DIR_OUT;
    u32 bytes = d->bytes;
    u64 fdkey = (id & 0xffffffff00000000ULL) | (u32)d->fd;
    if (sent) {
        k.family = d->family;
        k.port = d->port;
        copy16(k.addr, d->addr);
    } else if (!read_sockaddr(d->uaddr, &k.family, &k.port, k.addr)) {
        dgram_args.delete(&id);
        return;
    }
    dgram_args.delete(&id);

    /* Which way? A peer that first sent to us (a datagram received that is
     * not a reply to one we sent) is a client of ours: its traffic goes on an
     * "in" key with our bound port; everything else is "out" to the peer. */
    struct flow_key_t peer = k;
    peer.direction = DIR_PEER;
    u16 *bound = bound_ports.lookup(&fdkey);
    if (sent) {
        if (udp_clients.lookup(&peer)) {
            k.direction = DIR_IN;
            k.port = bound ? *bound : 0;
        }
    } else if (!flow_exists(&k)) {
        u8 one = 1;
        udp_clients.update(&peer, &one);
        k.direction = DIR_IN;
        k.port = bound ? *bound : 0;
    }
    u32 buf = buf_enter();
    struct flow_val_t *v = flow_get(buf, &k);
    if (v) {
        if (sent) {
            __sync_fetch_and_add(&v->datagrams_sent, 1);
            __sync_fetch_and_add(&v->bytes_sent, bytes);
        } else {
            __sync_fetch_and_add(&v->datagrams_received, 1);
            __sync_fetch_and_add(&v->bytes_received, bytes);
        }
        set_owner(v, k.tgid);
    }
    buf_exit(buf);
}

/* bind(): remember the local port of UDP (and other) sockets per fd, for the
 * local port of "in" UDP flows. */
TRACEPOINT_PROBE(syscalls, sys_enter_bind)
{
    struct connect_arg_t a = {};
    if (!read_sockaddr((u64)args->umyaddr, &a.family, &a.port, a.addr))
        return 0;
    a.fd = args->fd;
    u64 id = bpf_get_current_pid_tgid();
    bind_args.update(&id, &a);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_bind)
{
    u64 id = bpf_get_current_pid_tgid();
    struct connect_arg_t *a = bind_args.lookup(&id);
    if (!a)
        return 0;
    if (args->ret == 0 && a->port) {
        u64 fdkey = (id & 0xffffffff00000000ULL) | (u32)a->fd;
        u16 port = a->port;
        bound_ports.update(&fdkey, &port);
    }
    bind_args.delete(&id);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_sendto)
{
    dgram_enter_send((u64)args->addr, args->fd);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_sendto)
{
    dgram_exit(args->ret, 1);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_sendmsg)
{
    struct user_msghdr_t m = {};
    if (bpf_probe_read_user(&m, sizeof(m), (void *)args->msg))
        return 0;
    dgram_enter_send(m.msg_name, args->fd);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_sendmsg)
{
    dgram_exit(args->ret, 1);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_recvfrom)
{
    dgram_enter_recv((u64)args->addr, args->fd);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_recvfrom)
{
    dgram_exit(args->ret, 0);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_recvmsg)
{
    struct user_msghdr_t m = {};
    if (bpf_probe_read_user(&m, sizeof(m), (void *)args->msg))
        return 0;
    dgram_enter_recv(m.msg_name, args->fd);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_recvmsg)
{
    dgram_exit(args->ret, 0);
    return 0;
}
#endif /* HAVE_SOCK_LENGTH */
