//! Man pages (`hangwatch.1`, `hangwatch-<command>.1`) and shell completions (bash, zsh, fish)
//! generated from the same clap definition the binary parses (`hangwatch::cli::Cli`), so the
//! packaged documentation cannot drift from the flags. Used by `cargo xtask package`:
//! `cargo run -p agent --example gen_docs -- OUT_DIR` writes OUT_DIR/man1 and
//! OUT_DIR/completions.
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use hangwatch::cli::Cli;

fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
    std::fs::write(path, bytes)
}

fn man_pages(cmd: &clap::Command, out: &Path) -> std::io::Result<usize> {
    let mut n = 0;
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut page)?;
    write(&out.join("man1/hangwatch.1"), &page)?;
    n += 1;
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        // clap names are &'static str without its "string" feature; this process is short.
        let name: &'static str = format!("hangwatch-{}", sub.get_name()).leak();
        let sub = sub.clone().name(name).bin_name(name);
        let mut page = Vec::new();
        clap_mangen::Man::new(sub).render(&mut page)?;
        write(&out.join(format!("man1/{name}.1")), &page)?;
        n += 1;
    }
    Ok(n)
}

fn completions(cmd: &mut clap::Command, out: &Path) -> std::io::Result<()> {
    use clap_complete::Shell;
    for (shell, file) in [
        (Shell::Bash, "hangwatch"),
        (Shell::Zsh, "_hangwatch"),
        (Shell::Fish, "hangwatch.fish"),
    ] {
        let mut buf = Vec::new();
        clap_complete::generate(shell, cmd, "hangwatch", &mut buf);
        write(&out.join("completions").join(file), &buf)?;
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let Some(out) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: gen_docs OUT_DIR");
        return std::process::ExitCode::from(2);
    };
    let mut cmd = Cli::command();
    cmd.build();
    let r = man_pages(&cmd, &out).and_then(|n| completions(&mut cmd, &out).map(|_| n));
    match r {
        Ok(n) => {
            eprintln!(
                "gen_docs: {n} man pages and 3 completion scripts in {}",
                out.display()
            );
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gen_docs: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
