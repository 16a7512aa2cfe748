/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Tracepoints of the amdgpu simulator. TRACE_SYSTEM and every TP_STRUCT__entry / TP_printk are
 * copied from the real drivers/gpu/drm/amd/amdgpu/amdgpu_trace.h of each era (5.10/6.1/6.12
 * layout; the 6.17+ u64-fence layout of amdgpu_cs_ioctl and amdgpu_sched_run_job, seen in 7.3)
 * so the tracefs `format` files are byte-identical to the real driver's (asserted per kernel
 * series by tests/tests/vm.rs). Only the TP_PROTO arguments differ, because the simulator has
 * its own (smaller) structs.
 */
#if !defined(_AMDGPU_SIM_TRACE_H_) || defined(TRACE_HEADER_MULTI_READ)
#define _AMDGPU_SIM_TRACE_H_

#include <linux/stringify.h>
#include <linux/types.h>
#include <linux/tracepoint.h>
#include "amdgpu_sim_compat.h"

/* __assign_str(dst) has one argument from 6.10: the source is the one __string() named. */
#if SIM_ASSIGN_STR_ONE_ARG
#define SIM_ASSIGN_STR(dst, src) __assign_str(dst)
#else
#define SIM_ASSIGN_STR(dst, src) __assign_str(dst, src)
#endif

#undef TRACE_SYSTEM
#define TRACE_SYSTEM amdgpu
#define TRACE_INCLUDE_FILE amdgpu_sim_trace

TRACE_EVENT(amdgpu_iv,
	    TP_PROTO(unsigned ih, unsigned client_id, unsigned src_id, unsigned ring_id,
		     unsigned vmid, unsigned vmid_src, uint64_t timestamp, unsigned timestamp_src,
		     unsigned pasid, const unsigned *src_data),
	    TP_ARGS(ih, client_id, src_id, ring_id, vmid, vmid_src, timestamp, timestamp_src,
		    pasid, src_data),
	    TP_STRUCT__entry(
			     __field(unsigned, ih)
			     __field(unsigned, client_id)
			     __field(unsigned, src_id)
			     __field(unsigned, ring_id)
			     __field(unsigned, vmid)
			     __field(unsigned, vmid_src)
			     __field(uint64_t, timestamp)
			     __field(unsigned, timestamp_src)
			     __field(unsigned, pasid)
			     __array(unsigned, src_data, 4)
			    ),
	    TP_fast_assign(
			   __entry->ih = ih;
			   __entry->client_id = client_id;
			   __entry->src_id = src_id;
			   __entry->ring_id = ring_id;
			   __entry->vmid = vmid;
			   __entry->vmid_src = vmid_src;
			   __entry->timestamp = timestamp;
			   __entry->timestamp_src = timestamp_src;
			   __entry->pasid = pasid;
			   __entry->src_data[0] = src_data[0];
			   __entry->src_data[1] = src_data[1];
			   __entry->src_data[2] = src_data[2];
			   __entry->src_data[3] = src_data[3];
			   ),
	    TP_printk("ih:%u client_id:%u src_id:%u ring:%u vmid:%u "
		      "timestamp: %llu pasid:%u src_data: %08x %08x %08x %08x",
		      __entry->ih, __entry->client_id, __entry->src_id,
		      __entry->ring_id, __entry->vmid,
		      __entry->timestamp, __entry->pasid,
		      __entry->src_data[0], __entry->src_data[1],
		      __entry->src_data[2], __entry->src_data[3])
);

#if SIM_TRACE_U64_FENCE
TRACE_EVENT(amdgpu_cs_ioctl,
	    TP_PROTO(uint64_t sched_job_id, const char *timeline, u64 context, u64 seqno,
		     const char *ring_name, u32 num_ibs),
	    TP_ARGS(sched_job_id, timeline, context, seqno, ring_name, num_ibs),
	    TP_STRUCT__entry(
			     __string(timeline, timeline)
			     __field(u64, context)
			     __field(u64, seqno)
			     __field(struct dma_fence *, fence)
			     __string(ring, ring_name)
			     __field(u32, num_ibs)
			     ),

	    TP_fast_assign(
			   SIM_ASSIGN_STR(timeline, timeline);
			   __entry->context = context;
			   __entry->seqno = seqno;
			   SIM_ASSIGN_STR(ring, ring_name);
			   __entry->num_ibs = num_ibs;
			   ),
	    TP_printk("timeline=%s, fence=%llu:%llu, ring_name=%s, num_ibs=%u",
		      __get_str(timeline), __entry->context,
		      __entry->seqno, __get_str(ring), __entry->num_ibs)
);

TRACE_EVENT(amdgpu_sched_run_job,
	    TP_PROTO(uint64_t sched_job_id, const char *timeline, u64 context, u64 seqno,
		     const char *ring_name, u32 num_ibs),
	    TP_ARGS(sched_job_id, timeline, context, seqno, ring_name, num_ibs),
	    TP_STRUCT__entry(
			     __string(timeline, timeline)
			     __field(u64, context)
			     __field(u64, seqno)
			     __string(ring, ring_name)
			     __field(u32, num_ibs)
			     ),

	    TP_fast_assign(
			   SIM_ASSIGN_STR(timeline, timeline);
			   __entry->context = context;
			   __entry->seqno = seqno;
			   SIM_ASSIGN_STR(ring, ring_name);
			   __entry->num_ibs = num_ibs;
			   ),
	    TP_printk("timeline=%s, fence=%llu:%llu, ring_name=%s, num_ibs=%u",
		      __get_str(timeline), __entry->context,
		      __entry->seqno, __get_str(ring), __entry->num_ibs)
);
#else
TRACE_EVENT(amdgpu_cs_ioctl,
	    TP_PROTO(uint64_t sched_job_id, const char *timeline, u64 context, u64 seqno,
		     const char *ring_name, u32 num_ibs),
	    TP_ARGS(sched_job_id, timeline, context, seqno, ring_name, num_ibs),
	    TP_STRUCT__entry(
			     __field(uint64_t, sched_job_id)
			     __string(timeline, timeline)
			     __field(unsigned int, context)
			     __field(unsigned int, seqno)
			     __field(struct dma_fence *, fence)
			     __string(ring, ring_name)
			     __field(u32, num_ibs)
			     ),

	    TP_fast_assign(
			   __entry->sched_job_id = sched_job_id;
			   SIM_ASSIGN_STR(timeline, timeline);
			   __entry->context = context;
			   __entry->seqno = seqno;
			   SIM_ASSIGN_STR(ring, ring_name);
			   __entry->num_ibs = num_ibs;
			   ),
	    TP_printk("sched_job=%llu, timeline=%s, context=%u, seqno=%u, ring_name=%s, num_ibs=%u",
		      __entry->sched_job_id, __get_str(timeline), __entry->context,
		      __entry->seqno, __get_str(ring), __entry->num_ibs)
);

TRACE_EVENT(amdgpu_sched_run_job,
	    TP_PROTO(uint64_t sched_job_id, const char *timeline, u64 context, u64 seqno,
		     const char *ring_name, u32 num_ibs),
	    TP_ARGS(sched_job_id, timeline, context, seqno, ring_name, num_ibs),
	    TP_STRUCT__entry(
			     __field(uint64_t, sched_job_id)
			     __string(timeline, timeline)
			     __field(unsigned int, context)
			     __field(unsigned int, seqno)
			     __string(ring, ring_name)
			     __field(u32, num_ibs)
			     ),

	    TP_fast_assign(
			   __entry->sched_job_id = sched_job_id;
			   SIM_ASSIGN_STR(timeline, timeline);
			   __entry->context = context;
			   __entry->seqno = seqno;
			   SIM_ASSIGN_STR(ring, ring_name);
			   __entry->num_ibs = num_ibs;
			   ),
	    TP_printk("sched_job=%llu, timeline=%s, context=%u, seqno=%u, ring_name=%s, num_ibs=%u",
		      __entry->sched_job_id, __get_str(timeline), __entry->context,
		      __entry->seqno, __get_str(ring), __entry->num_ibs)
);

#endif

TRACE_EVENT(amdgpu_vm_grab_id,
	    TP_PROTO(u32 pasid, const char *ring_name, u32 ring_idx, u32 vmid, u32 vm_hub,
		     u64 pd_addr, u32 needs_flush),
	    TP_ARGS(pasid, ring_name, ring_idx, vmid, vm_hub, pd_addr, needs_flush),
	    TP_STRUCT__entry(
			     __field(u32, pasid)
			     __string(ring, ring_name)
			     __field(u32, ring)
			     __field(u32, vmid)
			     __field(u32, vm_hub)
			     __field(u64, pd_addr)
			     __field(u32, needs_flush)
			     ),

	    TP_fast_assign(
			   __entry->pasid = pasid;
			   SIM_ASSIGN_STR(ring, ring_name);
			   __entry->ring = ring_idx;
			   __entry->vmid = vmid;
			   __entry->vm_hub = vm_hub;
			   __entry->pd_addr = pd_addr;
			   __entry->needs_flush = needs_flush;
			   ),
	    TP_printk("pasid=%d, ring=%s, id=%u, hub=%u, pd_addr=%010Lx needs_flush=%u",
		      __entry->pasid, __get_str(ring), __entry->vmid,
		      __entry->vm_hub, __entry->pd_addr, __entry->needs_flush)
);

DECLARE_EVENT_CLASS(amdgpu_pasid,
	    TP_PROTO(unsigned pasid),
	    TP_ARGS(pasid),
	    TP_STRUCT__entry(
			     __field(unsigned, pasid)
			     ),
	    TP_fast_assign(
			   __entry->pasid = pasid;
			   ),
	    TP_printk("pasid=%u", __entry->pasid)
);

DEFINE_EVENT(amdgpu_pasid, amdgpu_pasid_allocated,
	    TP_PROTO(unsigned pasid),
	    TP_ARGS(pasid)
);

DEFINE_EVENT(amdgpu_pasid, amdgpu_pasid_freed,
	    TP_PROTO(unsigned pasid),
	    TP_ARGS(pasid)
);

#endif /* _AMDGPU_SIM_TRACE_H_ */

#undef TRACE_INCLUDE_PATH
#define TRACE_INCLUDE_PATH .
#include <trace/define_trace.h>
