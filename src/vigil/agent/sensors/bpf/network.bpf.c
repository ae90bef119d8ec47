// SPDX-License-Identifier: (BSD-2-Clause OR GPL-2.0-only)
/* Vigil network telemetry: TCP connects, their outcome, listens and accepted connections, each with
 * the process that made it, attributed in the kernel.
 *
 * One tp_btf program on sock/inet_sock_set_state sees every TCP state change. connect() moves a
 * socket to SYN_SENT in the connecting process's own context and listen() moves it to LISTEN in the
 * listener's, so the process is remembered there (keyed by socket, or by namespace and port). The
 * outcome (ESTABLISHED, or CLOSE with the socket's error) and an inbound handshake's end (SYN_RECV to
 * ESTABLISHED) happen in softirq, where no process is current: they take the remembered one. Nothing
 * is read from /proc or sock_diag afterwards, so a process that has already exited, or a socket
 * already closed, is still described.
 *
 * UDP has no state changes to trace, so two cgroup/connect4 and cgroup/connect6 programs, attached by
 * the agent to the cgroup-v2 root, see each connect() on a UDP socket (glibc's DNS resolver makes one
 * per query) in the caller's context. They run before the kernel picks the route and the local port,
 * so an unbound socket's local end is still zero there, and they only observe: they always allow.
 *
 * Records are fixed-size (struct vigil_net_event); the agent decodes them in
 * vigil.agent.sensors.net_bpf_events, which must change with this layout.
 */
#include "vigil.bpf.h"

#define VIGIL_NET_CONNECTED 1 /* SYN_SENT -> ESTABLISHED */
#define VIGIL_NET_FAILED 2    /* SYN_SENT -> CLOSE: refused, timed out, unreachable, or abandoned (err 0) */
#define VIGIL_NET_ACCEPTED 3  /* SYN_RECV -> ESTABLISHED on a listener's new socket */
#define VIGIL_NET_LISTEN 4    /* -> LISTEN */
#define VIGIL_NET_UDP_CONNECT 5 /* connect() on a UDP socket: its remote end is set (nothing is sent) */

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17

struct vigil_owner {
	__u32 pid;  /* tgid */
	__u32 tid;
	__u32 ppid; /* real parent's tgid */
	__u32 uid;
	char comm[16];
};

struct vigil_net_event {
	__u64 ts_ns;    /* bpf_ktime_get_boot_ns() at the state change */
	__u32 kind;
	__u32 pid;      /* 0: the process is not known (it connected or listened before the agent loaded this) */
	__u32 tid;
	__u32 ppid;
	__u32 uid;
	__s32 err;      /* the socket's error (errno) when a connect failed */
	__u16 family;   /* AF_INET or AF_INET6 */
	__u16 protocol; /* IPPROTO_TCP, or IPPROTO_UDP for VIGIL_NET_UDP_CONNECT */
	__u16 lport;    /* host byte order; 0: not bound yet (a UDP connect's socket usually is not) */
	__u16 rport;    /* host byte order */
	__u8 laddr[16]; /* AF_INET: the first 4 bytes */
	__u8 raddr[16];
	char comm[16];
};

struct vigil_listen_key {
	__u32 netns; /* the network namespace's inode number */
	__u16 port;
	__u16 pad;
};

struct vigil_listener {
	__u64 sk; /* which listening socket set the entry: only its own close removes it */
	struct vigil_owner owner;
};

/* Records are ~100 bytes: 512 KiB holds thousands; its pages count in the agent's RSS whether used or not. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 512 << 10);
} events SEC(".maps");

/* Sockets in SYN_SENT -> who called connect(). Every socket leaves SYN_SENT, so entries go away
 * with their handshake; LRU only so that nothing can fill the map for good. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct vigil_owner);
} connecting SEC(".maps");

/* Listening ports -> who called listen(). With SO_REUSEPORT the latest listener wins. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct vigil_listen_key);
	__type(value, struct vigil_listener);
} listeners SEC(".maps");

static __always_inline void current_owner(struct vigil_owner *o)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u64 id = bpf_get_current_pid_tgid();

	o->pid = id >> 32;
	o->tid = (__u32)id;
	o->ppid = BPF_CORE_READ(task, real_parent, tgid);
	o->uid = (__u32)bpf_get_current_uid_gid();
	bpf_get_current_comm(&o->comm, sizeof(o->comm));
}

static __always_inline void listen_key_of(const struct sock *sk, struct vigil_listen_key *k)
{
	k->netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	k->port = BPF_CORE_READ(sk, __sk_common.skc_num);
	k->pad = 0;
}

static __always_inline void set_owner(struct vigil_net_event *e, const struct vigil_owner *o)
{
	if (o) {
		e->pid = o->pid;
		e->tid = o->tid;
		e->ppid = o->ppid;
		e->uid = o->uid;
		__builtin_memcpy(e->comm, o->comm, sizeof(e->comm));
	} else {
		e->pid = 0;
		e->tid = 0;
		e->ppid = 0;
		e->uid = 0;
		__builtin_memset(e->comm, 0, sizeof(e->comm));
	}
}

static __always_inline void emit(const struct sock *sk, __u32 kind, const struct vigil_owner *o, __s32 err)
{
	struct vigil_net_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e) {
		count_drop();
		return;
	}
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);

	e->ts_ns = bpf_ktime_get_boot_ns();
	e->kind = kind;
	set_owner(e, o);
	e->err = err;
	e->family = family;
	e->protocol = IPPROTO_TCP;
	e->lport = BPF_CORE_READ(sk, __sk_common.skc_num);
	e->rport = __builtin_bswap16(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (family == AF_INET6) {
		BPF_CORE_READ_INTO(&e->laddr, sk, __sk_common.skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO(&e->raddr, sk, __sk_common.skc_v6_daddr);
	} else {
		__builtin_memset(e->laddr, 0, sizeof(e->laddr));
		__builtin_memset(e->raddr, 0, sizeof(e->raddr));
		BPF_CORE_READ_INTO((__be32 *)e->laddr, sk, __sk_common.skc_rcv_saddr);
		BPF_CORE_READ_INTO((__be32 *)e->raddr, sk, __sk_common.skc_daddr);
	}
	bpf_ringbuf_submit(e, 0);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(vigil_sock_state, const struct sock *sk, const int oldstate, const int newstate)
{
	if (BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return 0;
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return 0;
	__u64 key = (__u64)sk;

	if (newstate == TCP_SYN_SENT) {
		/* tcp_v4_connect/tcp_v6_connect, in the caller's context; ports are not chosen yet. */
		struct vigil_owner o = {};

		current_owner(&o);
		bpf_map_update_elem(&connecting, &key, &o, BPF_ANY);
		return 0;
	}
	if (oldstate == TCP_SYN_SENT || (oldstate == TCP_SYN_RECV && newstate == TCP_ESTABLISHED)) {
		struct vigil_owner *o = bpf_map_lookup_elem(&connecting, &key);

		if (o) {
			if (newstate == TCP_SYN_RECV)
				return 0; /* a simultaneous open: still connecting */
			struct vigil_owner copy = *o;

			bpf_map_delete_elem(&connecting, &key);
			if (newstate == TCP_ESTABLISHED)
				emit(sk, VIGIL_NET_CONNECTED, &copy, 0);
			else
				emit(sk, VIGIL_NET_FAILED, &copy, BPF_CORE_READ(sk, sk_err));
			return 0;
		}
		if (oldstate == TCP_SYN_SENT)
			return 0; /* connecting since before the program was attached */
	}
	if (oldstate == TCP_SYN_RECV && newstate == TCP_ESTABLISHED) {
		/* A listener's new socket finished its handshake (softirq): the listener accepts it. */
		struct vigil_listen_key k;

		listen_key_of(sk, &k);
		struct vigil_listener *l = bpf_map_lookup_elem(&listeners, &k);
		emit(sk, VIGIL_NET_ACCEPTED, l ? &l->owner : NULL, 0);
		return 0;
	}
	if (newstate == TCP_LISTEN) {
		struct vigil_listener l = { .sk = key };
		struct vigil_listen_key k;

		current_owner(&l.owner);
		listen_key_of(sk, &k);
		bpf_map_update_elem(&listeners, &k, &l, BPF_ANY);
		emit(sk, VIGIL_NET_LISTEN, &l.owner, 0);
		return 0;
	}
	if (oldstate == TCP_LISTEN) {
		struct vigil_listen_key k;

		listen_key_of(sk, &k);
		struct vigil_listener *l = bpf_map_lookup_elem(&listeners, &k);
		if (l && l->sk == key)
			bpf_map_delete_elem(&listeners, &k);
	}
	return 0;
}

/* A UDP connect() seen at the cgroup hook: the remote end is the sockaddr the caller passed (ports in
 * network byte order in the low 16 bits), the local end what the socket is bound to so far. TCP is
 * left to vigil_sock_state, which also knows the outcome. */
static __always_inline struct vigil_net_event *udp_connect_event(struct bpf_sock_addr *ctx, __u16 family)
{
	if (ctx->protocol != IPPROTO_UDP)
		return NULL;
	struct vigil_net_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e) {
		count_drop();
		return NULL;
	}
	struct vigil_owner o = {};

	current_owner(&o);
	e->ts_ns = bpf_ktime_get_boot_ns();
	e->kind = VIGIL_NET_UDP_CONNECT;
	set_owner(e, &o);
	e->err = 0;
	e->family = family;
	e->protocol = IPPROTO_UDP;
	e->rport = __builtin_bswap16((__u16)ctx->user_port);
	e->lport = ctx->sk->src_port;
	__builtin_memset(e->laddr, 0, sizeof(e->laddr));
	__builtin_memset(e->raddr, 0, sizeof(e->raddr));
	return e;
}

SEC("cgroup/connect4")
int vigil_udp_connect4(struct bpf_sock_addr *ctx)
{
	struct vigil_net_event *e = udp_connect_event(ctx, AF_INET);

	if (e) {
		((__u32 *)e->raddr)[0] = ctx->user_ip4;
		((__u32 *)e->laddr)[0] = ctx->sk->src_ip4;
		bpf_ringbuf_submit(e, 0);
	}
	return 1; /* allow: this program only observes */
}

SEC("cgroup/connect6")
int vigil_udp_connect6(struct bpf_sock_addr *ctx)
{
	struct vigil_net_event *e = udp_connect_event(ctx, AF_INET6);

	if (e) {
		/* The context allows only 4-byte reads of these arrays. */
		((__u32 *)e->raddr)[0] = ctx->user_ip6[0];
		((__u32 *)e->raddr)[1] = ctx->user_ip6[1];
		((__u32 *)e->raddr)[2] = ctx->user_ip6[2];
		((__u32 *)e->raddr)[3] = ctx->user_ip6[3];
		((__u32 *)e->laddr)[0] = ctx->sk->src_ip6[0];
		((__u32 *)e->laddr)[1] = ctx->sk->src_ip6[1];
		((__u32 *)e->laddr)[2] = ctx->sk->src_ip6[2];
		((__u32 *)e->laddr)[3] = ctx->sk->src_ip6[3];
		bpf_ringbuf_submit(e, 0);
	}
	return 1; /* allow: this program only observes */
}
