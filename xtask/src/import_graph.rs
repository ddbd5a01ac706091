//! Import graph between the source files of each crate, and the circles in it.
//!
//! Guards the layout from 87418a9: no file may reach itself through `use` and path
//! imports. A text scan, not a parser (std only): `use` trees, inline `crate::`/`super::`/
//! `self::` paths and `child::` paths, with `pub use` re-exports followed to the file
//! that defines the item, so a parent `mod.rs` re-exporting a child is not a false circle.
//! Test-only code (inline `mod tests {` tails, `tests.rs`, `*_tests.rs`) may import anything.
// Only the workspace test uses it: compiled for tests, so the binary gets no dead code.
#![cfg(test)]

use std::collections::{BTreeMap, BTreeSet};

/// A module path inside a crate (`["engine", "task"]`); empty for the crate root.
type ModPath = Vec<String>;
/// File (relative to the crate's `src`) -> the files it imports from.
pub type Graph = BTreeMap<String, BTreeSet<String>>;

/// `engine/mod.rs` and `engine.rs` are both module `engine`; `lib.rs`/`main.rs` the root.
fn module_path(rel: &str) -> ModPath {
    let stem = rel.strip_suffix(".rs").unwrap_or(rel);
    let stem = stem.strip_suffix("/mod").unwrap_or(stem);
    match stem {
        "lib" | "main" => vec![],
        _ => stem.split('/').map(String::from).collect(),
    }
}

/// A character of a word, as regex `\w` has it.
fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Length of the ASCII identifier at the start of `s` (0 if none).
fn ident_len(s: &str) -> usize {
    let ident = |c: &u8| c.is_ascii_alphanumeric() || *c == b'_';
    match s.as_bytes() {
        [c, ..] if c.is_ascii_alphabetic() || *c == b'_' => s.bytes().take_while(ident).count(),
        _ => 0,
    }
}

/// The code that counts: before an inline `#[cfg(test)]` + newline + `mod tests {`, and
/// without `//` lines (doc comments mention paths they don't import).
fn strip(src: &str) -> String {
    let mut end = src.len();
    for (i, attr) in src.match_indices("#[cfg(test)]") {
        let rest = &src[i + attr.len()..];
        let item = rest.trim_start();
        if rest[..rest.len() - item.len()].contains('\n') && item.starts_with("mod tests {") {
            end = i;
            break;
        }
    }
    let mut code: Vec<_> = src[..end].lines().collect();
    code.retain(|l| !l.trim_start().starts_with("//"));
    code.join("\n")
}

/// What a file names: its `use` trees (with whether they are `pub`), and the paths written
/// elsewhere: `crate::`/`super::`/`self::` paths outside `use`, and every lowercase word
/// right before `::` (one naming a child module is a 2018-style import of it).
fn scan(text: &str) -> (Vec<(&str, bool)>, Vec<ModPath>) {
    let (mut uses, mut paths) = (vec![], vec![]);
    let mut skip = 0; // end of the last `use` statement or inline path: already read
    for word in text.split(|c: char| !is_word(c)).filter(|w| !w.is_empty()) {
        let at = word.as_ptr() as usize - text.as_ptr() as usize; // offset of the sub-slice
        let after = &text[at + word.len()..];
        let lower = word
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'));
        let head = lower && ident_len(word) > 0 && !text[..at].ends_with(':');
        let keyword = matches!(word, "crate" | "super" | "self");
        if head && !keyword && after.starts_with("::") {
            paths.push(vec![word.to_string()]);
        }
        if at < skip {
            continue;
        }
        let tree = after.trim_start();
        let is_use = word == "use" && tree.len() < after.len(); // `use` then whitespace
        if let Some(semi) = tree.find(';').filter(|&n| is_use && n > 0) {
            // `pub use` or `pub(crate) use` and the like: a re-export.
            let before = text[..at].trim_end();
            uses.push((
                &tree[..semi],
                before.ends_with("pub") || before.ends_with(')'),
            ));
            skip = text.len() - tree.len() + semi;
        } else if keyword {
            let (mut path, mut rest) = (vec![word.to_string()], after);
            while let Some(n) = rest.strip_prefix("::").map(ident_len).filter(|&n| n > 0) {
                path.push(rest[2..2 + n].to_string());
                rest = &rest[2 + n..];
            }
            skip = text.len() - rest.len();
            paths.extend((path.len() > 1).then_some(path));
        }
    }
    (uses, paths)
}

/// Paths named by a use tree with the name each brings in (alias or last segment):
/// `a::{self, b as c, d::{e}}` -> (a, a), (a::b, c), (a::d::e, e). None if braces are broken.
fn expand(tree: &str, prefix: &[String]) -> Option<Vec<(ModPath, String)>> {
    let segs = |s: &str| {
        s.split("::")
            .filter(|x| !x.is_empty())
            .map(String::from)
            .collect()
    };
    let join = |a: &[String], b: ModPath| -> ModPath { [a.to_vec(), b].concat() };
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        let (path, alias) = tree.split_once(" as ").unwrap_or((tree, ""));
        let path = join(prefix, segs(path.trim()));
        let name = match alias.trim() {
            "" => path.last().cloned().unwrap_or_default(),
            alias => alias.to_string(),
        };
        return Some(vec![(path, name)]);
    };
    let close = tree.rfind('}')?.max(open + 1);
    let head = join(prefix, segs(tree[..open].trim().trim_end_matches(':')));
    // Split the group at top-level commas only.
    let (mut parts, mut depth, mut cur) = (vec![], 0, String::new());
    for ch in tree[open + 1..close].chars() {
        depth += (ch == '{') as i32 - (ch == '}') as i32;
        if ch == ',' && depth == 0 {
            parts.push(std::mem::take(&mut cur));
        } else {
            cur.push(ch);
        }
    }
    parts.push(cur);
    let mut out = vec![];
    for part in parts.iter().map(|p| p.trim()).filter(|p| !p.is_empty()) {
        match part {
            "self" => out.push((head.clone(), head.last().cloned().unwrap_or_default())),
            _ => out.extend(expand(part, &head)?),
        }
    }
    Some(out)
}

/// One crate's module files and what each module re-exports.
#[derive(Default)]
struct Crate {
    files: BTreeMap<ModPath, String>,
    /// module -> name it re-exports -> absolute path of the item it names.
    reexports: BTreeMap<ModPath, BTreeMap<String, ModPath>>,
}

impl Crate {
    /// Absolute module path of `path` as written in `module`; None for other crates.
    fn absolute(&self, module: &[String], path: &[String]) -> Option<ModPath> {
        let (first, mut rest) = path.split_first()?;
        let mut base = match first.as_str() {
            "crate" => return Some(rest.to_vec()),
            "self" => module.to_vec(),
            "super" => module[..module.len().saturating_sub(1)].to_vec(),
            // 2018-style path from a child module; any other first segment is a crate.
            _ => {
                let known = self.files.contains_key(&[module, &path[..1]].concat());
                return known.then(|| [module, path].concat());
            }
        };
        while let Some(("super", tail)) = rest.split_first().map(|(s, t)| (s.as_str(), t)) {
            base.pop();
            rest = tail;
        }
        Some([base, rest.to_vec()].concat())
    }

    /// The file of the deepest module on `path`, or of the item's definition when that
    /// module only re-exports it (bounded, so a re-export loop cannot recurse forever).
    fn resolve(&self, path: &[String], hops: usize) -> Option<&str> {
        let i = (0..=path.len()).rfind(|&i| self.files.contains_key(&path[..i]))?;
        let (module, item) = (&path[..i], path.get(i));
        let target = item.and_then(|item| self.reexports.get(module)?.get(item));
        match target {
            Some(t) if hops < 8 && t[..t.len() - 1] != *module => self.resolve(t, hops + 1),
            _ => Some(&self.files[module]),
        }
    }
}

/// The import graph of one crate from its `.rs` files: (path relative to `src`, source).
pub fn file_graph(sources: &[(String, String)]) -> Graph {
    // Beside lib.rs, main.rs is its own binary crate reaching the library by name: it
    // cannot close a circle inside the library, and `crate::` there means the binary.
    let has_lib = sources.iter().any(|(rel, _)| rel == "lib.rs");
    let (mut krate, mut texts) = (Crate::default(), vec![]);
    for (rel, src) in sources {
        if has_lib && rel == "main.rs" {
            continue;
        }
        krate.files.insert(module_path(rel), rel.clone());
        texts.push((rel, module_path(rel), strip(src)));
    }
    let scans: Vec<_> = texts.iter().map(|(_, _, text)| scan(text)).collect();
    // Every re-export first: a file may import through any other file's.
    let mut reexports = BTreeMap::new();
    for ((_, module, _), (uses, _)) in texts.iter().zip(&scans) {
        let names: &mut BTreeMap<_, _> = reexports.entry(module.clone()).or_default();
        let public = uses.iter().filter(|u| u.1).flat_map(|u| expand(u.0, &[]));
        for (path, name) in public.flatten() {
            let target = krate.absolute(module, &path).filter(|a| !a.is_empty());
            names.extend(target.map(|a| (name, a)));
        }
    }
    krate.reexports = reexports;
    let mut graph = Graph::new();
    for ((rel, module, _), (uses, paths)) in texts.iter().zip(&scans) {
        let out = graph.entry(rel.to_string()).or_default();
        // Test-only files (tests.rs, kernel/fixture_tests.rs): nodes, but no imports.
        let name = rel.rsplit('/').next().unwrap_or(rel);
        if name == "tests.rs" || name.ends_with("_tests.rs") {
            continue;
        }
        let used = uses.iter().flat_map(|u| expand(u.0, &[])).flatten();
        for path in used.map(|p| p.0).chain(paths.iter().cloned()) {
            let path = krate.absolute(module, &path);
            let file = path.and_then(|a| krate.resolve(&a, 0));
            out.extend(file.filter(|f| f != rel).map(String::from));
        }
    }
    graph
}

/// Files in circles: strongly connected components of more than one file (Tarjan), each
/// sorted, in order of their first file.
pub fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    let files: Vec<&String> = graph.keys().collect(); // sorted: a file's index is a search
    let mut t = Tarjan::default();
    for to in graph.values() {
        let to = to.iter().filter_map(|f| files.binary_search(&f).ok());
        t.adj.push(to.collect());
        t.index.push(None);
    }
    for v in 0..files.len() {
        if t.index[v].is_none() {
            t.visit(v);
        }
    }
    let name = |c: &Vec<usize>| c.iter().map(|&v| files[v].clone()).collect::<Vec<_>>();
    let mut out: Vec<_> = t.comps.iter().map(name).collect();
    out.iter_mut().for_each(|c| c.sort());
    out.sort();
    out
}

/// Tarjan's algorithm over file indices.
#[derive(Default)]
struct Tarjan {
    adj: Vec<Vec<usize>>,
    /// Visit order, once visited.
    index: Vec<Option<usize>>,
    visited: usize,
    stack: Vec<usize>,
    /// Components of more than one file.
    comps: Vec<Vec<usize>>,
}

impl Tarjan {
    /// Visits `v`; returns its lowest reachable visit order.
    fn visit(&mut self, v: usize) -> usize {
        let (order, mut low) = (self.visited, self.visited);
        self.index[v] = Some(order);
        self.visited += 1;
        let depth = self.stack.len(); // where v sits until its component is popped
        self.stack.push(v);
        for w in self.adj[v].clone() {
            low = match self.index[w] {
                None => low.min(self.visit(w)),
                // Still on the stack: in the component being built.
                Some(w_order) if self.stack.contains(&w) => low.min(w_order),
                Some(_) => low,
            };
        }
        if low == order {
            let comp = self.stack.split_off(depth);
            self.comps.extend((comp.len() > 1).then_some(comp));
        }
        low
    }
}

#[cfg(test)]
mod tests {
    use std::{fs, path::Path};

    use super::*;

    fn graph(files: &[(&str, &str)]) -> Graph {
        let files = files.iter().map(|&(r, s)| (r.into(), s.into()));
        file_graph(&files.collect::<Vec<_>>())
    }

    /// What `file` imports, as a list to compare with arrays.
    fn from<'a>(g: &'a Graph, file: &str) -> Vec<&'a String> {
        g[file].iter().collect()
    }

    #[test]
    fn two_file_circle_through_super() {
        let (a, b) = ("use super::b::B;\npub struct A;", "use super::a::A;");
        let g = graph(&[("lib.rs", "mod a; mod b;"), ("a.rs", a), ("b.rs", b)]);
        assert_eq!(cycles(&g), [["a.rs", "b.rs"]]);
    }

    #[test]
    fn parent_reexport_resolves_to_the_defining_file() {
        let m = "mod child;\nmod sib;\npub use child::Item;\nfn f() { sib::go() }\n";
        let sib = "use super::Item;\npub fn go() {}\n";
        let mut files = [
            ("lib.rs", "mod m;"),
            ("m/mod.rs", m),
            ("m/sib.rs", sib),
            ("m/child.rs", ""),
        ];
        let g = graph(&files);
        // Not a circle m/mod.rs <-> m/sib.rs: the item lives in child.rs.
        assert_eq!(from(&g, "m/sib.rs"), ["m/child.rs"]);
        assert_eq!(from(&g, "m/mod.rs"), ["m/child.rs", "m/sib.rs"]);
        assert!(cycles(&g).is_empty());
        // A real circle behind the re-export is still found, without mod.rs.
        files[3].1 = "pub struct Item;\nfn g() { super::sib::go() }\n";
        assert_eq!(cycles(&graph(&files)), [["m/child.rs", "m/sib.rs"]]);
    }

    #[test]
    fn nested_use_trees_parse() {
        let x = "pub use crate::{\n    a::{self, A},\n    b::{c::{C, D as E}, B as Bee},\n};\n";
        let (uses, _) = scan(x);
        assert_eq!(uses.len(), 1);
        let mut paths = vec![];
        for (path, name) in expand(uses[0].0, &[]).unwrap() {
            paths.push(format!("{} {name}", path.join("::")));
        }
        let want = ["a a", "a::A A", "b::c::C C", "b::c::D E", "b::B Bee"];
        assert_eq!(paths, want.map(|p| format!("crate::{p}")));
        let files = [
            ("lib.rs", "mod a; mod b; mod x;"),
            ("a.rs", ""),
            ("b.rs", "mod c;"),
        ];
        let g = graph(&[&files[..], &[("b/c.rs", ""), ("x.rs", x)]].concat());
        assert_eq!(from(&g, "x.rs"), ["a.rs", "b.rs", "b/c.rs"]);
    }

    #[test]
    fn comments_and_test_code_are_ignored() {
        let a = "// use super::b::B;\n/// Like [`crate::b::B`].\npub struct A;\n\
                 #[cfg(test)]\nmod tests {\n    use crate::b::B;\n}\n";
        let g = graph(&[
            ("lib.rs", "mod a; mod b;"),
            ("a.rs", a),
            ("b.rs", "use crate::a::A;"),
        ]);
        assert!(g["a.rs"].is_empty());
        assert!(cycles(&g).is_empty());
    }

    /// `.rs` files under `dir`, as (path relative to `src`, source).
    fn read_sources(src: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                read_sources(src, &path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(src).unwrap().to_string_lossy();
                out.push((rel.into_owned(), fs::read_to_string(&path).unwrap()));
            }
        }
    }

    #[test]
    fn no_import_cycles_in_the_workspace() {
        let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
        let mut crates: Vec<_> = fs::read_dir(root)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        crates.retain(|c| c.join("Cargo.toml").is_file() && c.join("src").is_dir());
        crates.sort();
        assert!(
            crates.contains(&root.join("percpu-trace")),
            "crates: {crates:?}"
        );
        let mut report = String::new();
        for krate in &crates {
            let (src, mut sources) = (krate.join("src"), vec![]);
            read_sources(&src, &src, &mut sources);
            let name = krate.file_name().unwrap().to_string_lossy();
            let g = file_graph(&sources);
            let found = cycles(&g);
            println!("{name}/src: {} files, {} cycles", g.len(), found.len());
            for cycle in found {
                report += &format!("{name}/src: {}\n", cycle.join(", "));
                for file in &cycle {
                    let to: Vec<_> = g[file].iter().filter(|f| cycle.contains(f)).collect();
                    report += &format!("    {file} -> {to:?}\n");
                }
            }
        }
        assert!(report.is_empty(), "import circles between files:\n{report}");
    }

    /// The style rule that goes with the import rule: no non-test source file over 700
    /// lines (test-only files: `tests.rs`, `*_tests.rs`; inline test modules count).
    #[test]
    fn no_source_file_over_700_lines() {
        let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
        let mut long = Vec::new();
        for krate in fs::read_dir(root).unwrap().map(|e| e.unwrap().path()) {
            let src = krate.join("src");
            if !krate.join("Cargo.toml").is_file() || !src.is_dir() {
                continue;
            }
            let mut sources = vec![];
            read_sources(&src, &src, &mut sources);
            for (rel, text) in sources {
                let test_only = rel.ends_with("tests.rs");
                let n = text.lines().count();
                if !test_only && n > 700 {
                    long.push(format!("{}/src/{rel}: {n} lines", krate.display()));
                }
            }
        }
        assert!(long.is_empty(), "split these by job: {long:?}");
    }
}
