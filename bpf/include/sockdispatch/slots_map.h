/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * The `slots` map, defined once for every BPF program that uses it: the steering program
 * creates it, the foreign-load program reuses its fd (bpf_map__reuse_fd checks that the
 * definitions agree, so they must be this one). BPF programs only.
 */
#ifndef SOCKDISPATCH_SLOTS_MAP_H
#define SOCKDISPATCH_SLOTS_MAP_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "sockdispatch/abi.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, SD_MAX_WORKERS);
	__type(key, __u32);
	__type(value, struct sd_slot);
} slots SEC(".maps");

#endif /* SOCKDISPATCH_SLOTS_MAP_H */
