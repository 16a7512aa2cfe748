/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * Simulator-only ABI of /dev/kfd (tests/kmod/kfd_sim.c), shared with the scenario driver
 * (tests/vm/hwdriver.rs). The queue ioctls are the REAL ones from <linux/kfd_ioctl.h>
 * (AMDKFD_IOC_CREATE_QUEUE, AMDKFD_IOC_DESTROY_QUEUE, AMDKFD_IOC_SMI_EVENTS); this header only
 * adds what a real GPU does without the kernel: executing what a doorbell write submitted.
 */
#ifndef KFD_SIM_UAPI_H
#define KFD_SIM_UAPI_H
#include <linux/ioctl.h>
#include <linux/types.h>

/* The dispatch never finishes: the queue will not preempt (a hung compute kernel). */
#define KFD_SIM_F_HANG (1u << 0)
/* The dispatch faults at fault_addr in the process's VM (gmc fault lines, SMI VMFAULT). */
#define KFD_SIM_F_FAULT (1u << 1)
/* MES GPU: a fault the kernel cannot map to a process (vmid 0, pasid 0: "pid 0"), then MES
 * stops answering and the driver resets the GPU (the RX 7900 XTX pattern). */
#define KFD_SIM_F_FAULT_PID0 (1u << 2)
/* MES GPU: the queue hangs and MES cannot remove it ("failed to remove hardware queue from
 * MES, doorbell=0x..") when it is next unmapped; the driver resets the GPU. */
#define KFD_SIM_F_MES_HANG (1u << 3)

/* A doorbell write: the "hardware" runs one dispatch on the caller's queue. */
struct kfd_sim_dispatch {
	__u32 queue_id;
	__u32 flags;
	__u64 duration_us;
	__u64 fault_addr;
};

/* 'k' (lower case) so it can never collide with a real AMDKFD_IOC_* ('K'). */
#define KFD_SIM_IOC_DISPATCH _IOW('k', 1, struct kfd_sim_dispatch)

/*
 * 7.x amdgpu user queues (what Mesa creates with DRM_IOCTL_AMDGPU_USERQ), simulated here so the
 * real amdgpu_userq_* tracepoints fire in the right processes. -ENOTTY before 7.0.
 * ip_type is AMDGPU_HW_IP_* (0 GFX, 1 COMPUTE, 2 DMA).
 */
struct kfd_sim_userq {
	__u32 ip_type;  /* to the kernel (create) */
	__u32 queue_id; /* from the kernel (create), to it (destroy) */
	__u64 doorbell; /* from the kernel: the doorbell index the tracepoints print */
};

/* A job on a user queue: the fence the signal ioctl emits; KFD_SIM_F_HANG never signals it. */
struct kfd_sim_userq_signal {
	__u32 queue_id;
	__u32 flags;
	__u64 duration_us;
};

#define KFD_SIM_IOC_USERQ_CREATE _IOWR('k', 2, struct kfd_sim_userq)
#define KFD_SIM_IOC_USERQ_DESTROY _IOW('k', 3, struct kfd_sim_userq)
#define KFD_SIM_IOC_USERQ_SIGNAL _IOW('k', 4, struct kfd_sim_userq_signal)
#endif
