// SPDX-License-Identifier: (MIT OR Apache-2.0) AND GPL-2.0-only
// porthog's per-namespace change signal (issue 9): counts the TCP state changes of each network
// namespace, so that `serve --all-netns` walks again only the namespaces whose sockets changed
// (every TCP dump walks the host-wide shared hash, whichever namespace asks).
//
// A raw tracepoint on sock:inet_sock_set_state (every TCP state change, the child of a listener
// included; not TIME_WAIT expiry, not bind()); the key is the socket's namespace inode, the
// value the number of changes seen. Nothing is pinned: the map and the link live only as long as
// porthog's file descriptors. Built with clang like porthog.bpf.c (build.sh), committed as
// porthog_signal.bpf.o, loaded by signal.rs; CO-RE, no vmlinux.h.

#include "porthog_common.h"

// From linux/bpf.h (uapi: fixed values).
enum { BPF_MAP_TYPE_HASH = 1, BPF_MAP_TYPE_ARRAY = 2 };
#define BPF_NOEXIST 1

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

struct ns_common { unsigned int inum; };
struct net { struct ns_common ns; };
typedef struct { struct net *net; } possible_net_t;
struct sock_common { possible_net_t skc_net; };
struct sock { struct sock_common __sk_common; };

#pragma clang attribute pop

struct bpf_raw_tracepoint_args { __u64 args[0]; };

// Namespace inode -> state changes seen. Entries of namespaces that are gone are deleted by
// porthog; a full map loses counts, which `lost` records (porthog then walks every namespace).
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u64);
} porthog_changes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} porthog_lost SEC(".maps");

SEC("raw_tracepoint/inet_sock_set_state")
int porthog_signal(struct bpf_raw_tracepoint_args *ctx)
{
	struct sock *sk = (struct sock *)ctx->args[0];
	__u32 inum = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	__u64 *count = bpf_map_lookup_elem(&porthog_changes, &inum);
	if (count) {
		__sync_fetch_and_add(count, 1);
		return 0;
	}
	__u64 one = 1;
	if (bpf_map_update_elem(&porthog_changes, &inum, &one, BPF_NOEXIST) == 0)
		return 0;
	// Another CPU inserted it meanwhile, or the map is full.
	count = bpf_map_lookup_elem(&porthog_changes, &inum);
	if (count) {
		__sync_fetch_and_add(count, 1);
		return 0;
	}
	__u32 zero = 0;
	__u64 *lost = bpf_map_lookup_elem(&porthog_lost, &zero);
	if (lost)
		__sync_fetch_and_add(lost, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
