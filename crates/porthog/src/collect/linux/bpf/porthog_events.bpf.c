// SPDX-License-Identifier: (MIT OR Apache-2.0) AND GPL-2.0-only
// porthog's TCP state-change events (issue 9): every state change of a TCP socket in one network
// namespace, written to a ring buffer for the event-applied socket table
// (porthog_core::tcp_event; the record layout is documented there, and must stay the same).
//
// A raw tracepoint on sock:inet_sock_set_state (args: sk, old state, new state). The namespace is
// chosen by porthog before it attaches (porthog_events_netns[0], a namespace inode; 0 matches
// nothing). A record the ring buffer has no room for is counted in porthog_events_lost, and
// porthog then walks the namespace again. The cookie is read as the kernel keeps it (0 until a
// walk or a sock_diag dump made one): a raw tracepoint cannot call bpf_get_socket_cookie.
// Built with clang (build.sh), committed as porthog_events.bpf.o, loaded by events.rs; CO-RE,
// no vmlinux.h.

#include "porthog_common.h"

// From linux/bpf.h (uapi: fixed values).
enum { BPF_MAP_TYPE_ARRAY = 2, BPF_MAP_TYPE_RINGBUF = 27 };

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

struct in6_addr { union { __u8 u6_addr8[16]; } in6_u; };
struct ns_common { unsigned int inum; };
struct net { struct ns_common ns; };
typedef struct { struct net *net; } possible_net_t;
typedef struct { __s64 counter; } atomic64_t;
struct sock_common {
	__be32 skc_daddr;
	__be32 skc_rcv_saddr;
	__be16 skc_dport;
	__u16 skc_num;
	unsigned short skc_family;
	possible_net_t skc_net;
	struct in6_addr skc_v6_daddr;
	struct in6_addr skc_v6_rcv_saddr;
	atomic64_t skc_cookie;
};
struct sock {
	struct sock_common __sk_common;
	__u16 sk_protocol;
};
struct inet_sock { __be16 inet_sport; };

#pragma clang attribute pop

struct bpf_raw_tracepoint_args { __u64 args[0]; };

#define AF_INET 2
#define IPPROTO_TCP 6

// porthog_core::tcp_event::decode's layout: 80 bytes.
struct porthog_tcp_event {
	__u64 sk;
	__u64 cookie;
	__u64 pid_tgid;
	char comm[16];
	__u8 local[16];
	__u8 remote[16];
	__u16 local_port;
	__u16 remote_port;
	__u16 family;
	__u8 old;
	__u8 new;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
} porthog_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} porthog_events_lost SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} porthog_events_netns SEC(".maps");

SEC("raw_tracepoint/inet_sock_set_state")
int porthog_events_tcp(struct bpf_raw_tracepoint_args *ctx)
{
	struct sock *sk = (struct sock *)ctx->args[0];
	__u32 zero = 0;
	__u32 *want = bpf_map_lookup_elem(&porthog_events_netns, &zero);
	if (!want || *want == 0 || BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum) != *want)
		return 0;
	// MPTCP and SCTP report their state changes here too.
	if (BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return 0;
	struct porthog_tcp_event *e = bpf_ringbuf_reserve(&porthog_events, sizeof(*e), 0);
	if (!e) {
		__u64 *lost = bpf_map_lookup_elem(&porthog_events_lost, &zero);
		if (lost)
			__sync_fetch_and_add(lost, 1);
		return 0;
	}
	e->sk = (__u64)sk;
	e->cookie = BPF_CORE_READ(sk, __sk_common.skc_cookie.counter);
	e->pid_tgid = bpf_get_current_pid_tgid();
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	e->family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (e->family == AF_INET) {
		__builtin_memset(e->local, 0, sizeof(e->local));
		__builtin_memset(e->remote, 0, sizeof(e->remote));
		__be32 l = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		__be32 r = BPF_CORE_READ(sk, __sk_common.skc_daddr);
		__builtin_memcpy(e->local, &l, 4);
		__builtin_memcpy(e->remote, &r, 4);
	} else {
		BPF_CORE_READ_INTO(&e->local, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
		BPF_CORE_READ_INTO(&e->remote, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	}
	// inet_sport, not skc_num: going to CLOSE releases the port (skc_num 0) before the
	// tracepoint runs, and the TIME_WAIT that follows needs it. 0 in CLOSE -> SYN_SENT: connect()
	// chooses the port after that change.
	__be16 sport = BPF_CORE_READ((struct inet_sock *)sk, inet_sport);
	e->local_port = __builtin_bswap16(sport);
	__be16 dport = BPF_CORE_READ(sk, __sk_common.skc_dport);
	e->remote_port = __builtin_bswap16(dport);
	e->old = (__u8)ctx->args[1];
	e->new = (__u8)ctx->args[2];
	bpf_ringbuf_submit(e, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
