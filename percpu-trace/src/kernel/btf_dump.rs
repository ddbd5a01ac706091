//! [`RawDump`]: the [`TypeSource`] over `bpftool btf dump ... format raw` text, which is how
//! the test fixtures store BTF. Split from `btf` (the real-blob reader and the queries);
//! the tests of the queries live here, next to the dump they parse.
use std::collections::HashMap;

use super::btf::{Member, Ty, TypeSource};

/// Types parsed from `bpftool btf dump file X format raw` text (possibly filtered).
#[derive(Default)]
pub struct RawDump {
    types: HashMap<u32, (String, Ty)>,
    by_name: HashMap<String, Vec<u32>>,
}

impl RawDump {
    /// Parses the listing. Unknown lines are ignored; it never fails, a missing type is just
    /// not found later.
    pub fn parse(text: &str) -> Self {
        let mut d = RawDump::default();
        let mut cur: Option<(u32, String, String, String)> = None; // id, kind, name, header rest
        let mut body: Vec<&str> = Vec::new();
        for line in text.lines().chain(std::iter::once("[0] END ''")) {
            if line.starts_with('[') {
                if let Some((id, kind, name, rest)) = cur.take() {
                    d.add(id, &kind, name, &rest, &body);
                }
                body.clear();
                cur = parse_header(line);
            } else if line.starts_with('\t') || line.starts_with(' ') {
                body.push(line.trim());
            }
        }
        d
    }

    fn add(&mut self, id: u32, kind: &str, name: String, rest: &str, body: &[&str]) {
        let name = if name == "(anon)" {
            String::new()
        } else {
            name
        };
        let ty = match kind {
            "STRUCT" | "UNION" => Ty::Struct {
                name: name.clone(),
                members: body
                    .iter()
                    .filter_map(|l| {
                        Some(Member {
                            name: quoted(l)?.replace("(anon)", ""),
                            bit_offset: kv(l, "bits_offset")?,
                            type_id: kv(l, "type_id")?,
                        })
                    })
                    .collect(),
            },
            "FUNC" => Ty::Func {
                name: name.clone(),
                proto: kv(rest, "type_id").unwrap_or(0),
            },
            "FUNC_PROTO" => Ty::Proto {
                params: body
                    .iter()
                    .map(|l| {
                        if l.starts_with("'(anon)' type_id=0") {
                            "...".into()
                        } else {
                            quoted(l).unwrap_or_default()
                        }
                    })
                    .collect(),
            },
            "ENUM" | "ENUM64" => Ty::Enum {
                name: name.clone(),
                values: body
                    .iter()
                    .filter_map(|l| {
                        Some((
                            quoted(l)?,
                            l.split("val=").nth(1)?.trim().parse::<i64>().ok()? as u64,
                        ))
                    })
                    .collect(),
            },
            "PTR" => Ty::Ptr {
                target: kv(rest, "type_id").unwrap_or(0),
            },
            "TYPEDEF" | "CONST" | "VOLATILE" | "RESTRICT" | "TYPE_TAG" => Ty::Alias {
                target: kv(rest, "type_id").unwrap_or(0),
            },
            _ => Ty::Other,
        };
        self.by_name.entry(name.clone()).or_default().push(id);
        self.types.insert(id, (name, ty));
    }
}

fn parse_header(line: &str) -> Option<(u32, String, String, String)> {
    let close = line.find(']')?;
    let id = line[1..close].parse().ok()?;
    let rest = line[close + 1..].trim_start();
    let (kind, rest) = rest.split_once(' ')?;
    let name = quoted(rest)?;
    let after = rest.splitn(3, '\'').nth(2).unwrap_or("").to_string();
    Some((id, kind.to_string(), name, after))
}

fn quoted(s: &str) -> Option<String> {
    let a = s.find('\'')?;
    let b = s[a + 1..].find('\'')?;
    Some(s[a + 1..a + 1 + b].to_string())
}

fn kv<T: std::str::FromStr>(s: &str, key: &str) -> Option<T> {
    s.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
}

impl TypeSource for RawDump {
    fn ids_by_name(&self, name: &str) -> Vec<u32> {
        self.by_name.get(name).cloned().unwrap_or_default()
    }

    fn ty(&self, id: u32) -> Option<Ty> {
        self.types.get(&id).map(|(_, t)| t.clone())
    }

    fn anon_enums(&self) -> Vec<Ty> {
        self.ids_by_name("")
            .iter()
            .filter_map(|&i| self.ty(i))
            .filter(|t| matches!(t, Ty::Enum { .. }))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::btf::{func_params, gfp_bit_enum, member_offset, param_index};
    use super::*;

    const SAMPLE: &str = "[9] INT 'unsigned int' size=4 bits_offset=0 nr_bits=32 encoding=(none)\n\
[92] TYPEDEF 'atomic64_t' type_id=91\n\
[91] STRUCT '(anon)' size=8 vlen=1\n\
\t'counter' type_id=37 bits_offset=0\n\
[321] TYPEDEF 'atomic_long_t' type_id=92\n\
[395] STRUCT 'mutex' size=32 vlen=2\n\
\t'owner' type_id=321 bits_offset=0\n\
\t'wait_lock' type_id=145 bits_offset=64\n\
[500] STRUCT 'task_struct' size=100 vlen=2\n\
\t'(anon)' type_id=501 bits_offset=64\n\
\t'flags' type_id=9 bits_offset=352\n\
[501] UNION '(anon)' size=8 vlen=1\n\
\t'pid' type_id=9 bits_offset=32\n\
[600] FUNC_PROTO '(anon)' ret_type_id=0 vlen=3\n\
\t'a' type_id=9\n\
\t'gfp' type_id=9\n\
\t'(anon)' type_id=0\n\
[601] FUNC 'f' type_id=600 linkage=static\n\
[700] ENUM '(anon)' encoding=UNSIGNED size=4 vlen=2\n\
\t'___GFP_IO_BIT' val=6\n\
\t'___GFP_FS_BIT' val=7\n";

    #[test]
    fn raw_dump_queries() {
        let d = RawDump::parse(SAMPLE);
        assert_eq!(func_params(&d, "f").unwrap(), vec!["a", "gfp", "..."]);
        assert!(func_params(&d, "nope").is_err());
        assert_eq!(
            param_index(&func_params(&d, "f").unwrap(), &["gfp", "gfp_mask"]),
            Some(1)
        );
        assert_eq!(member_offset(&d, "task_struct", &["flags"]), Some(44));
        assert_eq!(member_offset(&d, "task_struct", &["pid"]), Some(12));
        assert_eq!(member_offset(&d, "mutex", &["owner"]), Some(0));
        assert_eq!(member_offset(&d, "mutex", &["wait_lock"]), Some(8));
        assert_eq!(member_offset(&d, "mutex", &["owner", "counter"]), Some(0));
        assert_eq!(member_offset(&d, "mutex", &["nope"]), None);
        assert_eq!(gfp_bit_enum(&d).unwrap().len(), 2);
    }

    /// The host's 6.18 BTF, trimmed: a DEFINE_EVENT (its names from the template's
    /// function), a TRACE_EVENT (its own), and the checks that keep a wrong template or a
    /// missing event from giving positions.
    const TRACE: &str = "[108] PTR '(anon)' type_id=0
[21] INT 'int' size=4 bits_offset=0 nr_bits=32 encoding=SIGNED
[86] TYPEDEF 'gfp_t' type_id=21
[15716] TYPEDEF 'btf_trace_mm_vmscan_direct_reclaim_begin' type_id=15717
[15717] PTR '(anon)' type_id=15718
[15718] FUNC_PROTO '(anon)' ret_type_id=0 vlen=3
	'(anon)' type_id=108
	'(anon)' type_id=21
	'(anon)' type_id=86
[15719] TYPEDEF 'btf_trace_contention_end' type_id=15720
[15720] PTR '(anon)' type_id=15721
[15721] FUNC_PROTO '(anon)' ret_type_id=0 vlen=3
	'(anon)' type_id=108
	'(anon)' type_id=108
	'(anon)' type_id=21
[15722] TYPEDEF 'btf_trace_mm_vmscan_direct_reclaim_end' type_id=15720
[46415] FUNC_PROTO '(anon)' ret_type_id=0 vlen=3
	'__data' type_id=108
	'lock' type_id=108
	'ret' type_id=21
[46416] FUNC '__bpf_trace_contention_end' type_id=46415 linkage=static
[47174] FUNC_PROTO '(anon)' ret_type_id=0 vlen=3
	'__data' type_id=108
	'order' type_id=21
	'gfp_flags' type_id=86
[47175] FUNC '__bpf_trace_mm_vmscan_direct_reclaim_begin_template' type_id=47174 linkage=static
[47176] FUNC_PROTO '(anon)' ret_type_id=0 vlen=2
	'__data' type_id=108
	'nr_reclaimed' type_id=1
[47177] FUNC '__bpf_trace_mm_vmscan_direct_reclaim_end_template' type_id=47176 linkage=static
";

    #[test]
    fn raw_tracepoint_arguments_by_name() {
        use super::super::btf::trace_args;
        let d = RawDump::parse(TRACE);
        assert_eq!(
            trace_args(
                &d,
                "mm_vmscan_direct_reclaim_begin",
                "mm_vmscan_direct_reclaim_begin_template"
            )
            .unwrap(),
            vec!["order", "gfp_flags"]
        );
        assert_eq!(
            trace_args(&d, "contention_end", "contention_end").unwrap(),
            vec!["lock", "ret"]
        );
        // The event takes (lock, ret) but the template named has one argument: not its.
        let e = trace_args(
            &d,
            "mm_vmscan_direct_reclaim_end",
            "mm_vmscan_direct_reclaim_end_template",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("3 argument(s)"), "{e}");
        // No btf_trace_ typedef: the event is not in this kernel, whatever functions exist.
        let e = trace_args(&d, "contention_begin", "contention_end")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("btf_trace_contention_begin is not in BTF"),
            "{e}"
        );
    }
}
