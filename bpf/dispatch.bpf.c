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
#include "sockdispatch/slots_map.h"
#include "sockdispatch/walk.h"

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

/*
 * A SYN's walk, in this CPU's value rather than on the stack. SYNs are decided in softirq, one
 * at a time on a CPU, so the value is the decision's own. A migration, which may run in
 * process context and be interrupted by a SYN, keeps its walk on its stack.
 *
 * In a map value the walk's fields are numbers the verifier does not follow (it does not
 * track what memory holds), so a walk costs it the same few states whatever the counts and
 * positions are; on the stack each count and position would be a state of its own, and the
 * unrolled walks below too many to verify.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sd_walk);
} walks SEC(".maps");

static __always_inline void count_verdict(__u32 verdict)
{
	__u64 *counter = bpf_map_lookup_elem(&verdicts, &verdict);

	if (counter)
		*counter += 1;
}

/*
 * A slot, read through its map pointer into the view the shared steps (sockdispatch/walk.h)
 * take; the clock is read, once per decision, when the view is of a busy worker whose load
 * will be taken (`takes_load`, a constant at each use).
 */
static __always_inline void read_view(struct sd_walk *walk, const struct sd_slot *slot,
				      struct sd_slot_view *view, int takes_load)
{
	view->state = slot->state;
	view->draining = slot->draining;
	view->weight = slot->weight;
	view->open = slot->open;
	view->queued = slot->queued;
	view->skipped = slot->skipped;
	view->busy_since = slot->busy_since;
	if (takes_load && sd_load_needs_clock(walk, view))
		walk->now = bpf_ktime_get_ns();
}

/*
 * The one opening of every step: the slot iteration `step` visits, read into its view for
 * the shared step; the skip a skip_load visit counts goes to the map, atomically. `kind` is a
 * constant at each use.
 */
static __always_inline long visit(__u32 step, struct sd_walk *walk, enum sd_step kind)
{
	struct sd_slot_view view;
	struct sd_slot *slot;
	__u32 index;
	long next;

	if (!sd_walk_visits(walk, kind, step, &index))
		return SD_WALK_STOP;
	slot = bpf_map_lookup_elem(&slots, &index);
	if (!slot)
		return SD_WALK_NEXT;
	read_view(walk, slot, &view, kind == SD_STEP_LEAST_CONN);
	next = sd_walk_step(walk, kind, index, &view);
	if (sd_walk_counts_skip(kind, &view))
		__sync_fetch_and_add(&slot->skipped, 1);
	return next;
}

/*
 * A SYN's walks run WALK_CHUNK steps per bpf_loop callback, unrolled: the callback's call and
 * return, about as costly as a step, are paid once per WALK_CHUNK slots. bpf_loop takes its
 * context on the stack only, so the callback gets the decision's pointer from there.
 */
#define WALK_CHUNK 8

struct walk_ctx {
	struct sd_walk *walk;
};

static __always_inline __u32 walk_chunks(const struct sd_walk *walk)
{
	return (walk->nr_slots + WALK_CHUNK - 1) / WALK_CHUNK;
}

static __always_inline long visit_chunk(__u32 chunk, void *data, enum sd_step kind)
{
	struct sd_walk *walk = ((struct walk_ctx *)data)->walk;
	long next = SD_WALK_NEXT;
	int i;

#pragma unroll
	for (i = 0; i < WALK_CHUNK; i++) {
		next = visit(chunk * WALK_CHUNK + i, walk, kind);
		if (next == SD_WALK_STOP)
			break;
	}
	return next;
}

static long count_live_chunk(__u32 chunk, void *data)
{
	return visit_chunk(chunk, data, SD_STEP_COUNT_LIVE);
}

static long weighted_chunk(__u32 chunk, void *data)
{
	return visit_chunk(chunk, data, SD_STEP_WEIGHTED);
}

static long skip_load_chunk(__u32 chunk, void *data)
{
	return visit_chunk(chunk, data, SD_STEP_SKIP_LOAD);
}

static long least_conn_chunk(__u32 chunk, void *data)
{
	return visit_chunk(chunk, data, SD_STEP_LEAST_CONN);
}

/* A migration's walk, on its own stack: one step per callback. */
static long least_conn_step(__u32 step, void *data)
{
	return visit(step, data, SD_STEP_LEAST_CONN);
}

/* p2c: the live slot at position walk->ticket becomes the chosen one, with its load. */
static __always_inline void p2c_sample(struct sd_walk *walk)
{
	struct sd_slot_view view;
	struct sd_slot *slot;
	__u32 index = sd_live_slot(walk, walk->ticket);

	slot = bpf_map_lookup_elem(&slots, &index);
	if (!slot)
		return;
	read_view(walk, slot, &view, 1);
	sd_p2c_sample(walk, index, &view);
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

/*
 * least_conn, and a migration (a least_conn walk from slot 0), with the walk on the stack:
 * they make no list, and the stack is warm where the per-CPU value may not be. A migration may
 * run in process context and be interrupted by a SYN, so it could not share the per-CPU walk
 * anyway; it keeps one step per callback (its walk from slot 0 verifies as it always did).
 */
static __always_inline int least_conn(struct sk_reuseport_md *md, struct sd_config *cfg)
{
	struct sd_walk walk = {};
	struct walk_ctx ctx = {.walk = &walk};

	sd_walk_begin(&walk, cfg->nr_slots, 0);
	if (md->migrating_sk) {
		bpf_loop(walk.nr_slots, least_conn_step, &walk, 0);
		if (!walk.found) {
			count_verdict(SD_VERDICT_MIGRATE_FAILED);
			return SK_PASS;
		}
		return select_slot(md, walk.chosen, SD_VERDICT_MIGRATED, SD_VERDICT_MIGRATE_FAILED);
	}
	/* Ties rotate (nginx and HAProxy do the same): idle workers share the work. */
	if (walk.nr_slots > 0)
		sd_least_conn_begin(&walk, __sync_fetch_and_add(&cfg->rr_cursor, 1));
	bpf_loop(walk_chunks(&walk), least_conn_chunk, &ctx, 0);
	if (!walk.found) {
		count_verdict(SD_VERDICT_NO_LIVE_WORKER);
		return SK_PASS;
	}
	return select_slot(md, walk.chosen, SD_VERDICT_SELECTED, SD_VERDICT_SELECT_FAILED);
}

SEC("sk_reuseport/migrate")
int sd_dispatch(struct sk_reuseport_md *md)
{
	struct walk_ctx ctx;
	struct sd_config *cfg;
	struct sd_walk *walk;
	__u32 zero = 0;

	cfg = bpf_map_lookup_elem(&config, &zero);
	if (!cfg) {
		count_verdict(SD_VERDICT_NO_CONFIG);
		return SK_PASS;
	}
	if (md->migrating_sk)
		return least_conn(md, cfg);

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
	if (cfg->policy == SD_POLICY_HASH) {
		count_verdict(SD_VERDICT_HASH);
		return SK_PASS;
	}
	if (cfg->policy == SD_POLICY_LEAST_CONN)
		return least_conn(md, cfg);

	walk = bpf_map_lookup_elem(&walks, &zero);
	if (!walk) {
		count_verdict(SD_VERDICT_NO_CONFIG);
		return SK_PASS;
	}
	/* The live list is written before it is read (walk.h): only what precedes it is reset. */
	__builtin_memset(walk, 0, __builtin_offsetof(struct sd_walk, live));
	sd_walk_begin(walk, cfg->nr_slots, 0);
	ctx.walk = walk;

	/* The sequence of walks of each policy is the reference's (sockdispatch/walk.h). */
	switch (cfg->policy) {
	case SD_POLICY_ROUND_ROBIN:
	case SD_POLICY_WEIGHTED:
		bpf_loop(walk_chunks(walk), count_live_chunk, &ctx, 0);
		if (walk->nr_live == 0)
			break;
		if (sd_ticket_begin(walk, __sync_fetch_and_add(&cfg->rr_cursor, 1),
				    cfg->policy == SD_POLICY_WEIGHTED))
			bpf_loop(walk_chunks(walk), weighted_chunk, &ctx, 0);
		else
			sd_take_nth_live(walk);
		break;
	case SD_POLICY_P2C:
		bpf_loop(walk_chunks(walk), count_live_chunk, &ctx, 0);
		if (walk->nr_live == 0)
			break;
		sd_p2c_first(walk, bpf_get_prandom_u32());
		p2c_sample(walk);
		sd_p2c_second(walk, bpf_get_prandom_u32());
		p2c_sample(walk);
		sd_p2c_decide(walk);
		break;
	case SD_POLICY_SKIP_LOAD:
	default:
		bpf_loop(walk_chunks(walk), count_live_chunk, &ctx, 0);
		bpf_loop(walk_chunks(walk), skip_load_chunk, &ctx, 0);
		break;
	}
	if (!walk->found) {
		count_verdict(SD_VERDICT_NO_LIVE_WORKER);
		return SK_PASS;
	}
	return select_slot(md, walk->chosen, SD_VERDICT_SELECTED, SD_VERDICT_SELECT_FAILED);
}
