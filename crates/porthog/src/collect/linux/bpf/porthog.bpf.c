// SPDX-License-Identifier: (MIT OR Apache-2.0) AND GPL-2.0-only
// porthog's BPF iterators (issue 7): every TCP and UDP socket of the reader's network namespace,
// with what sock_diag does not show (bind bucket origin, TIME_WAIT timestamps, bound device,
// v6only), and socket inode -> owning process from the kernel's fd tables.
//
// Built with clang (see build.sh); the object is committed as porthog.bpf.o so that installing
// porthog needs no C toolchain, and CI checks it is up to date with this file. CO-RE: the kernel
// structures below are declared with only the fields read, and every access is relocated by the
// loader (aya) against the running kernel's BTF, so no vmlinux.h is needed.
// The records are decoded by porthog-core's bpf_record.rs: keep the two layouts in step.

#include "porthog_common.h"

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define TCP_TIME_WAIT 6
#define TCP_CLOSE 7
// What sock_diag calls a bound-but-inactive socket (Linux 6.10+); porthog's records use it on
// every kernel.
#define TCP_BOUND_INACTIVE 13
#define IFF_LOOPBACK 0x8
#define MAX_PID_NS_LEVEL 32

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

struct in6_addr { union { __u8 u6_addr8[16]; } in6_u; };
struct net_device { int ifindex; unsigned int flags; };
struct net { struct net_device *loopback_dev; };
typedef struct { struct net *net; } possible_net_t;
struct sock_common {
	__be32 skc_daddr;
	__be32 skc_rcv_saddr;
	__be16 skc_dport;
	__u16 skc_num;
	unsigned short skc_family;
	volatile unsigned char skc_state;
	unsigned char skc_ipv6only: 1;
	int skc_bound_dev_if;
	possible_net_t skc_net;
	struct in6_addr skc_v6_daddr;
	struct in6_addr skc_v6_rcv_saddr;
};
struct inode { unsigned long i_ino; unsigned short i_mode; };
struct file { struct inode *f_inode; };
struct socket;
typedef struct { uid_t val; } kuid_t;
struct sock {
	struct sock_common __sk_common;
	struct socket *sk_socket;
	__u16 sk_protocol;
	kuid_t sk_uid;
};
struct socket { struct sock *sk; struct file *file; };
struct socket_alloc { struct socket socket; struct inode vfs_inode; };
struct inet_bind_bucket { signed char fastreuse; signed char fastreuseport; };
struct inet_connection_sock { struct inet_bind_bucket *icsk_bind_hash; };
struct tcp_sock { struct inet_connection_sock inet_conn; };
struct timer_list { unsigned long expires; };
struct inet_timewait_sock {
	struct timer_list tw_timer;
	struct inet_bind_bucket *tw_tb;
	volatile unsigned char tw_substate;
};
struct tcp_timewait_sock { struct inet_timewait_sock tw_sk; int tw_ts_recent_stamp; };
struct inet_sock { struct sock sk; };
struct udp_sock { struct inet_sock inet; };
struct upid { int nr; };
struct pid { unsigned int level; struct upid numbers[1]; };
struct nsproxy { struct net *net_ns; };
struct task_struct {
	struct task_struct *group_leader;
	struct pid *thread_pid;
	struct nsproxy *nsproxy;
};
struct seq_file;
struct bpf_iter_meta { struct seq_file *seq; };
struct bpf_iter__tcp { struct bpf_iter_meta *meta; struct sock_common *sk_common; uid_t uid; };
struct bpf_iter__udp { struct bpf_iter_meta *meta; struct udp_sock *udp_sk; uid_t uid; };
struct bpf_iter__task_file {
	struct bpf_iter_meta *meta;
	struct task_struct *task;
	__u32 fd;
	struct file *file;
};

#pragma clang attribute pop

// Helpers for BTF pointers that libbpf 1.1's bpf_helper_defs.h types differently.
static struct tcp_sock *(*skc_to_tcp_sock)(void *sk) = (void *)137;
static struct tcp_timewait_sock *(*skc_to_tcp_timewait_sock)(void *sk) = (void *)138;
static struct socket *(*sock_from_file)(struct file *file) = (void *)162;
static __u64 (*socket_cookie)(void *sk) = (void *)46;
static struct task_struct *(*current_task_btf)(void) = (void *)158;

// One socket: 64 bytes, native endian, ports in host order.
struct sock_rec {
	__u64 cookie;
	__u8 saddr[16];
	__u8 daddr[16];
	__u32 inode;
	__u32 uid;
	__u32 tw_jiffies_left; // TIME_WAIT: jiffies until the port is free
	__u16 sport;
	__u16 dport;
	__u8 kind; // REC_*
	__u8 family;
	__u8 state;
	__u8 flags; // F_*
	__u32 bound_dev_if;
};

// The last record of a socket walk: the clocks, from which user space derives HZ.
struct clock_rec {
	__u64 jiffies64;
	__u64 ktime_ns;
	__u8 pad[40];
	__u8 kind;
	__u8 pad2[7];
};

#define REC_TCP 1
#define REC_UDP 2
#define REC_CLOCK 3

#define F_BUCKET_KNOWN 0x01
#define F_BUCKET_BIND 0x02
#define F_TW_TS_KNOWN 0x04
#define F_TW_TS 0x08
#define F_V6ONLY 0x10
#define F_LOOPBACK_DEV 0x20

// One owner: socket inode, pid in the reader's pid namespace, and whether the process lives in
// the reader's network namespace (owners inside win, as in the /proc walk). With kind
// OWN_BOUND_SOCKET the fields are 0 and a sock_rec follows: a bound-but-inactive TCP socket.
struct owner_rec {
	__u32 inode;
	__u32 pid;
	__u32 inside;
	__u32 kind; // OWN_*
};

#define OWN_OWNER 1
#define OWN_BOUND_SOCKET 2

static __always_inline void common(struct sock_common *skc, struct sock_rec *r)
{
	r->family = skc->skc_family;
	r->state = skc->skc_state;
	r->sport = skc->skc_num;
	r->dport = __builtin_bswap16(skc->skc_dport);
	if (r->family == AF_INET6) {
		__builtin_memcpy(r->saddr, skc->skc_v6_rcv_saddr.in6_u.u6_addr8, 16);
		__builtin_memcpy(r->daddr, skc->skc_v6_daddr.in6_u.u6_addr8, 16);
		if (BPF_CORE_READ_BITFIELD_PROBED(skc, skc_ipv6only))
			r->flags |= F_V6ONLY;
	} else {
		__be32 s = skc->skc_rcv_saddr, d = skc->skc_daddr;
		__builtin_memcpy(r->saddr, &s, 4);
		__builtin_memcpy(r->daddr, &d, 4);
	}
	// "Bound to loopback" is the namespace's own loopback device, as tcp_twsk_unique means it.
	int dev = skc->skc_bound_dev_if;
	r->bound_dev_if = dev;
	struct net_device *lo = skc->skc_net.net->loopback_dev;
	if (dev != 0 && lo && lo->ifindex == dev && (lo->flags & IFF_LOOPBACK))
		r->flags |= F_LOOPBACK_DEV;
	r->cookie = socket_cookie(skc);
}

static __always_inline void bucket(struct inet_bind_bucket *tb, struct sock_rec *r)
{
	if (!tb)
		return;
	r->flags |= F_BUCKET_KNOWN;
	// __inet_hash_connect skips a bucket with fastreuse >= 0 or fastreuseport >= 0: bind() made it.
	if (tb->fastreuse >= 0 || tb->fastreuseport >= 0)
		r->flags |= F_BUCKET_BIND;
}

static __always_inline __u32 sock_inode(struct sock *sk)
{
	struct socket *so = sk->sk_socket;
	unsigned long ino = 0;
	if (!so)
		return 0;
	struct socket_alloc *sa = container_of(so, struct socket_alloc, socket);
	bpf_probe_read_kernel(&ino, sizeof(ino), &sa->vfs_inode.i_ino);
	return ino;
}

static __always_inline void clocks(struct seq_file *seq)
{
	struct clock_rec c = {};
	c.jiffies64 = bpf_jiffies64();
	c.ktime_ns = bpf_ktime_get_ns();
	c.kind = REC_CLOCK;
	bpf_seq_write(seq, &c, sizeof(c));
}

SEC("iter/tcp")
int porthog_tcp(struct bpf_iter__tcp *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct sock_common *skc = ctx->sk_common;
	struct sock_rec r = {};

	if (!skc) {
		clocks(seq);
		return 0;
	}
	r.kind = REC_TCP;
	common(skc, &r);
	if (r.state == TCP_TIME_WAIT) {
		struct tcp_timewait_sock *tw = skc_to_tcp_timewait_sock(skc);
		if (tw) {
			// An orphaned FIN_WAIT2 is a timewait socket too; its real state is the substate
			// (what sock_diag reports).
			r.state = tw->tw_sk.tw_substate;
			long left = (long)(tw->tw_sk.tw_timer.expires - bpf_jiffies64());
			r.tw_jiffies_left = left > 0 ? left : 0;
			bucket(tw->tw_sk.tw_tb, &r);
			r.flags |= F_TW_TS_KNOWN;
			if (tw->tw_ts_recent_stamp != 0)
				r.flags |= F_TW_TS;
		}
	} else {
		struct tcp_sock *tp = skc_to_tcp_sock(skc);
		// Request sockets (NEW_SYN_RECV) are no full socket: no inode, no bucket of their own.
		if (tp) {
			bucket(tp->inet_conn.icsk_bind_hash, &r);
			r.inode = sock_inode((struct sock *)tp);
			r.uid = ctx->uid;
		}
	}
	bpf_seq_write(seq, &r, sizeof(r));
	return 0;
}

SEC("iter/udp")
int porthog_udp(struct bpf_iter__udp *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct udp_sock *udp = ctx->udp_sk;
	struct sock_rec r = {};

	if (!udp) {
		clocks(seq);
		return 0;
	}
	r.kind = REC_UDP;
	struct sock *sk = &udp->inet.sk;
	common(&sk->__sk_common, &r);
	r.inode = sock_inode(sk);
	r.uid = ctx->uid;
	bpf_seq_write(seq, &r, sizeof(r));
	return 0;
}

SEC("iter/task_file")
int porthog_owners(struct bpf_iter__task_file *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct *task = ctx->task;
	struct file *file = ctx->file;
	struct owner_rec o = {};

	if (!task || !file)
		return 0;
	struct socket *so = sock_from_file(file);
	if (!so)
		return 0;
	struct sock *sk = so->sk;
	if (!sk)
		return 0;
	unsigned short family = sk->__sk_common.skc_family;
	__u16 proto = sk->sk_protocol;
	if ((family != AF_INET && family != AF_INET6) || (proto != IPPROTO_TCP && proto != IPPROTO_UDP))
		return 0;
	struct task_struct *me = current_task_btf();
	struct net *here = me->nsproxy->net_ns;
	// Only sockets of the inspected namespace: the one the reading thread entered.
	if (sk->__sk_common.skc_net.net != here)
		return 0;
	// A TCP socket that holds a port (bind()) but neither listens nor is connected is in no
	// table iter/tcp walks, only in the bind hash; it has an fd, so it is reported from here
	// (once per fd holding it). The test is inet_diag's for TCPF_BOUND_INACTIVE: state
	// TCP_CLOSE with a port; a bind bucket, which such a socket keeps (SOCK_BINDPORT_LOCK).
	if (proto == IPPROTO_TCP && sk->__sk_common.skc_state == TCP_CLOSE &&
	    sk->__sk_common.skc_num != 0) {
		struct tcp_sock *tp = skc_to_tcp_sock(sk);
		if (tp && tp->inet_conn.icsk_bind_hash) {
			struct {
				struct owner_rec head;
				struct sock_rec r;
			} b = {};
			b.head.kind = OWN_BOUND_SOCKET;
			b.r.kind = REC_TCP;
			common(&sk->__sk_common, &b.r);
			b.r.state = TCP_BOUND_INACTIVE;
			bucket(tp->inet_conn.icsk_bind_hash, &b.r);
			b.r.inode = file->f_inode->i_ino;
			b.r.uid = sk->sk_uid.val;
			bpf_seq_write(seq, &b, sizeof(b));
		}
	}
	struct nsproxy *ns = task->nsproxy;
	o.inside = ns && ns->net_ns == here;
	o.inode = file->f_inode->i_ino;

	// The pid as the reader's pid namespace numbers it (what /proc shows the reader).
	unsigned int level = me->thread_pid->level;
	struct pid *tgid = task->group_leader->thread_pid;
	if (level > MAX_PID_NS_LEVEL || !tgid || tgid->level < level)
		return 0;
	int nr = 0;
	bpf_probe_read_kernel(&nr, sizeof(nr), &tgid->numbers[level].nr);
	o.pid = nr;
	o.kind = OWN_OWNER;
	bpf_seq_write(seq, &o, sizeof(o));
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
