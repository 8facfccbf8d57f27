/* SPDX-License-Identifier: MIT */
/*
 * Balancing decisions shared, as code, by the BPF program (bpf/dispatch.bpf.c), the line
 * fallback and the C++ reference used in tests. Pure functions of their arguments: no maps,
 * no helpers, so they compile for -target bpf and for the host unchanged. The walks that use
 * them, one step per slot, are in sockdispatch/walk.h.
 */
#ifndef SOCKDISPATCH_POLICY_H
#define SOCKDISPATCH_POLICY_H

#include "sockdispatch/abi.h"

/* A slot any policy may choose: running and not draining. */
static inline int sd_slot_selectable(__u32 state, __u32 draining)
{
	return state == SD_SLOT_RUNNING && draining == 0;
}

/*
 * skip_load, one worker's step on the line (the nginz heuristic):
 *
 *     load = my_open_connections + my_skipped
 *     my_skipped += 1                       (the caller does this)
 *     keep if load % (N - 1) == 0, else pass to the next worker   (last worker: keep)
 *
 * `position` is the worker's 0-based place among the `nr_live` live workers of the line.
 * Never divides by zero: the last worker (which is every worker when nr_live <= 1) keeps.
 */
static inline int sd_skip_load_keeps(__u64 load, __u32 nr_live, __u32 position)
{
	if (position + 1 >= nr_live)
		return 1;
	return load % (__u64)(nr_live - 1) == 0;
}

/*
 * weighted, one selectable slot's step: `ticket` (cursor modulo the total weight) falls in
 * this slot's share, or is reduced by it for the next slot. Weight 0 has no share.
 */
static inline int sd_weighted_takes(__u64 *ticket, __u32 weight)
{
	if (*ticket < weight)
		return 1;
	*ticket -= weight;
	return 0;
}

/*
 * A slot's load for least_conn and p2c: the connections its worker holds, plus those the
 * program chose for it that the worker has not accepted yet. A worker busy with a slow
 * request accepts nothing, so its `open` stands still while its listen queue grows: without
 * the second term it would look idle and keep being chosen.
 */
static inline __u64 sd_slot_load(__u64 open, __u64 queued)
{
	return open + queued;
}

/*
 * A worker whose current handler call began more than SD_BUSY_NS (20 us) ago is busy: a
 * fast answer takes a few microseconds, and a worker inside a longer call serves nothing else
 * until it returns, however few connections it holds. Its load gains SD_BUSY_PENALTY, so
 * least_conn and p2c choose it only when every worker is as busy. The threshold is short
 * because every connection chosen for a worker in the instant before the penalty applies
 * waits out the whole call (bench/policy_bench.py, one run each: 200 us let through 40 % more
 * stalls than 20 us). `now` and `busy_since` are CLOCK_MONOTONIC nanoseconds
 * (bpf_ktime_get_ns in the program); now == 0 ignores business (a reference with no clock).
 */
#define SD_BUSY_NS	20000ULL
#define SD_BUSY_PENALTY (1ULL << 20)
/* No load yet (a walk's best_load before a slot is kept): above any real load. */
#define SD_LOAD_NONE (~0ULL)

static inline __u64 sd_busy_load(__u64 load, __u64 busy_since, __u64 now)
{
	if (busy_since != 0 && now > busy_since && now - busy_since > SD_BUSY_NS)
		return load + SD_BUSY_PENALTY;
	return load;
}

/*
 * least_conn scans the slots from a rotating `start` (the connection's ticket modulo
 * nr_slots) and wraps: the slot visited `step`-th. Ties go to the first slot seen, so among
 * equally loaded workers the choice rotates. start < nr_slots and step < nr_slots.
 */
static inline __u32 sd_scan_slot(__u32 start, __u32 step, __u32 nr_slots)
{
	__u32 slot = start + step;

	return slot >= nr_slots ? slot - nr_slots : slot;
}

/*
 * p2c's second sample, as a live position distinct from the first (`first` < nr_live): drawn
 * from the other nr_live - 1 positions, so the two choices are two different workers whenever
 * there are two (with replacement, 1 in nr_live connections would compare a worker with
 * itself, and a stuck worker would get 1/nr_live^2 of them).
 */
static inline __u32 sd_p2c_second_position(__u32 first, __u32 draw, __u32 nr_live)
{
	__u32 second;

	if (nr_live < 2)
		return first;
	second = draw % (nr_live - 1);
	return second >= first ? second + 1 : second;
}

/* p2c: of the two sampled slots, the one with the lower load wins; ties: the first. */
static inline int sd_p2c_second_wins(__u64 load_first, __u64 load_second)
{
	return load_second < load_first;
}

#endif /* SOCKDISPATCH_POLICY_H */
