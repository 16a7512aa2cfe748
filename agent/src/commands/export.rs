//! `hangwatch export --since 10m --out trace.perfetto`: the same Perfetto trace as an incident
//! directory holds, for any window of a running agent's flight recorder.
use std::path::PathBuf;

use crate::sinks::control::{request, Request, DEFAULT_SOCKET};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Start of the window, as a duration before now: 90s, 10m, 2h, or plain seconds.
    #[arg(long)]
    pub since: String,
    /// End of the window, as a duration before now (default: now).
    #[arg(long)]
    pub until: Option<String>,
    /// Output file (Perfetto protobuf trace; open in ui.perfetto.dev). Written as a new 0600
    /// file; an existing file or symlink at the path is replaced, never written through.
    #[arg(long)]
    pub out: PathBuf,
    /// The running agent's control socket.
    #[arg(long, default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
}

/// Now on the agent's clock (CLOCK_MONOTONIC: probe timestamps are ns since boot).
fn monotonic_now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let now = monotonic_now_ns();
    let since_ns = now.saturating_sub(crate::config::parse_duration_ns(&args.since)?);
    let until_ns = match &args.until {
        Some(u) => now.saturating_sub(crate::config::parse_duration_ns(u)?),
        None => now,
    };
    if since_ns >= until_ns {
        anyhow::bail!("--since must be further back than --until");
    }
    let resp = request(&args.socket, &Request::Jobs { since_ns, until_ns })?;
    let bytes =
        hangwatch_core::render::perfetto::encode_window(&resp.jobs, &resp.evidence, None, until_ns);
    // A new 0600 file renamed over --out: the trace names every GPU process, and a symlink
    // planted at the path is replaced rather than written through.
    crate::fsafe::write_new_file(&args.out, |f| {
        use std::io::Write;
        Ok(f.write_all(&bytes)?)
    })?;
    crate::sinks::messages::warn(&format!(
        "wrote {} ({} jobs, {} evidence items)",
        args.out.display(),
        resp.jobs.len(),
        resp.evidence.len()
    ));
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::control::{spawn_server, Response};
    use hangwatch_core::testkit::disputed_incident;
    use hangwatch_core::testkit::protoc_decode;

    #[test]
    fn export_writes_a_decodable_trace_from_a_running_server() {
        let dir = std::env::temp_dir().join(format!("hangwatch-export-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("c.sock");
        let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
        let seen2 = seen.clone();
        let _srv = spawn_server(&sock, move |req| {
            *seen2.lock().unwrap() = Some(req);
            let inc = disputed_incident();
            Response {
                jobs: inc.jobs,
                evidence: inc.evidence,
                ..Default::default()
            }
        })
        .unwrap();
        let out = dir.join("t.perfetto");
        let code = run(Args {
            // Short durations: the window is clipped at boot, and a fresh CI machine may have
            // been up for less than ten minutes.
            since: "5s".into(),
            until: Some("1s".into()),
            out: out.clone(),
            socket: sock,
        })
        .unwrap();
        assert_eq!(code, 0);
        let Some(Request::Jobs { since_ns, until_ns }) = seen.lock().unwrap().clone() else {
            panic!("no request")
        };
        assert_eq!(until_ns - since_ns, 4_000_000_000);
        let meta = std::fs::symlink_metadata(&out).unwrap();
        assert!(meta.is_file());
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
            0o600
        );
        let text = protoc_decode(&std::fs::read(&out).unwrap());
        assert!(text.contains("name: \"ring gfx_0.0.0\""), "{text}");
        assert!(text.contains("name: \"zed[7021] seq 40 (HUNG)\""), "{text}");
        assert_eq!(text.matches("TYPE_SLICE_BEGIN").count(), 2, "{text}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
