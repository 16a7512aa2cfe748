//! Developer tasks: `cargo xtask setup | vm | demo | test | bench | examples | package`. See docs/vm-harness.md.
mod accel;
mod apt;
mod bench;
mod examples;
mod formats;
mod hosttools;
mod initramfs;
mod kernel;
mod kmod;
#[path = "../../tests/vm/matrix.rs"]
mod matrix;
mod package;
mod qemu;
#[path = "../../tests/vm/result.rs"]
mod result;
mod setup;
mod test_cmd;
mod util;
mod vm;

use std::process::ExitCode;

use setup::Scope;

fn main() -> ExitCode {
    setup::tools_on_path();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = args.get(1..).unwrap_or(&[]).to_vec();
    let r = match args.first().map(String::as_str) {
        Some("setup") => setup::setup(Scope::All).map(|_| 0),
        Some("vm") => vm::parse_args(&rest)
            .and_then(|o| vm::run_vm(&o))
            .map(|runs| u8::from(runs.iter().any(|r| r.error.is_some()))),
        Some("demo") => setup::setup(Scope::Demo).and_then(|_| {
            let scen = vm::all_scenarios()?.into_iter().take(1).collect();
            vm::run_vm(&vm::Opts {
                scenarios: scen,
                phase: vm::Phase::B,
                demo: true,
                ..Default::default()
            })
            .map(|runs| u8::from(runs.iter().any(|r| r.error.is_some())))
        }),
        // Resolve a build or series and fetch + prepare it (no VM): prints the exact build.
        Some("kernel") => match rest.first() {
            Some(spec) => kernel::prepare(spec).map(|k| {
                println!("{}\t{}", k.version, k.dir.display());
                0
            }),
            None => Err(anyhow::anyhow!("usage: cargo xtask kernel VER|SERIES")),
        },
        // Build the simulator against a kernel's headers (no VM): prints the module's path.
        Some("kmod") => match rest.first() {
            Some(spec) => kernel::prepare(spec)
                .and_then(|k| kmod::build_sim(&k))
                .map(|ko| {
                    println!("{}", ko.display());
                    0
                }),
            None => Err(anyhow::anyhow!("usage: cargo xtask kmod VER|SERIES")),
        },
        Some("test") => test_cmd::test(&rest),
        Some("bench") => bench::bench(&rest),
        Some("formats") => formats::formats(&rest),
        Some("examples") => examples::examples(),
        Some("package") => setup::setup(Scope::All)
            .and_then(|_| package::package())
            .map(|_| 0),
        _ => {
            eprintln!("usage: cargo xtask <setup | kernel VER|SERIES | kmod VER|SERIES | vm [--kernel VER|SERIES] [--scenario FILE]... [--phase a|b|all] | demo | test [--kernel VER|SERIES]... | bench [--kernel VER|SERIES | --host] | formats --accept SERIES|BUILD | examples | package>");
            Ok(2)
        }
    };
    match r {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::from(1)
        }
    }
}
