//! Mesa's verdict after a GPU reset, as radv and radeonsi print it to the process's stderr
//! (so to its journal stream): `radv/amdgpu: The CS has been cancelled because the context is
//! lost. This context is innocent.` / `… is guilty of a soft recovery.` / `… is guilty of a hard
//! recovery.` (radeonsi's winsys: `amdgpu: The CS has cancelled because …`). Mesa prints it
//! when a submission fails with -ECANCELED, -ENODATA or -ETIME after the reset.
use crate::model::MesaVerdict;

/// The part both drivers print, whatever comes before it.
const LOST: &str = "cancelled because the context is lost. This context is ";

/// The verdict a message states, if it is Mesa's.
pub fn verdict(msg: &str) -> Option<MesaVerdict> {
    let at = msg.find(LOST)?;
    let head = &msg[..at];
    if !(head.contains("amdgpu: The CS has ")) {
        return None;
    }
    let rest = msg[at + LOST.len()..].trim_end();
    let rest = rest.strip_suffix('.').unwrap_or(rest);
    match rest {
        "innocent" => Some(MesaVerdict::Innocent),
        "guilty of a soft recovery" => Some(MesaVerdict::GuiltySoft),
        "guilty of a hard recovery" => Some(MesaVerdict::GuiltyHard),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn radv_and_radeonsi_spellings() {
        let radv =
            "radv/amdgpu: The CS has been cancelled because the context is lost. This context is ";
        let si = "amdgpu: The CS has cancelled because the context is lost. This context is ";
        for head in [radv, si] {
            for (tail, want) in [
                ("innocent.", MesaVerdict::Innocent),
                ("guilty of a soft recovery.", MesaVerdict::GuiltySoft),
                ("guilty of a hard recovery.\n", MesaVerdict::GuiltyHard),
            ] {
                assert_eq!(
                    verdict(&format!("{head}{tail}")),
                    Some(want),
                    "{head}{tail}"
                );
            }
            assert_eq!(verdict(&format!("{head}maybe.")), None);
        }
        assert_eq!(
            verdict("radv: The CS has been rejected, see dmesg for more information (-22)."),
            None
        );
        assert_eq!(
            verdict("my context is lost. This context is innocent."),
            None
        );
    }
}
