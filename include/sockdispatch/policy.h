/* SPDX-License-Identifier: MIT */
/*
 * Balancing decisions shared, as code, by the BPF program (bpf/dispatch.bpf.c), the line
 * fallback and the C++ reference used in tests. Pure functions of their arguments: no maps,
 * no helpers, so they compile for -target bpf and for the host unchanged.
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
 * A worker whose current handler call began more than SD_BUSY_NS (200 us) ago is stuck in
 * slow work (a fast answer takes a few microseconds):
 * it serves nothing else until the call returns, however few connections it holds. Its load
 * gains SD_BUSY_PENALTY, so least_conn and p2c choose it only when every worker is as busy.
 * `now` and `busy_since` are CLOCK_MONOTONIC nanoseconds (bpf_ktime_get_ns in the program);
 * now == 0 ignores business (a reference that has no clock).
 */
#define SD_BUSY_NS	200000ULL
#define SD_BUSY_PENALTY (1ULL << 20)

static inline __u64 sd_busy_load(__u64 load, __u64 busy_since, __u64 now)
{
	if (busy_since != 0 && now > busy_since && now - busy_since > SD_BUSY_NS)
		return load + SD_BUSY_PENALTY;
	return load;
}

/* p2c: of the two sampled slots, the one with the lower load wins; ties: the first. */
static inline int sd_p2c_second_wins(__u64 load_first, __u64 load_second)
{
	return load_second < load_first;
}

#endif /* SOCKDISPATCH_POLICY_H */
