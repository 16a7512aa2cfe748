//! `hangwatch analyze` (not yet implemented).

#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<u8> {
    anyhow::bail!("`hangwatch analyze` is not implemented yet")
}
