// SPDX-License-Identifier: (BSD-2-Clause OR GPL-2.0-only)
/* What every Vigil BPF object has: the includes, the licence, and the count of records its ring buffer
 * had no room for (the map "dropped", read by the agent and reported as overflows). Included once per
 * object, by its .bpf.c. */
#ifndef VIGIL_BPF_H
#define VIGIL_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

/* The kernel lends its GPL-only helpers (bpf_probe_read_kernel_str...) only to GPL-compatible programs; the
 * BSD half of the dual licence is what lets these files ship in an Apache-2.0 project. */
char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} dropped SEC(".maps");

static __always_inline void count_drop(void)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&dropped, &zero);

	if (n)
		__sync_fetch_and_add(n, 1);
}

#endif
