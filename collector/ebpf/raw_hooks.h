/*
 * raw_hooks.h - sock:inet_sock_set_state, fib:fib_table_lookup and
 *               fib6:fib6_table_lookup as raw tracepoints, reading the kernel
 *               struct fields the tracepoints would have copied, at offsets
 *               taken from the running kernel's BTF.
 *
 * What it does
 *   The same hooks as connections.c's tracepoint programs, calling the same
 *   functions with the same plain values (sock_state_claim, sock_state_end,
 *   route_lookup), reading nothing more once state_change_claims or
 *   route_matters says no, but the values are read from the kernel's structs
 *   (struct sock, flowi4, flowi6, fib6_result, fib6_table) with
 *   bpf_probe_read_kernel at base + F_<NAME>_OFF, the fields read together
 *   in one read of the span that covers them (S_<SPAN>_OFF, _SIZE). Those
 *   offsets and sizes come as -D flags from
 *   collector/ebpf/kernel_fields.py, which takes them from
 *   /sys/kernel/btf/vmlinux, never from installed headers: no kernel struct
 *   is declared here.
 *
 * Why
 *   A tracepoint program makes the kernel build an event record on each hit
 *   (11 route lookups and 10 state changes per connection on Docker's
 *   bridge); a raw tracepoint program gets the tracepoint's own arguments and
 *   reads only what it needs: nothing for the state changes it ignores (the
 *   teardown states) or that end a connect or a socket (the socket's address
 *   is the key), one read for a route lookup it ignores (most: TCP's, found),
 *   and each span of fields it needs in one read.
 *
 * Kernel facility
 *   Raw tracepoints (4.17+), BTF (CONFIG_DEBUG_INFO_BTF, 5.2+ in sysfs),
 *   bpf_probe_read_kernel (5.5+). Little-endian only (integers are read into
 *   the low bytes of a u64); the collector's self-test would catch otherwise.
 *
 * Caveats
 *   A field read wrong is not a load error: the collector's start-up
 *   self-test (collector/ebpf/self_test.py) checks what these hooks report
 *   for a connection and datagrams it makes itself, and falls back to the
 *   tracepoint program when anything disagrees. Its connect with no route
 *   (the fields that decide connects failing so: output interface, table,
 *   source, IPv6 route type) needs a network namespace of its own; where the
 *   collector may not make one, those fields are only found in the BTF, and
 *   the collector says so.
 *
 * Needs connections.c's sock_state_claim(), sock_state_end(), route_lookup()
 * and the filters above them (state_change_claims, state_change_ends,
 * route_matters).
 */

#ifndef PORTOLAN_RAW_HOOKS_H
#define PORTOLAN_RAW_HOOKS_H

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "raw_hooks.h reads integers little-endian"
#endif

/* Integer field NAME of the struct at base, at its BTF offset: SIZE bytes,
 * then for a bitfield BITS bits from bit SHIFT. */
static __always_inline u64 read_int(const void *base, u32 off, u32 size,
                                    u32 shift, u32 bits)
{
    u64 v = 0;
    bpf_probe_read_kernel(&v, size & 15, (const u8 *)base + off);
    if (bits)
        v = (v >> shift) & ((1ULL << bits) - 1);
    return v;
}
#define FIELD_INT(base, NAME) \
    read_int((base), F_##NAME##_OFF, F_##NAME##_SIZE, F_##NAME##_SHIFT, F_##NAME##_BITS)
/* A __be16 port, in host order. */
#define PORT_ORDER(v) __builtin_bswap16((u16)(v))

/* Spans: the fields a hook reads together, taken with one
 * bpf_probe_read_kernel (a helper call each, the most of what these hooks
 * cost beyond the floor) into a stack buffer: S_<SPAN>_SIZE bytes from byte
 * S_<SPAN>_OFF (8-aligned) of the struct, which cover every field of the
 * span (collector/ebpf/kernel_fields.py, SPANS). A field is then where it
 * lies in the span. */
#define SPAN_BUF(buf, SPAN) u64 buf[(S_##SPAN##_SIZE + 7) / 8]
#define SPAN_READ(buf, base, SPAN) \
    bpf_probe_read_kernel((buf), S_##SPAN##_SIZE, (const u8 *)(base) + S_##SPAN##_OFF)
#define SPAN_AT(buf, SPAN, NAME) ((const u8 *)(buf) + F_##NAME##_OFF - S_##SPAN##_OFF)
/* An integer field of the span (in the low bytes of a u64: little-endian). */
#define SPAN_INT(buf, SPAN, NAME) \
    span_int(SPAN_AT(buf, SPAN, NAME), F_##NAME##_SIZE, F_##NAME##_SHIFT, F_##NAME##_BITS)
static __always_inline u64 span_int(const u8 *p, u32 size, u32 shift, u32 bits)
{
    u64 v = 0;
    /* size is a constant: the copy is a load or two. */
    __builtin_memcpy(&v, p, size & 15);
    if (bits)
        v = (v >> shift) & ((1ULL << bits) - 1);
    return v;
}

/* ------------------------------------------------------ socket states */

RAW_TRACEPOINT_PROBE(inet_sock_set_state)
{
    const void *sk = (const void *)ctx->args[0];
    int os = (int)ctx->args[1], ns = (int)ctx->args[2];
    /* The end of a connect or a socket needs only its address; the states
     * nobody looks at (most teardown ones) need nothing. */
    if (!state_change_claims(os, ns))
        return state_change_ends(os, ns) ? sock_state_end((u64)sk, os, ns) : 0;
    u16 protocol = FIELD_INT(sk, SK_PROTOCOL);
    if (protocol != PROTO_TCP)
        return 0;
    /* The family, ports and v4 addresses are sock_common's first words. */
    SPAN_BUF(common, SK4);
    SPAN_READ(common, sk, SK4);
    u16 family = SPAN_INT(common, SK4, SK_FAMILY);
    const u8 *saddr = SPAN_AT(common, SK4, SK_RCV_SADDR);
    const u8 *daddr = SPAN_AT(common, SK4, SK_DADDR);
    SPAN_BUF(v6, SK6);
    if (family == AF_INET6_)
        SPAN_READ(v6, sk, SK6);
    else if (family != AF_INET_)
        return 0;
    return sock_state_claim((u64)sk, os, ns, family, protocol,
                            SPAN_INT(common, SK4, SK_NUM),
                            PORT_ORDER(SPAN_INT(common, SK4, SK_DPORT)),
                            saddr, daddr, SPAN_AT(v6, SK6, SK_V6_RCV_SADDR),
                            SPAN_AT(v6, SK6, SK_V6_DADDR));
}

/* ------------------------------------------------------------ routes */

/* What route_lookup reads of a flowi4 or flowi6 (FAMILY 4 or 6) once
 * route_matters said yes: one span. */
#define ROUTE_FROM_FLOW(r, fl, FAMILY)                                         \
    SPAN_BUF(flow, FL##FAMILY);                                               \
    SPAN_READ(flow, fl, FL##FAMILY);                                          \
    (r).oif = SPAN_INT(flow, FL##FAMILY, FL##FAMILY##_OIF);                   \
    (r).sport = PORT_ORDER(SPAN_INT(flow, FL##FAMILY, FL##FAMILY##_SPORT));   \
    (r).dport = PORT_ORDER(SPAN_INT(flow, FL##FAMILY, FL##FAMILY##_DPORT));   \
    __builtin_memcpy((r).src, SPAN_AT(flow, FL##FAMILY, FL##FAMILY##_SADDR),  \
                     F_FL##FAMILY##_SADDR_SIZE);                              \
    __builtin_memcpy((r).dst, SPAN_AT(flow, FL##FAMILY, FL##FAMILY##_DADDR),  \
                     F_FL##FAMILY##_DADDR_SIZE);

#ifdef HAVE_FIB4
/* fib_table_lookup(u32 tb_id, const struct flowi4 *flp,
 *                  const struct fib_nh_common *nhc, int err): most lookups
 * are TCP's that succeeded, left after one read (the protocol). */
RAW_TRACEPOINT_PROBE(fib_table_lookup)
{
    const void *fl = (const void *)ctx->args[1];
    struct route_t r = {};
    r.proto = FIELD_INT(fl, FL4_PROTO);
    if (r.proto != PROTO_UDP && r.proto != PROTO_TCP)
        return 0;
    r.err = (int)ctx->args[3];
    if (!route_matters(&r))
        return 0;
    r.tb_id = (u32)ctx->args[0];
    ROUTE_FROM_FLOW(r, fl, 4)
    return route_lookup(4, &r);
}
#endif

#ifdef HAVE_FIB6
#define RTN_BLACKHOLE_ 6
#define RTN_UNREACHABLE_ 7
#define RTN_PROHIBIT_ 8
#define RTN_THROW_ 9
#define RTN_NAT_ 10
#define RTN_XRESOLVE_ 11

/* The tracepoint's err: ip6_rt_type_to_error() in net/ipv6/route.c. */
static __always_inline int rt6_type_error(u32 type)
{
    if (type == RTN_UNREACHABLE_)
        return -113;    /* EHOSTUNREACH */
    if (type == RTN_PROHIBIT_)
        return -13;     /* EACCES */
    if (type == RTN_THROW_)
        return -11;     /* EAGAIN */
    if (type == RTN_BLACKHOLE_ || type == RTN_NAT_ || type == RTN_XRESOLVE_)
        return -22;     /* EINVAL */
    return 0;
}

/* fib6_table_lookup(const struct net *net, const struct fib6_result *res,
 *                   struct fib6_table *table, const struct flowi6 *flp) */
RAW_TRACEPOINT_PROBE(fib6_table_lookup)
{
    const void *fl = (const void *)ctx->args[3];
    struct route_t r = {};
    r.proto = FIELD_INT(fl, FL6_PROTO);
    if (r.proto != PROTO_UDP && r.proto != PROTO_TCP)
        return 0;
    r.err = rt6_type_error(FIELD_INT((const void *)ctx->args[1], FIB6_TYPE));
    if (!route_matters(&r))
        return 0;
    r.tb_id = FIELD_INT((const void *)ctx->args[2], FIB6_TB_ID);
    ROUTE_FROM_FLOW(r, fl, 6)
    return route_lookup(6, &r);
}
#endif

#endif /* PORTOLAN_RAW_HOOKS_H */
