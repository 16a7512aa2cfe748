// SPDX-License-Identifier: GPL-2.0
/*
 * amdgpu_sim: a kernel module that drives the same hooks the real amdgpu driver fires, so
 * hangwatch can be tested end-to-end on machines without an AMD GPU.
 *
 * What is real: the gpu-sched (drm_sched) scheduler and its tracepoints and timeout worker,
 * dma_fence (init/signal tracepoints), DRM_ERROR printing, tracefs formats (copied from 6.1's
 * amdgpu_trace.h), and the names the agent hooks (amdgpu_job_timedout, amdgpu_cs_ioctl,
 * amdgpu_device_gpu_recover). What is simulated: the hardware (an hrtimer "executes" a job).
 *
 * User ABI: amdgpu_sim_uapi.h. Each open() of /dev/amdgpu_sim is one DRM file: a pasid, a VM id
 * and one scheduler entity per ring.
 */
#include <linux/module.h>
#include <linux/miscdevice.h>
#include <linux/fs.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/seq_file.h>
#include <linux/dma-fence.h>
#include <linux/hrtimer.h>
#include <linux/xarray.h>
#include <linux/sched.h>
#include <linux/kref.h>
#include <drm/drm_print.h>
#include <drm/gpu_scheduler.h>

#include "amdgpu_sim_uapi.h"
#include "kfd_sim.h"

#define CREATE_TRACE_POINTS
#include "amdgpu_sim_trace.h"

static unsigned int timeout_ms = 2000;
module_param(timeout_ms, uint, 0444);
MODULE_PARM_DESC(timeout_ms, "drm_sched job timeout per ring (ms)");

/*
 * Prefix of device messages: exactly what dev_err(adev->dev, ...) prints for the real driver
 * (driver name "amdgpu", PCI address, then "amdgpu: "), so kernel-log parsers see real lines.
 */
#define SIM_DEV "amdgpu 0000:00:00.0: amdgpu: "

#define AMDGPU_RESET_SRC_JOB 1
#define SOC15_IH_CLIENTID_UTCL2 0x1b
#define SOC15_IH_CLIENTID_VMC 0x12

struct amdgpu_task_info {
	char process_name[TASK_COMM_LEN];
	char task_name[TASK_COMM_LEN];
	pid_t pid;
	pid_t tgid;
};

struct amdgpu_ring {
	char name[16];
	u32 idx;
	u32 vm_hub;
	struct drm_gpu_scheduler sched;
	u64 fence_context;
	spinlock_t lock;
	u32 sync_seq; /* emitted */
	u32 last_seq; /* signaled */
	bool wedged;
	struct list_head active; /* sim_fence not yet signaled */
};

struct amdgpu_reset_context {
	int src;
	u32 flags;
};

struct sim_file {
	struct kref ref;
	u32 pasid;
	u32 vmid;
	u64 client_id;
	atomic_t guilty;
	bool have_task;
	struct amdgpu_task_info task;
	struct drm_sched_entity entity[SIM_NUM_RINGS];
};

/* Same shape as amdgpu's: the drm_sched job embedded as `base`, plus the owning pasid. */
struct amdgpu_job {
	struct drm_sched_job base;
	u32 pasid;
	u32 vmid;
	u32 flags;
	u32 num_ibs;
	u64 duration_us;
	u64 fault_addr;
	struct sim_file *file;
	struct amdgpu_task_info task;
};

/* Hardware fence: `base` first so dma_fence_free() frees the whole object. */
struct sim_fence {
	struct dma_fence base;
	struct amdgpu_ring *ring;
	struct list_head node;
	struct hrtimer timer;
	u32 flags;
	u32 pasid;
	u32 vmid;
	u64 fault_addr;
	struct amdgpu_task_info task;
};

static struct amdgpu_ring rings[SIM_NUM_RINGS];
static const char *const ring_names[SIM_NUM_RINGS] = { "gfx_0.0.0", "comp_1.0.0", "sdma0" };
static DEFINE_XARRAY_ALLOC1(pasids);
static atomic_t next_vmid = ATOMIC_INIT(0);
static atomic_t reset_count = ATOMIC_INIT(0);
static atomic64_t next_client_id = ATOMIC64_INIT(0);
static DEFINE_SPINLOCK(fence_lock);

static inline struct amdgpu_job *to_amdgpu_job(struct drm_sched_job *s)
{
	return container_of(s, struct amdgpu_job, base);
}

static inline struct amdgpu_ring *to_amdgpu_ring(struct drm_gpu_scheduler *s)
{
	return container_of(s, struct amdgpu_ring, sched);
}

static const char *sim_fence_driver_name(struct dma_fence *f)
{
	return "amdgpu";
}

static const char *sim_fence_timeline_name(struct dma_fence *f)
{
	return container_of(f, struct sim_fence, base)->ring->name;
}

static const struct dma_fence_ops sim_fence_ops = {
	.get_driver_name = sim_fence_driver_name,
	.get_timeline_name = sim_fence_timeline_name,
};

static void sim_file_release(struct kref *ref)
{
	kfree(container_of(ref, struct sim_file, ref));
}

/* Task info of the live file owning `pasid` (empty if it is gone, like the real driver). */
static struct amdgpu_task_info task_info_pasid(u32 pasid)
{
	struct amdgpu_task_info ti = {};
	struct sim_file *f;

	xa_lock(&pasids);
	f = xa_load(&pasids, pasid);
	if (f && f->have_task)
		ti = f->task;
	xa_unlock(&pasids);
	return ti;
}

/* The gmc_v11 interrupt handler's view of a VM fault: the IV tracepoint, then two dmesg lines. */
static void sim_raise_fault(struct sim_fence *sf)
{
	unsigned int src_data[4] = { lower_32_bits(sf->fault_addr >> 12),
				     lower_32_bits((sf->fault_addr >> 44) & 0xf), 0, 0 };
	struct amdgpu_task_info ti = task_info_pasid(sf->pasid);
	u64 addr = sf->fault_addr & ~0xfffULL;

	trace_amdgpu_iv(0, SOC15_IH_CLIENTID_UTCL2, 0, 40, sf->vmid, 0, ktime_get_ns(), 0,
			sf->pasid, src_data);
	pr_err(SIM_DEV "[gfxhub] page fault (src_id:0 ring:40 vmid:%u pasid:%u, for process %s pid %d thread %s pid %d)\n",
	       sf->vmid, sf->pasid, ti.process_name, ti.tgid, ti.task_name, ti.pid);
	pr_err(SIM_DEV "  in page starting at address 0x%016llx from client %d\n", addr, 10);
}

static void sim_fence_signal_locked(struct amdgpu_ring *ring, struct sim_fence *sf, int error)
{
	list_del_init(&sf->node);
	if (sf->base.seqno > ring->last_seq)
		ring->last_seq = sf->base.seqno;
	if (error)
		dma_fence_set_error(&sf->base, error);
	dma_fence_signal(&sf->base);
}

/* The "hardware" finished executing the job (or stopped, if the ring is wedged). */
static enum hrtimer_restart sim_fence_expire(struct hrtimer *t)
{
	struct sim_fence *sf = container_of(t, struct sim_fence, timer);
	struct amdgpu_ring *ring = sf->ring;
	unsigned long flags;
	bool put = false;

	if (sf->flags & (SIM_F_FAULT_AT | SIM_F_FAULT_AND_WEDGE))
		sim_raise_fault(sf);
	spin_lock_irqsave(&ring->lock, flags);
	if (!list_empty(&sf->node) && !(sf->flags & SIM_F_NEVER_COMPLETES)) {
		if (sf->flags & SIM_F_FAULT_AND_WEDGE) {
			sim_fence_signal_locked(ring, sf, 0);
			ring->wedged = true;
			put = true;
		} else if (!ring->wedged) {
			sim_fence_signal_locked(ring, sf, 0);
			put = true;
		}
	}
	spin_unlock_irqrestore(&ring->lock, flags);
	if (put)
		dma_fence_put(&sf->base);
	return HRTIMER_NORESTART;
}

/* amdgpu_job_dependency of 6.1: grabs a VMID on first run, tracing amdgpu_vm_grab_id. */
static struct dma_fence *amdgpu_job_dependency(struct drm_sched_job *s_job,
					       struct drm_sched_entity *entity)
{
	struct amdgpu_ring *ring = to_amdgpu_ring(s_job->sched);
	struct amdgpu_job *job = to_amdgpu_job(s_job);

	trace_amdgpu_vm_grab_id(job->pasid, ring->name, ring->idx, job->vmid, ring->vm_hub,
				(u64)job->vmid << 32, 0);
	return NULL;
}

static struct dma_fence *amdgpu_job_run(struct drm_sched_job *s_job)
{
	struct amdgpu_ring *ring = to_amdgpu_ring(s_job->sched);
	struct amdgpu_job *job = to_amdgpu_job(s_job);
	struct dma_fence *finished = &s_job->s_fence->finished;
	struct sim_fence *sf;
	unsigned long flags;
	bool done_now;

	trace_amdgpu_sched_run_job(s_job->id, finished->ops->get_timeline_name(finished),
				   finished->context, finished->seqno, ring->name, job->num_ibs);
	if (finished->error < 0) {
		DRM_INFO("Skip scheduling IBs!\n"); /* 6.1's amdgpu_job_run for cancelled jobs */
		return NULL;
	}
	sf = kzalloc(sizeof(*sf), GFP_KERNEL);
	if (!sf)
		return ERR_PTR(-ENOMEM);
	sf->ring = ring;
	sf->flags = job->flags;
	sf->pasid = job->pasid;
	sf->vmid = job->vmid;
	sf->fault_addr = job->fault_addr;
	sf->task = job->task;
	INIT_LIST_HEAD(&sf->node);
	hrtimer_init(&sf->timer, CLOCK_MONOTONIC, HRTIMER_MODE_REL);
	sf->timer.function = sim_fence_expire;

	spin_lock_irqsave(&ring->lock, flags);
	dma_fence_init(&sf->base, &sim_fence_ops, &fence_lock, ring->fence_context, ++ring->sync_seq);
	dma_fence_get(&sf->base); /* the "hardware" reference, dropped on signal or reset */
	list_add_tail(&sf->node, &ring->active);
	done_now = job->duration_us == 0 && !job->flags && !ring->wedged;
	if (done_now) {
		sim_fence_signal_locked(ring, sf, 0);
	}
	spin_unlock_irqrestore(&ring->lock, flags);
	if (done_now)
		dma_fence_put(&sf->base);
	else
		hrtimer_start(&sf->timer, ns_to_ktime(max_t(u64, job->duration_us, 1) * 1000),
			      HRTIMER_MODE_REL);
	return &sf->base;
}

static void amdgpu_job_free_cb(struct drm_sched_job *s_job)
{
	struct amdgpu_job *job = to_amdgpu_job(s_job);

	drm_sched_job_cleanup(s_job);
	kref_put(&job->file->ref, sim_file_release);
	kfree(job);
}

/* amdgpu_fence_driver_force_completion: signal everything the ring still holds. */
static void sim_ring_force_completion(struct amdgpu_ring *ring)
{
	struct sim_fence *sf, *tmp;
	unsigned long flags;
	LIST_HEAD(gone);

	spin_lock_irqsave(&ring->lock, flags);
	list_splice_init(&ring->active, &gone);
	ring->wedged = false;
	spin_unlock_irqrestore(&ring->lock, flags);
	list_for_each_entry_safe(sf, tmp, &gone, node) {
		hrtimer_cancel(&sf->timer);
		spin_lock_irqsave(&ring->lock, flags);
		list_add(&sf->node, &ring->active);
		sim_fence_signal_locked(ring, sf, -ECANCELED);
		spin_unlock_irqrestore(&ring->lock, flags);
		dma_fence_put(&sf->base);
	}
	spin_lock_irqsave(&ring->lock, flags);
	ring->last_seq = ring->sync_seq;
	spin_unlock_irqrestore(&ring->lock, flags);
}

/*
 * Same name as the real driver's so the agent's kprobe finds it. Stops every scheduler, blames
 * the job (drm_sched karma marks its entity guilty), "resets" the rings and restarts.
 */
noinline int amdgpu_device_gpu_recover(void *adev, struct amdgpu_job *job,
				       struct amdgpu_reset_context *reset_context)
{
	int i, n;

	pr_info(SIM_DEV "GPU reset begin!. Source:  %d\n", reset_context->src);
	for (i = 0; i < SIM_NUM_RINGS; i++)
		drm_sched_stop(&rings[i].sched, job ? &job->base : NULL);
	/* karma > hang_limit (0): drm_sched marks the entity guilty and cancels its jobs. */
	if (job)
		drm_sched_increase_karma(&job->base);
	for (i = 0; i < SIM_NUM_RINGS; i++)
		sim_ring_force_completion(&rings[i]);
	/* Like 6.1: innocent pending jobs run again, the guilty context's are skipped. */
	for (i = 0; i < SIM_NUM_RINGS; i++)
		drm_sched_resubmit_jobs(&rings[i].sched);
	for (i = 0; i < SIM_NUM_RINGS; i++)
		drm_sched_start(&rings[i].sched, true);
	n = atomic_inc_return(&reset_count);
	pr_info(SIM_DEV "GPU reset(%d) succeeded!\n", n);
	return 0;
}
EXPORT_SYMBOL_GPL(amdgpu_device_gpu_recover);

static enum drm_gpu_sched_stat amdgpu_job_timedout(struct drm_sched_job *s_job)
{
	struct amdgpu_ring *ring = to_amdgpu_ring(s_job->sched);
	struct amdgpu_job *job = to_amdgpu_job(s_job);
	struct amdgpu_reset_context reset_context = { .src = AMDGPU_RESET_SRC_JOB };
	struct amdgpu_task_info ti;
	u32 signaled, emitted;
	unsigned long flags;

	spin_lock_irqsave(&ring->lock, flags);
	signaled = ring->last_seq;
	emitted = ring->sync_seq;
	spin_unlock_irqrestore(&ring->lock, flags);
	DRM_ERROR("ring %s timeout, signaled seq=%u, emitted seq=%u\n", s_job->sched->name,
		  signaled, emitted);
	ti = task_info_pasid(job->pasid);
	DRM_ERROR("Process information: process %s pid %d thread %s pid %d\n", ti.process_name,
		  ti.tgid, ti.task_name, ti.pid);
	amdgpu_device_gpu_recover(NULL, job, &reset_context);
	return DRM_GPU_SCHED_STAT_NOMINAL;
}

static const struct drm_sched_backend_ops amdgpu_sched_ops = {
	.dependency = amdgpu_job_dependency,
	.run_job = amdgpu_job_run,
	.timedout_job = amdgpu_job_timedout,
	.free_job = amdgpu_job_free_cb,
};

static void sim_set_task_info(struct sim_file *f)
{
	unsigned long flags;

	if (f->have_task && f->task.pid == current->pid)
		return;
	xa_lock_irqsave(&pasids, flags);
	f->task.pid = current->pid;
	f->task.tgid = current->group_leader->pid;
	get_task_comm(f->task.task_name, current);
	get_task_comm(f->task.process_name, current->group_leader);
	f->have_task = true;
	xa_unlock_irqrestore(&pasids, flags);
}

/* Same name as the real ioctl, so the agent's kretprobe sees -ECANCELED (-125) on guilty files. */
noinline int amdgpu_cs_ioctl(void *dev, void *data, struct sim_file *f)
{
	struct sim_submit *args = data;
	struct amdgpu_ring *ring;
	struct amdgpu_job *job;
	struct dma_fence *finished;
	int r;

	if (args->ring >= SIM_NUM_RINGS)
		return -EINVAL;
	if (atomic_read(&f->guilty)) {
		r = -ECANCELED;
		if (printk_ratelimit())
			DRM_ERROR("Failed to initialize parser %d!\n", r);
		return r;
	}
	ring = &rings[args->ring];
	sim_set_task_info(f);
	job = kzalloc(sizeof(*job), GFP_KERNEL);
	if (!job)
		return -ENOMEM;
	job->pasid = f->pasid;
	job->vmid = f->vmid;
	job->flags = args->flags & (SIM_F_NEVER_COMPLETES | SIM_F_FAULT_AT | SIM_F_FAULT_AND_WEDGE);
	job->num_ibs = args->num_ibs ? args->num_ibs : 1;
	job->duration_us = args->duration_us;
	job->fault_addr = args->fault_addr;
	job->task = f->task;
	r = drm_sched_job_init(&job->base, &f->entity[args->ring], f);
	if (r) {
		kfree(job);
		return r;
	}
	kref_get(&f->ref);
	job->file = f;
	drm_sched_job_arm(&job->base);
	finished = &job->base.s_fence->finished;
	trace_amdgpu_cs_ioctl(job->base.id, finished->ops->get_timeline_name(finished),
			      finished->context, finished->seqno, ring->name, job->num_ibs);
	drm_sched_entity_push_job(&job->base);
	return 0;
}

static long sim_ioctl(struct file *filp, unsigned int cmd, unsigned long arg)
{
	struct sim_submit args;

	if (cmd != SIM_IOCTL_SUBMIT)
		return -ENOTTY;
	if (copy_from_user(&args, (void __user *)arg, sizeof(args)))
		return -EFAULT;
	return amdgpu_cs_ioctl(NULL, &args, filp->private_data);
}

static int sim_open(struct inode *inode, struct file *filp)
{
	struct sim_file *f;
	u32 pasid;
	int i, r;

	f = kzalloc(sizeof(*f), GFP_KERNEL);
	if (!f)
		return -ENOMEM;
	kref_init(&f->ref);
	r = xa_alloc(&pasids, &pasid, f, XA_LIMIT(32768, 65535), GFP_KERNEL);
	if (r) {
		kfree(f);
		return r;
	}
	f->pasid = pasid;
	f->vmid = 1 + (atomic_inc_return(&next_vmid) % 15);
	f->client_id = atomic64_inc_return(&next_client_id);
	trace_amdgpu_pasid_allocated(pasid);
	for (i = 0; i < SIM_NUM_RINGS; i++) {
		struct drm_gpu_scheduler *sched = &rings[i].sched;

		r = drm_sched_entity_init(&f->entity[i], DRM_SCHED_PRIORITY_NORMAL, &sched, 1,
					  &f->guilty);
		if (r)
			goto fail;
	}
	sim_set_task_info(f);
	filp->private_data = f;
	return 0;
fail:
	while (--i >= 0)
		drm_sched_entity_destroy(&f->entity[i]);
	xa_erase(&pasids, pasid);
	trace_amdgpu_pasid_freed(pasid);
	kfree(f);
	return r;
}

static int sim_release(struct inode *inode, struct file *filp)
{
	struct sim_file *f = filp->private_data;
	int i;

	for (i = 0; i < SIM_NUM_RINGS; i++)
		drm_sched_entity_destroy(&f->entity[i]);
	xa_erase(&pasids, f->pasid);
	trace_amdgpu_pasid_freed(f->pasid);
	kref_put(&f->ref, sim_file_release);
	return 0;
}

/* The lines amdgpu_show_fdinfo prints in 6.1 (pasid, pdev) plus the DRM usage-stats keys. */
static void sim_show_fdinfo(struct seq_file *m, struct file *filp)
{
	struct sim_file *f = filp->private_data;

	seq_printf(m, "pdev:\t0000:00:00.0\npasid:\t%u\n", f->pasid);
	seq_puts(m, "drm-driver:\tamdgpu\n");
	seq_puts(m, "drm-pdev:\t0000:00:00.0\n");
	seq_printf(m, "drm-client-id:\t%llu\n", f->client_id);
}

static const struct file_operations sim_fops = {
	.owner = THIS_MODULE,
	.open = sim_open,
	.release = sim_release,
	.unlocked_ioctl = sim_ioctl,
	.show_fdinfo = sim_show_fdinfo,
};

static struct miscdevice sim_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "amdgpu_sim",
	.fops = &sim_fops,
	.mode = 0666,
};

static int __init amdgpu_sim_init(void)
{
	int i, r;

	for (i = 0; i < SIM_NUM_RINGS; i++) {
		struct amdgpu_ring *ring = &rings[i];
		struct drm_sched_init_args args = {
			.ops = &amdgpu_sched_ops,
			.credit_limit = 64,
			.hang_limit = 0,
			.timeout = msecs_to_jiffies(timeout_ms),
			.name = ring->name,
		};

		strscpy(ring->name, ring_names[i], sizeof(ring->name));
		ring->idx = i;
		ring->vm_hub = i == SIM_RING_SDMA ? 1 : 0;
		spin_lock_init(&ring->lock);
		INIT_LIST_HEAD(&ring->active);
		ring->fence_context = dma_fence_context_alloc(1);
		r = drm_sched_init(&ring->sched, &args);
		if (r)
			goto fail;
	}
	r = misc_register(&sim_misc);
	if (r)
		goto fail;
	if (kfd_sim_init()) /* the KFD-like path (kfd_sim.c) is optional */
		pr_warn("amdgpu_sim: no /dev/kfd\n");
	pr_info("amdgpu_sim: %d rings, timeout %u ms\n", SIM_NUM_RINGS, timeout_ms);
	return 0;
fail:
	while (--i >= 0)
		drm_sched_fini(&rings[i].sched);
	return r;
}

static void __exit amdgpu_sim_exit(void)
{
	int i;

	kfd_sim_exit();
	misc_deregister(&sim_misc);
	for (i = 0; i < SIM_NUM_RINGS; i++) {
		drm_sched_fini(&rings[i].sched);
		sim_ring_force_completion(&rings[i]);
	}
}

module_init(amdgpu_sim_init);
module_exit(amdgpu_sim_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("amdgpu driver simulator for hangwatch tests");
