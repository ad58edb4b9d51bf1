/*
 * sockets.h - the tracked TCP sockets: opaque socket address -> the flow key
 *             its counters go to, its state and when its connect began.
 *
 * What it does
 *   sock_claim(sk) gives a socket a slot (the one it already has, if its
 *   close was missed), sock_find(sk) finds it, sock_release(sk) frees it.
 *   The slots are a set-associative table in two arrays (sock_tags,
 *   sock_infos), not a hash map: array lookups are inlined by the verifier
 *   (no helper call, no bucket lock, no element allocation), while a hash
 *   map's insert and delete (two of each per connection) were most of our own
 *   cost. A socket's address picks a bucket of SOCK_WAYS slots whose tags
 *   share two cache lines; a slot is claimed by compare-and-swap on its tag
 *   and freed by zeroing it.
 *
 * Kernel facility
 *   Compare-and-swap in BPF (__sync_val_compare_and_swap, 5.12+). Kernels
 *   before 5.12 (COMPAT_PRE_5_12) keep the sockets in a hash map (socks) of
 *   SOCK_MAP_SIZE, as before the table, behind the same three functions.
 *
 * Caveats
 *   A socket whose bucket is full is not tracked and is counted in
 *   lost[LOST_SOCKET]. With the default 131,072 slots (8192 buckets) that is
 *   about one socket in 250,000 when 32,000 are open at once on the host, one
 *   in 2,500 at 48,000. A released slot keeps its data until the next claim
 *   overwrites it.
 *
 * Sizes: SOCK_SLOTS (a power of two) and, before 5.12, SOCK_MAP_SIZE, from
 * collector/ebpf/tracer.py as -D flags. Needs counters.h.
 */

#ifndef PORTOLAN_SOCKETS_H
#define PORTOLAN_SOCKETS_H

#include "counters.h"

/* Per tracked TCP socket, keyed by the opaque skaddr. */
struct sock_info_t {
    struct flow_key_t key;
    u64 start_ns;
    u32 rst;        /* an RST was received */
    u32 state;      /* last state we saw */
    char comm[16];  /* the connecting process (empty on the server side) */
};

#ifdef COMPAT_PRE_5_12
/* XXX: delete with kernels before 5.12 (no compare-and-swap in BPF to claim a
 * table slot), with the other COMPAT_PRE_5_12 blocks. */
BPF_HASH(socks, u64, struct sock_info_t, SOCK_MAP_SIZE);

static __always_inline struct sock_info_t *sock_find(u64 sk)
{
    return socks.lookup(&sk);
}

/* As the table's: the entry sk already has, else a fresh one. */
static __always_inline struct sock_info_t *sock_claim(u64 sk)
{
    struct sock_info_t *si = socks.lookup(&sk);
    if (si)
        return si;
    struct sock_info_t fresh = {};
    if (socks.update(&sk, &fresh)) {
        count_lost(LOST_SOCKET);
        return 0;
    }
    return socks.lookup(&sk);
}

static __always_inline void sock_release(u64 sk)
{
    socks.delete(&sk);
}
#else
#define SOCK_WAYS 16
#define SOCK_BUCKETS (SOCK_SLOTS / SOCK_WAYS)
struct sock_bucket_t {
    u64 sk[SOCK_WAYS];      /* 0: free */
};
BPF_ARRAY(sock_tags, struct sock_bucket_t, SOCK_BUCKETS);
BPF_ARRAY(sock_infos, struct sock_info_t, SOCK_SLOTS);

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
 * close we did not see), else a free one; 0 and lost[LOST_SOCKET] when its
 * bucket is full. One pass finds either; the claim of a free way is retried
 * on the ways after it if another CPU took it first. */
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
        count_lost(LOST_SOCKET);
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

#endif /* PORTOLAN_SOCKETS_H */
