/* SPDX-License-Identifier: GPL-2.0 */
/* In-module interface of the KFD simulator (kfd_sim.c): amdgpu_sim.c's init/exit call these. */
#ifndef KFD_SIM_H
#define KFD_SIM_H
int kfd_sim_init(void);
void kfd_sim_exit(void);
#endif
