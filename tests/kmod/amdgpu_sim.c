// SPDX-License-Identifier: GPL-2.0
/*
 * amdgpu_sim: a kernel module that drives the same hooks the real amdgpu driver fires, so
 * hangwatch can be tested end-to-end on machines without an AMD GPU.
 *
 * What is real: the gpu-sched (drm_sched) scheduler and its tracepoints and timeout worker,
 * dma_fence (init/signal tracepoints), DRM_ERROR / dev_err printing, tracefs formats (copied
 * from the real amdgpu_trace.h of each era), and the names the agent hooks
 * (amdgpu_job_timedout, amdgpu_cs_ioctl, amdgpu_device_gpu_recover). What is simulated: the
 * hardware (an hrtimer "executes" a job). Per-kernel differences: amdgpu_sim_compat.h.
 *
 * Devices: module parameter `devices` (1..SIM_MAX_DEVICES). Device N is a platform device named
 * like a PCI function ("0000:00:00.0", "0000:01:00.0", ...) bound to a platform driver named
 * "amdgpu", so dev_err() prints "amdgpu 0000:01:00.0: ..." like the real driver, drm_sched's
 * `dev` is that device (the 7.x scheduler tracepoints print it), and the device appears under
 * /sys/bus/platform/drivers/amdgpu/. Each device has its own rings (same names on every
 * device, as on a real multi-GPU host), schedulers, reset counter and character device
 * (/dev/amdgpu_sim for device 0, /dev/amdgpu_simN for device N).
 *
 * User ABI: amdgpu_sim_uapi.h. Each open() is one DRM file: a pasid, a VM id and one scheduler
 * entity per ring of that device.
 */
#include "amdgpu_sim_compat.h" /* first: it may define dev_fmt */
#include <linux/module.h>
#include <linux/miscdevice.h>
#include <linux/platform_device.h>
#include <linux/mod_devicetable.h>
#include <linux/fs.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/seq_file.h>
#include <linux/dma-fence.h>
#include <linux/hrtimer.h>
#include <linux/xarray.h>
#include <linux/sched.h>
#include <linux/kref.h>
#include <linux/mutex.h>
#include <linux/devcoredump.h>
#include <linux/vmalloc.h>
#include <linux/workqueue.h>
#include <generated/utsrelease.h>
#include <drm/drm_print.h>
#include <drm/gpu_scheduler.h>
#if SIM_HAVE_WEDGED_EVENT
#include <drm/drm_device.h>
#include <drm/drm_drv.h>
#include <drm/drm_file.h>
#include <drm/drm_ioctl.h>
#endif

#include "amdgpu_sim_uapi.h"
#include "kfd_sim.h"

#define CREATE_TRACE_POINTS
#include "amdgpu_sim_trace.h"

#define SIM_MAX_DEVICES 4

/* drm_sched_job.id, traced as sched_job_id until the 6.17 tracepoints dropped it (7.3's struct
 * has no `id` either). */
#if SIM_TRACE_U64_FENCE
#define SIM_JOB_ID(s_job) 0
#else
#define SIM_JOB_ID(s_job) ((s_job)->id)
#endif

/* Declared by the real driver's headers; here only so -Wmissing-prototypes stays quiet. */
struct amdgpu_device;
struct amdgpu_job;
struct sim_file;
/* amdgpu_device_gpu_recover and struct amdgpu_reset_context: kfd_sim.h (KFD resets too). */
int amdgpu_cs_ioctl(void *dev, void *data, struct sim_file *f);

static unsigned int timeout_ms = 2000;
module_param(timeout_ms, uint, 0444);
MODULE_PARM_DESC(timeout_ms, "drm_sched job timeout per ring (ms)");

static unsigned int devices = 1;
module_param(devices, uint, 0444);
MODULE_PARM_DESC(devices, "simulated GPUs (1-4), named 0000:0N:00.0");

/* amdgpu's own parameter name and list syntax; the values are per simulated ring. */
static int lockup_timeout[SIM_NUM_RINGS];
static int n_lockup_timeout;
module_param_array(lockup_timeout, int, &n_lockup_timeout, 0444);
MODULE_PARM_DESC(lockup_timeout,
		 "job timeout (ms): one value for every ring, or gfx,compute,sdma; 0 = timeout_ms, negative = never (a hung job is never timed out)");

static char *wedged = "";
module_param(wedged, charp, 0444);
MODULE_PARM_DESC(wedged,
		 "6.15+: register a DRM card per device and send the wedged uevent after each full reset with this method (none, rebind, bus-reset; comma-separated); empty = off");

static bool coredump;
module_param(coredump, bool, 0444);
MODULE_PARM_DESC(coredump, "5.19+: create a devcoredump in this era's amdgpu format on each job timeout");

static unsigned int coredump_delay_ms;
module_param(coredump_delay_ms, uint, 0444);
MODULE_PARM_DESC(coredump_delay_ms,
		 "7.1+: the worker creates the dump this long after the kmsg line (a real one takes seconds to format)");

static bool vram_lost;
module_param(vram_lost, bool, 0444);
MODULE_PARM_DESC(vram_lost,
		 "a full reset loses VRAM: every file opened before it gets -ECANCELED (a MODE1 reset)");

#define AMDGPU_RESET_SRC_JOB 1
#define SOC15_IH_CLIENTID_UTCL2 0x1b

struct amdgpu_task_info {
	char process_name[TASK_COMM_LEN];
	char task_name[TASK_COMM_LEN];
	pid_t pid;
	pid_t tgid;
};

struct amdgpu_device;

struct amdgpu_ring {
	struct amdgpu_device *adev;
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
	long timeout; /* jiffies, MAX_SCHEDULE_TIMEOUT = never */
};

struct sim_coredump;

/* Same member name as the real one: the agent reads adev->dev through module BTF. */
struct amdgpu_device {
	struct device *dev;
	struct platform_device *pdev;
	u32 idx;
	atomic_t reset_count;
	atomic_t vram_lost_counter;
	struct amdgpu_ring rings[SIM_NUM_RINGS];
	struct miscdevice misc;
	char misc_name[24];
	/* The last VM fault, as amdgpu_vm_fault_info keeps it for the devcoredump. */
	u64 fault_addr;
	u32 fault_vmhub;
	/* 7.1+: the dump the worker will create; NULL when none is pending. */
	struct sim_coredump *coredump;
	struct delayed_work coredump_work;
#if SIM_HAVE_WEDGED_EVENT
	/* The DRM card the wedged uevent is sent on (module parameter `wedged`). */
	struct drm_device *ddev;
#endif
};

struct sim_file {
	struct kref ref;
	struct amdgpu_device *adev;
	u32 pasid;
	u32 vmid;
	u64 client_id;
	atomic_t guilty;
	int reset_count_at_open;
	int vram_lost_at_open;
	/* Serializes a file's submissions (threads of one client): an entity's job queue has a
	 * single producer, as amdgpu_cs_submit's locking guarantees. */
	struct mutex submit_lock;
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
};

/* Platform device names: PCI-style, like dev_name() of a real GPU. */
static const struct platform_device_id sim_ids[SIM_MAX_DEVICES + 1] = {
	{ "0000:00:00.0" }, { "0000:01:00.0" }, { "0000:02:00.0" }, { "0000:03:00.0" }, {}
};

static struct amdgpu_device *adevs[SIM_MAX_DEVICES];
static const char *const ring_names[SIM_NUM_RINGS] = { "gfx_0.0.0", "comp_1.0.0", "sdma0" };
/* PASIDs are global in amdgpu (one IDA for all devices), so they are here too. */
static DEFINE_XARRAY_ALLOC1(pasids);
static atomic_t next_vmid = ATOMIC_INIT(0);
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

/* Task info of the live file owning `pasid`; false if it is gone (like the real lookup). */
static bool task_info_pasid(u32 pasid, struct amdgpu_task_info *ti)
{
	struct sim_file *f;
	bool found = false;

	memset(ti, 0, sizeof(*ti));
	xa_lock(&pasids);
	f = xa_load(&pasids, pasid);
	if (f && f->have_task) {
		*ti = f->task;
		found = true;
	}
	xa_unlock(&pasids);
	return found;
}

/*
 * The process line of a fault or timeout, in the form of this kernel's amdgpu. Always inlined:
 * DRM_ERROR prints its caller ("[drm:amdgpu_job_timedout [amdgpu]]"), which must be the real
 * function's name.
 */
static __always_inline void sim_print_task_line(struct amdgpu_device *adev, const struct amdgpu_task_info *ti,
				bool fault)
{
#if SIM_PRINT_TASK_INFO
	dev_err(adev->dev, " Process %s pid %d thread %s pid %d\n", ti->process_name, ti->tgid,
		ti->task_name, ti->pid);
#else
	if (fault)
		dev_err(adev->dev, " in process %s pid %d thread %s pid %d)\n", ti->process_name,
			ti->tgid, ti->task_name, ti->pid);
#if SIM_TIMEOUT_DEV_ERR
	else
		dev_err(adev->dev, "Process information: process %s pid %d thread %s pid %d\n",
			ti->process_name, ti->tgid, ti->task_name, ti->pid);
#else
	else
		DRM_ERROR("Process information: process %s pid %d thread %s pid %d\n",
			  ti->process_name, ti->tgid, ti->task_name, ti->pid);
#endif
#endif
}

/* The gmc_v11 interrupt handler's view of a VM fault: the IV tracepoint, then the dmesg lines. */
static void sim_raise_fault(struct sim_fence *sf)
{
	struct amdgpu_device *adev = sf->ring->adev;
	unsigned int src_data[4] = { lower_32_bits(sf->fault_addr >> 12),
				     lower_32_bits((sf->fault_addr >> 44) & 0xf), 0, 0 };
	struct amdgpu_task_info ti;
	bool found = task_info_pasid(sf->pasid, &ti);
	u64 addr = sf->fault_addr & ~0xfffULL;

	adev->fault_addr = addr;
	adev->fault_vmhub = 0;
	trace_amdgpu_iv(0, SOC15_IH_CLIENTID_UTCL2, 0, 40, sf->vmid, 0, ktime_get_ns(), 0,
			sf->pasid, src_data);
#if SIM_TASK_INFO_OPTIONAL
	dev_err(adev->dev, "[%s] page fault (src_id:%u ring:%u vmid:%u pasid:%u)\n", "gfxhub", 0,
		40, sf->vmid, sf->pasid);
	if (found)
		sim_print_task_line(adev, &ti, true);
#else
	dev_err(adev->dev,
		"[%s] page fault (src_id:%u ring:%u vmid:%u pasid:%u, for process %s pid %d thread %s pid %d)\n",
		"gfxhub", 0, 40, sf->vmid, sf->pasid, ti.process_name, ti.tgid, ti.task_name,
		ti.pid);
	(void)found;
#endif
	dev_err(adev->dev, "  in page starting at address 0x%016llx from client %d\n", addr, 10);
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

/*
 * amdgpu_job_dependency (≤ 6.2) / amdgpu_job_prepare_job (≥ 6.3): grabs a VMID before the job
 * runs, tracing amdgpu_vm_grab_id in the scheduler's context.
 */
static struct dma_fence *amdgpu_job_prepare(struct drm_sched_job *s_job,
					    struct drm_sched_entity *entity)
{
	struct amdgpu_ring *ring = to_amdgpu_ring(s_job->sched);
	struct amdgpu_job *job = to_amdgpu_job(s_job);

	trace_amdgpu_vm_grab_id(job->pasid, ring->name, ring->idx, job->vmid, ring->vm_hub,
				(u64)job->vmid << 32, 0);
	return NULL;
}

static void sim_fence_timer_init(struct sim_fence *sf)
{
#if SIM_HAVE_HRTIMER_SETUP
	hrtimer_setup(&sf->timer, sim_fence_expire, CLOCK_MONOTONIC, HRTIMER_MODE_REL);
#else
	hrtimer_init(&sf->timer, CLOCK_MONOTONIC, HRTIMER_MODE_REL);
	sf->timer.function = sim_fence_expire;
#endif
}

static struct dma_fence *amdgpu_job_run(struct drm_sched_job *s_job)
{
	struct amdgpu_ring *ring = to_amdgpu_ring(s_job->sched);
	struct amdgpu_job *job = to_amdgpu_job(s_job);
	struct dma_fence *finished = &s_job->s_fence->finished;
	struct sim_fence *sf;
	unsigned long flags;
	bool done_now;

	/* The scheduler fence's timeline name is the scheduler's name, i.e. the ring's. */
	trace_amdgpu_sched_run_job(SIM_JOB_ID(s_job), s_job->sched->name, finished->context,
				   finished->seqno, ring->name, job->num_ibs);
	if (finished->error < 0) {
#if SIM_V(6, 1)
		dev_dbg(ring->adev->dev, "Skip scheduling IBs in ring(%s)", ring->name);
#else
		DRM_INFO("Skip scheduling IBs!\n");
#endif
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
	INIT_LIST_HEAD(&sf->node);
	sim_fence_timer_init(sf);

	spin_lock_irqsave(&ring->lock, flags);
	dma_fence_init(&sf->base, &sim_fence_ops, &fence_lock, ring->fence_context, ++ring->sync_seq);
	dma_fence_get(&sf->base); /* the "hardware" reference, dropped on signal or reset */
	list_add_tail(&sf->node, &ring->active);
	done_now = job->duration_us == 0 && !job->flags && !ring->wedged;
	if (done_now)
		sim_fence_signal_locked(ring, sf, 0);
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

/* ---- hang evidence: the devcoredump and the DRM wedged uevent ---- */

#define SIM_RING_DW 64		/* simulated ring buffer size in dwords (real ones: 64 Ki) */
#define SIM_IB_DW 16		/* dwords per simulated IB */
#define SIM_MAX_IBS 4
#define SIM_COREDUMP_BYTES (256 * 1024)
#define PACKET3_NOP_2 0xc0011000u /* PACKET3(PACKET3_NOP, 1): a NOP carrying two dwords */
#define GFX_RING_NOP 0xffff1000u

/* What amdgpu_coredump() copies at the hang; formatted now or, from 7.1, by the worker. */
struct sim_coredump {
	struct amdgpu_device *adev;
	struct amdgpu_ring *ring;
	struct amdgpu_task_info task;
	bool have_task;
	bool vram_lost;
	bool skip_vram_check; /* taken at the timeout, before any reset */
	struct timespec64 time;
	u32 pasid;
	u32 vmid;
	u32 num_ibs;
	u64 fence_context;
	u64 fence_seqno;
};

/* A bounded text buffer; output past the end is dropped, like a short devcoredump read. */
struct sim_buf {
	char *p;
	size_t len;
	size_t cap;
};

static __printf(2, 3) void sim_bprintf(struct sim_buf *b, const char *fmt, ...)
{
	va_list ap;

	if (b->len + 1 >= b->cap)
		return;
	va_start(ap, fmt);
	b->len += vscnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
}

/*
 * The hung job's IB addresses: 0x8000_0000_0000 | pasid << 24 | (seqno & 0xfff) << 12 | i << 8,
 * so a reader can tell whose job it was. A simulator convention, not amdgpu's layout.
 */
static u64 __maybe_unused sim_ib_addr(const struct sim_coredump *cd, u32 i)
{
	return 0x800000000000ULL | ((u64)(cd->pasid & 0xffff) << 24) |
	       ((cd->fence_seqno & 0xfff) << 12) | ((u64)i << 8);
}

/* The IB's dwords: one NOP packet whose payload is the job's scheduler fence (context, seqno),
 * then ring NOPs. Again a simulator convention, so a test can join an IB to its job exactly. */
static u32 __maybe_unused sim_ib_dword(const struct sim_coredump *cd, u32 j)
{
	if (j == 0)
		return PACKET3_NOP_2;
	if (j == 1)
		return lower_32_bits(cd->fence_context);
	if (j == 2)
		return lower_32_bits(cd->fence_seqno);
	return GFX_RING_NOP;
}

#if SIM_COREDUMP_IN_TIMEOUT
static void sim_coredump_task_line(struct sim_buf *b, const struct sim_coredump *cd)
{
	if (!cd->have_task || !cd->task.pid)
		return;
#if SIM_COREDUMP_WORKER
	sim_bprintf(b, "process_name: %s TGID: %d thread: %s PID: %d\n", cd->task.process_name,
		    cd->task.tgid, cd->task.task_name, cd->task.pid);
	sim_bprintf(b, "pasid: %u\n", cd->pasid);
	sim_bprintf(b, "vmid: %u\n", cd->vmid);
#else
	sim_bprintf(b, "process_name: %s PID: %d\n", cd->task.process_name, cd->task.pid);
#endif
}

/* amdgpu_devcoredump_fw_info with a Navi 31's versions. */
static void sim_coredump_fw(struct sim_buf *b)
{
	static const char *const fw[] = { "VCE", "UVD", "GMC" };
	static const char *const gfx[] = { "ME", "PFP", "CE", "RLC", "RLC SRLC", "RLC SRLG",
					   "RLC SRLS", "RLCP", "RLCV", "MEC" };
	static const char *const ta[] = { "XGMI", "RAS", "HDCP", "DTM", "RAP", "SECURE DISPLAY" };
	int i;

	for (i = 0; i < ARRAY_SIZE(fw); i++)
		sim_bprintf(b, "%s feature version: %u, fw version: 0x%08x\n", fw[i], 0, 0);
	for (i = 0; i < ARRAY_SIZE(gfx); i++)
		sim_bprintf(b, "%s feature version: %u, fw version: 0x%08x\n", gfx[i], 38,
			    0x7d0 + i);
	sim_bprintf(b, "IMU feature version: %u, fw version: 0x%08x\n", 0, 0x0b2f1e00);
	sim_bprintf(b, "PSP SOS feature version: %u, fw version: 0x%08x\n", 0, 0x00240032);
	sim_bprintf(b, "PSP ASD feature version: %u, fw version: 0x%08x\n", 0, 0x21000109);
	for (i = 0; i < ARRAY_SIZE(ta); i++)
		sim_bprintf(b, "TA %s feature version: 0x%08x, fw version: 0x%08x\n", ta[i], 0, 0);
	sim_bprintf(b, "SMC feature version: %u, program: %d, fw version: 0x%08x (%d.%d.%d)\n", 0,
		    0, 0x004e6a00, 78, 106, 0);
	sim_bprintf(b, "SDMA%d feature version: %u, firmware version: 0x%08x\n", 0, 60, 0x17);
	sim_bprintf(b, "VCN feature version: %u, fw version: 0x%08x\n", 0, 0x0711f000);
	sim_bprintf(b, "DMCU feature version: %u, fw version: 0x%08x\n", 0, 0);
	sim_bprintf(b, "DMCUB feature version: %u, fw version: 0x%08x\n", 0, 0x07002a00);
	sim_bprintf(b, "PSP TOC feature version: %u, fw version: 0x%08x\n", 0, 0);
	sim_bprintf(b, "MES_KIQ feature version: %u, fw version: 0x%08x\n", 6, 0x6c);
	sim_bprintf(b, "MES feature version: %u, fw version: 0x%08x\n", 1, 0x6e);
	sim_bprintf(b, "VPE feature version: %u, fw version: 0x%08x\n", 0, 0);
	sim_bprintf(b, "\nVBIOS Information\n");
	sim_bprintf(b, "vbios name       : %s\n", "NAVI31 XTX D70701");
	sim_bprintf(b, "vbios pn         : %s\n", "113-D7070100-102");
	sim_bprintf(b, "vbios version    : %d\n", 0);
	sim_bprintf(b, "vbios ver_str    : %s\n", "022.001.002.008.000001");
	sim_bprintf(b, "vbios date       : %s\n", "2023/06/09 04:50");
}

static void sim_coredump_rings(struct sim_buf *b, const struct sim_coredump *cd)
{
	int i, j;

	sim_bprintf(b, "Ring buffer information\n");
	for (i = 0; i < SIM_NUM_RINGS; i++) {
		const struct amdgpu_ring *ring = &cd->adev->rings[i];
		u64 rptr = (u64)ring->last_seq * 16, wptr = (u64)ring->sync_seq * 16;

		sim_bprintf(b, "ring name: %s\n", ring->name);
		sim_bprintf(b, "Rptr: 0x%llx Wptr: 0x%llx RB mask: %x\n", rptr, wptr,
			    SIM_RING_DW - 1);
		sim_bprintf(b, "Ring size in dwords: %d\n", SIM_RING_DW);
		sim_bprintf(b, "Ring contents\n");
		sim_bprintf(b, "Offset \t Value\n");
		for (j = 0; j < SIM_RING_DW * 4; j += 4)
			sim_bprintf(b, "0x%x \t 0x%x\n", j, GFX_RING_NOP);
	}
}

static void sim_coredump_ibs(struct sim_buf *b, const struct sim_coredump *cd)
{
#if SIM_COREDUMP_WORKER
	u32 i, j;

	for (i = 0; i < cd->num_ibs; i++) {
		sim_bprintf(b, "\nIB #%d 0x%llx %d dw\n", i, sim_ib_addr(cd, i), SIM_IB_DW);
		for (j = 0; j < SIM_IB_DW; j++)
			sim_bprintf(b, "0x%08x\n", sim_ib_dword(cd, j));
	}
#endif
}

/* amdgpu_devcoredump_format (amdgpu_dev_coredump.c, 6.12+; the 7.3 strings where they differ). */
static void sim_coredump_format(struct sim_buf *b, const struct sim_coredump *cd)
{
	sim_bprintf(b, "**** AMDGPU Device Coredump ****\n");
	sim_bprintf(b, "version: 1\n");
	sim_bprintf(b, "kernel: %s\n", UTS_RELEASE);
	sim_bprintf(b, "module: amdgpu\n");
	sim_bprintf(b, "time: %lld.%09ld\n", (s64)cd->time.tv_sec, cd->time.tv_nsec);
	sim_coredump_task_line(b, cd);
	sim_bprintf(b, "\nSOC Information\n");
	sim_bprintf(b, "SOC Device id: %d\n", 0x744c);
	sim_bprintf(b, "SOC PCI Revision id: %d\n", 0xc8);
	sim_bprintf(b, "SOC Family: %d\n", 145);
	sim_bprintf(b, "SOC Revision id: %d\n", 0);
	sim_bprintf(b, "SOC External Revision id: %d\n", 1);
	sim_bprintf(b, "\nSOC Memory Information\n");
	sim_bprintf(b, "real vram size: %llu\n", 25753026560ULL);
	sim_bprintf(b, "visible vram size: %llu\n", 25753026560ULL);
	sim_bprintf(b, "gtt size: %llu\n", 33544536064ULL);
	sim_bprintf(b, "\nGDS Config\n");
	sim_bprintf(b, "gds: total size: %d\n", 4096);
	sim_bprintf(b, "gds: compute partition size: %d\n", 4096);
	sim_bprintf(b, "gds: gws per compute partition: %d\n", 64);
	sim_bprintf(b, "gds: os per compute partition: %d\n", 16);
	sim_bprintf(b, "\nHW IP Version Information\n");
	sim_bprintf(b, "HWIP: %s[%d][%d]: v%d.%d.%d.%d.%d\n", "GC", 1, 0, 11, 0, 0, 0, 0);
	sim_bprintf(b, "HWIP: %s[%d][%d]: v%d.%d.%d.%d.%d\n", "SDMA0", 3, 0, 6, 0, 0, 0, 0);
	sim_bprintf(b, "\nIP Firmwares\n");
	sim_coredump_fw(b);
	if (cd->ring) {
		sim_bprintf(b, "\nRing timed out details\n");
		/* AMDGPU_RING_TYPE_GFX/COMPUTE/SDMA are 0/1/2, the simulator's ring indexes. */
		sim_bprintf(b, "IP Type: %d Ring Name: %s\n", cd->ring->idx, cd->ring->name);
	}
	sim_bprintf(b, "\n[%s] Page fault observed\n", cd->adev->fault_vmhub ? "mmhub" : "gfxhub");
	sim_bprintf(b, "Faulty page starting at address: 0x%016llx\n", cd->adev->fault_addr);
	sim_bprintf(b, "Protection fault status register: 0x%x\n\n", 0);
	sim_bprintf(b, "IP Dump\n");
	sim_coredump_rings(b, cd);
	if (SIM_COREDUMP_WORKER && cd->skip_vram_check)
		sim_bprintf(b, "VRAM lost check is skipped!\n");
	else if (cd->vram_lost)
		sim_bprintf(b, "VRAM is lost due to GPU reset!\n");
	sim_coredump_ibs(b, cd);
}
#else
/* amdgpu_devcoredump_read of 5.19-6.9 (amdgpu_device.c / amdgpu_reset.c), taken after the
 * ASIC reset. */
static void sim_coredump_format(struct sim_buf *b, const struct sim_coredump *cd)
{
	sim_bprintf(b, "**** AMDGPU Device Coredump ****\n");
	sim_bprintf(b, "kernel: " UTS_RELEASE "\n");
	sim_bprintf(b, "module: " KBUILD_MODNAME "\n");
	sim_bprintf(b, "time: %lld.%09ld\n", (s64)cd->time.tv_sec, cd->time.tv_nsec);
	if (cd->have_task && cd->task.pid)
		sim_bprintf(b, "process_name: %s PID: %d\n", cd->task.process_name, cd->task.pid);
	if (cd->vram_lost)
		sim_bprintf(b, "VRAM is lost due to GPU reset!\n");
}
#endif

/* Formats the dump and hands it to the devcoredump core (which vfree()s it). */
static void sim_coredump_create(struct sim_coredump *cd)
{
	struct sim_buf b = { .cap = SIM_COREDUMP_BYTES };

	b.p = vmalloc(b.cap);
	if (b.p) {
		b.p[0] = '\0';
		sim_coredump_format(&b, cd);
		dev_coredumpv(cd->adev->dev, b.p, b.len, GFP_KERNEL);
	}
	kfree(cd);
}

static void sim_coredump_work(struct work_struct *work)
{
	struct amdgpu_device *adev =
		container_of(to_delayed_work(work), struct amdgpu_device, coredump_work);
	struct sim_coredump *cd = xchg(&adev->coredump, NULL);

	if (cd)
		sim_coredump_create(cd);
}

static int __maybe_unused sim_card_index(struct amdgpu_device *adev)
{
#if SIM_HAVE_WEDGED_EVENT
	if (adev->ddev)
		return adev->ddev->primary->index;
#endif
	return adev->idx;
}

/* amdgpu_coredump(): what the dump needs is copied now, while the job is alive. */
/* Copies what the dump needs from `job`, which the scheduler frees once it restarts. */
static struct sim_coredump *sim_coredump_capture(struct amdgpu_device *adev,
						 struct amdgpu_job *job, bool lost, bool at_timeout)
{
	struct sim_coredump *cd;

	if (!coredump || !SIM_HAVE_COREDUMP)
		return NULL;
	cd = kzalloc(sizeof(*cd), GFP_KERNEL);
	if (!cd)
		return NULL;
	cd->adev = adev;
	cd->vram_lost = lost;
	cd->skip_vram_check = at_timeout;
	ktime_get_ts64(&cd->time);
	if (job) {
		cd->ring = to_amdgpu_ring(job->base.sched);
		cd->have_task = task_info_pasid(job->pasid, &cd->task);
		cd->pasid = job->pasid;
		cd->vmid = job->vmid;
		cd->num_ibs = min_t(u32, job->num_ibs, SIM_MAX_IBS);
		cd->fence_context = job->base.s_fence->finished.context;
		cd->fence_seqno = job->base.s_fence->finished.seqno;
	}
	return cd;
}

/* Creates the dump now, or (7.1+) from the worker `coredump_delay_ms` later; then the kmsg lines. */
static void sim_coredump_emit(struct amdgpu_device *adev, struct sim_coredump *cd)
{
	if (!cd)
		return;
	if (SIM_COREDUMP_WORKER) {
		/* One pending dump per device, as amdgpu keeps one adev->coredump. */
		if (cmpxchg(&adev->coredump, NULL, cd)) {
			kfree(cd);
			return;
		}
		schedule_delayed_work(&adev->coredump_work, msecs_to_jiffies(coredump_delay_ms));
	} else {
		sim_coredump_create(cd);
	}
#if SIM_COREDUMP_KMSG
	dev_info(adev->dev, "[drm] AMDGPU device coredump file has been created\n");
	dev_info(adev->dev, "[drm] Check your /sys/class/drm/card%d/device/devcoredump/data\n",
		 sim_card_index(adev));
#endif
}

/* amdgpu_coredump() at the timeout, while the job is alive. */
static void __maybe_unused sim_coredump(struct amdgpu_device *adev, struct amdgpu_job *job)
{
	sim_coredump_emit(adev, sim_coredump_capture(adev, job, false, true));
}

static void sim_coredump_fini(struct amdgpu_device *adev)
{
	cancel_delayed_work_sync(&adev->coredump_work);
	kfree(xchg(&adev->coredump, NULL));
#if SIM_HAVE_COREDUMP && SIM_HAVE_COREDUMP_PUT
	dev_coredump_put(adev->dev);
#endif
}

/* The `wedged` parameter as DRM_WEDGE_RECOVERY_* bits; 0 = off, -EINVAL = unknown method. */
static long sim_wedge_method(void)
{
	static const char *const names[] = { "none", "rebind", "bus-reset" };
	const char *p = wedged;
	long bits = 0;
	int i;

	while (*p) {
		size_t n = strcspn(p, ",");

		for (i = 0; i < ARRAY_SIZE(names); i++)
			if (strlen(names[i]) == n && !strncmp(p, names[i], n))
				break;
		if (i == ARRAY_SIZE(names))
			return -EINVAL;
		bits |= 1L << i;
		p += n + (p[n] == ',');
	}
	return bits;
}

#if SIM_HAVE_WEDGED_EVENT
static const struct file_operations sim_drm_fops = {
	.owner = THIS_MODULE,
	.open = drm_open,
	.release = drm_release,
	.unlocked_ioctl = drm_ioctl,
	.poll = drm_poll,
	.read = drm_read,
	.llseek = noop_llseek,
};

/* Just enough of a DRM driver for /sys/class/drm/cardN: the uevent's kobject. */
static const struct drm_driver sim_drm_driver = {
	.name = "amdgpu",
	.desc = "AMD GPU",
	.major = 3,
	.minor = 64,
	.fops = &sim_drm_fops,
};

static int sim_card_create(struct amdgpu_device *adev)
{
	struct drm_device *ddev;
	int r;

	if (!wedged[0])
		return 0;
	ddev = drm_dev_alloc(&sim_drm_driver, adev->dev);
	if (IS_ERR(ddev))
		return PTR_ERR(ddev);
	r = drm_dev_register(ddev, 0);
	if (r) {
		drm_dev_put(ddev);
		return r;
	}
	adev->ddev = ddev;
	return 0;
}

static void sim_card_destroy(struct amdgpu_device *adev)
{
	if (!adev->ddev)
		return;
	drm_dev_unregister(adev->ddev);
	drm_dev_put(adev->ddev);
	adev->ddev = NULL;
}

/* After a successful full reset: the kernel's own drm_dev_wedged_event() prints
 * "device wedged, ..." and sends WEDGED= (and from 6.17 PID=/TASK= of the timed-out job's
 * thread, `ti`, looked up before the reset freed the job; NULL when unknown). */
static void sim_wedged_event(struct amdgpu_device *adev, const struct amdgpu_task_info *ti)
{
#if SIM_WEDGED_TASK_INFO
	struct drm_wedge_task_info info = {};
#endif

	if (!adev->ddev)
		return;
#if SIM_WEDGED_TASK_INFO
	if (ti) {
		info.pid = ti->pid;
		strscpy(info.comm, ti->task_name, sizeof(info.comm));
	}
	drm_dev_wedged_event(adev->ddev, sim_wedge_method(), ti ? &info : NULL);
#else
	drm_dev_wedged_event(adev->ddev, sim_wedge_method());
#endif
}
#else
static int sim_card_create(struct amdgpu_device *adev)
{
	return 0;
}

static void sim_card_destroy(struct amdgpu_device *adev)
{
}

static void sim_wedged_event(struct amdgpu_device *adev, const struct amdgpu_task_info *ti)
{
}
#endif

static void sim_sched_start(struct drm_gpu_scheduler *sched)
{
#if SIM_START_ERRNO
	drm_sched_start(sched, 0);
#elif SIM_START_NOARG
	drm_sched_start(sched);
#else
	drm_sched_start(sched, true);
#endif
}

/* Stops every scheduler of the device, blames `job` (karma marks its entity guilty), "resets"
 * the rings, resubmits the innocent jobs and restarts. */
static void sim_reset_rings(struct amdgpu_device *adev, struct amdgpu_job *job)
{
	int i;

	for (i = 0; i < SIM_NUM_RINGS; i++)
		drm_sched_stop(&adev->rings[i].sched, job ? &job->base : NULL);
	/* karma > hang_limit (0): drm_sched marks the entity guilty and cancels its jobs. */
	if (job)
		drm_sched_increase_karma(&job->base);
	for (i = 0; i < SIM_NUM_RINGS; i++)
		sim_ring_force_completion(&adev->rings[i]);
	/* Innocent pending jobs run again, the guilty context's are skipped. */
	for (i = 0; i < SIM_NUM_RINGS; i++)
		drm_sched_resubmit_jobs(&adev->rings[i].sched);
	for (i = 0; i < SIM_NUM_RINGS; i++)
		sim_sched_start(&adev->rings[i].sched);
}

/* Same name (and, per era, signature) as the real driver's so the agent's kprobe finds it. */
#if SIM_RECOVER_HAS_CONTEXT
noinline int amdgpu_device_gpu_recover(struct amdgpu_device *adev, struct amdgpu_job *job,
				       struct amdgpu_reset_context *reset_context)
#else
noinline int amdgpu_device_gpu_recover(struct amdgpu_device *adev, struct amdgpu_job *job)
#endif
{
	/* Everything read from `job` is read now: once the schedulers restart they free it. */
	struct amdgpu_task_info ti;
	bool found = job && task_info_pasid(job->pasid, &ti);
	struct sim_coredump *cd =
		SIM_COREDUMP_IN_TIMEOUT ? NULL : sim_coredump_capture(adev, job, vram_lost, false);
	int n;

#if SIM_RESET_SOURCE_LINE
	dev_info(adev->dev, "GPU %s begin!. Source:  %d\n", "reset", reset_context->src);
#else
	dev_info(adev->dev, "GPU %s begin!\n", "reset");
#endif
	sim_reset_rings(adev, job);
	sim_coredump_emit(adev, cd);
	if (vram_lost) {
#if SIM_VRAM_LOST_DEV_INFO
		dev_info(adev->dev, "VRAM is lost due to GPU reset!\n");
#else
		DRM_INFO("VRAM is lost due to GPU reset!\n");
#endif
		atomic_inc(&adev->vram_lost_counter);
	}
	n = atomic_inc_return(&adev->reset_count);
	dev_info(adev->dev, "GPU reset(%d) succeeded!\n", n);
	sim_wedged_event(adev, found ? &ti : NULL);
	return 0;
}
EXPORT_SYMBOL_GPL(amdgpu_device_gpu_recover);

#if SIM_TIMEDOUT_HAS_STAT
static enum drm_gpu_sched_stat amdgpu_job_timedout(struct drm_sched_job *s_job)
#else
static void amdgpu_job_timedout(struct drm_sched_job *s_job)
#endif
{
	struct amdgpu_ring *ring = to_amdgpu_ring(s_job->sched);
	struct amdgpu_device *adev = ring->adev;
	struct amdgpu_job *job = to_amdgpu_job(s_job);
	struct amdgpu_task_info ti;
	u32 signaled, emitted;
	unsigned long flags;
	bool found;

#if SIM_DUMP_IP_STATE
	dev_info(adev->dev, "Dumping IP State\n");
	dev_info(adev->dev, "Dumping IP State Completed\n");
	sim_coredump(adev, job);
#endif
	spin_lock_irqsave(&ring->lock, flags);
	signaled = ring->last_seq;
	emitted = ring->sync_seq;
	spin_unlock_irqrestore(&ring->lock, flags);
#if SIM_TIMEOUT_DEV_ERR
	dev_err(adev->dev, "ring %s timeout, signaled seq=%u, emitted seq=%u\n",
		s_job->sched->name, signaled, emitted);
#else
	DRM_ERROR("ring %s timeout, signaled seq=%u, emitted seq=%u\n", s_job->sched->name,
		  signaled, emitted);
#endif
	found = task_info_pasid(job->pasid, &ti);
	if (found || !SIM_TASK_INFO_OPTIONAL)
		sim_print_task_line(adev, &ti, false);
#if SIM_RECOVER_HAS_CONTEXT
	{
		struct amdgpu_reset_context reset_context = { .src = AMDGPU_RESET_SRC_JOB };

		amdgpu_device_gpu_recover(adev, job, &reset_context);
	}
#else
	amdgpu_device_gpu_recover(adev, job);
#endif
#if SIM_STAT_RESET
	return DRM_GPU_SCHED_STAT_RESET;
#elif SIM_TIMEDOUT_HAS_STAT
	return DRM_GPU_SCHED_STAT_NOMINAL;
#endif
}

static const struct drm_sched_backend_ops amdgpu_sched_ops = {
#if SIM_HAVE_PREPARE_JOB
	.prepare_job = amdgpu_job_prepare,
#else
	.dependency = amdgpu_job_prepare,
#endif
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

/* A submission refused because the file's context is guilty, printed as this era does (inlined
 * into amdgpu_cs_ioctl: DRM_ERROR and drm_dev_printk print their caller's name). */
static __always_inline void sim_parser_failed(struct amdgpu_device *adev, int r)
{
#if SIM_PARSER_DRM_ERR
	/* drm_err_ratelimited(dev, ...) with no amdgpu dev_fmt prefix on this era. */
	_dev_err(adev->dev, "[drm] *ERROR* Failed to initialize parser %d!\n", r);
#elif SIM_PARSER_DRM_DEV
	if (printk_ratelimit())
		drm_dev_printk(adev->dev, KERN_ERR, "*ERROR* Failed to initialize parser %d!\n", r);
#else
	if (printk_ratelimit())
		DRM_ERROR("Failed to initialize parser %d!\n", r);
#endif
}

static int sim_job_init(struct amdgpu_job *job, struct sim_file *f, u32 ring)
{
#if defined(SIM_HAVE_JOB_INIT_CLIENT_ID)
	return drm_sched_job_init(&job->base, &f->entity[ring], 1, f, f->client_id);
#elif SIM_HAVE_CREDITS
	return drm_sched_job_init(&job->base, &f->entity[ring], 1, f);
#else
	return drm_sched_job_init(&job->base, &f->entity[ring], f);
#endif
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
		sim_parser_failed(f->adev, r);
		return r;
	}
	/* amdgpu_cs_pass1: a context from before a VRAM-losing reset is cancelled, silently. */
	if (f->vram_lost_at_open != atomic_read(&f->adev->vram_lost_counter))
		return -ECANCELED;
	ring = &f->adev->rings[args->ring];
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
	mutex_lock(&f->submit_lock);
	r = sim_job_init(job, f, args->ring);
	if (r) {
		mutex_unlock(&f->submit_lock);
		kfree(job);
		return r;
	}
	kref_get(&f->ref);
	job->file = f;
#if SIM_HAVE_JOB_ARM
	drm_sched_job_arm(&job->base);
#endif
	finished = &job->base.s_fence->finished;
	trace_amdgpu_cs_ioctl(SIM_JOB_ID(&job->base), ring->sched.name, finished->context, finished->seqno,
			      ring->name, job->num_ibs);
#if SIM_HAVE_JOB_ARM
	drm_sched_entity_push_job(&job->base);
#else
	drm_sched_entity_push_job(&job->base, &f->entity[args->ring]);
#endif
	mutex_unlock(&f->submit_lock);
	return 0;
}

/* amdgpu_ctx_query2: what Mesa reads to decide "innocent" or "guilty". */
static long sim_query_state(struct sim_file *f, void __user *arg)
{
	struct sim_query q = {};

	if (f->reset_count_at_open != atomic_read(&f->adev->reset_count))
		q.flags |= SIM_QUERY_RESET;
	if (f->vram_lost_at_open != atomic_read(&f->adev->vram_lost_counter))
		q.flags |= SIM_QUERY_VRAMLOST;
	if (atomic_read(&f->guilty))
		q.flags |= SIM_QUERY_GUILTY;
	return copy_to_user(arg, &q, sizeof(q)) ? -EFAULT : 0;
}

static long sim_ioctl(struct file *filp, unsigned int cmd, unsigned long arg)
{
	struct sim_submit args;

	if (cmd == SIM_IOCTL_QUERY_STATE)
		return sim_query_state(filp->private_data, (void __user *)arg);
	if (cmd != SIM_IOCTL_SUBMIT)
		return -ENOTTY;
	if (copy_from_user(&args, (void __user *)arg, sizeof(args)))
		return -EFAULT;
	return amdgpu_cs_ioctl(NULL, &args, filp->private_data);
}

static int sim_open(struct inode *inode, struct file *filp)
{
	/* misc_open() leaves the miscdevice in private_data. */
	struct amdgpu_device *adev =
		container_of(filp->private_data, struct amdgpu_device, misc);
	struct sim_file *f;
	u32 pasid;
	int i, r;

	f = kzalloc(sizeof(*f), GFP_KERNEL);
	if (!f)
		return -ENOMEM;
	kref_init(&f->ref);
	mutex_init(&f->submit_lock);
	f->adev = adev;
	r = xa_alloc(&pasids, &pasid, f, XA_LIMIT(32768, 65535), GFP_KERNEL);
	if (r) {
		kfree(f);
		return r;
	}
	f->pasid = pasid;
	f->vmid = 1 + (atomic_inc_return(&next_vmid) % 15);
	f->client_id = atomic64_inc_return(&next_client_id);
	f->reset_count_at_open = atomic_read(&adev->reset_count);
	f->vram_lost_at_open = atomic_read(&adev->vram_lost_counter);
	trace_amdgpu_pasid_allocated(pasid);
	for (i = 0; i < SIM_NUM_RINGS; i++) {
		struct drm_gpu_scheduler *sched = &adev->rings[i].sched;

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
	const char *pdev = dev_name(f->adev->dev);

	seq_printf(m, "pdev:\t%s\npasid:\t%u\n", pdev, f->pasid);
	seq_puts(m, "drm-driver:\tamdgpu\n");
	seq_printf(m, "drm-pdev:\t%s\n", pdev);
	seq_printf(m, "drm-client-id:\t%llu\n", f->client_id);
}

static const struct file_operations sim_fops = {
	.owner = THIS_MODULE,
	.open = sim_open,
	.release = sim_release,
	.unlocked_ioctl = sim_ioctl,
	.show_fdinfo = sim_show_fdinfo,
};

/* lockup_timeout for `ring`: one value for all rings, or one per ring; 0 = timeout_ms. */
static long sim_ring_timeout(u32 ring)
{
	int ms = 0;

	if (n_lockup_timeout == 1)
		ms = lockup_timeout[0];
	else if (ring < n_lockup_timeout)
		ms = lockup_timeout[ring];
	if (ms < 0)
		return MAX_SCHEDULE_TIMEOUT;
	return msecs_to_jiffies(ms ? ms : timeout_ms);
}

static int sim_sched_init(struct amdgpu_ring *ring)
{
	long timeout = ring->timeout;
#if defined(SIM_HAVE_SCHED_INIT_ARGS)
	struct drm_sched_init_args args = {
		.ops = &amdgpu_sched_ops,
#if SIM_HAVE_CREDITS
		.num_rqs = DRM_SCHED_PRIORITY_COUNT,
#endif
		.credit_limit = 64,
		.hang_limit = 0,
		.timeout = timeout,
		.name = ring->name,
		.dev = ring->adev->dev,
	};

	return drm_sched_init(&ring->sched, &args);
#elif SIM_HAVE_CREDITS
	return drm_sched_init(&ring->sched, &amdgpu_sched_ops, NULL, DRM_SCHED_PRIORITY_COUNT, 64, 0,
			      timeout, NULL, NULL, ring->name, ring->adev->dev);
#elif !SIM_V(5, 12)
	return drm_sched_init(&ring->sched, &amdgpu_sched_ops, 64, 0, timeout, ring->name);
#else
#error "amdgpu_sim: drm_sched_init of 5.12-6.6 without drm_sched_init_args is not supported"
#endif
}

static void sim_rings_fini(struct amdgpu_device *adev, int n)
{
	/* Completion first: a job hung on a ring without a timeout still holds its fence, and
	 * drm_sched_fini must not tear the scheduler down under it. */
	while (--n >= 0) {
		sim_ring_force_completion(&adev->rings[n]);
		drm_sched_fini(&adev->rings[n].sched);
	}
}

static int sim_rings_init(struct amdgpu_device *adev)
{
	int i, r;

	for (i = 0; i < SIM_NUM_RINGS; i++) {
		struct amdgpu_ring *ring = &adev->rings[i];

		ring->adev = adev;
		strscpy(ring->name, ring_names[i], sizeof(ring->name));
		ring->idx = i;
		ring->vm_hub = i == SIM_RING_SDMA ? 1 : 0;
		spin_lock_init(&ring->lock);
		INIT_LIST_HEAD(&ring->active);
		ring->fence_context = dma_fence_context_alloc(1);
		ring->timeout = sim_ring_timeout(i);
		r = sim_sched_init(ring);
		if (r) {
			sim_rings_fini(adev, i);
			return r;
		}
	}
	return 0;
}

static int sim_probe(struct platform_device *pdev)
{
	return 0;
}

/* Binds the simulated devices (by name) so dev_err() prints "amdgpu <name>: ...". */
static struct platform_driver sim_driver = {
	.probe = sim_probe,
	.id_table = sim_ids,
	.driver = { .name = "amdgpu" },
};

static void sim_device_destroy(struct amdgpu_device *adev)
{
	misc_deregister(&adev->misc);
	sim_coredump_fini(adev);
	sim_card_destroy(adev);
	sim_rings_fini(adev, SIM_NUM_RINGS);
	platform_device_unregister(adev->pdev);
	kfree(adev);
}

static int sim_device_create(u32 idx, struct amdgpu_device **out)
{
	struct amdgpu_device *adev;
	int r;

	adev = kzalloc(sizeof(*adev), GFP_KERNEL);
	if (!adev)
		return -ENOMEM;
	adev->idx = idx;
	adev->pdev = platform_device_register_simple(sim_ids[idx].name, PLATFORM_DEVID_NONE,
						     NULL, 0);
	if (IS_ERR(adev->pdev)) {
		r = PTR_ERR(adev->pdev);
		kfree(adev);
		return r;
	}
	adev->dev = &adev->pdev->dev;
	INIT_DELAYED_WORK(&adev->coredump_work, sim_coredump_work);
	r = sim_rings_init(adev);
	if (r)
		goto fail_pdev;
	r = sim_card_create(adev);
	if (r)
		goto fail_rings;
	if (idx == 0)
		strscpy(adev->misc_name, "amdgpu_sim", sizeof(adev->misc_name));
	else
		snprintf(adev->misc_name, sizeof(adev->misc_name), "amdgpu_sim%u", idx);
	adev->misc.minor = MISC_DYNAMIC_MINOR;
	adev->misc.name = adev->misc_name;
	adev->misc.fops = &sim_fops;
	adev->misc.mode = 0666;
	r = misc_register(&adev->misc);
	if (r)
		goto fail_card;
	*out = adev;
	return 0;
fail_card:
	sim_card_destroy(adev);
fail_rings:
	sim_rings_fini(adev, SIM_NUM_RINGS);
fail_pdev:
	platform_device_unregister(adev->pdev);
	kfree(adev);
	return r;
}

static int __init amdgpu_sim_init(void)
{
	u32 i;
	int r;

	if (devices < 1 || devices > SIM_MAX_DEVICES) {
		pr_err("amdgpu_sim: devices=%u out of range 1-%d\n", devices, SIM_MAX_DEVICES);
		return -EINVAL;
	}
	if (sim_wedge_method() < 0) {
		pr_err("amdgpu_sim: wedged=%s: use none, rebind or bus-reset (comma-separated)\n",
		       wedged);
		return -EINVAL;
	}
	if (wedged[0] && !SIM_HAVE_WEDGED_EVENT)
		pr_warn("amdgpu_sim: wedged=%s ignored: this kernel has no wedged uevent (6.15+)\n",
			wedged);
	if (coredump && !SIM_HAVE_COREDUMP)
		pr_warn("amdgpu_sim: coredump=1 ignored: this era's amdgpu has no devcoredump\n");
	r = platform_driver_register(&sim_driver);
	if (r)
		return r;
	for (i = 0; i < devices; i++) {
		r = sim_device_create(i, &adevs[i]);
		if (r)
			goto fail;
	}
	/* The KFD-like path (kfd_sim.c) is optional; it stands on device 0. */
	if (kfd_sim_init(adevs[0]))
		pr_warn("amdgpu_sim: no /dev/kfd\n");
	pr_info("amdgpu_sim: %u device(s), %d rings each, timeout %u ms\n", devices,
		SIM_NUM_RINGS, timeout_ms);
	return 0;
fail:
	while (i-- > 0)
		sim_device_destroy(adevs[i]);
	platform_driver_unregister(&sim_driver);
	return r;
}

static void __exit amdgpu_sim_exit(void)
{
	u32 i;

	kfd_sim_exit();
	for (i = 0; i < devices; i++)
		sim_device_destroy(adevs[i]);
	platform_driver_unregister(&sim_driver);
}

module_init(amdgpu_sim_init);
module_exit(amdgpu_sim_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("amdgpu driver simulator for hangwatch tests");
