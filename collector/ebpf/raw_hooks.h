/*
 * raw_hooks.h - sock:inet_sock_set_state, fib:fib_table_lookup and
 *               fib6:fib6_table_lookup as raw tracepoints, reading the kernel
 *               struct fields the tracepoints would have copied, at offsets
 *               taken from the running kernel's BTF.
 *
 * What it does
 *   The same hooks as connections.c's tracepoint programs, calling the same
 *   functions with the same plain values (sock_state_change, route_lookup),
 *   reading nothing more once state_change_matters or route_matters says no,
 *   but the values are read from the kernel's structs (struct sock, flowi4,
 *   flowi6, fib6_result, fib6_table) with bpf_probe_read_kernel at base +
 *   F_<NAME>_OFF. Those offsets and sizes come as -D flags from
 *   collector/ebpf/kernel_fields.py, which takes them from
 *   /sys/kernel/btf/vmlinux, never from installed headers: no kernel struct
 *   is declared here.
 *
 * Why
 *   A tracepoint program makes the kernel build an event record on each hit
 *   (11 route lookups and 10 state changes per connection on Docker's
 *   bridge); a raw tracepoint program gets the tracepoint's own arguments and
 *   reads only what it needs, and the state changes it ignores (the teardown
 *   states) cost it no read at all.
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
 *   tracepoint program when anything disagrees. The route lookup's output
 *   interface, table and (IPv6) type are not exercised by that test, only
 *   found in the BTF: they decide connects failing for want of a route.
 *
 * Needs connections.c's sock_state_change(), route_lookup() and the
 * *_matters() filters above it.
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
/* A field of exactly F_NAME_SIZE bytes (an address) into dst. */
#define FIELD_BYTES(dst, base, NAME) \
    bpf_probe_read_kernel((dst), F_##NAME##_SIZE, (const u8 *)(base) + F_##NAME##_OFF)
/* A __be16 port field, in host order. */
#define FIELD_PORT(base, NAME) __builtin_bswap16((u16)FIELD_INT(base, NAME))

/* ------------------------------------------------------ socket states */

RAW_TRACEPOINT_PROBE(inet_sock_set_state)
{
    const void *sk = (const void *)ctx->args[0];
    int os = (int)ctx->args[1], ns = (int)ctx->args[2];
    /* Nothing is read for the states nobody looks at (most teardown ones). */
    if (!state_change_matters(os, ns))
        return 0;
    u16 protocol = FIELD_INT(sk, SK_PROTOCOL);
    if (protocol != PROTO_TCP)
        return 0;
    u16 family = FIELD_INT(sk, SK_FAMILY);
    u8 saddr[4] = {}, daddr[4] = {}, saddr6[16] = {}, daddr6[16] = {};
    if (family == AF_INET_) {
        FIELD_BYTES(saddr, sk, SK_RCV_SADDR);
        FIELD_BYTES(daddr, sk, SK_DADDR);
    } else if (family == AF_INET6_) {
        FIELD_BYTES(saddr6, sk, SK_V6_RCV_SADDR);
        FIELD_BYTES(daddr6, sk, SK_V6_DADDR);
    } else {
        return 0;
    }
    return sock_state_change((u64)sk, os, ns, family, protocol,
                             FIELD_INT(sk, SK_NUM), FIELD_PORT(sk, SK_DPORT),
                             saddr, daddr, saddr6, daddr6);
}

/* ------------------------------------------------------------ routes */

#ifdef HAVE_FIB4
/* fib_table_lookup(u32 tb_id, const struct flowi4 *flp,
 *                  const struct fib_nh_common *nhc, int err) */
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
    r.oif = FIELD_INT(fl, FL4_OIF);
    r.sport = FIELD_PORT(fl, FL4_SPORT);
    r.dport = FIELD_PORT(fl, FL4_DPORT);
    FIELD_BYTES(r.src, fl, FL4_SADDR);
    FIELD_BYTES(r.dst, fl, FL4_DADDR);
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
    r.oif = FIELD_INT(fl, FL6_OIF);
    r.sport = FIELD_PORT(fl, FL6_SPORT);
    r.dport = FIELD_PORT(fl, FL6_DPORT);
    FIELD_BYTES(r.src, fl, FL6_SADDR);
    FIELD_BYTES(r.dst, fl, FL6_DADDR);
    return route_lookup(6, &r);
}
#endif

#endif /* PORTOLAN_RAW_HOOKS_H */
