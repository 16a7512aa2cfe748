// SPDX-License-Identifier: GPL-2.0
/*
 * kfd_sim_userq: 7.x amdgpu user queues for the simulator (reached through /dev/kfd's
 * simulator-only ioctls, kfd_sim_uapi.h). What is real: the amdgpu_userq_* tracepoints (formats
 * of Debian 7.3.4, kfd_sim_userq_trace.h) fired in the creating / submitting process, the
 * user-queue fences as dma_fences of driver "amdgpu_userq_fence", and the state machine's HUNG
 * state. What is simulated: the GPU (a delayed work signals a fence) and hang detection (a
 * fence still pending after userq_hang_ms marks the queue HUNG, resets it and force-completes
 * its fences with -ETIME). The kernel-log lines of 7.3's user-queue reset path are not
 * verified, so none are printed; hangwatch attributes from the tracepoints.
 */
#include "amdgpu_sim_compat.h" /* first: kfd_sim.h uses its era macros */
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/dma-fence.h>
#include <linux/workqueue.h>
#include <linux/version.h>

#include "kfd_sim.h"
#include "kfd_sim_uapi.h"

#if LINUX_VERSION_CODE >= KERNEL_VERSION(7, 0, 0)

#define CREATE_TRACE_POINTS
#include "kfd_sim_userq_trace.h"

static unsigned int userq_hang_ms = 2000;
module_param(userq_hang_ms, uint, 0444);
MODULE_PARM_DESC(userq_hang_ms, "user-queue hang detection delay (ms)");

enum {
	USERQ_STATE_UNMAPPED = 0,
	USERQ_STATE_MAPPED = 1,
	USERQ_STATE_HUNG = 3,
};

#define SIM_DEV_NAME "0000:00:00.0"
#define USERQ_DOORBELL_BASE 0x2000

struct sim_userq {
	struct list_head list;
	u32 id;
	u32 ip;
	u64 doorbell;
	u64 client_id;
	u64 fence_context;
	u64 seqno;
	int state;
	pid_t tgid;
	struct list_head pending; /* sim_uq_fence not yet signaled */
	struct delayed_work hang_work;
};

struct sim_uq_fence {
	struct dma_fence base;
	struct list_head node; /* on q->pending; empty once a reset took the fence */
	struct list_head reset_node;
	struct delayed_work work;
	struct sim_userq *q;
};

static LIST_HEAD(userqs);
static DEFINE_MUTEX(userq_mutex);
static DEFINE_SPINLOCK(userq_fence_lock);
static DEFINE_IDA(userq_ida);

static const char *uq_driver_name(struct dma_fence *f)
{
	return "amdgpu_userq_fence";
}

static const char *uq_timeline_name(struct dma_fence *f)
{
	return "amdgpu_userq_fence";
}

static const struct dma_fence_ops uq_fence_ops = {
	.get_driver_name = uq_driver_name,
	.get_timeline_name = uq_timeline_name,
};

static void uq_signal(struct sim_uq_fence *f, int error)
{
	if (error)
		dma_fence_set_error(&f->base, error);
	dma_fence_signal(&f->base);
	dma_fence_put(&f->base);
}

/* The "GPU" finished the job. */
static void uq_fence_work(struct work_struct *w)
{
	struct sim_uq_fence *f = container_of(to_delayed_work(w), struct sim_uq_fence, work);

	mutex_lock(&userq_mutex);
	if (list_empty(&f->node)) { /* a reset took it: it signals it */
		mutex_unlock(&userq_mutex);
		return;
	}
	list_del_init(&f->node);
	mutex_unlock(&userq_mutex);
	uq_signal(f, 0);
}

/* amdgpu_userq_hang_detect_work: a fence still pending after the timeout hangs the queue; the
 * queue is reset and its fences force-completed (amdgpu_userq_fence_driver_force_completion). */
static void uq_hang_work(struct work_struct *w)
{
	struct sim_userq *q = container_of(to_delayed_work(w), struct sim_userq, hang_work);
	struct sim_uq_fence *f, *tmp;
	LIST_HEAD(gone);

	mutex_lock(&userq_mutex);
	if (list_empty(&q->pending)) {
		mutex_unlock(&userq_mutex);
		return;
	}
	trace_amdgpu_userq_state_start(q->doorbell, q->client_id, q->ip, q->state);
	q->state = USERQ_STATE_HUNG;
	trace_amdgpu_userq_state_changed(q->doorbell, q->client_id, q->ip, q->state);
	list_for_each_entry_safe(f, tmp, &q->pending, node) {
		list_del_init(&f->node);
		list_add_tail(&f->reset_node, &gone);
	}
	trace_amdgpu_userq_state_start(q->doorbell, q->client_id, q->ip, q->state);
	q->state = USERQ_STATE_MAPPED;
	trace_amdgpu_userq_state_changed(q->doorbell, q->client_id, q->ip, q->state);
	mutex_unlock(&userq_mutex);
	list_for_each_entry_safe(f, tmp, &gone, reset_node) {
		list_del(&f->reset_node);
		cancel_delayed_work_sync(&f->work);
		uq_signal(f, -ETIME);
	}
}

static struct sim_userq *uq_find(u32 id, pid_t tgid)
{
	struct sim_userq *q;

	list_for_each_entry(q, &userqs, list)
		if (q->id == id && q->tgid == tgid)
			return q;
	return NULL;
}

int kfd_sim_userq_create(struct kfd_sim_userq *args, unsigned long long client_id)
{
	struct sim_userq *q;
	int id;

	if (args->ip_type > 2)
		return -EINVAL;
	q = kzalloc(sizeof(*q), GFP_KERNEL);
	id = ida_alloc_range(&userq_ida, 0, 1023, GFP_KERNEL);
	if (!q || id < 0) {
		kfree(q);
		if (id >= 0)
			ida_free(&userq_ida, id);
		return -ENOMEM;
	}
	q->id = id;
	q->ip = args->ip_type;
	q->doorbell = USERQ_DOORBELL_BASE + id * 2;
	q->client_id = client_id;
	q->fence_context = dma_fence_context_alloc(1);
	q->tgid = current->tgid;
	q->state = USERQ_STATE_UNMAPPED;
	INIT_LIST_HEAD(&q->pending);
	INIT_DELAYED_WORK(&q->hang_work, uq_hang_work);
	trace_amdgpu_userq_create_start(q, q->doorbell, q->ip, q->state, 0);
	q->state = USERQ_STATE_MAPPED;
	mutex_lock(&userq_mutex);
	list_add_tail(&q->list, &userqs);
	mutex_unlock(&userq_mutex);
	trace_amdgpu_userq_create_end(q, q->doorbell, q->ip, q->state, 0, 0);
	args->queue_id = id;
	args->doorbell = q->doorbell;
	return 0;
}

/* amdgpu_userq_destroy: a pending hang is handled (reset) first, then the queue waits for its
 * last fences. */
static void uq_destroy(struct sim_userq *q)
{
	struct sim_uq_fence *f;

	trace_amdgpu_userq_destroy_start(q, q->doorbell, q->ip, q->state, 0);
	if (cancel_delayed_work_sync(&q->hang_work))
		uq_hang_work(&q->hang_work.work);
	for (;;) {
		mutex_lock(&userq_mutex);
		f = list_first_entry_or_null(&q->pending, struct sim_uq_fence, node);
		if (f)
			list_del_init(&f->node);
		mutex_unlock(&userq_mutex);
		if (!f)
			break;
		cancel_delayed_work_sync(&f->work);
		uq_signal(f, 0);
	}
	q->state = USERQ_STATE_UNMAPPED;
	trace_amdgpu_userq_destroy_end(q, q->doorbell, q->ip, q->state, 0, 0);
	ida_free(&userq_ida, q->id);
	kfree(q);
}

int kfd_sim_userq_destroy(struct kfd_sim_userq *args)
{
	struct sim_userq *q;

	mutex_lock(&userq_mutex);
	q = uq_find(args->queue_id, current->tgid);
	if (q)
		list_del(&q->list);
	mutex_unlock(&userq_mutex);
	if (!q)
		return -EINVAL;
	uq_destroy(q);
	return 0;
}

int kfd_sim_userq_signal(struct kfd_sim_userq_signal *args)
{
	struct sim_uq_fence *f;
	struct sim_userq *q;

	f = kzalloc(sizeof(*f), GFP_KERNEL);
	if (!f)
		return -ENOMEM;
	mutex_lock(&userq_mutex);
	q = uq_find(args->queue_id, current->tgid);
	if (!q) {
		mutex_unlock(&userq_mutex);
		kfree(f);
		return -EINVAL;
	}
	f->q = q;
	dma_fence_init(&f->base, &uq_fence_ops, &userq_fence_lock, q->fence_context, ++q->seqno);
	/* amdgpu_userq_signal_ioctl, in the submitter: the job's fence. */
	trace_amdgpu_userq_emit_fence(q->fence_context, q->seqno, SIM_DEV_NAME, q->doorbell,
				      q->client_id, q->ip);
	list_add_tail(&f->node, &q->pending);
	INIT_DELAYED_WORK(&f->work, uq_fence_work);
	if (args->flags & KFD_SIM_F_HANG)
		queue_delayed_work(kfd_sim_wq, &q->hang_work, msecs_to_jiffies(userq_hang_ms));
	else
		queue_delayed_work(kfd_sim_wq, &f->work,
				   usecs_to_jiffies(max_t(u64, args->duration_us, 1)));
	mutex_unlock(&userq_mutex);
	return 0;
}

/* The process is gone: its queues are destroyed (hung ones reset first). */
void kfd_sim_userq_release(int tgid)
{
	struct sim_userq *q, *tmp;
	LIST_HEAD(mine);

	mutex_lock(&userq_mutex);
	list_for_each_entry_safe(q, tmp, &userqs, list)
		if (q->tgid == tgid)
			list_move_tail(&q->list, &mine);
	mutex_unlock(&userq_mutex);
	list_for_each_entry_safe(q, tmp, &mine, list) {
		list_del(&q->list);
		uq_destroy(q);
	}
}

#else /* before 7.0: no user queues */

int kfd_sim_userq_create(struct kfd_sim_userq *args, unsigned long long client_id)
{
	return -ENOTTY;
}

int kfd_sim_userq_destroy(struct kfd_sim_userq *args)
{
	return -ENOTTY;
}

int kfd_sim_userq_signal(struct kfd_sim_userq_signal *args)
{
	return -ENOTTY;
}

void kfd_sim_userq_release(int tgid)
{
}

#endif
