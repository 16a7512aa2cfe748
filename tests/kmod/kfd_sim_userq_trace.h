/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The 7.x amdgpu user-queue tracepoints, for the simulator's user queues (kfd_sim.c, 7.x only).
 * TRACE_SYSTEM and every TP_STRUCT__entry / TP_printk reproduce Debian 7.3.4's amdgpu.ko so the
 * tracefs `format` files are byte-identical (compared with /work/shared/formats/
 * debian-7.3.4-deb13-amd64.txt and phase A's real driver); only TP_PROTO differs, because the
 * simulator's queues are its own structs.
 */
#if !defined(_KFD_SIM_USERQ_TRACE_H_) || defined(TRACE_HEADER_MULTI_READ)
#define _KFD_SIM_USERQ_TRACE_H_

#include <linux/tracepoint.h>
#include <linux/types.h>

#undef TRACE_SYSTEM
#define TRACE_SYSTEM amdgpu
#define TRACE_INCLUDE_FILE kfd_sim_userq_trace

DECLARE_EVENT_CLASS(amdgpu_userq_queue,
	    TP_PROTO(void *queue, u64 doorbell_index, int queue_type, int state, u32 xcp_id),
	    TP_ARGS(queue, doorbell_index, queue_type, state, xcp_id),
	    TP_STRUCT__entry(
			     __field(void *, queue)
			     __field(u64, doorbell_index)
			     __field(int, queue_type)
			     __field(int, state)
			     __field(u32, xcp_id)
			     ),
	    TP_fast_assign(
			   __entry->queue = queue;
			   __entry->doorbell_index = doorbell_index;
			   __entry->queue_type = queue_type;
			   __entry->state = state;
			   __entry->xcp_id = xcp_id;
			   ),
	    TP_printk("queue=%p, doorbell=%llu, type=%d, state=%d, xcp_id=%u",
		      __entry->queue, __entry->doorbell_index, __entry->queue_type,
		      __entry->state, __entry->xcp_id)
);

DEFINE_EVENT(amdgpu_userq_queue, amdgpu_userq_create_start,
	    TP_PROTO(void *queue, u64 doorbell_index, int queue_type, int state, u32 xcp_id),
	    TP_ARGS(queue, doorbell_index, queue_type, state, xcp_id)
);

DEFINE_EVENT(amdgpu_userq_queue, amdgpu_userq_destroy_start,
	    TP_PROTO(void *queue, u64 doorbell_index, int queue_type, int state, u32 xcp_id),
	    TP_ARGS(queue, doorbell_index, queue_type, state, xcp_id)
);

DECLARE_EVENT_CLASS(amdgpu_userq_queue_result,
	    TP_PROTO(void *queue, u64 doorbell_index, int queue_type, int state, u32 xcp_id,
		     int result),
	    TP_ARGS(queue, doorbell_index, queue_type, state, xcp_id, result),
	    TP_STRUCT__entry(
			     __field(void *, queue)
			     __field(u64, doorbell_index)
			     __field(int, queue_type)
			     __field(int, state)
			     __field(u32, xcp_id)
			     __field(int, result)
			     ),
	    TP_fast_assign(
			   __entry->queue = queue;
			   __entry->doorbell_index = doorbell_index;
			   __entry->queue_type = queue_type;
			   __entry->state = state;
			   __entry->xcp_id = xcp_id;
			   __entry->result = result;
			   ),
	    TP_printk("queue=%p, doorbell=%llu, type=%d, state=%d, xcp_id=%u, result=%d",
		      __entry->queue, __entry->doorbell_index, __entry->queue_type,
		      __entry->state, __entry->xcp_id, __entry->result)
);

DEFINE_EVENT(amdgpu_userq_queue_result, amdgpu_userq_create_end,
	    TP_PROTO(void *queue, u64 doorbell_index, int queue_type, int state, u32 xcp_id,
		     int result),
	    TP_ARGS(queue, doorbell_index, queue_type, state, xcp_id, result)
);

DEFINE_EVENT(amdgpu_userq_queue_result, amdgpu_userq_destroy_end,
	    TP_PROTO(void *queue, u64 doorbell_index, int queue_type, int state, u32 xcp_id,
		     int result),
	    TP_ARGS(queue, doorbell_index, queue_type, state, xcp_id, result)
);

TRACE_EVENT(amdgpu_userq_emit_fence,
	    TP_PROTO(u64 fence_context, u64 fence_seqno, const char *dev, u64 doorbell_index,
		     u64 client_id, u32 queue_type),
	    TP_ARGS(fence_context, fence_seqno, dev, doorbell_index, client_id, queue_type),
	    TP_STRUCT__entry(
			     __field(u64, fence_context)
			     __field(u64, fence_seqno)
			     __string(dev, dev)
			     __field(u64, doorbell_index)
			     __field(u64, client_id)
			     __field(u32, queue_type)
			     ),
	    TP_fast_assign(
			   __entry->fence_context = fence_context;
			   __entry->fence_seqno = fence_seqno;
			   __assign_str(dev);
			   __entry->doorbell_index = doorbell_index;
			   __entry->client_id = client_id;
			   __entry->queue_type = queue_type;
			   ),
	    TP_printk("dev=%s, client_id=%llu, type=%u, doorbell=%llu, fence=%llu:%llu",
		      __get_str(dev), __entry->client_id, __entry->queue_type,
		      __entry->doorbell_index, __entry->fence_context, __entry->fence_seqno)
);

TRACE_EVENT(amdgpu_userq_state_start,
	    TP_PROTO(u64 doorbell_index, u64 client_id, u32 queue_type, u32 from),
	    TP_ARGS(doorbell_index, client_id, queue_type, from),
	    TP_STRUCT__entry(
			     __field(u64, doorbell_index)
			     __field(u64, client_id)
			     __field(u32, queue_type)
			     __field(u32, from)
			     ),
	    TP_fast_assign(
			   __entry->doorbell_index = doorbell_index;
			   __entry->client_id = client_id;
			   __entry->queue_type = queue_type;
			   __entry->from = from;
			   ),
	    TP_printk("client_id=%llu, type=%u, doorbell=%llu, from=%d",
		      __entry->client_id, __entry->queue_type, __entry->doorbell_index,
		      __entry->from)
);

TRACE_EVENT(amdgpu_userq_state_changed,
	    TP_PROTO(u64 doorbell_index, u64 client_id, u32 queue_type, u32 to),
	    TP_ARGS(doorbell_index, client_id, queue_type, to),
	    TP_STRUCT__entry(
			     __field(u64, doorbell_index)
			     __field(u64, client_id)
			     __field(u32, queue_type)
			     __field(u32, to)
			     ),
	    TP_fast_assign(
			   __entry->doorbell_index = doorbell_index;
			   __entry->client_id = client_id;
			   __entry->queue_type = queue_type;
			   __entry->to = to;
			   ),
	    TP_printk("client_id=%llu, type=%u, doorbell=%llu, to=%d",
		      __entry->client_id, __entry->queue_type, __entry->doorbell_index,
		      __entry->to)
);

TRACE_EVENT(amdgpu_userq_wait_deps,
	    TP_PROTO(u64 context, u64 dep_context, u64 dep_seqno, const char *dev,
		     u64 doorbell_index, u64 client_id, u32 queue_type),
	    TP_ARGS(context, dep_context, dep_seqno, dev, doorbell_index, client_id, queue_type),
	    TP_STRUCT__entry(
			     __field(u64, context)
			     __field(u64, dep_context)
			     __field(u64, dep_seqno)
			     __string(dev, dev)
			     __field(u64, doorbell_index)
			     __field(u64, client_id)
			     __field(u32, queue_type)
			     ),
	    TP_fast_assign(
			   __entry->context = context;
			   __entry->dep_context = dep_context;
			   __entry->dep_seqno = dep_seqno;
			   __assign_str(dev);
			   __entry->doorbell_index = doorbell_index;
			   __entry->client_id = client_id;
			   __entry->queue_type = queue_type;
			   ),
	    TP_printk("dev=%s, client_id=%llu, type=%u, doorbell=%llu, context=%llu depends on fence=%llu:%llu",
		      __get_str(dev), __entry->client_id, __entry->queue_type,
		      __entry->doorbell_index, __entry->context, __entry->dep_context,
		      __entry->dep_seqno)
);

#endif /* _KFD_SIM_USERQ_TRACE_H_ */

#undef TRACE_INCLUDE_PATH
#define TRACE_INCLUDE_PATH .
#include <trace/define_trace.h>
