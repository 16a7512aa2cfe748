/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Which real amdgpu the simulator reproduces, per kernel it is built for. One source, four
 * drm_sched eras (Debian 5.10, 6.1, 6.12, 7.x); everything that differs between them is decided
 * here, so amdgpu_sim.c reads as one driver.
 *
 * Mostly LINUX_VERSION_CODE. Two drm_sched signatures are NOT predictable from the version,
 * because stable kernels backported them (Debian 6.1.0-56 = 6.1.192 has struct
 * drm_sched_init_args; Debian 6.12.118 has the 6.17 drm_sched_job_init(..., u64 drm_client_id)):
 * Kbuild greps the headers for those and defines SIM_HAVE_SCHED_INIT_ARGS /
 * SIM_HAVE_JOB_INIT_CLIENT_ID.
 *
 * Log-line eras are taken from the real amdgpu.ko of each Debian build (format strings read
 * from the binaries): 5.10.0-46, 6.1.0-56, 6.12.118+deb13, 7.3.4+deb13. Where the change
 * happened between two of those builds, the boundary below is the upstream release named in
 * the comment and is not verified on a kernel in between.
 */
#ifndef AMDGPU_SIM_COMPAT_H
#define AMDGPU_SIM_COMPAT_H
#include <linux/version.h>

#define SIM_V(a, b) (LINUX_VERSION_CODE >= KERNEL_VERSION(a, b, 0))

/*
 * amdgpu's dev_* messages carry a second "amdgpu: " (amdgpu.h's dev_fmt) up to 6.12 (seen in
 * 5.10, 6.1, 6.12); 7.3's strings have none. Must be defined before <linux/device.h>.
 */
#if !SIM_V(6, 17)
#define dev_fmt(fmt) "amdgpu: " fmt
#define SIM_DEV_FMT_PREFIX 1
#endif

/* ---- drm_sched API ---- */

/* drm_sched_job_arm() and the one-argument drm_sched_entity_push_job(): 5.16. */
#define SIM_HAVE_JOB_ARM SIM_V(5, 16)
/* timedout_job returns enum drm_gpu_sched_stat: 5.11. */
#define SIM_TIMEDOUT_HAS_STAT SIM_V(5, 11)
/* DRM_GPU_SCHED_STAT_NOMINAL was renamed DRM_GPU_SCHED_STAT_RESET: 6.17. */
#define SIM_STAT_RESET SIM_V(6, 17)
/* The `dependency` backend op became `prepare_job`: 6.3 (6.1 has `dependency`). */
#define SIM_HAVE_PREPARE_JOB SIM_V(6, 3)
/* Credit-based flow control: drm_sched_job_init(job, entity, credits, owner) and num_rqs: 6.7. */
#define SIM_HAVE_CREDITS SIM_V(6, 7)
/* drm_sched_start(sched, full_recovery) lost its bool in 6.12 and gained an errno in 6.13. */
#define SIM_START_ERRNO SIM_V(6, 13)
#define SIM_START_NOARG (SIM_V(6, 12) && !SIM_V(6, 13))
/* struct drm_gpu_scheduler has `dev` (the tracepoints print it from 6.17). */
#define SIM_SCHED_HAS_DEV SIM_V(6, 0)
/* hrtimer_setup() replaced hrtimer_init(): 6.15 (7.3 has no hrtimer_init). */
#define SIM_HAVE_HRTIMER_SETUP SIM_V(6, 15)
/* amdgpu_device_gpu_recover(adev, job, reset_context): 5.19; (adev, job) before. */
#define SIM_RECOVER_HAS_CONTEXT SIM_V(5, 19)

/* ---- tracepoints (amdgpu_trace.h) ---- */

/* __assign_str(dst) takes one argument from 6.10. */
#define SIM_ASSIGN_STR_ONE_ARG SIM_V(6, 10)
/* amdgpu_cs_ioctl / amdgpu_sched_run_job: u64 context/seqno, no sched_job_id ("match
 * gpu_scheduler_trace" rework, 6.17; seen in 7.3). */
#define SIM_TRACE_U64_FENCE SIM_V(6, 17)

/* ---- kernel log lines ---- */

/* Ring timeout and "Process information" via DRM_ERROR up to 6.1, dev_err from 6.12 (6.10). */
#define SIM_TIMEOUT_DEV_ERR SIM_V(6, 10)
/* Task info by pasid is refcounted and NULL for a gone process: the process lines are printed
 * only when found. Upstream 6.10 (CVE-2024-41008); Debian's 6.1 carries the backport (its
 * binary has the split fault lines), 5.10 does not (one inline fault line, empty names). */
#define SIM_TASK_INFO_OPTIONAL SIM_V(6, 1)
/* amdgpu_vm_print_task_info(): " Process %s pid %d thread %s pid %d" for faults and timeouts:
 * 6.17 (7.3 has it; 6.12 has the split " in process ...)" line). */
#define SIM_PRINT_TASK_INFO SIM_V(6, 17)
/* "GPU reset begin!. Source:  %d" (7.3) vs "GPU %s begin!" (6.12). */
#define SIM_RESET_SOURCE_LINE SIM_V(6, 17)
/* "Failed to initialize parser": DRM_ERROR (5.10, 6.1); drm_dev_printk "*ERROR* " (6.12);
 * drm_err_ratelimited "[drm] *ERROR* " (7.3). */
#define SIM_PARSER_DRM_DEV SIM_V(6, 10)
#define SIM_PARSER_DRM_ERR SIM_V(6, 17)
/* amdgpu_job_timedout takes a coredump first and prints "Dumping IP State": 6.12. */
#define SIM_DUMP_IP_STATE SIM_V(6, 12)
/* "VRAM is lost due to GPU reset!": DRM_INFO up to 6.1, dev_info from 6.12. */
#define SIM_VRAM_LOST_DEV_INFO SIM_V(6, 10)

/* ---- hang evidence: the wedged uevent and the devcoredump ---- */

/* drm_dev_wedged_event(dev, method): 6.15 (amdgpu sends WEDGED=none after a full reset). */
#define SIM_HAVE_WEDGED_EVENT SIM_V(6, 15)
/* drm_dev_wedged_event(dev, method, struct drm_wedge_task_info *): PID= and TASK=, 6.17. */
#define SIM_WEDGED_TASK_INFO SIM_V(6, 17)
/* amdgpu's devcoredump: amdgpu_reset_capture_coredumpm after the ASIC reset (5.19: "kernel:",
 * "module:", "time:", "process_name: %s PID: %d"), then amdgpu_dev_coredump.c taken in
 * amdgpu_job_timedout right after "Dumping IP State" (6.12 here: SOC, firmware, ring timed
 * out, page fault, ring buffers). 5.10's amdgpu has none. */
#define SIM_HAVE_COREDUMP SIM_V(5, 19)
#define SIM_COREDUMP_IN_TIMEOUT SIM_DUMP_IP_STATE
/* "AMDGPU device coredump file has been created" + "Check your ..." after the dump: 6.15. */
#define SIM_COREDUMP_KMSG SIM_V(6, 15)
/* The dump is formatted and created by a worker, after the kmsg lines, and lists the hung
 * job's IBs (`IB #<i> 0x<addr> <n> dw` plus the dwords): 7.1. */
#define SIM_COREDUMP_WORKER SIM_V(7, 1)
/* dev_coredump_put(): a removed device drops its pending dump, 6.10. */
#define SIM_HAVE_COREDUMP_PUT SIM_V(6, 10)

#endif
