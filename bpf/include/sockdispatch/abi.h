/* SPDX-License-Identifier: MIT */
/*
 * The map ABI of sockdispatch: every struct and enum that the BPF program, the master, the
 * workers and the CLI share through BPF maps (or, in line mode, a shared memory file).
 *
 * This header is included by bpf/dispatch.bpf.c (clang -target bpf) and by C++ alike, so it
 * uses fixed-width UAPI types only. Bump SD_ABI_VERSION whenever a layout or an enum value
 * changes; tools refuse pins whose version differs.
 */
#ifndef SOCKDISPATCH_ABI_H
#define SOCKDISPATCH_ABI_H

#include <linux/types.h>

#define SD_ABI_VERSION 6
/* Upper bound on worker slots (the size of every per-worker map). */
#define SD_MAX_WORKERS 128
#define SD_CACHELINE   64

/* Lifecycle of one worker slot. Only SD_SLOT_RUNNING slots are chosen by policies. */
enum sd_slot_state {
	SD_SLOT_EMPTY = 0,    /* never used */
	SD_SLOT_STARTING = 1, /* forked, not yet serving */
	SD_SLOT_RUNNING = 2,  /* serving its listener */
	SD_SLOT_STOPPING = 3, /* asked to stop; finishes what it has */
	SD_SLOT_DEAD = 4,     /* exited; the master may respawn it */
	SD_SLOT_FULL = 5,     /* serving, but at --max-conns or out of descriptors: not chosen */
	SD_NR_SLOT_STATES
};

/* Balancing policies, selected at run time through sd_config.policy. */
enum sd_policy {
	SD_POLICY_SKIP_LOAD = 0,
	SD_POLICY_LEAST_CONN = 1,
	SD_POLICY_P2C = 2,
	SD_POLICY_ROUND_ROBIN = 3,
	SD_POLICY_WEIGHTED = 4,
	SD_POLICY_HASH = 5,
	SD_NR_POLICIES
};

enum sd_mode {
	SD_MODE_NONE = 0,
	SD_MODE_EBPF = 1,
	SD_MODE_LINE = 2,
	SD_MODE_ADOPT =
		3, /* a running service's reuseport group, steered by `sockdispatch adopt` */
};

/* Who keeps a slot's `open`, `accepted` and `queued` (taken away at arrival). */
enum sd_load_source {
	SD_LOAD_WORKER = 0, /* our own worker: open = accepted and not closed, queued apart */
	SD_LOAD_KERNEL = 1, /* the tracing program (foreign_load.bpf.c): open = from the handshake
			     * to the application's close, so it includes the accept queue */
};

/* Why a connection went where it went: index into the per-CPU verdict counters. */
enum sd_verdict {
	SD_VERDICT_SELECTED = 0,       /* the policy chose a worker and the kernel took it */
	SD_VERDICT_MIGRATED = 1,       /* a closing listener's connection moved to a live worker */
	SD_VERDICT_HASH = 2,	       /* policy "hash": the kernel's reuseport hash chose */
	SD_VERDICT_NO_LIVE_WORKER = 3, /* no running slot: fell back to the kernel hash */
	SD_VERDICT_SELECT_FAILED = 4,  /* bpf_sk_select_reuseport failed: fell back to the hash */
	SD_VERDICT_NO_CONFIG = 5,      /* config map missing: fell back to the hash */
	SD_VERDICT_MIGRATE_FAILED = 6, /* migration target refused: fell back to the hash */
	SD_VERDICT_STOPPING = 7,       /* the attachment is stopping: the SYN was refused */
	SD_NR_VERDICTS
};

/*
 * One worker's slot. The control line is written by the master and `tune`. The load line holds
 * what a decision reads and writes of a slot (open, queued, busy_since; the chosen one's
 * selected), so a SYN touches two lines of each slot it reads (control and load) rather than
 * four or five. The worker writes the load line on each accept, close and handler call, the
 * program on each SYN that chooses the slot. The worker's totals and skip_load's count, which
 * no decision reads (or only skip_load's), have lines of their own (docs/design/dispatch.md,
 * "Slot layout").
 */
struct sd_slot {
	/* control: master and tune */
	__u32 state;	/* enum sd_slot_state */
	__u32 pid;	/* worker pid, 0 when none */
	__u32 weight;	/* for the weighted policy; 1 by default */
	__u32 draining; /* non-zero: never chosen except to avoid a drop */
	__u64 generation;
	__u64 respawns;
	__u32 load_source; /* enum sd_load_source */
	__u32 pad;
	/* load: the worker, the program (or the line in line mode) */
	__u64 open __attribute__((aligned(SD_CACHELINE))); /* open connections now */
	/* chosen by the program, not yet accepted by the worker (its listen queue); the program
	 * adds, the worker's accept takes away (never below 0) */
	__u64 queued;
	/* worker: CLOCK_MONOTONIC ns when its current handler call began, 0 between calls */
	__u64 busy_since;
	__u64 selected; /* times the policy chose it */
	/* worker-written totals */
	__u64 accepted __attribute__((aligned(SD_CACHELINE))); /* connections accepted, total */
	__u64 requests __attribute__((aligned(SD_CACHELINE))); /* requests answered, total */
	/* skip_load's my_skipped, written by the policy on every slot it visits */
	__u64 skipped __attribute__((aligned(SD_CACHELINE)));
};

/* The tag of a listener whose worker does not write its slot (an exec'd COMMAND), in the
 * socket-storage map `ktags`; cloned into every child of the listener, where the tracing
 * program (foreign_load.bpf.c) records the slot's epoch at the child's birth. */
struct sd_sock_tag {
	__u32 slot;
	__u32 live;	  /* a child counted in its slot's open */
	__u64 generation; /* the slot's generation and respawns at the child's birth */
	__u64 respawns;
};

/* The attachment's configuration: one record, key 0 of the config map. */
struct sd_config {
	__u32 abi_version; /* SD_ABI_VERSION of the master that wrote it */
	__u32 policy;	   /* enum sd_policy */
	__u32 nr_slots;	   /* slots in use: 0 .. nr_slots-1 */
	__u32 mode;	   /* enum sd_mode */
	__u32 master_pid;  /* owner of the attachment */
	__u32 port;	   /* the attached TCP port */
	__u64 generation;  /* bumped on every configuration change */
	/* non-zero once the master began to stop the whole attachment: new connections are
	 * refused (every listener is about to close); a closing listener's queue still migrates */
	__u32 stopping;
	/* non-zero while a graceful stop's drain grace runs (--drain-grace): connections are still
	 * taken, and the balancer in front is told to drain this host (agent, status --weight) */
	__u32 leaving;
	/* the open and queued connections per worker that count as a full worker in the host's
	 * weight for a balancer in front (--agent-capacity, else --max-conns; 0: none) */
	__u32 agent_capacity;
	__u64 rr_cursor __attribute__((aligned(SD_CACHELINE))); /* round_robin position */
};

#endif /* SOCKDISPATCH_ABI_H */
