//! The house's layout rules, checked on the source tree: no room (source file under `crates/*/src`) much over
//! 800 lines, and no import circles between files: a file that uses another must not be used by it, directly
//! or around a loop. Each crate's root (`lib.rs`, `main.rs`) is its composition root (module declarations,
//! re-exports, macros) and is left out; test modules (`#[cfg(test)]`) are too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// "About 800 lines": a little slack for a file caught mid-growth, none for a room that needs splitting.
const MAX_LINES: usize = 850;

fn crates_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module path of a file below `src` (`a/b.rs` and `a/b/mod.rs` are `a::b`; the root is empty).
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = rel
        .iter()
        .map(|s| s.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The code of a file without its test module and comments.
fn code(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("#[cfg(test)]") {
            break;
        }
        let l = line.trim_start();
        if l.starts_with("//") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Expand `use` trees (`crate::a::{b, c::d}`) into full paths.
fn expand(prefix: &str, tree: &str, out: &mut Vec<String>) {
    let tree = tree.trim();
    if let Some(open) = tree.find('{') {
        let head = format!("{prefix}{}", &tree[..open]);
        let close = tree.rfind('}').filter(|c| *c > open).unwrap_or(tree.len());
        let inner = &tree[open + 1..close];
        let mut depth = 0;
        let mut start = 0;
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(&head, &inner[start..i], out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        expand(&head, &inner[start..], out);
    } else if !tree.is_empty() {
        out.push(format!("{prefix}{tree}"));
    }
}

/// Every path a file's code names, from `use` items and from `crate::`/`super::` paths in expressions.
fn paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    // `use` items start a line (after an optional `pub`); they end at the next `;`.
    let mut offset = 0;
    for line in code.split_inclusive('\n') {
        let t = line.trim_start();
        let item = ["use ", "pub use ", "pub(crate) use ", "pub(super) use "]
            .iter()
            .find_map(|p| t.strip_prefix(p));
        if item.is_some() {
            let start = offset + line.find("use ").unwrap_or(0) + 4;
            if let Some(end) = code[start..].find(';') {
                expand(
                    "",
                    &code[start..start + end].replace(['\n', ' '], ""),
                    &mut out,
                );
            }
        }
        offset += line.len();
    }
    for start in ["crate::", "super::"] {
        let mut rest = code;
        while let Some(i) = rest.find(start) {
            let before = rest[..i].chars().last();
            let tail = &rest[i..];
            let end = tail
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(tail.len());
            if !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                out.push(tail[..end].to_string());
            }
            rest = &rest[i + start.len()..];
        }
    }
    out
}

#[test]
fn rooms_stay_small_and_files_import_in_one_direction() {
    let mut too_big = Vec::new();
    let mut circles = Vec::new();
    for krate in std::fs::read_dir(crates_dir()).unwrap() {
        let src = krate.unwrap().path().join("src");
        if !src.is_dir() {
            continue;
        }
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        let modules: BTreeMap<Vec<String>, PathBuf> = files
            .iter()
            .map(|f| (module_of(&src, f), f.clone()))
            .collect();
        let mut edges: BTreeMap<PathBuf, BTreeSet<PathBuf>> = BTreeMap::new();
        for file in &files {
            let text = std::fs::read_to_string(file).unwrap();
            let lines = text.lines().count();
            if lines > MAX_LINES {
                too_big.push(format!("{} ({lines} lines)", file.display()));
            }
            let here = module_of(&src, file);
            for path in paths(&code(&text)) {
                let segs: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
                let (mut base, rest): (Vec<String>, &[&str]) = match segs.first() {
                    Some(&"crate") => (Vec::new(), &segs[1..]),
                    Some(&"super") => {
                        // A file's parent module: for `a/b.rs` it is `a`; for `a/mod.rs` (module `a`) the root.
                        let mut m = here.clone();
                        let mut rest = &segs[..];
                        while rest.first() == Some(&"super") {
                            m.pop();
                            rest = &rest[1..];
                        }
                        (m, rest)
                    }
                    Some(&"self") => (here.clone(), &segs[1..]),
                    _ => continue,
                };
                // The deepest module the path names.
                let mut target = None;
                for s in rest {
                    base.push(s.to_string());
                    if modules.contains_key(&base) {
                        target = Some(base.clone());
                    } else {
                        break;
                    }
                }
                let Some(target) = target else { continue };
                let to = &modules[&target];
                if target.is_empty() || to == file {
                    continue;
                }
                edges.entry(file.clone()).or_default().insert(to.clone());
            }
        }
        // Strongly connected components with more than one file are circles.
        for scc in components(&edges) {
            if scc.len() > 1 {
                circles.push(
                    scc.iter()
                        .map(|p| p.strip_prefix(&src).unwrap_or(p).display().to_string())
                        .collect::<Vec<_>>()
                        .join(" <-> ")
                        + &format!("  (in {})", src.display()),
                );
            }
        }
    }
    assert!(
        too_big.is_empty(),
        "rooms over {MAX_LINES} lines: {too_big:#?}"
    );
    assert!(
        circles.is_empty(),
        "import circles between files: {circles:#?}"
    );
}

/// Tarjan's strongly connected components.
fn components(edges: &BTreeMap<PathBuf, BTreeSet<PathBuf>>) -> Vec<Vec<PathBuf>> {
    struct State<'a> {
        edges: &'a BTreeMap<PathBuf, BTreeSet<PathBuf>>,
        index: BTreeMap<&'a PathBuf, usize>,
        low: BTreeMap<&'a PathBuf, usize>,
        stack: Vec<&'a PathBuf>,
        on: BTreeSet<&'a PathBuf>,
        out: Vec<Vec<PathBuf>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a PathBuf) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on.insert(v);
        if let Some(next) = s.edges.get(v) {
            for w in next {
                if !s.index.contains_key(w) {
                    visit(s, w);
                    let lw = s.low[w];
                    let lv = s.low.get_mut(v).unwrap();
                    *lv = (*lv).min(lw);
                } else if s.on.contains(w) {
                    let iw = s.index[w];
                    let lv = s.low.get_mut(v).unwrap();
                    *lv = (*lv).min(iw);
                }
            }
        }
        if s.low[v] == s.index[v] {
            let mut scc = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on.remove(w);
                scc.push(w.clone());
                if w == v {
                    break;
                }
            }
            s.out.push(scc);
        }
    }
    let mut s = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    let nodes: BTreeSet<&PathBuf> = edges.keys().chain(edges.values().flatten()).collect();
    for v in nodes {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    s.out
}

/// Each crate links one integration-test binary (linking is the slow part of a build on two cores): a
/// test module lives in a folder its crate's one test file includes, never as another file in `tests/`.
#[test]
fn one_test_binary_per_crate() {
    for krate in std::fs::read_dir(crates_dir()).unwrap() {
        let tests = krate.unwrap().path().join("tests");
        let Ok(entries) = std::fs::read_dir(&tests) else {
            continue;
        };
        let binaries: Vec<_> = entries
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "rs") || p.join("main.rs").is_file())
            .collect();
        assert!(
            binaries.len() <= 1,
            "{} builds {} test binaries: {binaries:?}",
            tests.display(),
            binaries.len()
        );
    }
}
