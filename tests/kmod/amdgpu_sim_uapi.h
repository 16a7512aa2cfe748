/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/* User ABI of /dev/amdgpu_sim, shared by the module and the scenario driver (tests/vm/). */
#ifndef AMDGPU_SIM_UAPI_H
#define AMDGPU_SIM_UAPI_H
#include <linux/ioctl.h>
#include <linux/types.h>

#define SIM_RING_GFX 0
#define SIM_RING_COMP 1
#define SIM_RING_SDMA 2
#define SIM_NUM_RINGS 3

/* The job's fence never signals: drm_sched's timeout fires on it. */
#define SIM_F_NEVER_COMPLETES (1u << 0)
/* The job raises a VM page fault at fault_addr, then completes normally. */
#define SIM_F_FAULT_AT (1u << 1)
/* The job page-faults, its fence signals (the CP retired it), but the ring stops completing
 * anything until the next GPU reset: the NEXT job on the ring is the one drm_sched times out. */
#define SIM_F_FAULT_AND_WEDGE (1u << 2)

struct sim_submit {
	__u32 ring;
	__u32 flags;
	__u64 duration_us;
	__u64 fault_addr;
	__u32 num_ibs;
	__u32 pad;
};

#define SIM_IOCTL_SUBMIT _IOW('S', 1, struct sim_submit)

/* What Mesa asks with AMDGPU_CTX_OP_QUERY_STATE2 after a failed submission: the flag bits are
 * the real AMDGPU_CTX_QUERY2_FLAGS_* values. RESET: a GPU reset happened since the file was
 * opened; VRAMLOST: it lost VRAM (module parameter vram_lost); GUILTY: drm_sched blamed this
 * file's job. */
#define SIM_QUERY_RESET (1u << 0)
#define SIM_QUERY_VRAMLOST (1u << 1)
#define SIM_QUERY_GUILTY (1u << 2)

struct sim_query {
	__u32 flags;
	__u32 pad;
};

#define SIM_IOCTL_QUERY_STATE _IOR('S', 2, struct sim_query)
#endif
