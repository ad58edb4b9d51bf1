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
 *   Tracepoints only (no kprobes, no fentry, and no syscalls: tracepoints):
 *   sock:inet_sock_set_state (4.16+), tcp:tcp_retransmit_skb,
 *   tcp:tcp_receive_reset / tcp_send_reset (4.15+), sock:sock_send_length /
 *   sock_recv_length (6.3+, attached raw: 4.17+), fib:fib_table_lookup and
 *   fib6:fib6_table_lookup, cgroup:cgroup_mkdir. Only tracepoint arguments
 *   are read, never a kernel struct field, so the program is correct
 *   whatever headers bcc compiles it with. Socket addresses (skaddr, sk) are
 *   used as opaque keys only. bpf_get_current_cgroup_id() (4.18+) gives the
 *   cgroup v2 id; compare-and-swap in BPF (5.12+) claims socket slots.
 *   Kernels before 5.12 get -DCOMPAT_PRE_5_12: a hash map of sockets and
 *   inflight counters for the flips (both described below).
 *
 *   Why no syscall tracepoints: enabling any one of them puts every syscall
 *   of every process on the kernel's tracing slow path, and socket syscalls
 *   run for every connection. Everything they gave (UDP peer addresses,
 *   connects failing before a SYN) comes from the route lookup instead.
 *
 * Why each hook
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
 *                       the same thread); for TCP, a lookup in the main
 *                       table that fails is a connect that fails before any
 *                       SYN (no route: unreachable). They run on every
 *                       routed packet, not only on sends: PORTOLAN_TRACE_UDP=0
 *                       leaves them out (no HAVE_FIB*: no UDP counting).
 *   tcp_receive_reset   marks refused connects; counts resets.
 *   tcp_send_reset      counts resets we send on a tracked socket.
 *   tcp_retransmit_skb  counts retransmits (SYN retransmits included).
 *   sock_send_length /  bytes on tracked TCP sockets (process context, sk is
 *   sock_recv_length    the opaque key); UDP datagrams and bytes, on the
 *                       peer the route lookup named (sends) or the socket's
 *                       last peer (receives, see UDP below). Raw
 *                       tracepoints: the kernel builds no event record, so
 *                       they cost a third as much per run, but they do not
 *                       name the protocol: a socket the TCP table tracks is
 *                       TCP; a send this thread's UDP route lookup named is
 *                       UDP, and so is the socket from then on.
 *   cgroup_mkdir        v2 cgroup id -> path as cgroups are created, so that
 *                       a container that lived less than one scan interval
 *                       is still attributed (one event per cgroup, not per
 *                       connection).
 *
 * UDP
 *   Per (socket, process), the first thing a socket does decides its side: a
 *   socket that sends first is a client, and its datagrams both ways go on
 *   an "out" key to the peer it last sent to; a socket that receives first
 *   serves, its replies go on an "in" key with its own port, and what it
 *   received is credited to the peer it next replies to (DNS-style request
 *   and answer are exact). A send whose local port differs from the one
 *   remembered is a new socket at a reused address: it starts over.
 *
 * Exact, race-free deltas
 *   Counters live in two hash maps (flows_a, flows_b); control[0] selects the
 *   active one, and a program reads it once, before it writes. Every program
 *   runs inside an RCU read-side section. Userspace flips control, then
 *   updates rcu_sync, a map of maps: the kernel answers such an update only
 *   after an RCU grace period (maybe_wait_bpf_programs() in
 *   kernel/bpf/syscall.c), so every program that could still see the old
 *   selector has finished. Then userspace reads and clears the old map: no
 *   increment can land in a map that is being read, and the programs pay
 *   for this with one array read, no atomic. COMPAT_PRE_5_12 instead has
 *   each program announce itself in inflight[buffer] (per-CPU, atomic add)
 *   before it re-checks control and writes, and withdraw after; userspace
 *   waits until inflight[old] sums to zero. Failed map inserts are counted
 *   in lost[0], never silent; so are events the kernel skipped because
 *   another tracing program was running on that CPU (userspace reads each
 *   program's recursion_misses).
 *
 * Tracked TCP sockets
 *   A set-associative table in two arrays (sock_tags, sock_infos), not a
 *   hash map: array lookups are inlined by the verifier, while a hash map's
 *   insert and delete (two of each per connection) were most of our own
 *   cost. A socket whose bucket of SOCK_WAYS slots is full is not tracked
 *   and counted in lost[1]. With the default 131,072 slots (8192 buckets)
 *   that is about one socket in 250,000 when 32,000 are open at once on the
 *   host, one in 2,500 at 48,000. COMPAT_PRE_5_12 keeps them in a hash map
 *   (socks) of SOCK_MAP_SIZE, as before the table.
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
 *   are not received bytes. UDP: a server that never replies has its received
 *   datagrams counted nowhere; a socket connected before the tracer started
 *   is counted only when the kernel routes its datagrams again (the raw send
 *   hook cannot tell it from a Unix socket otherwise), and so is one whose
 *   first send comes more than UDP_ROUTE_MAX_AGE_NS after its connect(). A
 *   route lookup that no send follows (a UDP connect() that sends nothing)
 *   is dropped at the thread's next TCP connect or once that old; before,
 *   the thread's next send on a socket nobody tracks (Unix, say) would be
 *   taken for a datagram to it. A route lookup made
 *   in softirq on a thread's stack may be taken for that thread's next send
 *   on a connected socket; the one that happens on every
 *   IPv6 datagram to a closed port (the ICMP error routed back) is
 *   recognised as the mirror of our own lookup and ignored.
 *
 * Placeholders filled by collector/ebpf/tracer.py: FLOW_MAP_SIZE,
 * SOCK_SLOTS (a power of two), SOCK_MAP_SIZE, LISTEN_MAP_SIZE,
 * CGROUP_PATH_LEN. Optional hooks are compiled in by the -DHAVE_* flags the
 * tracer passes after checking the kernel.
 */

#include <uapi/linux/ptrace.h>

#define AF_INET_ 2
#define AF_INET6_ 10
#define PROTO_TCP 6
#define PROTO_UDP 17
#define DIR_OUT 0
#define DIR_IN 1

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

/* A UDP route lookup on this thread: the datagram being sent. Ports in host
 * order; addresses v4 in the first 4 bytes. */
struct udp_route_t {
    u16 sport;
    u16 dport;
    u8 family;
    u8 pad[3];
    u8 src[16];
    u8 dst[16];
    u64 ts;         /* when it was looked up */
};

/* Per UDP socket and process. */
struct udp_sock_key_t {
    u64 sk;
    u32 tgid;
    u32 pad;
};

struct udp_sock_t {
    struct flow_key_t key;  /* the last peer's key, when has_key */
    u64 rx_datagrams;       /* server: received, not yet tied to a peer */
    u64 rx_bytes;
    u16 sport;              /* local port, from the route lookup */
    u8 role;                /* UDP_CLIENT or UDP_SERVER */
    u8 has_key;
    u32 pad;
};

struct cgroup_path_t {
    char path[CGROUP_PATH_LEN];
};

BPF_HASH(flows_a, struct flow_key_t, struct flow_val_t, FLOW_MAP_SIZE);
BPF_HASH(flows_b, struct flow_key_t, struct flow_val_t, FLOW_MAP_SIZE);
BPF_ARRAY(control, u32, 1);            /* [0]: active flow map, 0=a 1=b */
#ifdef COMPAT_PRE_5_12
BPF_PERCPU_ARRAY(inflight, s64, 2);    /* programs writing to map [i] */
#else
/* Updated by userspace only, to wait for an RCU grace period (see above). */
BPF_ARRAY(rcu_sync_inner, u32, 1);
BPF_ARRAY_OF_MAPS(rcu_sync, "rcu_sync_inner", 1);
#endif
BPF_ARRAY(lost, u64, 3);  /* [0] flows [1] socket bucket [2] listens full */
BPF_ARRAY(zero_val, struct flow_val_t, 1);
#ifdef COMPAT_PRE_5_12
/* Tracked TCP sockets, in a hash map (no compare-and-swap before 5.12). */
BPF_HASH(socks, u64, struct sock_info_t, SOCK_MAP_SIZE);
#else
/* Tracked TCP sockets: a set-associative table in two arrays, because array
 * lookups are inlined by the verifier (no helper call, no bucket lock, no
 * element allocation), where a hash map's insert and delete were most of our
 * own cost per connection. A socket's opaque address picks a bucket of
 * SOCK_WAYS slots whose tags share two cache lines; a slot is claimed by
 * compare-and-swap on its tag and freed by zeroing it. */
#define SOCK_WAYS 16
#define SOCK_BUCKETS (SOCK_SLOTS / SOCK_WAYS)
struct sock_bucket_t {
    u64 sk[SOCK_WAYS];      /* 0: free */
};
BPF_ARRAY(sock_tags, struct sock_bucket_t, SOCK_BUCKETS);
BPF_ARRAY(sock_infos, struct sock_info_t, SOCK_SLOTS);
#endif
BPF_HASH(listens, u64, struct listen_t, LISTEN_MAP_SIZE);
/* UDP route lookups not yet joined to their send, per thread. LRU: a lookup
 * no send follows (a UDP connect() that never sends) must not stay, nor fill
 * the map. */
BPF_TABLE("lru_hash", u64, struct udp_route_t, udp_routes, 10240);
/* A UDP socket connect()ed and sending this much later is not joined to its
 * route: the lookup more likely belongs to a connect() that sent nothing, and
 * the send to another socket (Unix, say) that must not become "UDP". */
#define UDP_ROUTE_MAX_AGE_NS 1000000000ULL
/* UDP sockets; LRU: nothing tells us when a UDP socket is closed. */
BPF_TABLE("lru_hash", struct udp_sock_key_t, struct udp_sock_t, udp_socks, SOCK_MAP_SIZE);
/* v2 cgroup id -> path of cgroups created since userspace last drained it. */
BPF_TABLE("lru_hash", u64, struct cgroup_path_t, cgroup_paths, 4096);

static __always_inline void count_lost(u32 what)
{
    u64 *l = lost.lookup(&what);
    if (l)
        __sync_fetch_and_add(l, 1);
}

/* ------------------------------------------------------- socket table */

#ifdef COMPAT_PRE_5_12
static __always_inline struct sock_info_t *sock_find(u64 sk)
{
    return socks.lookup(&sk);
}

static __always_inline struct sock_info_t *sock_claim(u64 sk)
{
    struct sock_info_t fresh = {};
    if (socks.update(&sk, &fresh)) {
        count_lost(1);
        return 0;
    }
    return socks.lookup(&sk);
}

static __always_inline void sock_release(u64 sk)
{
    socks.delete(&sk);
}
#else
static __always_inline u32 sock_bucket(u64 sk)
{
    /* Multiplicative hashing: sockets are slab objects, their low bits
     * say little. SOCK_BUCKETS is a power of two. */
    return (u32)((sk * 0x9E3779B97F4A7C15ULL) >> 32) & (SOCK_BUCKETS - 1);
}

/* The tracked socket at sk, or 0. */
static __always_inline struct sock_info_t *sock_find(u64 sk)
{
    u32 b = sock_bucket(sk);
    struct sock_bucket_t *tags = sock_tags.lookup(&b);
    if (!tags || !sk)
        return 0;
#pragma clang loop unroll(disable)
    for (u32 way = 0; way < SOCK_WAYS; way++) {
        if (tags->sk[way] == sk) {
            u32 slot = b * SOCK_WAYS + way;
            return sock_infos.lookup(&slot);
        }
    }
    return 0;
}

/* A slot for a new socket at sk: the one it already has (an address whose
 * close we did not see), else a free one; 0 and lost[1] when its bucket
 * is full. One pass finds either; the claim of a free way is retried on the
 * ways after it if another CPU took it first. */
static __always_inline struct sock_info_t *sock_claim(u64 sk)
{
    u32 b = sock_bucket(sk);
    struct sock_bucket_t *tags = sock_tags.lookup(&b);
    if (!tags || !sk)
        return 0;
    u32 way = SOCK_WAYS, free_way = SOCK_WAYS;
#pragma clang loop unroll(disable)
    for (u32 w = 0; w < SOCK_WAYS; w++) {
        u64 tag = tags->sk[w];
        if (tag == sk) {
            way = w;
            break;
        }
        if (tag == 0 && free_way == SOCK_WAYS)
            free_way = w;
    }
    if (way == SOCK_WAYS) {
#pragma clang loop unroll(disable)
        for (u32 w = free_way; w < SOCK_WAYS; w++) {
            if (tags->sk[w] == 0 &&
                __sync_val_compare_and_swap(&tags->sk[w], 0, sk) == 0) {
                way = w;
                break;
            }
        }
    }
    if (way == SOCK_WAYS) {
        count_lost(1);
        return 0;
    }
    u32 slot = b * SOCK_WAYS + way;
    return sock_infos.lookup(&slot);
}

/* Forget the socket at sk (its slot's data is overwritten by the next claim). */
static __always_inline void sock_release(u64 sk)
{
    u32 b = sock_bucket(sk);
    struct sock_bucket_t *tags = sock_tags.lookup(&b);
    if (!tags || !sk)
        return;
#pragma clang loop unroll(disable)
    for (u32 way = 0; way < SOCK_WAYS; way++) {
        if (tags->sk[way] == sk) {
            /* A socket holds one way: sock_claim reuses its own. */
            __sync_val_compare_and_swap(&tags->sk[way], sk, 0);
            break;
        }
    }
}
#endif

#ifdef COMPAT_PRE_5_12
/* Enter the active buffer: announce in inflight[], then re-check the
 * selector; userspace waits for inflight[old] to drain before reading. */
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
#else
/* The active flow map; stable until this program ends (see above). */
static __always_inline u32 buf_enter(void)
{
    u32 zero = 0;
    u32 *act = control.lookup(&zero);
    return act ? (*act & 1) : 0;
}

static __always_inline void buf_exit(u32 e)
{
}
#endif

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

/* A tracepoint's address field: 4 bytes for family 4, else 16. */
static __always_inline void copy_addr(u8 *dst, const u8 *src, u8 family)
{
    if (family == 4)
        copy4(dst, src);
    else
        copy16(dst, src);
}

static __always_inline u32 fail_index(long err)
{
    /* 0 refused, 1 timeout, 2 unreachable, 3 other */
    if (err == -111)                /* ECONNREFUSED */
        return 0;
    if (err == -110)                /* ETIMEDOUT */
        return 1;
    /* EAGAIN is a route table's "no route" (connect() says ENETUNREACH). */
    if (err == -101 || err == -113 || err == -11) /* ENETUNREACH, EHOSTUNREACH */
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

/* ------------------------------------------------------------ routes */

#define RT_TABLE_MAIN_ 254
#define UDP_CLIENT 1
#define UDP_SERVER 2

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

static __always_inline int same16(const u8 *a, const u8 *b)
{
    u8 diff = 0;
#pragma unroll
    for (int i = 0; i < 16; i++)
        diff |= a[i] ^ b[i];
    return diff == 0;
}

static __always_inline void udp_route(u8 family, const u8 *src, const u8 *dst,
                                      u16 sport, u16 dport)
{
    struct udp_route_t r = {};
    r.family = family;
    r.sport = sport;
    r.dport = dport;
    copy_addr(r.src, src, family);
    copy_addr(r.dst, dst, family);
    u64 id = bpf_get_current_pid_tgid();
    struct udp_route_t *e = udp_routes.lookup(&id);
    if (e && e->sport == dport && e->dport == sport && e->family == family &&
        same16(e->dst, r.src))
        return; /* the mirror of our own datagram: the peer's ICMP error being
                 * routed back, in softirq on our stack before our send ends */
    r.ts = bpf_ktime_get_ns();
    udp_routes.update(&id, &r);
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

/* Both families' lookups carry the same fields (v4 addresses in 4 bytes).
 * A TCP lookup that fails counts as a failed connect only as connect() on an
 * unbound socket makes it: no source address, port or interface yet. That
 * leaves out an established socket's lookups after a route went away (source
 * set), a socket bound to a device (the kernel goes on as if on-link) and
 * IPv6's second lookup, made once a source address is chosen. */
#define ROUTE_LOOKUP(FAMILY)                                                  \
    if (args->proto == PROTO_UDP) {                                           \
        if (args->err == 0 && args->dport)                                    \
            udp_route(FAMILY, args->src, args->dst, args->sport, args->dport); \
        return 0;                                                             \
    }                                                                         \
    if (args->proto == PROTO_TCP && args->err != 0 &&                         \
        args->tb_id == RT_TABLE_MAIN_ && args->sport == 0 && args->oif == 0 && \
        unset_source(args->src, FAMILY))                                      \
        route_failure(FAMILY, args->dst, args->dport, args->err);             \
    return 0;

#ifdef HAVE_FIB4
TRACEPOINT_PROBE(fib, fib_table_lookup)
{
    ROUTE_LOOKUP(4)
}
#endif

#ifdef HAVE_FIB6
TRACEPOINT_PROBE(fib6, fib6_table_lookup)
{
    ROUTE_LOOKUP(6)
}
#endif

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
#if defined(HAVE_FIB4) || defined(HAVE_FIB6)
        /* A UDP route this thread looked up and sent nothing on (getaddrinfo
         * connects UDP sockets to sort addresses, then connects over TCP)
         * belongs to no send from here on. (Looked up first: a delete takes
         * the bucket lock even when there is nothing, on every connect.) */
        if (udp_routes.lookup(&id))
            udp_routes.delete(&id);
#endif
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
#ifdef COMPAT_PRE_5_12
        /* Its claim overwrites a tracked connect: look for one first. */
        struct sock_info_t *slot = sock_find(sk);
        if (!slot)
            slot = sock_claim(sk);
#else
        struct sock_info_t *slot = sock_claim(sk);
#endif
        if (slot && simultaneous_open(slot)) {
            /* Our own connect completing, not an accept. */
            connect_done(slot, ns);
            slot->state = ns;
            return 0;
        }
        struct sock_info_t si = {};
        si.key.direction = DIR_IN;
        si.key.proto = PROTO_TCP;
        si.key.port = args->sport;
        fill_addrs(&si.key, args->family, args->saddr, args->daddr,
                   args->saddr_v6, args->daddr_v6, 1);
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

    /* Only the end of a connect and the end of a socket matter from here:
     * the teardown states in between (FIN_WAIT*, CLOSE_WAIT, LAST_ACK...) skip
     * the socket lookup, half of this hook's runs per connection. */
    if (os != ST_SYN_SENT && ns != ST_CLOSE)
        return 0;
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

#if defined(HAVE_FIB4) || defined(HAVE_FIB6)
#define COUNT_UDP 1
/* The flow key of a datagram on the route of this thread's lookup. */
static __always_inline void udp_key(struct flow_key_t *k, struct udp_route_t *r,
                                    u64 id, int server)
{
    k->cgroup_id = bpf_get_current_cgroup_id();
    k->tgid = id >> 32;
    k->proto = PROTO_UDP;
    k->family = r->family;
    if (server) {
        k->direction = DIR_IN;  /* a reply: keyed by our own port */
        k->port = r->sport;
    } else {
        k->direction = DIR_OUT;
        k->port = r->dport;
    }
    copy16(k->addr, r->dst);
    copy16(k->laddr, r->src);
}

/* A send on a socket that is not a tracked TCP socket. The raw hook does not
 * say which protocol it is: a send this thread's UDP route lookup named is a
 * datagram (the lookup is consumed, whatever the send's result); a socket
 * that has sent a routed datagram before is UDP; anything else (Unix, TCP
 * from before the tracer, a UDP socket connected before it) is left alone. */
static __always_inline void udp_sent(u64 sk, int ret)
{
    u64 id = bpf_get_current_pid_tgid();
    struct udp_sock_key_t sid = {.sk = sk, .tgid = id >> 32};
    struct udp_route_t *rp = udp_routes.lookup(&id);
    struct udp_route_t r = {};
    int routed = 0;
    if (rp) {
        r = *rp;
        udp_routes.delete(&id);
        routed = bpf_ktime_get_ns() - r.ts < UDP_ROUTE_MAX_AGE_NS;
    }
    if (ret <= 0)
        return;
    struct flow_key_t k = {};
    u64 rx = 0, rx_bytes = 0;
    struct udp_sock_t *known = udp_socks.lookup(&sid);
    if (known && routed && known->sport && r.sport != known->sport)
        known = 0;  /* a new socket at a reused address: it starts over */
    if (!known) {
        /* A new socket that sends first: a client. */
        if (!routed)
            return;
        udp_key(&k, &r, id, 0);
        struct udp_sock_t st = {};
        st.role = UDP_CLIENT;
        st.key = k;
        st.has_key = 1;
        st.sport = r.sport;
        udp_socks.update(&sid, &st);
    } else {
        if (routed) {
            udp_key(&k, &r, id, known->role == UDP_SERVER);
            known->key = k;
            known->has_key = 1;
            known->sport = r.sport;
        } else if (known->has_key) {
            k = known->key;
        } else {
            return;  /* received first, never routed a send: not UDP we know */
        }
        /* Take what the socket received so far; a datagram arriving on
         * another thread meanwhile stays for the next reply. */
        rx = known->rx_datagrams;
        rx_bytes = known->rx_bytes;
        if (rx) {
            __sync_fetch_and_add(&known->rx_datagrams, -rx);
            __sync_fetch_and_add(&known->rx_bytes, -rx_bytes);
        }
    }
    u32 buf = buf_enter();
    struct flow_val_t *v = flow_get(buf, &k);
    if (v) {
        __sync_fetch_and_add(&v->datagrams_sent, 1);
        __sync_fetch_and_add(&v->bytes_sent, ret);
        if (rx) {
            __sync_fetch_and_add(&v->datagrams_received, rx);
            __sync_fetch_and_add(&v->bytes_received, rx_bytes);
        }
        set_owner(v, k.tgid);
    }
    buf_exit(buf);
}

/* A datagram received: a client's reply goes on its peer's key at once; a
 * server holds it until it answers (see UDP in the header). */
static __always_inline void udp_received(u64 sk, int ret)
{
    u64 id = bpf_get_current_pid_tgid();
    struct udp_sock_key_t sid = {.sk = sk, .tgid = id >> 32};
    struct udp_sock_t *s = udp_socks.lookup(&sid);
    if (!s) {
        struct udp_sock_t st = {};
        st.role = UDP_SERVER;
        st.rx_datagrams = 1;
        st.rx_bytes = ret;
        udp_socks.update(&sid, &st);
        return;
    }
    if (s->role == UDP_SERVER || !s->has_key) {
        __sync_fetch_and_add(&s->rx_datagrams, 1);
        __sync_fetch_and_add(&s->rx_bytes, ret);
        return;
    }
    u32 buf = buf_enter();
    struct flow_val_t *v = flow_get(buf, &s->key);
    if (v) {
        __sync_fetch_and_add(&v->datagrams_received, 1);
        __sync_fetch_and_add(&v->bytes_received, ret);
    }
    buf_exit(buf);
}
#endif

/* Raw tracepoints: the kernel builds no event record for them, which made
 * these two hooks a third cheaper per run. Their arguments are the socket
 * (an opaque key here), the result and the flags; the protocol is not among
 * them, so a socket is TCP if the table tracks it, else UDP as udp_sent and
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
