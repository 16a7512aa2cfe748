//! tracefs `format` parser and field→slot binding.
//!
//! Tracepoint layouts change between kernels (u32 vs u64 `context`/`seqno`, `sched_job_id`
//! removed in 6.17, `__data_loc` strings vs `char *`), so the agent never hard-codes an offset:
//! it reads `events/<sys>/<event>/format` at load time and binds fields *by name* to
//! [`agent_common::slot`]s, producing the [`TpLayout`] the eBPF program is loaded with.
use std::path::{Path, PathBuf};

use agent_common::{field, FieldLoc, TpLayout};

/// One `field:` line of a format file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    /// Declared C type without the name (`unsigned int`, `__data_loc char[]`, `const char *`).
    pub ty: String,
    /// Field name without any array suffix.
    pub name: String,
    /// Array length for `type name[N]`.
    pub array_len: Option<u32>,
    pub offset: u16,
    pub size: u16,
    pub signed: bool,
}

impl Field {
    /// How the eBPF side must read this field (element size for integer arrays).
    pub fn loc(&self) -> FieldLoc {
        let ty = self.ty.trim();
        if ty.starts_with("__data_loc") && ty.contains("char") {
            return FieldLoc::new(self.offset, self.size, field::DATA_LOC_STR);
        }
        let base = ty.trim_start_matches("const ").trim();
        if ty.ends_with('*') && (base.starts_with("char") || base.starts_with("unsigned char")) {
            return FieldLoc::new(self.offset, self.size, field::STR_PTR);
        }
        if let Some(n) = self.array_len {
            if base == "char" || base == "unsigned char" {
                return FieldLoc::new(self.offset, self.size, field::INLINE_STR);
            }
            let elem = if n > 0 { self.size / n as u16 } else { 0 };
            return FieldLoc::new(self.offset, elem, field::INT);
        }
        FieldLoc::new(self.offset, self.size, field::INT)
    }

    fn is_string(&self) -> bool {
        matches!(
            self.loc().kind,
            field::DATA_LOC_STR | field::STR_PTR | field::INLINE_STR
        )
    }
}

/// A parsed `format` file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Format {
    pub name: String,
    /// Event fields (the `common_*` header excluded).
    pub fields: Vec<Field>,
}

impl Format {
    /// All fields with this name (6.1's `amdgpu_vm_grab_id` declares `ring` twice).
    pub fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Field> + 'a {
        self.fields.iter().filter(move |f| f.name == name)
    }
}

/// Parses the text of one `format` file. Errors name what is wrong; never panics.
pub fn parse(text: &str) -> Result<Format, String> {
    let mut name = None;
    let mut fields = Vec::new();
    let mut saw_format = false;
    let mut saw_print = false;
    for line in text.lines() {
        let t = line.trim();
        if let Some(n) = t.strip_prefix("name:") {
            name = Some(n.trim().to_string());
        } else if t == "format:" {
            saw_format = true;
        } else if t.starts_with("print fmt:") {
            saw_print = true;
        } else if t.starts_with("field:") {
            let f = parse_field(t)?;
            if !f.name.starts_with("common_") {
                fields.push(f);
            }
        }
    }
    if !saw_format {
        return Err("no `format:` section".into());
    }
    if !saw_print {
        return Err("truncated (no `print fmt:` line)".into());
    }
    if fields.is_empty() {
        return Err("no event fields".into());
    }
    Ok(Format {
        name: name.unwrap_or_default(),
        fields,
    })
}

fn parse_field(line: &str) -> Result<Field, String> {
    let mut decl = None;
    let mut offset = None;
    let mut size = None;
    let mut signed = false;
    for part in line.split(';') {
        let part = part.trim();
        if let Some(d) = part.strip_prefix("field:") {
            decl = Some(d.trim());
        } else if let Some(v) = part.strip_prefix("offset:") {
            offset = v.trim().parse::<u16>().ok();
        } else if let Some(v) = part.strip_prefix("size:") {
            size = v.trim().parse::<u16>().ok();
        } else if let Some(v) = part.strip_prefix("signed:") {
            signed = v.trim() == "1";
        }
    }
    let decl = decl
        .filter(|d| !d.is_empty())
        .ok_or_else(|| format!("garbled field line `{line}`"))?;
    let offset = offset.ok_or_else(|| format!("field line without valid offset: `{line}`"))?;
    let size = size.ok_or_else(|| format!("field line without valid size: `{line}`"))?;
    // `__data_loc char[] name`: the `[]` belongs to the type.
    let split_at = decl
        .rfind([' ', '*'])
        .ok_or_else(|| format!("field declaration without a name: `{decl}`"))?;
    let (ty, mut name) = (
        decl[..=split_at].trim().to_string(),
        decl[split_at + 1..].trim(),
    );
    let mut array_len = None;
    if let Some(open) = name.find('[') {
        let inner = name[open + 1..].trim_end_matches(']');
        array_len = inner.parse::<u32>().ok();
        name = &name[..open];
    }
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("field declaration with a bad name: `{decl}`"));
    }
    Ok(Field {
        ty,
        name: name.to_string(),
        array_len,
        offset,
        size,
        signed,
    })
}

/// Where a tracepoint's `format` lives; tries tracefs then debugfs.
pub fn format_path(tracefs: &Path, sys: &str, event: &str) -> PathBuf {
    tracefs.join("events").join(sys).join(event).join("format")
}

/// Reads and parses `events/<sys>/<event>/format` under `tracefs`.
pub fn read_format(tracefs: &Path, sys: &str, event: &str) -> Result<Format, String> {
    let p = format_path(tracefs, sys, event);
    let text =
        std::fs::read_to_string(&p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
    parse(&text)
}

/// What a slot wants from a field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    Str,
    Int,
}

/// Binds one format field to one [`agent_common::slot`] (a string slot or a kind's named word,
/// e.g. `JobSlots::CONTEXT`).
#[derive(Clone, Copy, Debug)]
pub struct Binding {
    pub slot: usize,
    /// Candidate field names, first present wins.
    pub names: &'static [&'static str],
    pub want: Want,
    pub required: bool,
    /// Array element for integer-array fields (`src_data[1]`).
    pub index: u8,
}

impl Binding {
    pub const fn req(slot: usize, names: &'static [&'static str], want: Want) -> Self {
        Binding {
            slot,
            names,
            want,
            required: true,
            index: 0,
        }
    }
    pub const fn opt(slot: usize, names: &'static [&'static str], want: Want) -> Self {
        Binding {
            slot,
            names,
            want,
            required: false,
            index: 0,
        }
    }
    pub const fn at(mut self, index: u8) -> Self {
        self.index = index;
        self
    }
}

/// Builds the eBPF layout; a missing required field → `Err("field X missing")`.
pub fn build_layout(fmt: &Format, bindings: &[Binding]) -> Result<TpLayout, String> {
    let mut layout = TpLayout::default();
    for b in bindings {
        let found = b.names.iter().find_map(|n| {
            fmt.named(n).find(|f| match b.want {
                Want::Str => f.is_string(),
                Want::Int => !f.is_string() && matches!(f.loc().size, 1 | 2 | 4 | 8),
            })
        });
        let Some(f) = found else {
            if b.required {
                let kind = if b.want == Want::Str {
                    "string"
                } else {
                    "integer"
                };
                return Err(format!("{kind} field `{}` missing", b.names.join("`/`")));
            }
            continue;
        };
        let loc = f.loc();
        if b.want == Want::Int {
            let n = f.array_len.unwrap_or(1);
            if b.index as u32 >= n {
                return Err(format!(
                    "field `{}` has {n} elements, need index {}",
                    f.name, b.index
                ));
            }
        }
        if u32::from(loc.offset) + u32::from(loc.size) > 0xffff {
            return Err(format!("field `{}` offset out of range", f.name));
        }
        let Some(dst) = layout.fields.get_mut(b.slot) else {
            return Err(format!(
                "binding of `{}` to unknown slot {}",
                f.name, b.slot
            ));
        };
        *dst = if b.want == Want::Int {
            loc.at(b.index)
        } else {
            loc
        };
    }
    layout.present = 1;
    Ok(layout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_common::{slot, FaultSlots, GrabSlots, JobSlots};

    const DEBIAN_61: &str = include_str!("../testdata/debian-6.1.0-56-amd64.txt");

    /// Cuts one event's format out of the concatenated Debian dump (sections start with `== sys/event`).
    fn section(name: &str) -> String {
        let marker = format!("== {name}\n");
        let start = DEBIAN_61.find(&marker).unwrap() + marker.len();
        let rest = &DEBIAN_61[start..];
        let end = rest.find("\n== ").map(|i| i + 1).unwrap_or(rest.len());
        rest[..end].to_string()
    }

    #[test]
    fn parses_every_debian_61_format() {
        let mut n = 0;
        for chunk in DEBIAN_61.split("== ").skip(1) {
            let body = chunk.split_once('\n').unwrap().1;
            let f = parse(body).unwrap();
            assert!(!f.fields.is_empty());
            n += 1;
        }
        assert_eq!(n, 8);
    }

    #[test]
    fn cs_ioctl_61_fields_and_kinds() {
        let f = parse(&section("amdgpu/amdgpu_cs_ioctl")).unwrap();
        assert_eq!(f.name, "amdgpu_cs_ioctl");
        let ring = f.named("ring").next().unwrap();
        assert_eq!(ring.loc(), FieldLoc::new(40, 4, field::DATA_LOC_STR));
        let seq = f.named("seqno").next().unwrap();
        assert_eq!(seq.loc(), FieldLoc::new(24, 4, field::INT));
        let id = f.named("sched_job_id").next().unwrap();
        assert_eq!(id.loc(), FieldLoc::new(8, 8, field::INT));
        assert!(f.named("fence").next().unwrap().ty.ends_with('*'));
    }

    #[test]
    fn vm_grab_id_61_binds_string_ring_not_u32() {
        let f = parse(&section("amdgpu/amdgpu_vm_grab_id")).unwrap();
        assert_eq!(f.named("ring").count(), 2);
        let l = build_layout(
            &f,
            &[
                Binding::req(slot::RING, &["ring"], Want::Str),
                Binding::req(GrabSlots::PASID, &["pasid"], Want::Int),
            ],
        )
        .unwrap();
        assert_eq!(
            l.fields[slot::RING],
            FieldLoc::new(12, 4, field::DATA_LOC_STR)
        );
        assert_eq!(l.fields[GrabSlots::PASID], FieldLoc::new(8, 4, field::INT));
    }

    #[test]
    fn iv_src_data_array_elements() {
        let f = parse(&section("amdgpu/amdgpu_iv")).unwrap();
        let sd = f.named("src_data").next().unwrap();
        assert_eq!(sd.array_len, Some(4));
        assert_eq!(sd.loc(), FieldLoc::new(48, 4, field::INT));
        let l = build_layout(
            &f,
            &[Binding::req(FaultSlots::SRC_DATA1, &["src_data"], Want::Int).at(1)],
        )
        .unwrap();
        assert_eq!(
            l.fields[FaultSlots::SRC_DATA1],
            FieldLoc::new(48, 4, field::INT).at(1)
        );
        assert!(build_layout(
            &f,
            &[Binding::req(FaultSlots::SRC_DATA1, &["src_data"], Want::Int).at(4)]
        )
        .is_err());
    }

    const V617_QUEUE: &str = "name: drm_sched_job_queue\nID: 9\nformat:\n\
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n\
\tfield:__data_loc char[] name;\toffset:8;\tsize:4;\tsigned:0;\n\
\tfield:u32 job_count;\toffset:12;\tsize:4;\tsigned:0;\n\
\tfield:int hw_job_count;\toffset:16;\tsize:4;\tsigned:1;\n\
\tfield:__data_loc char[] dev;\toffset:20;\tsize:4;\tsigned:0;\n\
\tfield:u64 fence_context;\toffset:24;\tsize:8;\tsigned:0;\n\
\tfield:u64 fence_seqno;\toffset:32;\tsize:8;\tsigned:0;\n\
\tfield:u64 client_id;\toffset:40;\tsize:8;\tsigned:0;\n\n\
print fmt: \"dev=%s, fence=%llu:%llu\", __get_str(dev), REC->fence_context, REC->fence_seqno\n";

    #[test]
    fn v617_queue_binds_client_id_and_dev() {
        let f = parse(V617_QUEUE).unwrap();
        let l = build_layout(
            &f,
            &[
                Binding::req(slot::RING, &["name"], Want::Str),
                Binding::opt(slot::DEV, &["dev"], Want::Str),
                Binding::req(JobSlots::CONTEXT, &["fence_context"], Want::Int),
                Binding::req(JobSlots::SEQNO, &["fence_seqno"], Want::Int),
                Binding::opt(JobSlots::JOB_ID, &["id"], Want::Int),
                Binding::opt(JobSlots::CLIENT_ID, &["client_id"], Want::Int),
            ],
        )
        .unwrap();
        assert_eq!(
            l.fields[slot::DEV],
            FieldLoc::new(20, 4, field::DATA_LOC_STR)
        );
        assert_eq!(l.fields[JobSlots::SEQNO], FieldLoc::new(32, 8, field::INT));
        assert_eq!(
            l.fields[JobSlots::CLIENT_ID],
            FieldLoc::new(40, 8, field::INT)
        );
        assert!(!l.fields[JobSlots::JOB_ID].is_present());
    }

    #[test]
    fn missing_required_field_is_an_error_not_a_panic() {
        let f = parse(V617_QUEUE).unwrap();
        let e = build_layout(
            &f,
            &[Binding::req(JobSlots::JOB_ID, &["sched_job_id"], Want::Int)],
        )
        .unwrap_err();
        assert!(e.contains("sched_job_id"), "{e}");
    }

    #[test]
    fn char_pointer_and_inline_char_array() {
        let t = "name: x\nformat:\n\tfield:const char * name;\toffset:8;\tsize:8;\tsigned:0;\n\
\tfield:char comm[16];\toffset:16;\tsize:16;\tsigned:1;\nprint fmt: \"\"\n";
        let f = parse(t).unwrap();
        assert_eq!(f.fields[0].name, "name");
        assert_eq!(f.fields[0].loc().kind, field::STR_PTR);
        assert_eq!(f.fields[1].loc(), FieldLoc::new(16, 16, field::INLINE_STR));
    }

    #[test]
    fn truncated_and_garbage_inputs_are_errors() {
        let full = section("amdgpu/amdgpu_cs_ioctl");
        let cut = &full[..full.find("print fmt").unwrap()];
        assert!(parse(cut).unwrap_err().contains("truncated"));
        assert!(parse("").is_err());
        assert!(parse("\u{0}\u{1}garbage\nformat:\nfield:;;;\nprint fmt: x").is_err());
        assert!(
            parse("format:\n\tfield:int x;\toffset:zz;\tsize:4;\tsigned:1;\nprint fmt: \"\"")
                .is_err()
        );
        // Every prefix of a real file either parses or errors; never panics.
        for i in 0..full.len() {
            if full.is_char_boundary(i) {
                let _ = parse(&full[..i]);
            }
        }
    }
}
