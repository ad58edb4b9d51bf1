/*
 * sockets.h - the tracked TCP sockets: opaque socket address -> the flow key
 *             its counters go to, its state, when its connect began, and the
 *             counts it has not yet handed to a flow.
 *
 * What it does
 *   sock_claim(sk, si) gives a socket a slot holding *si, sock_find(sk) finds
 *   it, sock_close(sk) folds its counts into its flow and frees the slot.
 *   Events on a tracked socket (its connect's outcome, an accept, bytes,
 *   resets, retransmits) add to the slot's own counters (SOCK_ADD), not to
 *   the flow map: the slot is already at hand, while a flow-map lookup (a
 *   hash of the 56-byte key and a bucket walk) per event was most of what
 *   the byte hooks cost. A socket's counts reach its flow when it closes
 *   (one lookup per socket) and, while it lives, when userspace runs
 *   flush_sockets before each read (ConnectionTracer.read): every live slot
 *   with counts is folded into the active flow map, so the interval's
 *   counts are complete in it.
 *
 *   The slots are a set-associative table in two arrays (sock_tags,
 *   sock_infos), not a hash map: array lookups are inlined by the verifier
 *   (no helper call, no bucket lock, no element allocation), while a hash
 *   map's insert and delete (two of each per connection) were most of our own
 *   cost. A socket's address picks a bucket of SOCK_WAYS slots whose tags
 *   share two cache lines; a slot is claimed by compare-and-swap on its tag
 *   and freed by zeroing it.
 *
 * Exactness
 *   A count is moved out of a slot only by an atomic exchange with zero
 *   (sock_fold), so the close, a flush and a late event on another CPU can
 *   each take or add a part, never the same part twice. The key a fold reads
 *   must still be the socket's: a flush marks the tag TAG_BUSY while it folds,
 *   a close that comes meanwhile marks it TAG_CLOSED instead of freeing it
 *   (the flush frees it), and a claim writes its slot under TAG_BUSY, which a
 *   flush passes by; sock_find still matches a busy tag. A socket whose close
 *   was missed (the kernel reusing its address) has its counts folded under
 *   its own key before the new socket gets a slot: nothing is inherited.
 *
 * Kernel facility
 *   Compare-and-swap and exchange in BPF (__sync_val_compare_and_swap,
 *   __sync_lock_test_and_set, 5.12+); flush_sockets is run by
 *   BPF_PROG_TEST_RUN (raw tracepoint, 5.10+). Kernels before 5.12
 *   (COMPAT_PRE_5_12) keep the sockets in a hash map (socks) of
 *   SOCK_MAP_SIZE, as before the table, behind the same functions, and add
 *   each event to the flow map at once.
 *
 * Caveats
 *   A socket whose bucket is full is not tracked and is counted in
 *   lost[LOST_SOCKET]. With the default 131,072 slots (8192 buckets) that is
 *   about one socket in 250,000 when 32,000 are open at once on the host, one
 *   in 2,500 at 48,000. An event that found a slot just before its socket
 *   closed and the slot went to another socket counts for the new one (as
 *   before the counts moved into the slots). Counts made between the flush
 *   and the buffer flip are in the next interval's read.
 *
 * Sizes: SOCK_SLOTS (a power of two) and, before 5.12, SOCK_MAP_SIZE, from
 * collector/ebpf/tracer.py as -D flags; SOCK_FLUSH_BUCKETS, the buckets one
 * run of flush_sockets folds (the verifier walks every iteration). Needs
 * counters.h.
 */

#ifndef PORTOLAN_SOCKETS_H
#define PORTOLAN_SOCKETS_H

#include "counters.h"

#define ST_ESTABLISHED 1
#define ST_SYN_SENT 2
#define ST_SYN_RECV 3
#define ST_CLOSE 7
#define ST_LISTEN 10

/* Per tracked TCP socket, keyed by the opaque skaddr. */
struct sock_info_t {
    struct flow_key_t key;
    u64 start_ns;
    u32 rst;        /* an RST was received */
    u32 state;      /* last state we saw */
    char comm[16];  /* the connecting process (empty on the server side) */
#ifndef COMPAT_PRE_5_12
    u64 counts[FLOW_COUNTERS];  /* not yet in a flow map (see above) */
#endif
};

/* Our own connect, half-way through a simultaneous open (SYN_SENT ->
 * SYN_RECV; a socket connecting to its own address is one). A freed or fresh
 * slot says CLOSE (or 0), never SYN_RECV. */
static __always_inline int simultaneous_open(const struct sock_info_t *si)
{
    return si->state == ST_SYN_RECV && si->key.direction == DIR_OUT;
}

/* Counter FIELD (a struct flow_val_t member) of tracked socket si grows by n. */
#define SOCK_ADD(si, FIELD, n) sock_add((si), COUNTER_INDEX(FIELD), (n))
/* The same for a counter a socket's state changes set once (its connect's
 * outcome, its accept): a store, not an atomic add. The state changes of a
 * socket do not overlap, its claim left the counter 0, and a fold takes it
 * by exchange whether before or after the store. */
#define SOCK_SET(si, FIELD, n) sock_set((si), COUNTER_INDEX(FIELD), (n))

#ifdef COMPAT_PRE_5_12
/* XXX: delete with kernels before 5.12 (no compare-and-swap in BPF to claim a
 * table slot), with the other COMPAT_PRE_5_12 blocks. */
BPF_HASH(socks, u64, struct sock_info_t, SOCK_MAP_SIZE);

static __always_inline struct sock_info_t *sock_find(u64 sk)
{
    return socks.lookup(&sk);
}

/* As the table's; the slot is written even where an entry was (a missed
 * close: its counts went to the flow map as they came). */
static __always_inline struct sock_info_t *sock_claim(u64 sk,
                                                      const struct sock_info_t *si)
{
    struct sock_info_t *own = socks.lookup(&sk);
    if (own && simultaneous_open(own))
        return own;
    if (socks.update(&sk, si)) {
        count_lost(LOST_SOCKET);
        return 0;
    }
    return socks.lookup(&sk);
}

static __always_inline void sock_close(u64 sk)
{
    socks.delete(&sk);
}

/* Straight into the flow map: no slot counters without exchange in BPF. */
static __always_inline void sock_add(struct sock_info_t *si, u32 idx, u64 n)
{
    u32 buf = buf_enter();
    struct flow_val_t *v = flow_get(buf, &si->key);
    if (v) {
        __sync_fetch_and_add(&((u64 *)v)[idx % FLOW_COUNTERS], n);
        if (si->comm[0]) {
            v->last_tgid = si->key.tgid;
            __builtin_memcpy(v->comm, si->comm, sizeof(v->comm));
        }
    }
    buf_exit(buf);
}

static __always_inline void sock_set(struct sock_info_t *si, u32 idx, u64 n)
{
    sock_add(si, idx, n);
}
#else
#define SOCK_WAYS 16
#define SOCK_BUCKETS (SOCK_SLOTS / SOCK_WAYS)
/* Flags in a tag's low bits (a struct sock is at least 8-aligned). */
#define TAG_BUSY 1ULL     /* a claim is writing the slot, or a flush folding it */
#define TAG_CLOSED 2ULL   /* closed while a flush folded it: the flush frees it */
#define TAG_FLAGS 3ULL
struct sock_bucket_t {
    u64 sk[SOCK_WAYS];      /* 0: free; else the socket, and TAG_* */
};
BPF_ARRAY(sock_tags, struct sock_bucket_t, SOCK_BUCKETS);
BPF_ARRAY(sock_infos, struct sock_info_t, SOCK_SLOTS);

static __always_inline u32 sock_bucket(u64 sk)
{
    /* Multiplicative hashing: sockets are slab objects, their low bits
     * say little. SOCK_BUCKETS is a power of two. */
    return (u32)((sk * 0x9E3779B97F4A7C15ULL) >> 32) & (SOCK_BUCKETS - 1);
}

static __always_inline void sock_add(struct sock_info_t *si, u32 idx, u64 n)
{
    __sync_fetch_and_add(&si->counts[idx % FLOW_COUNTERS], n);
}

static __always_inline void sock_set(struct sock_info_t *si, u32 idx, u64 n)
{
    si->counts[idx % FLOW_COUNTERS] = n;
}

/* Move si's counts into its flow in the active map (each taken by exchange:
 * see "Exactness" above), and name the connecting process on it. */
static __always_inline void sock_fold(struct sock_info_t *si)
{
    u64 any = 0;
#pragma unroll
    for (int i = 0; i < FLOW_COUNTERS; i++)
        any |= si->counts[i];
    if (!any)
        return;
    u32 buf = buf_enter();
    /* 0 when the buffer is full (counted lost): the counts are dropped. */
    struct flow_val_t *v = flow_get(buf, &si->key);
#pragma unroll
    for (int i = 0; i < FLOW_COUNTERS; i++) {
        if (si->counts[i]) {
            u64 n = __sync_lock_test_and_set(&si->counts[i], 0);
            if (v)
                __sync_fetch_and_add(&((u64 *)v)[i], n);
        }
    }
    if (v && si->comm[0]) {
        /* The connecting process, not whoever runs the softirq. */
        v->last_tgid = si->key.tgid;
        __builtin_memcpy(v->comm, si->comm, sizeof(v->comm));
    }
    buf_exit(buf);
}

/* Where a flush's counts go when the flow buffer is full (lost is counted):
 * a branch per counter would double what the verifier walks per way. */
BPF_PERCPU_ARRAY(fold_discard, struct flow_val_t, 1);

/* As sock_fold, without a branch per counter, for flush_sockets' loop. */
static __always_inline void sock_fold_flat(struct sock_info_t *si)
{
    u32 buf = buf_enter();
    struct flow_val_t *v = flow_get(buf, &si->key);
    if (!v) {
        u32 zero = 0;
        v = fold_discard.lookup(&zero);
    }
    if (v) {
#pragma unroll
        for (int i = 0; i < FLOW_COUNTERS; i++)
            __sync_fetch_and_add(&((u64 *)v)[i],
                                 __sync_lock_test_and_set(&si->counts[i], 0));
        v->last_tgid = si->key.tgid;
        __builtin_memcpy(v->comm, si->comm, sizeof(v->comm));
    }
    buf_exit(buf);
}

/* The way of bucket tags that socket sk holds, or SOCK_WAYS. */
static __always_inline u32 sock_way(const struct sock_bucket_t *tags, u64 sk)
{
#pragma clang loop unroll(disable)
    for (u32 way = 0; way < SOCK_WAYS; way++)
        if ((tags->sk[way] & ~TAG_BUSY) == sk)
            return way;
    return SOCK_WAYS;
}

/* The tracked socket at sk, or 0. */
static __always_inline struct sock_info_t *sock_find(u64 sk)
{
    u32 b = sock_bucket(sk);
    struct sock_bucket_t *tags = sock_tags.lookup(&b);
    if (!tags || !sk)
        return 0;
    u32 way = sock_way(tags, sk);
    if (way == SOCK_WAYS)
        return 0;
    u32 slot = b * SOCK_WAYS + way;
    return sock_infos.lookup(&slot);
}

/* Fold the socket in way `way` of bucket b (tag sk) and free the way; if a
 * flush is folding it, mark it closed for the flush to free. */
static __always_inline void sock_close_way(struct sock_bucket_t *tags, u32 b,
                                           u32 way, u64 sk)
{
    u32 slot = b * SOCK_WAYS + way;
    struct sock_info_t *si = sock_infos.lookup(&slot);
    if (si)
        sock_fold(si);
#pragma unroll
    for (int i = 0; i < 2; i++) {
        if (__sync_val_compare_and_swap(&tags->sk[way], sk, 0) == sk)
            return;
        if (__sync_val_compare_and_swap(&tags->sk[way], sk | TAG_BUSY,
                                        sk | TAG_BUSY | TAG_CLOSED) == (sk | TAG_BUSY))
            return;
        /* The flush ended between the two: the tag is sk again. */
    }
}

/* A slot holding *si for a new socket at sk; 0 and lost[LOST_SOCKET] when
 * its bucket is full. A way sk still holds is a socket whose close we
 * missed: closed first (its counts go to its own flow), unless it is our own
 * connect half-way through a simultaneous open, returned as it is. One pass
 * finds either that way or the first free one; the claim of a free way is
 * retried on the ways after it if another CPU took it first. */
static __always_inline struct sock_info_t *sock_claim(u64 sk,
                                                      const struct sock_info_t *si)
{
    u32 b = sock_bucket(sk);
    struct sock_bucket_t *tags = sock_tags.lookup(&b);
    if (!tags || !sk || (sk & TAG_FLAGS))
        return 0;
    u32 way = SOCK_WAYS, free_way = SOCK_WAYS;
#pragma clang loop unroll(disable)
    for (u32 w = 0; w < SOCK_WAYS; w++) {
        u64 tag = tags->sk[w];
        if ((tag & ~TAG_BUSY) == sk) {
            way = w;
            break;
        }
        if (tag == 0 && free_way == SOCK_WAYS)
            free_way = w;
    }
    if (way < SOCK_WAYS) {
        u32 slot = b * SOCK_WAYS + way;
        struct sock_info_t *own = sock_infos.lookup(&slot);
        if (own && simultaneous_open(own))
            return own;
        sock_close_way(tags, b, way, sk);
        if (way < free_way)
            free_way = way;
    }
    way = SOCK_WAYS;
#pragma clang loop unroll(disable)
    for (u32 w = free_way; w < SOCK_WAYS; w++) {
        if (tags->sk[w] == 0 &&
            __sync_val_compare_and_swap(&tags->sk[w], 0, sk | TAG_BUSY) == 0) {
            way = w;
            break;
        }
    }
    if (way == SOCK_WAYS) {
        count_lost(LOST_SOCKET);
        return 0;
    }
    u32 slot = b * SOCK_WAYS + way;
    struct sock_info_t *mine = sock_infos.lookup(&slot);
    if (mine) {
        /* What an event added after its socket's close was folded. */
        sock_fold(mine);
        /* All but the counts, which the fold left at 0. */
        __builtin_memcpy(mine, si, __builtin_offsetof(struct sock_info_t, counts));
    }
    /* Written: findable by a flush from here on (an exchange, so that the
     * slot's stores come first). */
    __sync_lock_test_and_set(&tags->sk[way], sk);
    return mine;
}

/* The socket at sk closed: its counts to its flow, its slot freed. */
static __always_inline void sock_close(u64 sk)
{
    u32 b = sock_bucket(sk);
    struct sock_bucket_t *tags = sock_tags.lookup(&b);
    if (!tags || !sk)
        return;
    /* A socket holds one way: sock_claim closes a stale one first. */
    u32 way = sock_way(tags, sk);
    if (way < SOCK_WAYS)
        sock_close_way(tags, b, way, sk);
}

/* Run by userspace (BPF_PROG_TEST_RUN) before each read, over buckets
 * args[0] to args[0] + SOCK_FLUSH_BUCKETS: fold every live socket's counts
 * into the active flow map. Not attached to anything. */
int flush_sockets(struct bpf_raw_tracepoint_args *ctx)
{
    u32 first = ctx->args[0];
#pragma clang loop unroll(disable)
    for (u32 i = 0; i < SOCK_FLUSH_BUCKETS; i++) {
        u32 b = first + i;
        struct sock_bucket_t *tags = sock_tags.lookup(&b);
        if (!tags)
            return 0;
#pragma clang loop unroll(disable)
        for (u32 way = 0; way < SOCK_WAYS; way++) {
            u64 tag = tags->sk[way];
            if (!tag || (tag & TAG_FLAGS))
                continue;   /* free, or being claimed */
            u32 slot = b * SOCK_WAYS + way;
            struct sock_info_t *si = sock_infos.lookup(&slot);
            if (!si)
                continue;
            u64 any = 0;
#pragma unroll
            for (int c = 0; c < FLOW_COUNTERS; c++)
                any |= si->counts[c];
            if (!any ||
                __sync_val_compare_and_swap(&tags->sk[way], tag, tag | TAG_BUSY) != tag)
                continue;
            sock_fold_flat(si);
            if (__sync_val_compare_and_swap(&tags->sk[way], tag | TAG_BUSY, tag) !=
                (tag | TAG_BUSY))
                /* Closed meanwhile (TAG_CLOSED): ours to free. */
                __sync_lock_test_and_set(&tags->sk[way], 0);
        }
    }
    return 0;
}
#endif

#endif /* PORTOLAN_SOCKETS_H */
