//! `hangwatch bugreport` (not yet implemented).

#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<u8> {
    anyhow::bail!("`hangwatch bugreport` is not implemented yet")
}
