// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * sockdispatch's connection dispatcher: an SO_REUSEPORT program that picks the worker for
 * every new connection (each SYN) from per-worker load kept in the `slots` map, and moves
 * the queued connections of a closing listener to a live worker (md->migrating_sk).
 *
 * Any failure to select is counted and answered with SK_PASS, which lets the kernel's own
 * reuseport hash choose: our bookkeeping never drops a connection. The one refusal is a new
 * connection while the whole attachment stops (config.stopping).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "sockdispatch/abi.h"
#include "sockdispatch/policy.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_REUSEPORT_SOCKARRAY);
	__uint(max_entries, SD_MAX_WORKERS);
	__type(key, __u32);
	__type(value, __u64);
} sockets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, SD_MAX_WORKERS);
	__type(key, __u32);
	__type(value, struct sd_slot);
} slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sd_config);
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SD_NR_VERDICTS);
	__type(key, __u32);
	__type(value, __u64);
} verdicts SEC(".maps");

static __always_inline void count_verdict(__u32 verdict)
{
	__u64 *counter = bpf_map_lookup_elem(&verdicts, &verdict);

	if (counter)
		*counter += 1;
}

/* The slot at `index` when it is on the line (running, not draining), else NULL. */
static __always_inline struct sd_slot *line_slot(__u32 index)
{
	struct sd_slot *slot = bpf_map_lookup_elem(&slots, &index);

	if (!slot || !sd_slot_selectable(slot->state, slot->draining))
		return NULL;
	return slot;
}

struct line_walk {
	__u32 nr_slots;
	__u32 nr_live;
	__u32 position; /* place of the next live slot on the line */
	__u32 chosen;
	__u64 best_open;
	__u64 total_weight;
	__u64 ticket; /* round_robin: the live position to take; weighted: the weight ticket */
	__u32 start;  /* least_conn: the slot its scan begins at (ties go to the first seen) */
	__u64 now;    /* CLOCK_MONOTONIC ns: which workers are stuck in a handler call */
	int found;
};

/* The walk stops at `index`: it is the chosen slot. */
static __always_inline long take(struct line_walk *walk, __u32 index)
{
	walk->chosen = index;
	walk->found = 1;
	return 1;
}

static long count_live(__u32 index, void *data)
{
	struct line_walk *walk = data;
	struct sd_slot *slot;

	if (index >= walk->nr_slots)
		return 1;
	slot = line_slot(index);
	if (slot) {
		walk->nr_live++;
		walk->total_weight += slot->weight;
	}
	return 0;
}

/* The live slot at position `ticket` (round_robin, and each of p2c's samples). */
static long nth_live_step(__u32 index, void *data)
{
	struct line_walk *walk = data;
	struct sd_slot *slot;

	if (index >= walk->nr_slots)
		return 1;
	slot = line_slot(index);
	if (!slot)
		return 0;
	if (walk->position == walk->ticket) {
		walk->best_open = sd_busy_load(sd_slot_load(slot->open, slot->queued),
					       slot->busy_since, walk->now);
		return take(walk, index);
	}
	walk->position++;
	return 0;
}

/* weighted: the live slot whose share of the total weight holds `ticket`. */
static long weighted_step(__u32 index, void *data)
{
	struct line_walk *walk = data;
	struct sd_slot *slot;

	if (index >= walk->nr_slots)
		return 1;
	slot = line_slot(index);
	if (!slot)
		return 0;
	if (sd_weighted_takes(&walk->ticket, slot->weight))
		return take(walk, index);
	return 0;
}

/* One worker of the virtual line: the same step the line fallback's workers run. */
static long skip_load_step(__u32 index, void *data)
{
	struct line_walk *walk = data;
	struct sd_slot *slot;
	__u64 load;

	if (index >= walk->nr_slots)
		return 1;
	slot = line_slot(index);
	if (!slot)
		return 0;
	load = slot->open + slot->skipped;
	__sync_fetch_and_add(&slot->skipped, 1);
	if (sd_skip_load_keeps(load, walk->nr_live, walk->position))
		return take(walk, index);
	walk->position++;
	return 0;
}

/*
 * Least load (open plus queued connections, busy workers last) among selectable slots. The
 * scan begins at slot `start` and wraps, so ties go to the first slot seen from there.
 */
static long least_conn_step(__u32 index, void *data)
{
	struct line_walk *walk = data;
	struct sd_slot *slot;
	__u64 load;

	if (index >= walk->nr_slots)
		return 1;
	index = sd_scan_slot(walk->start, index, walk->nr_slots);
	slot = line_slot(index);
	if (!slot)
		return 0;
	load = sd_busy_load(sd_slot_load(slot->open, slot->queued), slot->busy_since, walk->now);
	if (!walk->found || load < walk->best_open) {
		walk->best_open = load;
		walk->chosen = index;
		walk->found = 1;
	}
	return 0;
}

static __always_inline int select_slot(struct sk_reuseport_md *md, __u32 index, __u32 ok,
				       __u32 failed)
{
	struct sd_slot *slot;

	if (bpf_sk_select_reuseport(md, &sockets, &index, 0)) {
		count_verdict(failed);
		return SK_PASS;
	}
	slot = bpf_map_lookup_elem(&slots, &index);
	if (slot) {
		__sync_fetch_and_add(&slot->selected, 1);
		__sync_fetch_and_add(&slot->queued, 1);
	}
	count_verdict(ok);
	return SK_PASS;
}

SEC("sk_reuseport/migrate")
int sd_dispatch(struct sk_reuseport_md *md)
{
	struct line_walk walk = {};
	struct sd_config *cfg;
	__u64 first_open;
	__u32 zero = 0;
	__u32 first;

	cfg = bpf_map_lookup_elem(&config, &zero);
	if (!cfg) {
		count_verdict(SD_VERDICT_NO_CONFIG);
		return SK_PASS;
	}
	walk.nr_slots = cfg->nr_slots;
	walk.now = bpf_ktime_get_ns();
	if (walk.nr_slots > SD_MAX_WORKERS)
		walk.nr_slots = SD_MAX_WORKERS;

	if (md->migrating_sk) {
		/* A listener is closing: hand its queue to the least loaded live worker. */
		bpf_loop(SD_MAX_WORKERS, least_conn_step, &walk, 0);
		if (!walk.found) {
			count_verdict(SD_VERDICT_MIGRATE_FAILED);
			return SK_PASS;
		}
		return select_slot(md, walk.chosen, SD_VERDICT_MIGRATED, SD_VERDICT_MIGRATE_FAILED);
	}

	if (cfg->stopping) {
		/*
		 * Every listener is about to close. A SYN admitted now could complete into the
		 * last one's queue after its final accept, with nowhere left to migrate: reset
		 * after the client was told it was connected. Refused now (SK_DROP: the kernel
		 * finds no listener and answers the SYN with a RST), the client knows nothing
		 * was sent.
		 */
		count_verdict(SD_VERDICT_STOPPING);
		return SK_DROP;
	}

	switch (cfg->policy) {
	case SD_POLICY_HASH:
		count_verdict(SD_VERDICT_HASH);
		return SK_PASS;
	case SD_POLICY_LEAST_CONN:
		/* Ties rotate (nginx and HAProxy do the same): idle workers share the work. */
		if (walk.nr_slots > 0)
			walk.start = __sync_fetch_and_add(&cfg->rr_cursor, 1) % walk.nr_slots;
		bpf_loop(SD_MAX_WORKERS, least_conn_step, &walk, 0);
		break;
	case SD_POLICY_ROUND_ROBIN:
	case SD_POLICY_WEIGHTED:
		bpf_loop(SD_MAX_WORKERS, count_live, &walk, 0);
		if (walk.nr_live == 0)
			break;
		walk.ticket = __sync_fetch_and_add(&cfg->rr_cursor, 1);
		if (cfg->policy == SD_POLICY_WEIGHTED && walk.total_weight > 0) {
			walk.ticket %= walk.total_weight;
			bpf_loop(SD_MAX_WORKERS, weighted_step, &walk, 0);
		} else {
			walk.ticket %= walk.nr_live;
			bpf_loop(SD_MAX_WORKERS, nth_live_step, &walk, 0);
		}
		break;
	case SD_POLICY_P2C:
		bpf_loop(SD_MAX_WORKERS, count_live, &walk, 0);
		if (walk.nr_live == 0)
			break;
		walk.ticket = bpf_get_prandom_u32() % walk.nr_live;
		bpf_loop(SD_MAX_WORKERS, nth_live_step, &walk, 0);
		first = walk.chosen;
		first_open = walk.best_open;
		walk.ticket =
			sd_p2c_second_position(walk.ticket, bpf_get_prandom_u32(), walk.nr_live);
		walk.position = 0;
		walk.found = 0;
		bpf_loop(SD_MAX_WORKERS, nth_live_step, &walk, 0);
		if (walk.found && !sd_p2c_second_wins(first_open, walk.best_open))
			walk.chosen = first;
		break;
	case SD_POLICY_SKIP_LOAD:
	default:
		bpf_loop(SD_MAX_WORKERS, count_live, &walk, 0);
		bpf_loop(SD_MAX_WORKERS, skip_load_step, &walk, 0);
		break;
	}
	if (!walk.found) {
		count_verdict(SD_VERDICT_NO_LIVE_WORKER);
		return SK_PASS;
	}
	return select_slot(md, walk.chosen, SD_VERDICT_SELECTED, SD_VERDICT_SELECT_FAILED);
}
