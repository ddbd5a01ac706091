//! tracefs: where it is, mounting it, and tracepoint format files.
//!
//! Field offsets always come from the running kernel's format file (or, when tracefs is not
//! available, from the `trace_event_raw_*` struct in BTF): the vmscan reclaim events changed
//! layout between 6.18 and 7.2, so nothing here is hard-coded.
use std::path::{Path, PathBuf};

use serde::Serialize;

/// One field of a tracepoint record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Field {
    /// Field name ("gfp_flags").
    pub name: String,
    /// C type as printed by the kernel ("unsigned long").
    pub ctype: String,
    /// Byte offset in the record (the 8-byte common header included).
    pub offset: u32,
    /// Size in bytes.
    pub size: u32,
}

/// Where a tracepoint layout came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FormatSource {
    /// events/<cat>/<name>/format of the running kernel.
    Tracefs,
    /// `struct trace_event_raw_<template>` in BTF (tracefs unavailable).
    Btf,
}

/// The record layout of one tracepoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TracepointFormat {
    /// Fields, common ones included.
    pub fields: Vec<Field>,
    /// Where the layout came from.
    pub source: FormatSource,
}

impl TracepointFormat {
    /// Offset of a field by name.
    pub fn offset(&self, name: &str) -> Option<u32> {
        self.fields
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.offset)
    }
}

/// Parses a tracefs `format` file. Returns `None` when it has no field lines at all.
///
/// Lines look like `\tfield:unsigned long gfp_flags;\toffset:16;\tsize:8;\tsigned:0;`.
pub fn parse_format(text: &str) -> Option<TracepointFormat> {
    let mut fields = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        let Some(rest) = line.strip_prefix("field:") else {
            continue;
        };
        let mut decl = None;
        let mut offset = None;
        let mut size = None;
        for (i, part) in rest.split(';').enumerate() {
            let part = part.trim();
            if i == 0 {
                decl = Some(part);
            } else if let Some(v) = part.strip_prefix("offset:") {
                offset = v.trim().parse::<u32>().ok();
            } else if let Some(v) = part.strip_prefix("size:") {
                size = v.trim().parse::<u32>().ok();
            }
        }
        let (Some(decl), Some(offset), Some(size)) = (decl, offset, size) else {
            continue;
        };
        // The name is the last identifier of the declaration: "char comm[16]" -> "comm",
        // "__data_loc char[] name" -> "name".
        let last = decl
            .rsplit(|c: char| c.is_whitespace() || c == '*')
            .next()
            .unwrap_or(decl);
        let name = last.split('[').next().unwrap_or(last).to_string();
        let ctype = decl[..decl.len() - last.len()].trim().to_string();
        fields.push(Field {
            name,
            ctype,
            offset,
            size,
        });
    }
    (!fields.is_empty()).then_some(TracepointFormat {
        fields,
        source: FormatSource::Tracefs,
    })
}

/// State of tracefs on this machine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Tracefs {
    /// Mount point in use, if any.
    pub path: Option<PathBuf>,
    /// percpu-trace mounted it during discovery.
    pub mounted_by_us: bool,
    /// Why it is unavailable, when it is.
    pub error: Option<String>,
}

/// Finds tracefs, mounting it at /sys/kernel/tracing when absent and allowed to.
pub fn locate(root: &Path, try_mount: bool) -> Tracefs {
    let candidates = [
        root.join("sys/kernel/tracing"),
        root.join("sys/kernel/debug/tracing"),
    ];
    for c in &candidates {
        if c.join("events").is_dir() {
            return Tracefs {
                path: Some(c.clone()),
                mounted_by_us: false,
                error: None,
            };
        }
    }
    let target = &candidates[0];
    if !try_mount {
        return Tracefs {
            path: None,
            mounted_by_us: false,
            error: Some("tracefs is not mounted".into()),
        };
    }
    match mount_tracefs(target) {
        Ok(()) if target.join("events").is_dir() => Tracefs {
            path: Some(target.clone()),
            mounted_by_us: true,
            error: None,
        },
        Ok(()) => Tracefs {
            path: None,
            mounted_by_us: true,
            error: Some(format!(
                "mounted tracefs at {} but it has no events/",
                target.display()
            )),
        },
        Err(e) => Tracefs {
            path: None,
            mounted_by_us: false,
            error: Some(format!(
                "tracefs not mounted and mounting it at {} failed: {e}",
                target.display()
            )),
        },
    }
}

fn mount_tracefs(target: &Path) -> std::io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    if !target.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "mount point does not exist",
        ));
    }
    let tgt = CString::new(target.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "bad path"))?;
    let src = c"nodev";
    let fstype = c"tracefs";
    // SAFETY: all pointers are valid NUL-terminated strings for the duration of the call.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            tgt.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fields() {
        let text = "name: percpu_create_chunk\nID: 400\nformat:\n\
            \tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
            \tfield:char comm[16];\toffset:8;\tsize:16;\tsigned:0;\n\
            \tfield:void * base_addr;\toffset:24;\tsize:8;\tsigned:0;\n\nprint fmt: \"x\"\n";
        let f = parse_format(text).unwrap();
        assert_eq!(f.offset("common_type"), Some(0));
        assert_eq!(f.offset("comm"), Some(8));
        assert_eq!(f.offset("base_addr"), Some(24));
        assert_eq!(f.fields[2].ctype, "void *");
        assert!(parse_format("garbage").is_none());
    }
}
