// SPDX-License-Identifier: GPL-2.0
/*
 * kfd_sim: a KFD-like path (ROCm's /dev/kfd) inside the amdgpu simulator module, so hangwatch's
 * compute attribution is tested end-to-end without an AMD GPU. docs/compute.md has the facts it
 * reproduces per kernel (read from Debian's real amdgpu.ko: ftrace-able functions, BTF, strings).
 *
 * What is real: the uapi (<linux/kfd_ioctl.h> AMDKFD_IOC_CREATE_QUEUE / DESTROY_QUEUE /
 * SMI_EVENTS with their real structs and numbers), the names of the functions hangwatch hooks
 * (kfd_ioctl_create_queue, kfd_ioctl_destroy_queue, pqm_create_queue, pqm_destroy_queue,
 * create_queue_cpsch, destroy_queue_cpsch, amdgpu_amdkfd_gpu_reset), the struct and member names
 * the agent reads through BTF (kfd_ioctl_*_args, queue, queue_properties.queue_id/doorbell_off),
 * the sysfs layout (/sys/class/kfd/kfd/{topology,proc}), the SMI event text per kernel, and the
 * kernel-log lines of each era. What is simulated: the GPU (a dispatch "runs" in a delayed
 * work) and the hardware scheduler / MES (a hung dispatch makes the next unmap fail).
 *
 * Doorbell writes are invisible to the kernel on real hardware, so the simulator-only
 * KFD_SIM_IOC_DISPATCH (kfd_sim_uapi.h) stands for "the GPU received this doorbell".
 */
#include "amdgpu_sim_compat.h" /* first, like amdgpu_sim.c: kfd_sim.h uses its era macros */
#include <linux/module.h>
#include <linux/fs.h>
#include <linux/device.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/kobject.h>
#include <linux/sysfs.h>
#include <linux/anon_inodes.h>
#include <linux/kfifo.h>
#include <linux/poll.h>
#include <linux/wait.h>
#include <linux/sched.h>
#include <linux/workqueue.h>
#include <linux/bitmap.h>
#include <linux/delay.h>
#include <linux/version.h>
#include <uapi/linux/kfd_ioctl.h>

#include "kfd_sim.h"
#include "kfd_sim_uapi.h"
#include "amdgpu_sim_trace.h" /* amdgpu_iv, amdgpu_pasid_* (defined in amdgpu_sim.c) */

static unsigned int kfd_preempt_ms = 1000;
module_param(kfd_preempt_ms, uint, 0444);
MODULE_PARM_DESC(kfd_preempt_ms, "KFD queue preemption timeout (real default 9000 ms)");

/* The simulated GPU: amdgpu_sim's device (PCI 0000:00:00.0, location_id 0). */
#define SIM_DEV "amdgpu 0000:00:00.0: amdgpu: "
#define SIM_DEV7 "amdgpu 0000:00:00.0: " /* 7.x dev_err lines carry no "amdgpu: " */
#define KFD_SIM_GPU_ID 48152
#define KFD_SIM_MAX_QUEUES 1024
/* 8-byte doorbells, 1024 per process: a process's doorbell slice is 8 KiB = 0x800 dwords. */
#define KFD_SIM_DOORBELL_SLICE 8192
#define KFD_SIM_DOORBELL_BASE 0x1000
#define KFD_MMAP_TYPE_DOORBELL (0x3ULL << 62)
#define KFD_MMAP_GPU_ID(id) ((((u64)(id)) & 0xffffULL) << 46)
#define AMDGPU_RESET_SRC_MES 3
#define AMDGPU_RESET_SRC_HWS 4
#define SOC15_IH_CLIENTID_UTCL2 0x1b

/* Kernel eras whose lines differ (docs/compute.md "Kernel log lines"). */
#define ERA_7 (LINUX_VERSION_CODE >= KERNEL_VERSION(7, 0, 0))
#define ERA_612 (LINUX_VERSION_CODE >= KERNEL_VERSION(6, 12, 0))
/* Split fault lines: upstream 6.10+, and Debian's 6.1.192 (the CVE-2024-41008 backport; the
 * 6.1.100 threshold is approximate, verified only on 6.1.192's amdgpu.ko strings). */
#define FAULT_SPLIT (LINUX_VERSION_CODE >= KERNEL_VERSION(6, 10, 0) || \
		     (LINUX_VERSION_CODE >= KERNEL_VERSION(6, 1, 100) && \
		      LINUX_VERSION_CODE < KERNEL_VERSION(6, 2, 0)))
/* kfd_process.pasid moved to kfd_process_device.pasid (absent from 7.3's BTF, present in
 * 6.12's; the exact release is not verified). */
#define PASID_PER_PDD (LINUX_VERSION_CODE >= KERNEL_VERSION(6, 13, 0))

/* amdgpu_sim's device 0, set by kfd_sim_init. */
static struct amdgpu_device *kfd_adev;

enum kfd_queue_type {
	KFD_QUEUE_TYPE_COMPUTE,
	KFD_QUEUE_TYPE_SDMA,
	KFD_QUEUE_TYPE_HIQ,
	KFD_QUEUE_TYPE_DIQ,
	KFD_QUEUE_TYPE_SDMA_XGMI,
	KFD_QUEUE_TYPE_MAX,
};

struct kfd_sim_task {
	char process_name[TASK_COMM_LEN];
	char task_name[TASK_COMM_LEN];
	pid_t pid;
	pid_t tgid;
};

struct queue_properties {
	enum kfd_queue_type type;
	unsigned int queue_id;
	u64 queue_address;
	u64 queue_size;
	u32 doorbell_off;
	bool is_active;
	bool is_evicted;
};

struct kfd_process;

struct queue {
	struct list_head list;
	struct queue_properties properties;
	unsigned int doorbell_id;
	struct kfd_process *process;
	/* simulator state */
	bool hung;
	bool mes_hang;
	struct kobject *kobj;
};

struct process_queue_manager {
	struct kfd_process *process;
	struct list_head queues;
	DECLARE_BITMAP(queue_slot_bitmap, KFD_SIM_MAX_QUEUES);
};

struct kfd_process_device {
	struct kfd_process *process;
	u32 gpu_id;
#if PASID_PER_PDD
	u32 pasid;
#endif
};

struct kfd_process {
	struct list_head node;
	/* Open files plus in-flight simulated dispatches; the last put releases the process. */
	int refs;
	bool dying;
	struct mutex mutex;
	struct task_struct *lead_thread;
#if !PASID_PER_PDD
	u32 pasid;
#endif
	struct kfd_process_device *pdds[1];
	u32 n_pdds;
	struct kfd_process_device pdd;
	struct process_queue_manager pqm;
	struct kfd_sim_task task;
	u32 doorbell_base;
	/* The DRM client id its user queues report (7.x). */
	u64 client_id;
	struct kobject *kobj;
	struct kobject *kobj_queues;
};

/* Stand-ins for the device queue manager the real callbacks receive. */
struct device_queue_manager {
	int (*create_queue)(struct device_queue_manager *dqm, struct queue *q, void *qpd);
	int (*destroy_queue)(struct device_queue_manager *dqm, void *qpd, struct queue *q);
};

static int kfd_char_dev_major = -1;
static struct class *kfd_class;
static struct device *kfd_device;
static struct kobject *topo_kobj, *nodes_kobj, *node_kobj[2], *procfs_kobj;
static DEFINE_MUTEX(kfd_processes_mutex);
static LIST_HEAD(kfd_processes);
static DEFINE_IDA(kfd_pasid_ida);
static DEFINE_IDA(kfd_doorbell_ida);
struct workqueue_struct *kfd_sim_wq; /* kfd_sim.h */
static struct work_struct kfd_reset_work;
static int kfd_reset_src = AMDGPU_RESET_SRC_HWS;
static atomic_t kfd_reset_pending = ATOMIC_INIT(0);
static u32 reset_seq_num;
static atomic64_t kfd_client_ids = ATOMIC64_INIT(1000);

static u32 proc_pasid(struct kfd_process *p)
{
#if PASID_PER_PDD
	return p->pdd.pasid;
#else
	return p->pasid;
#endif
}

/* ------------------------------------------------------------------ SMI events */

struct kfd_smi_client {
	struct list_head list;
	DECLARE_KFIFO(fifo, char, 1024);
	wait_queue_head_t wait_queue;
	u64 events;
	pid_t pid;
	bool suser;
	spinlock_t lock;
};

/* Per-process SMI delivery and KFD_SMI_EVENT_MSG_SIZE came with uapi 1.10 (5.19): 5.10's
 * header has neither, and its driver sends every event to every subscribed client. */
#ifdef KFD_SMI_EVENT_MSG_SIZE
#define SIM_SMI_MSG_SIZE KFD_SMI_EVENT_MSG_SIZE
#define SIM_SMI_PER_PROCESS 1
#else
#define SIM_SMI_MSG_SIZE 96
#define SIM_SMI_PER_PROCESS 0
#endif

static LIST_HEAD(smi_clients);
static DEFINE_SPINLOCK(smi_lock);

static bool kfd_smi_ev_enabled(pid_t pid, struct kfd_smi_client *c, unsigned int event)
{
	u64 events = READ_ONCE(c->events);
#if SIM_SMI_PER_PROCESS
	u64 all = KFD_SMI_EVENT_MASK_FROM_INDEX(KFD_SMI_EVENT_ALL_PROCESS);

	if (pid && c->pid != pid && !(c->suser && (events & all)))
		return false;
#endif
	return events & KFD_SMI_EVENT_MASK_FROM_INDEX(event);
}

/* kfd_smi_event_add: "%x " then the event's own format, to every subscribed client. */
static __printf(3, 4) void kfd_smi_event_add(pid_t pid, unsigned int event, const char *fmt, ...)
{
	char msg[SIM_SMI_MSG_SIZE];
	struct kfd_smi_client *c;
	unsigned long flags;
	va_list args;
	int len;

	len = snprintf(msg, sizeof(msg), "%x ", event);
	va_start(args, fmt);
	len += vsnprintf(msg + len, sizeof(msg) - len, fmt, args);
	va_end(args);
	len = min_t(int, len, sizeof(msg));
	spin_lock_irqsave(&smi_lock, flags);
	list_for_each_entry(c, &smi_clients, list) {
		if (!kfd_smi_ev_enabled(pid, c, event))
			continue;
		spin_lock(&c->lock);
		if (kfifo_avail(&c->fifo) >= len) {
			kfifo_in(&c->fifo, msg, len);
			wake_up_all(&c->wait_queue);
		}
		spin_unlock(&c->lock);
	}
	spin_unlock_irqrestore(&smi_lock, flags);
}

static void kfd_smi_event_update_gpu_reset(bool post_reset, const char *cause)
{
	unsigned int event = post_reset ? KFD_SMI_EVENT_GPU_POST_RESET : KFD_SMI_EVENT_GPU_PRE_RESET;

	if (!post_reset)
		++reset_seq_num;
	if (ERA_612)
		kfd_smi_event_add(0, event, "%x %s\n", reset_seq_num, cause);
	else
		kfd_smi_event_add(0, event, "%x\n", reset_seq_num);
}

static ssize_t kfd_smi_ev_read(struct file *f, char __user *user, size_t size, loff_t *off)
{
	struct kfd_smi_client *c = f->private_data;
	char buf[1024];
	unsigned int n;

	size = min_t(size_t, size, sizeof(buf));
	spin_lock_irq(&c->lock);
	n = kfifo_out(&c->fifo, buf, size);
	spin_unlock_irq(&c->lock);
	if (!n)
		return -EAGAIN;
	return copy_to_user(user, buf, n) ? -EFAULT : n;
}

static ssize_t kfd_smi_ev_write(struct file *f, const char __user *user, size_t size, loff_t *off)
{
	struct kfd_smi_client *c = f->private_data;
	u64 events;

	if (size < sizeof(events) || copy_from_user(&events, user, sizeof(events)))
		return -EFAULT;
	WRITE_ONCE(c->events, events);
	return sizeof(events);
}

static __poll_t kfd_smi_ev_poll(struct file *f, struct poll_table_struct *wait)
{
	struct kfd_smi_client *c = f->private_data;
	__poll_t mask = 0;

	poll_wait(f, &c->wait_queue, wait);
	spin_lock_irq(&c->lock);
	if (!kfifo_is_empty(&c->fifo))
		mask = EPOLLIN | EPOLLRDNORM;
	spin_unlock_irq(&c->lock);
	return mask;
}

static int kfd_smi_ev_release(struct inode *inode, struct file *f)
{
	struct kfd_smi_client *c = f->private_data;
	unsigned long flags;

	spin_lock_irqsave(&smi_lock, flags);
	list_del(&c->list);
	spin_unlock_irqrestore(&smi_lock, flags);
	kfree(c);
	return 0;
}

static const struct file_operations kfd_smi_ev_fops = {
	.owner = THIS_MODULE,
	.poll = kfd_smi_ev_poll,
	.read = kfd_smi_ev_read,
	.write = kfd_smi_ev_write,
	.release = kfd_smi_ev_release,
};

static int kfd_ioctl_smi_events(struct file *filep, struct kfd_process *p, void *data)
{
	struct kfd_ioctl_smi_events_args *args = data;
	struct kfd_smi_client *c;
	unsigned long flags;
	int fd;

	if (args->gpuid != KFD_SIM_GPU_ID)
		return -EINVAL;
	c = kzalloc(sizeof(*c), GFP_KERNEL);
	if (!c)
		return -ENOMEM;
	INIT_KFIFO(c->fifo);
	init_waitqueue_head(&c->wait_queue);
	spin_lock_init(&c->lock);
	c->pid = current->tgid;
	c->suser = capable(CAP_SYS_ADMIN);
	spin_lock_irqsave(&smi_lock, flags);
	list_add(&c->list, &smi_clients);
	spin_unlock_irqrestore(&smi_lock, flags);
	fd = anon_inode_getfd("kfd_smi_ev", &kfd_smi_ev_fops, c, O_RDWR);
	if (fd < 0) {
		spin_lock_irqsave(&smi_lock, flags);
		list_del(&c->list);
		spin_unlock_irqrestore(&smi_lock, flags);
		kfree(c);
		return fd;
	}
	args->anon_fd = fd;
	return 0;
}

/* ------------------------------------------------------------------ sysfs */

static ssize_t node_show(struct kobject *kobj, struct kobj_attribute *attr, char *buf)
{
	bool gpu = kobj == node_kobj[1];

	if (!strcmp(attr->attr.name, "gpu_id"))
		return sysfs_emit(buf, "%u\n", gpu ? KFD_SIM_GPU_ID : 0);
	if (!strcmp(attr->attr.name, "name"))
		return sysfs_emit(buf, "%s\n", gpu ? "ip discovery" : "");
	/* properties: the keys hangwatch reads (location_id = bus << 8 | devfn of 0000:00:00.0). */
	if (gpu)
		return sysfs_emit(buf, "cpu_cores_count 0\nsimd_count 192\nlocation_id 0\n"
				       "domain 0\ndrm_render_minor 128\n");
	return sysfs_emit(buf, "cpu_cores_count 2\nsimd_count 0\n");
}

static struct kobj_attribute node_attrs[] = {
	__ATTR(gpu_id, 0444, node_show, NULL),
	__ATTR(name, 0444, node_show, NULL),
	__ATTR(properties, 0444, node_show, NULL),
};

static struct kfd_process *process_of_kobj(struct kobject *kobj)
{
	struct kfd_process *p;

	list_for_each_entry(p, &kfd_processes, node)
		if (p->kobj == kobj)
			return p;
	return NULL;
}

static ssize_t pasid_show(struct kobject *kobj, struct kobj_attribute *attr, char *buf)
{
	struct kfd_process *p;
	ssize_t r = -ENOENT;

	mutex_lock(&kfd_processes_mutex);
	p = process_of_kobj(kobj);
	if (p)
		r = sysfs_emit(buf, "%d\n", proc_pasid(p));
	mutex_unlock(&kfd_processes_mutex);
	return r;
}

static struct kobj_attribute pasid_attr = __ATTR(pasid, 0444, pasid_show, NULL);

static ssize_t queue_show(struct kobject *kobj, struct kobj_attribute *attr, char *buf)
{
	struct kfd_process *p;
	struct queue *q;
	ssize_t r = -ENOENT;

	mutex_lock(&kfd_processes_mutex);
	list_for_each_entry(p, &kfd_processes, node) {
		list_for_each_entry(q, &p->pqm.queues, list) {
			if (q->kobj != kobj)
				continue;
			/* Like the real kfd_procfs_queue_show: no trailing newline. */
			if (!strcmp(attr->attr.name, "size"))
				r = sysfs_emit(buf, "%llu", q->properties.queue_size);
			else if (!strcmp(attr->attr.name, "type"))
				r = sysfs_emit(buf, "%d", q->properties.type);
			else
				r = sysfs_emit(buf, "%u", KFD_SIM_GPU_ID);
		}
	}
	mutex_unlock(&kfd_processes_mutex);
	return r;
}

static struct kobj_attribute queue_attrs[] = {
	__ATTR(size, 0444, queue_show, NULL),
	__ATTR(type, 0444, queue_show, NULL),
	__ATTR(gpuid, 0444, queue_show, NULL),
};

static void kfd_procfs_add_queue(struct queue *q)
{
	char name[16];
	int i;

	snprintf(name, sizeof(name), "%u", q->properties.queue_id);
	q->kobj = kobject_create_and_add(name, q->process->kobj_queues);
	for (i = 0; q->kobj && i < ARRAY_SIZE(queue_attrs); i++)
		if (sysfs_create_file(q->kobj, &queue_attrs[i].attr))
			pr_warn("amdgpu: Creating proc/<pid>/queues/%u failed", q->properties.queue_id);
}

/* ------------------------------------------------------------------ resets */

/* amdgpu_amdkfd_gpu_reset: KFD asks amdgpu for a GPU reset, done from a work item. */
noinline void amdgpu_amdkfd_gpu_reset(struct amdgpu_device *adev)
{
	if (atomic_cmpxchg(&kfd_reset_pending, 0, 1) == 0)
		queue_work(kfd_sim_wq, &kfd_reset_work);
}

static void kfd_reset_work_fn(struct work_struct *w)
{
	struct amdgpu_reset_context ctx = { .src = kfd_reset_src };
	const char *cause = kfd_reset_src == AMDGPU_RESET_SRC_MES ? "MES hang" : "HWS hang";
	struct kfd_process *p;
	struct queue *q;

	kfd_smi_event_update_gpu_reset(false, cause);
#if SIM_RECOVER_HAS_CONTEXT
	amdgpu_device_gpu_recover(kfd_adev, NULL, &ctx);
#else
	(void)ctx;
	amdgpu_device_gpu_recover(kfd_adev, NULL);
#endif
	/* The reset took every queue off the hardware: nothing is hung any more. */
	mutex_lock(&kfd_processes_mutex);
	list_for_each_entry(p, &kfd_processes, node)
		list_for_each_entry(q, &p->pqm.queues, list)
			q->hung = q->mes_hang = false;
	mutex_unlock(&kfd_processes_mutex);
	kfd_smi_event_update_gpu_reset(true, cause);
	kfd_reset_src = AMDGPU_RESET_SRC_HWS;
	atomic_set(&kfd_reset_pending, 0);
}

static void kfd_hws_hang(int src)
{
	kfd_reset_src = src;
	amdgpu_amdkfd_gpu_reset(kfd_adev);
}

/* ------------------------------------------------------------------ queues */

static struct queue *hung_queue(void)
{
	struct kfd_process *p;
	struct queue *q;

	list_for_each_entry(p, &kfd_processes, node)
		list_for_each_entry(q, &p->pqm.queues, list)
			if (q->hung)
				return q;
	return NULL;
}

/*
 * The HWS unmaps every dynamic queue of the GPU to remove one (execute_queues_cpsch), so ANY
 * hung queue fails the unmap — and the line naming a pasid names the process that asked.
 * Called with kfd_processes_mutex held. Returns -ETIME like the real unmap_queues_cpsch.
 */
static int unmap_queues_cpsch(struct queue *removing)
{
	struct queue *hung = hung_queue();
	struct kfd_sim_task *t;

	if (removing && removing->mes_hang) {
		pr_err("amdgpu: failed to remove hardware queue from MES, doorbell=0x%x\n",
		       removing->properties.doorbell_off);
		pr_err("amdgpu: MES might be in unrecoverable state, issue a GPU reset\n");
		kfd_hws_hang(AMDGPU_RESET_SRC_MES);
		return -ETIME;
	}
	if (!hung)
		return 0;
	msleep(kfd_preempt_ms);
	if (!ERA_612) {
		pr_err("amdgpu: HIQ MQD's queue_doorbell_id0 is not 0, Queue preemption time out\n");
		kfd_hws_hang(AMDGPU_RESET_SRC_HWS); /* 6.1.y stable: reset on this path too */
		return -ETIME;
	}
	/* 6.12+: the HIQ names the queue; KFD resets that process's queues instead of the GPU. */
	t = &hung->process->task;
	if (ERA_7) {
		pr_err(SIM_DEV7 "Queue preemption failed for queue with doorbell_id: %x\n",
		       hung->properties.doorbell_off);
		pr_err(SIM_DEV7 "Queues reset on process %s tid %d thread %s pid %d\n",
		       t->process_name, t->tgid, t->task_name, t->pid);
	} else {
		pr_err(SIM_DEV "Queue preemption failed for queue with doorbell_id: %x\n",
		       hung->properties.doorbell_off);
		pr_err(SIM_DEV "Queues reset on process %s tid %d thread %s pid %d\n",
		       t->process_name, t->tgid, t->task_name, t->pid);
	}
	hung->hung = false;
	return -ETIME;
}

static int create_queue_cpsch(struct device_queue_manager *dqm, struct queue *q, void *qpd)
{
	q->doorbell_id = q->properties.queue_id;
	q->properties.doorbell_off = q->process->doorbell_base + q->doorbell_id * 2;
	q->properties.is_active = true;
	return 0;
}

static int destroy_queue_cpsch(struct device_queue_manager *dqm, void *qpd, struct queue *q)
{
	return unmap_queues_cpsch(q);
}

static struct device_queue_manager dqm = {
	.create_queue = create_queue_cpsch,
	.destroy_queue = destroy_queue_cpsch,
};

noinline int pqm_create_queue(struct process_queue_manager *pqm, struct queue_properties *properties,
			      unsigned int *qid, unsigned int *p_doorbell_offset_in_process)
{
	struct queue *q;
	unsigned long slot;
	int r;

	slot = find_first_zero_bit(pqm->queue_slot_bitmap, KFD_SIM_MAX_QUEUES);
	if (slot >= KFD_SIM_MAX_QUEUES) {
		pr_info("amdgpu: Cannot open more queues for process with pasid 0x%x\n",
			proc_pasid(pqm->process));
		return -ENOMEM;
	}
	q = kzalloc(sizeof(*q), GFP_KERNEL);
	if (!q)
		return -ENOMEM;
	q->properties = *properties;
	q->properties.queue_id = slot;
	q->process = pqm->process;
	r = dqm.create_queue(&dqm, q, NULL);
	if (r) {
		kfree(q);
		return r;
	}
	set_bit(slot, pqm->queue_slot_bitmap);
	mutex_lock(&kfd_processes_mutex);
	list_add_tail(&q->list, &pqm->queues);
	mutex_unlock(&kfd_processes_mutex);
	kfd_procfs_add_queue(q);
	*qid = slot;
	*p_doorbell_offset_in_process =
		(q->properties.doorbell_off * sizeof(u32)) & (KFD_SIM_DOORBELL_SLICE - 1);
	return 0;
}

static struct queue *pqm_get_queue(struct process_queue_manager *pqm, unsigned int qid)
{
	struct queue *q;

	list_for_each_entry(q, &pqm->queues, list)
		if (q->properties.queue_id == qid)
			return q;
	return NULL;
}

/* Removes q (whatever the unmap said, like the real pqm on -ETIME) and returns the unmap's result. */
static int pqm_remove_queue(struct process_queue_manager *pqm, struct queue *q, bool report)
{
	struct kobject *kobj;
	int r;

	mutex_lock(&kfd_processes_mutex);
	r = dqm.destroy_queue(&dqm, NULL, q);
	if (r && report)
		pr_err("amdgpu: Pasid 0x%x destroy queue %d failed, ret %d\n",
		       proc_pasid(pqm->process), q->properties.queue_id, r);
	if (r && r != -ETIME) {
		mutex_unlock(&kfd_processes_mutex);
		return r;
	}
	list_del(&q->list);
	clear_bit(q->properties.queue_id, pqm->queue_slot_bitmap);
	kobj = q->kobj;
	mutex_unlock(&kfd_processes_mutex);
	if (kobj)
		kobject_put(kobj);
	kfree(q);
	return r;
}

noinline int pqm_destroy_queue(struct process_queue_manager *pqm, unsigned int qid)
{
	struct queue *q;

	mutex_lock(&kfd_processes_mutex);
	q = pqm_get_queue(pqm, qid);
	mutex_unlock(&kfd_processes_mutex);
	if (!q) {
		pr_err("amdgpu: Queue id does not match any known queue\n");
		return -EINVAL;
	}
	return pqm_remove_queue(pqm, q, true);
}

/* ------------------------------------------------------------------ ioctls */

static int kfd_ioctl_get_version(struct file *filep, struct kfd_process *p, void *data)
{
	struct kfd_ioctl_get_version_args *args = data;

	args->major_version = KFD_IOCTL_MAJOR_VERSION;
	args->minor_version = KFD_IOCTL_MINOR_VERSION;
	return 0;
}

static int kfd_ioctl_create_queue(struct file *filep, struct kfd_process *p, void *data)
{
	struct kfd_ioctl_create_queue_args *args = data;
	struct queue_properties props = {};
	unsigned int doorbell_offset_in_process = 0;
	unsigned int queue_id;
	int err;

	if (args->gpu_id != KFD_SIM_GPU_ID)
		return -EINVAL;
	switch (args->queue_type) {
	case KFD_IOC_QUEUE_TYPE_COMPUTE:
	case KFD_IOC_QUEUE_TYPE_COMPUTE_AQL:
		props.type = KFD_QUEUE_TYPE_COMPUTE;
		break;
	case KFD_IOC_QUEUE_TYPE_SDMA:
		props.type = KFD_QUEUE_TYPE_SDMA;
		break;
	default:
		return -EINVAL;
	}
	props.queue_address = args->ring_base_address;
	props.queue_size = args->ring_size;
	mutex_lock(&p->mutex);
	err = pqm_create_queue(&p->pqm, &props, &queue_id, &doorbell_offset_in_process);
	if (!err) {
		args->queue_id = queue_id;
		args->doorbell_offset = KFD_MMAP_TYPE_DOORBELL | KFD_MMAP_GPU_ID(args->gpu_id) |
					doorbell_offset_in_process;
	}
	mutex_unlock(&p->mutex);
	return err;
}

static int kfd_ioctl_destroy_queue(struct file *filp, struct kfd_process *p, void *data)
{
	struct kfd_ioctl_destroy_queue_args *args = data;
	int retval;

	mutex_lock(&p->mutex);
	retval = pqm_destroy_queue(&p->pqm, args->queue_id);
	mutex_unlock(&p->mutex);
	return retval;
}

static void kfd_process_put(struct kfd_process *p);

/* A dispatch the "GPU" runs: finishes, hangs its queue, or faults after duration_us. */
struct kfd_sim_job {
	struct delayed_work work;
	struct kfd_process *p; /* pinned by an open count */
	u32 queue_id;
	u32 flags;
	u64 fault_addr;
};

static void kfd_sim_print_fault(u32 vmid, u32 pasid, u64 addr, struct kfd_sim_task *t)
{
	unsigned int src_data[4] = { lower_32_bits(addr >> 12), lower_32_bits((addr >> 44) & 0xf), 0, 0 };
	const char *pre = ERA_7 ? SIM_DEV7 : SIM_DEV;

	trace_amdgpu_iv(0, SOC15_IH_CLIENTID_UTCL2, 0, 24, vmid, 0, ktime_get_ns(), 0, pasid, src_data);
	if (!FAULT_SPLIT) {
		pr_err("%s[gfxhub] page fault (src_id:0 ring:24 vmid:%u pasid:%u, for process %s pid %d thread %s pid %d)\n",
		       pre, vmid, pasid, t ? t->process_name : "", t ? t->tgid : 0,
		       t ? t->task_name : "", t ? t->pid : 0);
	} else {
		pr_err("%s[gfxhub] page fault (src_id:0 ring:24 vmid:%u pasid:%u)\n", pre, vmid, pasid);
		if (t && ERA_7)
			pr_err("%s Process %s pid %d thread %s pid %d\n", pre, t->process_name,
			       t->tgid, t->task_name, t->pid);
		else if (t)
			pr_err("%s in process %s pid %d thread %s pid %d)\n", pre, t->process_name,
			       t->tgid, t->task_name, t->pid);
	}
	pr_err("%s  in page starting at address 0x%016llx from client %d\n", pre, addr & ~0xfffULL, 10);
}

/* The RX 7900 XTX pattern: a fault no process owns, MES stops answering, the driver resets. */
static void kfd_sim_mes_failure(void)
{
	if (ERA_7) {
		pr_err(SIM_DEV7 "MES(0) failed to respond to msg=REMOVE_QUEUE\n");
	} else if (ERA_612) {
		pr_err(SIM_DEV "MES failed to respond to msg=REMOVE_QUEUE\n");
	} else {
		pr_err("[drm:mes_v11_0_submit_pkt_and_poll_completion.constprop.0 [amdgpu]] *ERROR* MES failed to response msg=%d\n", 3);
		pr_err("[drm:amdgpu_mes_unmap_legacy_queue [amdgpu]] *ERROR* failed to unmap legacy queue\n");
	}
	kfd_hws_hang(AMDGPU_RESET_SRC_MES);
}

static void kfd_sim_job_fn(struct work_struct *w)
{
	struct kfd_sim_job *j = container_of(to_delayed_work(w), struct kfd_sim_job, work);
	struct kfd_process *p = j->p;

	if (j->flags & KFD_SIM_F_FAULT) {
		kfd_sim_print_fault(8, proc_pasid(p), j->fault_addr, &p->task);
		kfd_smi_event_add(0, KFD_SMI_EVENT_VMFAULT, "%x:%s\n", p->task.pid, p->task.task_name);
	}
	if (j->flags & KFD_SIM_F_FAULT_PID0) {
		kfd_sim_print_fault(0, 0, j->fault_addr, NULL);
		kfd_sim_mes_failure();
	}
	kfree(j);
	kfd_process_put(p);
}

static int kfd_sim_ioctl_dispatch(struct file *filep, struct kfd_process *p, void *data)
{
	struct kfd_sim_dispatch *args = data;
	struct kfd_sim_job *j;
	struct queue *q;

	mutex_lock(&kfd_processes_mutex);
	q = pqm_get_queue(&p->pqm, args->queue_id);
	if (q) {
		q->hung |= !!(args->flags & KFD_SIM_F_HANG);
		q->mes_hang |= !!(args->flags & KFD_SIM_F_MES_HANG);
	}
	mutex_unlock(&kfd_processes_mutex);
	if (!q)
		return -EINVAL;
	if (!(args->flags & (KFD_SIM_F_FAULT | KFD_SIM_F_FAULT_PID0)))
		return 0; /* the dispatch runs (or hangs) without the kernel noticing */
	j = kzalloc(sizeof(*j), GFP_KERNEL);
	if (!j)
		return -ENOMEM;
	j->p = p;
	j->queue_id = args->queue_id;
	j->flags = args->flags;
	j->fault_addr = args->fault_addr;
	mutex_lock(&kfd_processes_mutex);
	p->refs++; /* the job holds the process */
	mutex_unlock(&kfd_processes_mutex);
	INIT_DELAYED_WORK(&j->work, kfd_sim_job_fn);
	queue_delayed_work(kfd_sim_wq, &j->work, usecs_to_jiffies(max_t(u64, args->duration_us, 1)));
	return 0;
}

static int kfd_sim_ioctl_userq_create(struct file *filep, struct kfd_process *p, void *data)
{
	return kfd_sim_userq_create(data, p->client_id);
}

static int kfd_sim_ioctl_userq_destroy(struct file *filep, struct kfd_process *p, void *data)
{
	return kfd_sim_userq_destroy(data);
}

static int kfd_sim_ioctl_userq_signal(struct file *filep, struct kfd_process *p, void *data)
{
	return kfd_sim_userq_signal(data);
}

typedef int amdkfd_ioctl_t(struct file *filep, struct kfd_process *p, void *data);

struct amdkfd_ioctl_desc {
	unsigned int cmd;
	amdkfd_ioctl_t *func;
};

static const struct amdkfd_ioctl_desc amdkfd_ioctls[] = {
	{ AMDKFD_IOC_GET_VERSION, kfd_ioctl_get_version },
	{ AMDKFD_IOC_CREATE_QUEUE, kfd_ioctl_create_queue },
	{ AMDKFD_IOC_DESTROY_QUEUE, kfd_ioctl_destroy_queue },
	{ AMDKFD_IOC_SMI_EVENTS, kfd_ioctl_smi_events },
};

/* Like the real kfd_ioctl: find the handler by number, copy the args in (zero-extended to the
 * kernel's struct size), call it with the process, copy them back. */
static long kfd_ioctl(struct file *filep, unsigned int cmd, unsigned long arg)
{
	const struct amdkfd_ioctl_desc *ioctl = NULL;
	amdkfd_ioctl_t *func;
	char kdata[128] = {};
	unsigned int usize, asize;
	int i, r;

	if (_IOC_TYPE(cmd) == 'k') {
		switch (cmd) {
		case KFD_SIM_IOC_DISPATCH:
			func = kfd_sim_ioctl_dispatch;
			break;
		case KFD_SIM_IOC_USERQ_CREATE:
			func = kfd_sim_ioctl_userq_create;
			break;
		case KFD_SIM_IOC_USERQ_DESTROY:
			func = kfd_sim_ioctl_userq_destroy;
			break;
		case KFD_SIM_IOC_USERQ_SIGNAL:
			func = kfd_sim_ioctl_userq_signal;
			break;
		default:
			return -ENOTTY;
		}
		usize = asize = _IOC_SIZE(cmd);
	} else {
		for (i = 0; i < ARRAY_SIZE(amdkfd_ioctls); i++)
			if (_IOC_TYPE(cmd) == 'K' && _IOC_NR(cmd) == _IOC_NR(amdkfd_ioctls[i].cmd))
				ioctl = &amdkfd_ioctls[i];
		if (!ioctl)
			return -EINVAL;
		func = ioctl->func;
		usize = _IOC_SIZE(cmd);
		asize = max(usize, _IOC_SIZE(ioctl->cmd));
		cmd = ioctl->cmd;
	}
	if (asize > sizeof(kdata))
		return -EINVAL;
	if ((cmd & IOC_IN) && copy_from_user(kdata, (void __user *)arg, usize))
		return -EFAULT;
	r = func(filep, filep->private_data, kdata);
	if ((cmd & IOC_OUT) && copy_to_user((void __user *)arg, kdata, usize))
		r = -EFAULT;
	return r;
}

/* ------------------------------------------------------------------ processes */

/* Real 6.1 kfd_create_process: one KFD process per mm (here: per thread group), a pasid
 * (kfd_pasid_alloc -> amdgpu_pasid_alloc, so the pasid tracepoint fires in the opener), the
 * task info fault lines print, and /sys/class/kfd/kfd/proc/<pid>. */
noinline struct kfd_process *kfd_create_process(struct task_struct *thread)
{
	struct kfd_process *p;
	char name[16];
	int pasid, db;

	list_for_each_entry(p, &kfd_processes, node)
		if (p->lead_thread == thread->group_leader && !p->dying)
			return p;
	p = kzalloc(sizeof(*p), GFP_KERNEL);
	if (!p)
		return ERR_PTR(-ENOMEM);
	pasid = ida_alloc_range(&kfd_pasid_ida, 0x1000, 0x7fff, GFP_KERNEL);
	db = ida_alloc_range(&kfd_doorbell_ida, 0, 255, GFP_KERNEL);
	if (pasid < 0 || db < 0) {
		if (pasid >= 0)
			ida_free(&kfd_pasid_ida, pasid);
		if (db >= 0)
			ida_free(&kfd_doorbell_ida, db);
		kfree(p);
		return ERR_PTR(-ENOSPC);
	}
	mutex_init(&p->mutex);
	p->lead_thread = thread->group_leader;
#if PASID_PER_PDD
	p->pdd.pasid = pasid;
#else
	p->pasid = pasid;
#endif
	p->pdd.process = p;
	p->pdd.gpu_id = KFD_SIM_GPU_ID;
	p->pdds[0] = &p->pdd;
	p->n_pdds = 1;
	p->pqm.process = p;
	INIT_LIST_HEAD(&p->pqm.queues);
	p->doorbell_base = KFD_SIM_DOORBELL_BASE + db * (KFD_SIM_DOORBELL_SLICE / 4);
	p->task.pid = current->pid;
	p->task.tgid = current->tgid;
	p->client_id = atomic64_inc_return(&kfd_client_ids);
	get_task_comm(p->task.task_name, current);
	get_task_comm(p->task.process_name, current->group_leader);
	trace_amdgpu_pasid_allocated(pasid);
	snprintf(name, sizeof(name), "%d", current->tgid);
	p->kobj = kobject_create_and_add(name, procfs_kobj);
	if (p->kobj) {
		if (sysfs_create_file(p->kobj, &pasid_attr.attr))
			pr_warn("amdgpu: Creating procfs pid directory failed");
		p->kobj_queues = kobject_create_and_add("queues", p->kobj);
	}
	list_add_tail(&p->node, &kfd_processes);
	return p;
}

/* The last reference is gone (the process exited): its queues are unmapped — a hung one fails
 * the HWS like at any other unmap, so the process stays listed meanwhile — then it is freed. */
static void kfd_process_release(struct kfd_process *p)
{
	u32 pasid = proc_pasid(p);
	struct queue *q;

	for (;;) {
		mutex_lock(&kfd_processes_mutex);
		q = list_first_entry_or_null(&p->pqm.queues, struct queue, list);
		mutex_unlock(&kfd_processes_mutex);
		if (!q)
			break;
		pqm_remove_queue(&p->pqm, q, false);
	}
	kfd_sim_userq_release(p->task.tgid);
	mutex_lock(&kfd_processes_mutex);
	list_del(&p->node);
	mutex_unlock(&kfd_processes_mutex);
	kobject_put(p->kobj_queues);
	kobject_put(p->kobj);
	trace_amdgpu_pasid_freed(pasid);
	ida_free(&kfd_pasid_ida, pasid);
	ida_free(&kfd_doorbell_ida,
		 (p->doorbell_base - KFD_SIM_DOORBELL_BASE) / (KFD_SIM_DOORBELL_SLICE / 4));
	kfree(p);
}

static void kfd_process_put(struct kfd_process *p)
{
	bool last;

	mutex_lock(&kfd_processes_mutex);
	last = --p->refs == 0;
	if (last)
		p->dying = true;
	mutex_unlock(&kfd_processes_mutex);
	if (last)
		kfd_process_release(p);
}

static int kfd_open(struct inode *inode, struct file *filep)
{
	struct kfd_process *p;

	mutex_lock(&kfd_processes_mutex);
	p = kfd_create_process(current);
	if (!IS_ERR(p))
		p->refs++;
	mutex_unlock(&kfd_processes_mutex);
	if (IS_ERR(p))
		return PTR_ERR(p);
	filep->private_data = p;
	return 0;
}

static int kfd_release(struct inode *inode, struct file *filep)
{
	kfd_process_put(filep->private_data);
	return 0;
}

static const struct file_operations kfd_fops = {
	.owner = THIS_MODULE,
	.unlocked_ioctl = kfd_ioctl,
	.compat_ioctl = kfd_ioctl,
	.open = kfd_open,
	.release = kfd_release,
};

/* ------------------------------------------------------------------ init / exit */

#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 2, 0)
static char *kfd_devnode(const struct device *dev, umode_t *mode)
#else
static char *kfd_devnode(struct device *dev, umode_t *mode)
#endif
{
	if (mode)
		*mode = 0666; /* like the real kfd_devnode */
	return NULL;
}

static int kfd_sim_topology_init(void)
{
	char name[4];
	int i, j;

	topo_kobj = kobject_create_and_add("topology", &kfd_device->kobj);
	nodes_kobj = topo_kobj ? kobject_create_and_add("nodes", topo_kobj) : NULL;
	procfs_kobj = kobject_create_and_add("proc", &kfd_device->kobj);
	if (!nodes_kobj || !procfs_kobj)
		return -ENOMEM;
	for (i = 0; i < 2; i++) {
		snprintf(name, sizeof(name), "%d", i);
		node_kobj[i] = kobject_create_and_add(name, nodes_kobj);
		if (!node_kobj[i])
			return -ENOMEM;
		for (j = 0; j < ARRAY_SIZE(node_attrs); j++)
			if (sysfs_create_file(node_kobj[i], &node_attrs[j].attr))
				return -ENOMEM;
	}
	return 0;
}

static void kfd_sim_topology_fini(void)
{
	int i;

	for (i = 1; i >= 0; i--)
		kobject_put(node_kobj[i]);
	kobject_put(nodes_kobj);
	kobject_put(topo_kobj);
	kobject_put(procfs_kobj);
}

int kfd_sim_init(struct amdgpu_device *adev)
{
	int r;

	kfd_adev = adev;
	kfd_sim_wq = alloc_workqueue("kfd_sim", WQ_UNBOUND, 0);
	if (!kfd_sim_wq)
		return -ENOMEM;
	INIT_WORK(&kfd_reset_work, kfd_reset_work_fn);
	kfd_char_dev_major = register_chrdev(0, "kfd", &kfd_fops);
	if (kfd_char_dev_major < 0) {
		r = kfd_char_dev_major;
		goto err_wq;
	}
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 4, 0)
	kfd_class = class_create("kfd");
#else
	kfd_class = class_create(THIS_MODULE, "kfd");
#endif
	if (IS_ERR(kfd_class)) {
		r = PTR_ERR(kfd_class);
		goto err_chrdev;
	}
	kfd_class->devnode = kfd_devnode;
	kfd_device = device_create(kfd_class, NULL, MKDEV(kfd_char_dev_major, 0), NULL, "kfd");
	if (IS_ERR(kfd_device)) {
		r = PTR_ERR(kfd_device);
		goto err_class;
	}
	r = kfd_sim_topology_init();
	if (r)
		goto err_topo;
	pr_info("amdgpu: kfd_sim: /dev/kfd gpu_id %u, preemption timeout %u ms\n", KFD_SIM_GPU_ID,
		kfd_preempt_ms);
	return 0;
err_topo:
	kfd_sim_topology_fini();
	device_destroy(kfd_class, MKDEV(kfd_char_dev_major, 0));
err_class:
	class_destroy(kfd_class);
err_chrdev:
	unregister_chrdev(kfd_char_dev_major, "kfd");
err_wq:
	destroy_workqueue(kfd_sim_wq);
	kfd_sim_wq = NULL;
	return r;
}

void kfd_sim_exit(void)
{
	/* Module unload needs every /dev/kfd closed: no process is left. */
	if (!kfd_sim_wq)
		return; /* kfd_sim_init failed */
	flush_workqueue(kfd_sim_wq);
	kfd_sim_topology_fini();
	device_destroy(kfd_class, MKDEV(kfd_char_dev_major, 0));
	class_destroy(kfd_class);
	unregister_chrdev(kfd_char_dev_major, "kfd");
	destroy_workqueue(kfd_sim_wq);
}
