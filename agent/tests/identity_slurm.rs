//! The identity reader against a real Slurm job step: `srun` starts a shell under slurmd's
//! slurmstepd, and the reader must name the job id, step and user Slurm gives it.
//! Skipped, with the reason printed, only when no Slurm controller answers `sinfo` here (a
//! single-node cluster: munged, slurmctld and slurmd, docs/operations.md "Process identity").
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use hangwatch::sources::identity;

fn no_cluster() -> Option<String> {
    match Command::new("sinfo").args(["-h", "-o", "%T"]).output() {
        Err(e) => Some(format!("Slurm is not installed ({e})")),
        Ok(o) if !o.status.success() || o.stdout.is_empty() => Some(format!(
            "no Slurm controller answers `sinfo`: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Ok(_) => None,
    }
}

#[test]
fn slurm_step_identity_names_job_step_and_user() {
    if let Some(why) = no_cluster() {
        println!("SKIPPED slurm_step_identity_names_job_step_and_user: {why}");
        return;
    }
    let mut srun = Command::new("srun")
        .args(["--mpi=none", "-N1", "-t", "2", "sh", "-c"])
        .arg("echo $$ $SLURM_JOB_ID $SLURM_STEP_ID $(id -un); exec sleep 60")
        .stdout(Stdio::piped())
        .spawn()
        .expect("srun");
    let mut line = String::new();
    BufReader::new(srun.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let f: Vec<&str> = line.split_whitespace().collect();
    let got = f
        .first()
        .and_then(|p| p.parse::<u32>().ok())
        .map(|pid| identity::read(Path::new("/proc"), pid, &identity::passwd()));
    if let Some(job) = f.get(1) {
        let _ = Command::new("scancel").arg(job).status();
    }
    let _ = srun.kill();
    let _ = srun.wait();
    assert_eq!(f.len(), 4, "srun printed {line:?}");
    let got = got.expect("a pid");
    println!("job step {line:?}: {got:?}");
    let job = got.slurm.as_ref().expect("a Slurm identity");
    assert_eq!(job.job_id.to_string(), f[1], "{got:?}");
    assert_eq!(job.step.as_deref(), Some(f[2]), "{got:?}");
    assert_eq!(job.user.as_deref(), Some(f[3]), "{got:?}");
}
