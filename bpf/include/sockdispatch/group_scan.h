/* SPDX-License-Identifier: MIT */
/*
 * What the group-scan iterator (bpf/group_scan.bpf.c) writes for each TCP listener on the
 * port it was loaded for: one fixed-size record per listener, read from the iterator's file
 * by `sockdispatch adopt` (docs/design/adopt.md). Not a pinned map: nothing persists.
 */
#ifndef SOCKDISPATCH_GROUP_SCAN_H
#define SOCKDISPATCH_GROUP_SCAN_H

#include <linux/types.h>

struct sd_listener_record {
	__u64 inode;	    /* the socket's inode: socket:[inode] in /proc/PID/fd */
	__u32 program_id;   /* the reuseport program attached to its group, 0 if none */
	__u32 in_group;	    /* non-zero: it is in a SO_REUSEPORT group */
	__u32 accept_queue; /* connections waiting in its accept queue */
	__u32 backlog;	    /* its listen() backlog */
	__u32 uid;	    /* its owner */
	__s32 bound_dev_if; /* SO_BINDTODEVICE, 0 if none */
	__u16 family;	    /* AF_INET or AF_INET6 */
	__u16 port;	    /* host order */
	__u32 pad;
	__u8 address[16]; /* IPv4: the first 4 bytes, network order */
};

#endif /* SOCKDISPATCH_GROUP_SCAN_H */
