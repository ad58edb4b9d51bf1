/*
 * udp_route.h - UDP datagrams and bytes by peer, joining each send to the
 *               route lookup the kernel made for it on the same thread.
 *
 * What it does
 *   The send and receive hooks name only the socket, not its protocol or its
 *   peer. The output route lookup names both (protocol, addresses, ports):
 *   udp_route() keeps this thread's last UDP lookup in udp_routes, and
 *   udp_sent() joins it to the thread's next send, which makes that socket
 *   known as UDP. Per (socket, process), the first thing a socket does
 *   decides its side: a socket that sends first is a client, and its
 *   datagrams both ways go on an "out" key to the peer it last sent to; a
 *   socket that receives first serves, its replies go on an "in" key with its
 *   own port, and what it received is credited to the peer it next replies
 *   to (DNS-style request and answer are exact). A send whose local port
 *   differs from the one remembered is a new socket at a reused address: it
 *   starts over.
 *
 * Kernel facility
 *   Tracepoints fib:fib_table_lookup and fib6:fib6_table_lookup (the route
 *   lookup, in the sending process) and the raw sock:sock_send_length /
 *   sock_recv_length (6.3+); see "Why each hook" in connections.c. Needs
 *   HAVE_SOCK_LENGTH and HAVE_FIB4 or HAVE_FIB6 to count anything.
 *
 * Caveats
 *   A server that never replies has its received datagrams counted nowhere.
 *   A socket connected before the tracer started is counted only when the
 *   kernel routes its datagrams again (the raw send hook cannot tell it from
 *   a Unix socket otherwise), and so is one whose first send comes more than
 *   UDP_ROUTE_MAX_AGE_NS after its connect(). A route lookup that no send
 *   follows (a UDP connect() that sends nothing) is dropped at the thread's
 *   next TCP connect (udp_route_drop) or once that old; before, the thread's
 *   next send on a socket nobody tracks (Unix, say) would be taken for a
 *   datagram to it. A route lookup made in softirq on a thread's stack may be
 *   taken for that thread's next send on a connected socket; the one that
 *   happens on every IPv6 datagram to a closed port (the ICMP error routed
 *   back) is recognised as the mirror of our own lookup and ignored. Nothing
 *   says when a UDP socket closes: its entry ages out of an LRU map.
 *
 * Sizes: SOCK_MAP_SIZE (UDP sockets), from collector/ebpf/tracer.py as a -D
 * flag. Needs counters.h.
 */

#ifndef PORTOLAN_UDP_ROUTE_H
#define PORTOLAN_UDP_ROUTE_H

#include "counters.h"

#define UDP_CLIENT 1
#define UDP_SERVER 2

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

static __always_inline int same16(const u8 *a, const u8 *b)
{
    u8 diff = 0;
#pragma unroll
    for (int i = 0; i < 16; i++)
        diff |= a[i] ^ b[i];
    return diff == 0;
}

/* A successful UDP route lookup by this thread: the datagram it is sending. */
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

/* Thread id (pid_tgid) starts a TCP connect: a UDP route it looked up and
 * sent nothing on (getaddrinfo connects UDP sockets to sort addresses, then
 * connects over TCP) belongs to no send from here on. */
static __always_inline void udp_route_drop(u64 id)
{
    /* Looked up first: a delete takes the bucket lock even when there is
     * nothing, on every connect. */
    if (udp_routes.lookup(&id))
        udp_routes.delete(&id);
}

#if defined(HAVE_SOCK_LENGTH) && (defined(HAVE_FIB4) || defined(HAVE_FIB6))
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
 * server holds it until it answers (see "What it does" above). */
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

#endif /* PORTOLAN_UDP_ROUTE_H */
