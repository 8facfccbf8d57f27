/* SPDX-License-Identifier: MIT */
/*
 * The policy walks, written once. A walk visits the worker slots in order, one step per slot;
 * each policy is one or two walks. The BPF program (bpf/dispatch.bpf.c) runs every step as a
 * bpf_loop callback over its maps; the C++ reference (userspace/line/balancer.cc), and through it
 * the line fallback, runs the same steps in a plain loop over a Scoreboard snapshot.
 *
 * A step reads one slot through struct sd_slot_view, which each side fills from what it reads
 * (the map value in the kernel, a snapshot in C++), and keeps the rest of the walk in
 * struct sd_walk. Steps write no slot: the one write a walk makes, skip_load counting a visit
 * in `skipped`, is the caller's (sd_walk_counts_skip says when), because the kernel adds
 * atomically to the map and the reference to its snapshot.
 *
 * Pure functions of their arguments: no maps, no helpers, so they compile for -target bpf and
 * as C++ unchanged.
 */
#ifndef SOCKDISPATCH_WALK_H
#define SOCKDISPATCH_WALK_H

#include "sockdispatch/abi.h"
#include "sockdispatch/policy.h"

/* What a step reads of one slot. */
struct sd_slot_view {
	__u32 state;
	__u32 draining;
	__u32 weight;
	__u64 open;
	__u64 queued;
	__u64 skipped; /* skip_load's my_skipped before this visit */
	__u64 busy_since;
};

/* One walk's state, carried from step to step (and from one walk to the next). */
struct sd_walk {
	__u32 nr_slots; /* slots in use: steps 0 .. nr_slots-1 visit them */
	__u32 start;	/* the slot step 0 visits (least_conn's rotating start), then wrapping */
	__u32 nr_live;	/* selectable slots, counted by SD_STEP_COUNT_LIVE */
	__u32 position; /* place, among the live slots, of the next live slot visited */
	__u64 total_weight; /* the live slots' weights, counted by SD_STEP_COUNT_LIVE */
	__u64 ticket;	  /* round_robin, p2c: the live position to take; weighted: weight ticket */
	__u64 now;	  /* CLOCK_MONOTONIC ns: which workers are stuck in a handler call;
			   * 0: not read (yet), business ignored (sd_walk_needs_clock) */
	__u64 best_load;  /* load of the slot chosen (least_conn, and each p2c sample);
			   * SD_LOAD_NONE before one is */
	__u64 first_load; /* p2c: the first sample's load */
	__u32 first;	  /* p2c: the first sample's slot */
	__u32 chosen;	  /* the slot chosen, when found */
	int found;
	/* the live slots in slot order, as the SD_STEP_COUNT_LIVE walk lists them: round_robin
	 * and p2c take their slots here rather than walking the slots again; entries at and past
	 * nr_live are not read, so need no clearing */
	__u8 live[SD_MAX_WORKERS];
};

/* What one step does, per policy. */
enum sd_step {
	SD_STEP_COUNT_LIVE, /* lists the live slots, sums their weights (most policies first) */
	SD_STEP_WEIGHTED,   /* takes the live slot whose share of the weight holds `ticket` */
	SD_STEP_SKIP_LOAD,  /* one worker of skip_load's virtual line */
	SD_STEP_LEAST_CONN, /* keeps the least loaded slot seen */
};

/* A step's answer, as a bpf_loop callback's: go on to the next slot, or stop the walk. */
#define SD_WALK_NEXT 0
#define SD_WALK_STOP 1

/*
 * Begins a walk, zero-initialized by the caller, over `nr_slots` slots (at most
 * SD_MAX_WORKERS) from slot 0, at time `now`.
 */
static inline void sd_walk_begin(struct sd_walk *walk, __u32 nr_slots, __u64 now)
{
	walk->nr_slots = nr_slots > SD_MAX_WORKERS ? SD_MAX_WORKERS : nr_slots;
	walk->now = now;
	walk->best_load = SD_LOAD_NONE;
}

/*
 * The opening every step shares: the slot that iteration `step` of a walk of kind `kind`
 * visits, in *slot. Returns 0 once the walk has visited every slot (the walk stops there).
 * Only least_conn begins anywhere but slot 0 (and wraps); the other walks visit slot `step`.
 */
static inline int sd_walk_visits(const struct sd_walk *walk, enum sd_step kind, __u32 step,
				 __u32 *slot)
{
	if (step >= walk->nr_slots)
		return 0;
	*slot = kind == SD_STEP_LEAST_CONN ? sd_scan_slot(walk->start, step, walk->nr_slots) : step;
	return 1;
}

/* The walk stops at `slot`: it is the chosen one. */
static inline long sd_walk_take(struct sd_walk *walk, __u32 slot)
{
	walk->chosen = slot;
	walk->found = 1;
	return SD_WALK_STOP;
}

/* least_conn's and p2c's load of a slot: open plus queued, busy workers last. */
static inline __u64 sd_view_load(const struct sd_slot_view *view, __u64 now)
{
	return sd_busy_load(sd_slot_load(view->open, view->queued), view->busy_since, now);
}

/* The mask only shows the verifier the bound: nr_live < SD_MAX_WORKERS (a power of 2) here. */
static inline long sd_count_live_step(struct sd_walk *walk, __u32 slot,
				      const struct sd_slot_view *view)
{
	walk->live[walk->nr_live & (SD_MAX_WORKERS - 1)] = (__u8)slot;
	walk->nr_live++;
	walk->total_weight += view->weight;
	return SD_WALK_NEXT;
}

static inline long sd_weighted_step(struct sd_walk *walk, __u32 slot,
				    const struct sd_slot_view *view)
{
	if (sd_weighted_takes(&walk->ticket, view->weight))
		return sd_walk_take(walk, slot);
	return SD_WALK_NEXT;
}

/* The nginz step; the visit itself counts a skip (sd_walk_counts_skip), the keeper's too. */
static inline long sd_skip_load_step(struct sd_walk *walk, __u32 slot,
				     const struct sd_slot_view *view)
{
	if (sd_skip_load_keeps(view->open + view->skipped, walk->nr_live, walk->position))
		return sd_walk_take(walk, slot);
	walk->position++;
	return SD_WALK_NEXT;
}

/*
 * Ties go to the first slot seen from `start`, so among equal loads the choice rotates.
 *
 * The test is on the load alone, against best_load (SD_LOAD_NONE until a slot is kept), not
 * on `found`: before Linux 6.7 the verifier checks a bpf_loop callback as if it were called
 * once, with the walk as it is before the loop, and removes as dead code every branch that
 * call never takes. `found` is 0 there, so on Debian 12's 6.1 a test of `!found` always held
 * in the program the kernel ran: every live slot replaced the choice and least_conn (and a
 * migration) took the last slot scanned (packaging/test-kernel.sh found it). A slot's load is
 * read from the map, unknown to the verifier, so both branches of this test are kept.
 */
static inline long sd_least_conn_step(struct sd_walk *walk, __u32 slot,
				      const struct sd_slot_view *view)
{
	__u64 load = sd_view_load(view, walk->now);

	if (load < walk->best_load) {
		walk->best_load = load;
		walk->chosen = slot;
		walk->found = 1;
	}
	return SD_WALK_NEXT;
}

/*
 * One step of a walk of kind `kind` at `slot`, seen through `view`: SD_WALK_NEXT or
 * SD_WALK_STOP. Only selectable slots take part; every other slot is passed over.
 */
static inline long sd_walk_step(struct sd_walk *walk, enum sd_step kind, __u32 slot,
				const struct sd_slot_view *view)
{
	if (!sd_slot_selectable(view->state, view->draining))
		return SD_WALK_NEXT;
	switch (kind) {
	case SD_STEP_COUNT_LIVE:
		return sd_count_live_step(walk, slot, view);
	case SD_STEP_WEIGHTED:
		return sd_weighted_step(walk, slot, view);
	case SD_STEP_SKIP_LOAD:
		return sd_skip_load_step(walk, slot, view);
	case SD_STEP_LEAST_CONN:
		return sd_least_conn_step(walk, slot, view);
	}
	return SD_WALK_STOP;
}

/*
 * Whether taking the load of `view` (a least_conn step, a p2c sample) needs the clock the walk
 * has not read yet: only the load of a worker inside a handler call (busy_since != 0) depends
 * on `now` (sd_busy_load). The program reads the clock there, at most once per decision,
 * rather than on every SYN; a reference passes its `now` to sd_walk_begin instead.
 */
static inline int sd_load_needs_clock(const struct sd_walk *walk, const struct sd_slot_view *view)
{
	return walk->now == 0 && view->busy_since != 0;
}

/* Whether the step of kind `kind` that visited `view` counts a skip on it (skipped += 1). */
static inline int sd_walk_counts_skip(enum sd_step kind, const struct sd_slot_view *view)
{
	return kind == SD_STEP_SKIP_LOAD && sd_slot_selectable(view->state, view->draining);
}

/*
 * Between the walks. Each policy is, in the program and in the reference alike:
 *   least_conn   sd_least_conn_begin(ticket); walk SD_STEP_LEAST_CONN
 *   skip_load    walk SD_STEP_COUNT_LIVE; walk SD_STEP_SKIP_LOAD
 *   round_robin, weighted
 *                walk SD_STEP_COUNT_LIVE; if nr_live: if sd_ticket_begin(ticket, weighted):
 *                walk SD_STEP_WEIGHTED, else sd_take_nth_live()
 *   p2c          walk SD_STEP_COUNT_LIVE; if nr_live: sd_p2c_first(draw);
 *                sd_p2c_sample(sd_live_slot()); sd_p2c_second(draw);
 *                sd_p2c_sample(sd_live_slot()); sd_p2c_decide()
 * where the kernel's ticket is config.rr_cursor (one fetch_add per connection) and its draws
 * bpf_get_prandom_u32(). A migration is a least_conn walk from slot 0.
 */

/* least_conn, over nr_slots > 0 slots: the scan begins at slot ticket % nr_slots. */
static inline void sd_least_conn_begin(struct sd_walk *walk, __u64 ticket)
{
	walk->start = ticket % walk->nr_slots;
}

/* The live slot at `position` (< nr_live) in the list the SD_STEP_COUNT_LIVE walk made. */
static inline __u32 sd_live_slot(const struct sd_walk *walk, __u64 position)
{
	return walk->live[position & (SD_MAX_WORKERS - 1)];
}

/*
 * round_robin and weighted, once the live slots are counted (nr_live > 0): the ticket taken
 * modulo the total weight (weighted, when some weight is not 0; returns 1: an SD_STEP_WEIGHTED
 * walk takes it) or the live count (returns 0: sd_take_nth_live takes it).
 */
static inline int sd_ticket_begin(struct sd_walk *walk, __u64 ticket, int weighted)
{
	if (weighted && walk->total_weight > 0) {
		walk->ticket = ticket % walk->total_weight;
		return 1;
	}
	walk->ticket = ticket % walk->nr_live;
	return 0;
}

/* round_robin: the live slot at position `ticket`, from the list, with no second walk. */
static inline void sd_take_nth_live(struct sd_walk *walk)
{
	sd_walk_take(walk, sd_live_slot(walk, walk->ticket));
}

/* p2c, once the live slots are counted (nr_live > 0): the first sample's position. */
static inline void sd_p2c_first(struct sd_walk *walk, __u32 draw)
{
	walk->ticket = draw % walk->nr_live;
}

/*
 * p2c, one sample: the live slot at position `ticket` (sd_live_slot), seen through `view`,
 * becomes the chosen slot with its load.
 */
static inline void sd_p2c_sample(struct sd_walk *walk, __u32 slot, const struct sd_slot_view *view)
{
	walk->best_load = sd_view_load(view, walk->now);
	sd_walk_take(walk, slot);
}

/* p2c, after the first sample: keeps it, and sets the second, distinct position. */
static inline void sd_p2c_second(struct sd_walk *walk, __u32 draw)
{
	walk->first = walk->chosen;
	walk->first_load = walk->best_load;
	walk->ticket = sd_p2c_second_position((__u32)walk->ticket, draw, walk->nr_live);
	walk->found = 0;
}

/* p2c, after the second sample: the less loaded of the two, the first on ties. */
static inline void sd_p2c_decide(struct sd_walk *walk)
{
	if (walk->found && !sd_p2c_second_wins(walk->first_load, walk->best_load))
		walk->chosen = walk->first;
}

#endif /* SOCKDISPATCH_WALK_H */
