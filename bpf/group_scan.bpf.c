// SPDX-License-Identifier: GPL-2.0
/*
 * The listeners of one TCP port and the reuseport program of their group, read by
 * `sockdispatch adopt` (docs/design/adopt.md). A BPF iterator over the network namespace's TCP
 * sockets: for every listener on `port` it writes one `struct sd_listener_record`. The
 * attached program is read from the group itself (sk_reuseport_cb->prog), the one place the
 * kernel keeps it: no socket option or sock_diag attribute tells it.
 *
 * The kernel structures are declared here with only the fields read, and relocated against
 * the running kernel's BTF (CO-RE), so the program needs no generated vmlinux.h.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#include "sockdispatch/group_scan.h"

#define SD_AF_INET    2
#define SD_TCP_LISTEN 10

char LICENSE[] SEC("license") = "GPL"; /* bpf_seq_write, bpf_skc_to_tcp_sock */

struct bpf_prog_aux {
	__u32 id;
} __attribute__((preserve_access_index));

struct bpf_prog {
	struct bpf_prog_aux *aux;
} __attribute__((preserve_access_index));

struct sock_reuseport {
	struct bpf_prog *prog;
} __attribute__((preserve_access_index));

struct in6_addr {
	union {
		__u8 u6_addr8[16];
	} in6_u;
} __attribute__((preserve_access_index));

struct sock_common {
	__be32 skc_rcv_saddr;
	unsigned short skc_family;
	volatile unsigned char skc_state;
	int skc_bound_dev_if;
	unsigned short skc_num;
	struct in6_addr skc_v6_rcv_saddr;
} __attribute__((preserve_access_index));

struct inode {
	unsigned long i_ino;
} __attribute__((preserve_access_index));

struct file {
	struct inode *f_inode;
} __attribute__((preserve_access_index));

struct socket {
	struct file *file;
} __attribute__((preserve_access_index));

struct sock {
	struct sock_common __sk_common;
	struct sock_reuseport *sk_reuseport_cb;
	struct socket *sk_socket;
	__u32 sk_ack_backlog;
	__u32 sk_max_ack_backlog;
} __attribute__((preserve_access_index));

struct tcp_sock;
struct seq_file;

struct bpf_iter_meta {
	struct seq_file *seq;
} __attribute__((preserve_access_index));

struct bpf_iter__tcp {
	struct bpf_iter_meta *meta;
	struct sock_common *sk_common;
	__u32 uid;
} __attribute__((preserve_access_index));

const volatile __u16 port = 0; /* set before load */

SEC("iter/tcp")
int scan_listeners(struct bpf_iter__tcp *ctx)
{
	struct sock_common *common = ctx->sk_common;
	struct sd_listener_record record = {};
	struct sock_reuseport *group;
	struct tcp_sock *tcp;
	struct socket *socket;
	struct bpf_prog *prog;
	struct sock *sk;

	if (!common || common->skc_state != SD_TCP_LISTEN || common->skc_num != port)
		return 0;
	tcp = bpf_skc_to_tcp_sock(common);
	if (!tcp)
		return 0;
	sk = (struct sock *)tcp;

	record.family = common->skc_family;
	record.port = common->skc_num;
	record.uid = ctx->uid;
	record.bound_dev_if = common->skc_bound_dev_if;
	record.accept_queue = sk->sk_ack_backlog;
	record.backlog = sk->sk_max_ack_backlog;
	if (record.family == SD_AF_INET)
		__builtin_memcpy(record.address, &common->skc_rcv_saddr, 4);
	else
		__builtin_memcpy(record.address, common->skc_v6_rcv_saddr.in6_u.u6_addr8, 16);
	socket = sk->sk_socket;
	if (socket && socket->file && socket->file->f_inode)
		record.inode = socket->file->f_inode->i_ino;
	group = sk->sk_reuseport_cb;
	if (group) {
		record.in_group = 1;
		prog = group->prog;
		if (prog)
			record.program_id = prog->aux->id;
	}
	bpf_seq_write(ctx->meta->seq, &record, sizeof(record));
	return 0;
}
