// SPDX-License-Identifier: GPL-2.0
/*
 * The load of workers that do not write the `slots` map themselves (an exec'd COMMAND),
 * measured by the kernel (docs/design/foreign-load.md). A BTF tracepoint on every TCP state
 * change: the master tags each such worker's listener in `ktags`, a socket-storage map the
 * kernel clones into every child of that listener, so a child knows its slot from birth.
 * A child's birth (LISTEN -> SYN_RECV: cloned from the listener at the third ACK) counts it
 * in its slot's `open` and `accepted` and takes one off the steering program's `queued`
 * (the choice it made at the SYN has arrived); its end (FIN_WAIT1 or LAST_ACK: the
 * application closed it; CLOSE: reset or aborted) takes it off `open` again. So `open` is,
 * for such a slot, the connections from the handshake to the application's close: queued in
 * the accept queue plus accepted, what least_conn compares for our own workers.
 *
 * A child born before its slot's worker died or the slot changed generation carries the old
 * epoch; its end is not counted (the master zeroed the slot), so `open` never underflows.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "sockdispatch/abi.h"
#include "sockdispatch/slots_map.h"

/* The tracepoint's socket states (include/net/tcp_states.h). */
#define SD_TCP_ESTABLISHED 1
#define SD_TCP_SYN_RECV	   3
#define SD_TCP_CLOSE_WAIT  8
#define SD_TCP_LISTEN	   10

char LICENSE[] SEC("license") = "GPL"; /* the socket-storage helpers of tracing programs */

struct sock;

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC | BPF_F_CLONE);
	__type(key, int);
	__type(value, struct sd_sock_tag);
} ktags SEC(".maps");

/* One fewer chosen and not yet arrived, never below zero (a lost race leaves one too many,
 * which the next arrival takes away). */
static __always_inline void take_queued(struct sd_slot *slot)
{
	__u64 waiting = slot->queued;

	if (waiting > 0)
		__sync_val_compare_and_swap(&slot->queued, waiting, waiting - 1);
}

SEC("tp_btf/inet_sock_set_state")
int count_children(__u64 *ctx)
{
	struct sock *sk = (struct sock *)ctx[0];
	int oldstate = (int)ctx[1];
	int newstate = (int)ctx[2];
	struct sd_sock_tag *tag;
	struct sd_slot *slot;
	__u32 index;

	tag = bpf_sk_storage_get(&ktags, sk, 0, 0);
	if (!tag)
		return 0; /* not a child (or listener) of a tagged listener */
	index = tag->slot;
	slot = bpf_map_lookup_elem(&slots, &index);
	if (!slot)
		return 0;
	if (oldstate == SD_TCP_LISTEN && newstate == SD_TCP_SYN_RECV) {
		tag->live = 1;
		tag->generation = slot->generation;
		tag->respawns = slot->respawns;
		__sync_fetch_and_add(&slot->open, 1);
		__sync_fetch_and_add(&slot->accepted, 1);
		take_queued(slot);
		return 0;
	}
	if (!tag->live || newstate == SD_TCP_ESTABLISHED || newstate == SD_TCP_CLOSE_WAIT ||
	    newstate == SD_TCP_SYN_RECV)
		return 0;
	tag->live = 0;
	if (tag->generation == slot->generation && tag->respawns == slot->respawns)
		__sync_fetch_and_sub(&slot->open, 1);
	return 0;
}
