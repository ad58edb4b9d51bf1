/*
 * counters.h - the flow counters, in two buffers that userspace swaps to read
 *              exact deltas with no lock and no atomic on the programs' side.
 *
 * What it does
 *   Counters are kept per flow key (cgroup, tgid, direction, protocol, peer,
 *   local address) in two hash maps, flows_a and flows_b; control[0] selects
 *   the active one. A program reads the selector once (buf_enter), adds to
 *   the active map (flow_get, count_failure...) and leaves (buf_exit).
 *   Userspace flips control, waits until no program can still be writing to
 *   the old map, then reads and clears it (ConnectionTracer._flip and read in
 *   collector/ebpf/tracer.py): no increment lands in a map being read.
 *
 * Kernel facility
 *   Every BPF program runs inside an RCU read-side section, and the kernel
 *   answers an update of a map of maps only after an RCU grace period
 *   (maybe_wait_bpf_programs() in kernel/bpf/syscall.c): userspace updates
 *   rcu_sync after the flip, and every program that could still see the old
 *   selector has then finished. The programs pay one array read for this.
 *   Kernels before 5.12 (COMPAT_PRE_5_12) have each program announce itself
 *   in inflight[buffer] (per-CPU, atomic add) before it re-checks the
 *   selector and writes, and withdraw after; userspace waits until
 *   inflight[old] sums to zero.
 *
 * Caveats
 *   A flow that finds its buffer full is counted in lost[LOST_FLOW], never
 *   silently; so are sockets and listens that find no room (LOST_SOCKET,
 *   LOST_LISTEN), whose tables live elsewhere.
 *
 * Sizes: FLOW_MAP_SIZE, from collector/ebpf/tracer.py as a -D flag.
 */

#ifndef PORTOLAN_COUNTERS_H
#define PORTOLAN_COUNTERS_H

#define PROTO_TCP 6
#define PROTO_UDP 17
#define DIR_OUT 0
#define DIR_IN 1

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

BPF_HASH(flows_a, struct flow_key_t, struct flow_val_t, FLOW_MAP_SIZE);
BPF_HASH(flows_b, struct flow_key_t, struct flow_val_t, FLOW_MAP_SIZE);
BPF_ARRAY(control, u32, 1);            /* [0]: active flow map, 0=a 1=b */
#ifdef COMPAT_PRE_5_12
/* XXX: delete with kernels before 5.12, with the other COMPAT_PRE_5_12 blocks
 * (and ConnectionTracer._drain_inflight): from 5.12 the rcu_sync wait below
 * is used instead. */
BPF_PERCPU_ARRAY(inflight, s64, 2);    /* programs writing to map [i] */
#else
/* Updated by userspace only, to wait for an RCU grace period (see above). */
BPF_ARRAY(rcu_sync_inner, u32, 1);
BPF_ARRAY_OF_MAPS(rcu_sync, "rcu_sync_inner", 1);
#endif
#define LOST_FLOW 0     /* a flow buffer was full */
#define LOST_SOCKET 1   /* a socket's bucket (before 5.12: the map) was full */
#define LOST_LISTEN 2   /* the listening-socket map was full */
BPF_ARRAY(lost, u64, 3);
BPF_ARRAY(zero_val, struct flow_val_t, 1);

static __always_inline void count_lost(u32 what)
{
    u64 *l = lost.lookup(&what);
    if (l)
        __sync_fetch_and_add(l, 1);
}

#ifdef COMPAT_PRE_5_12
/* XXX: delete with kernels before 5.12, with the other COMPAT_PRE_5_12 blocks.
 * Enter the active buffer: announce in inflight[], then re-check the
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

/* The counters of flow k in buffer buf, created at zero; 0 when it is full. */
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
        count_lost(LOST_FLOW);
    return v;
}

/* The process named on a flow: the one running now. */
static __always_inline void set_owner(struct flow_val_t *v, u32 tgid)
{
    v->last_tgid = tgid;
    bpf_get_current_comm(&v->comm, sizeof(v->comm));
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

/* Addresses into a flow key (tracepoint fields: v4 in 4 bytes, v6 in 16). */
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

#endif /* PORTOLAN_COUNTERS_H */
