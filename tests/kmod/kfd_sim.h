/* SPDX-License-Identifier: GPL-2.0 */
/* In-module interface of the KFD simulator (kfd_sim.c): amdgpu_sim.c's init/exit call these. */
#ifndef KFD_SIM_H
#define KFD_SIM_H
struct amdgpu_device;
struct amdgpu_job;

/* amdgpu_sim.c's reset, under the real name and per-era signature (amdgpu_sim_compat.h must be
 * included first): the GPU recovery both a job timeout and a KFD HWS/MES hang end in. */
struct amdgpu_reset_context {
	int src;
	u32 flags;
};
#if SIM_RECOVER_HAS_CONTEXT
int amdgpu_device_gpu_recover(struct amdgpu_device *adev, struct amdgpu_job *job,
			      struct amdgpu_reset_context *reset_context);
#else
int amdgpu_device_gpu_recover(struct amdgpu_device *adev, struct amdgpu_job *job);
#endif

/* `adev`: the simulated GPU the KFD node stands on (its resets go through it). */
int kfd_sim_init(struct amdgpu_device *adev);
void kfd_sim_exit(void);
/* The simulator's unbound workqueue (7.x warns about work put on system_wq). */
extern struct workqueue_struct *kfd_sim_wq;

/* The functions with the real KFD names (hangwatch hooks some of them), declared like kfd_priv.h
 * and amdgpu_amdkfd.h do. */
struct kfd_process;
struct process_queue_manager;
struct queue_properties;
struct task_struct;
void amdgpu_amdkfd_gpu_reset(struct amdgpu_device *adev);
int pqm_create_queue(struct process_queue_manager *pqm, struct queue_properties *properties,
		     unsigned int *qid, unsigned int *p_doorbell_offset_in_process);
int pqm_destroy_queue(struct process_queue_manager *pqm, unsigned int qid);
struct kfd_process *kfd_create_process(struct task_struct *thread);

/* 7.x user queues (kfd_sim_userq.c); -ENOTTY before 7.0. */
struct kfd_sim_userq;
struct kfd_sim_userq_signal;
int kfd_sim_userq_create(struct kfd_sim_userq *args, unsigned long long client_id);
int kfd_sim_userq_destroy(struct kfd_sim_userq *args);
int kfd_sim_userq_signal(struct kfd_sim_userq_signal *args);
void kfd_sim_userq_release(int tgid);
#endif
