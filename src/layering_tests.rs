//! The crate's layering and code conventions, checked: the top-level modules form a DAG, and
//! each one names only modules of its own layer or of the layers below it ([`LAYERS`], drawn
//! in docs/architecture.md). A new import that points up, or a new cycle, fails this test; so
//! do `unsafe` outside `src/ffi/`, a `#[path]` and two modules with one name.
//!
//! What counts as an import: every `crate::x` path (and `crate::{x, y}` group) in a module's
//! files, comments and `#[cfg(test)]` tails left out, test files (`tests.rs`, `*_tests.rs`)
//! and `src/bin/` too: tests may reach any layer.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// Bottom to top. A module may name modules of its own layer (as long as that makes no
/// cycle) and of the layers before it, never of a later one.
const LAYERS: &[(&str, &[&str])] = &[
    ("format", &["ltx", "wal"]),
    (
        "foundation",
        &[
            "config",
            "logging",
            "metrics",
            "panic_guard",
            "replicate_all",
            "small_file",
        ],
    ),
    ("backends", &["replica"]),
    (
        "local state",
        &[
            "staging",
            "stager",
            "capture",
            "pending",
            "restore",
            "progress",
            "l0_cache",
            "validate",
            "shared_status",
            "wake",
        ],
    ),
    ("one database", &["database", "bootstrap", "follower"]),
    ("background work", &["fencing", "uploader", "compactor"]),
    ("process", &["registry"]),
    ("surface", &["status", "sql", "vfs", "monitor", "heartbeat"]),
    ("entry points", &["ffi", "cli"]),
];

/// The `crate::x` module names a source text refers to.
fn referenced_modules(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().next_back();
        rest = &rest[i + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // e.g. `mycrate::`
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                out.insert(ident(item.trim_start()).to_string());
            }
        } else {
            out.insert(ident(rest).to_string());
        }
    }
    out.remove("");
    out
}

fn ident(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// Comments removed and the inline test module (`#[cfg(test)] mod x {`, at the end of a
/// file) cut off. Other `#[cfg(test)]` items stay: their imports count.
fn non_test_code(text: &str) -> String {
    let mut end = text.len();
    let mut from = 0;
    while let Some(i) = text[from..].find("#[cfg(test)]") {
        let at = from + i;
        let rest = text[at + "#[cfg(test)]".len()..].trim_start();
        let line = rest.lines().next().unwrap_or("");
        if line.starts_with("mod ") && line.contains('{') {
            end = at;
            break;
        }
        from = at + 1;
    }
    let code = &text[..end];
    code.lines()
        .map(|l| l.find("//").map_or(l, |i| &l[..i]))
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_test_file(name: &str) -> bool {
    name == "tests.rs" || name.ends_with("_tests.rs")
}

/// Top-level module → the top-level modules its non-test code names.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    fn walk(dir: &Path, top: Option<&str>, graph: &mut BTreeMap<String, BTreeSet<String>>) {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("directory entry").path())
            .collect();
        entries.sort();
        for path in entries {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                if top.is_none() && name == "bin" {
                    continue;
                }
                walk(&path, Some(top.unwrap_or(&name)), graph);
                continue;
            }
            let Some(stem) = name.strip_suffix(".rs") else {
                continue;
            };
            if is_test_file(&name) || (top.is_none() && stem == "lib") {
                continue;
            }
            let module = top.unwrap_or(stem).to_string();
            let text =
                fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let deps = graph.entry(module.clone()).or_default();
            deps.extend(
                referenced_modules(&non_test_code(&text))
                    .into_iter()
                    .filter(|m| *m != module),
            );
        }
    }
    let mut graph = BTreeMap::new();
    walk(src, None, &mut graph);
    // Only edges between modules: `crate::TxId` and other root items are not layers.
    let modules: BTreeSet<String> = graph.keys().cloned().collect();
    for deps in graph.values_mut() {
        deps.retain(|d| modules.contains(d));
    }
    graph
}

/// One cycle of `graph`, if it has any.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Active,
        Done,
    }
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match marks.get(m) {
            Some(Mark::Done) => return None,
            Some(Mark::Active) => {
                let start = path.iter().position(|p| p == m).expect("on the path");
                let mut cycle = path[start..].to_vec();
                cycle.push(m.to_string());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(m.to_string(), Mark::Active);
        path.push(m.to_string());
        for d in graph.get(m).into_iter().flatten() {
            if let Some(c) = visit(d, graph, marks, path) {
                return Some(c);
            }
        }
        path.pop();
        marks.insert(m.to_string(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    graph
        .keys()
        .find_map(|m| visit(m, graph, &mut marks, &mut Vec::new()))
}

/// Every import that points to a later layer, and every module missing from [`LAYERS`].
fn layer_violations(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let layer_of = |m: &str| LAYERS.iter().position(|(_, ms)| ms.contains(&m));
    let mut out = Vec::new();
    for (m, deps) in graph {
        let Some(lm) = layer_of(m) else {
            out.push(format!(
                "module `{m}` is in no layer: add it to LAYERS in src/layering_tests.rs \
                 (and to docs/architecture.md)"
            ));
            continue;
        };
        for d in deps {
            if let Some(ld) = layer_of(d).filter(|ld| *ld > lm) {
                out.push(format!(
                    "`{m}` ({}) names `{d}` ({}), a higher layer: pass a trait object, a \
                     function or a channel down instead",
                    LAYERS[lm].0, LAYERS[ld].0
                ));
            }
        }
    }
    out
}

fn crate_graph() -> BTreeMap<String, BTreeSet<String>> {
    module_graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))
}

#[test]
fn top_level_modules_form_no_cycle() {
    let graph = crate_graph();
    assert!(
        graph.contains_key("database") && graph.contains_key("ffi"),
        "{graph:?}"
    );
    if let Some(cycle) = find_cycle(&graph) {
        panic!(
            "import cycle between top-level modules: {}",
            cycle.join(" -> ")
        );
    }
}

#[test]
fn no_module_names_a_higher_layer() {
    let v = layer_violations(&crate_graph());
    assert!(v.is_empty(), "{}", v.join("\n"));
}

#[test]
fn the_checker_sees_imports_cycles_and_upward_edges() {
    let text = "use crate::a::X; // crate::commented\nuse crate::{b::Y, c};\nmycrate::d;\n\
                #[cfg(test)]\nfn helper() { crate::f::g() }\n\
                #[cfg(test)]\nmod tests { use crate::e; }";
    let found: Vec<String> = referenced_modules(&non_test_code(text))
        .into_iter()
        .collect();
    assert_eq!(found, ["a", "b", "c", "f"]);

    let g = |edges: &[(&str, &str)]| {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in edges {
            g.entry(a.to_string()).or_default().insert(b.to_string());
            g.entry(b.to_string()).or_default();
        }
        g
    };
    let cyclic = g(&[("uploader", "database"), ("database", "uploader")]);
    assert_eq!(find_cycle(&cyclic).map(|c| c.len()), Some(3));
    assert_eq!(layer_violations(&cyclic).len(), 1);
    assert!(find_cycle(&g(&[("uploader", "database"), ("ffi", "uploader")])).is_none());
    let unknown = layer_violations(&g(&[("newmod", "ltx")]));
    assert!(
        unknown[0].contains("`newmod` is in no layer"),
        "{unknown:?}"
    );
}

/// Every `.rs` file under `dir`, recursively, sorted.
fn rust_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).expect("read src").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn src_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// `unsafe` code lives only under `src/ffi/`, and every block there says why it is sound.
#[test]
fn unsafe_code_only_in_ffi_with_a_safety_comment() {
    let mut problems = Vec::new();
    for f in rust_files(&src_dir()) {
        let rel = f.strip_prefix(src_dir()).expect("under src").to_path_buf();
        let text = fs::read_to_string(&f).expect("read");
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let code = line.find("//").map_or(*line, |c| &line[..c]);
            // Spelled in two parts so that this check does not find itself.
            let needles = [concat!("unsafe", " {"), concat!("unsafe", " impl")];
            if !needles.iter().any(|n| code.contains(n)) {
                continue;
            }
            if !rel.starts_with("ffi") {
                problems.push(format!(
                    "{}:{}: unsafe outside src/ffi",
                    rel.display(),
                    i + 1
                ));
            } else if !lines[i.saturating_sub(6)..=i]
                .iter()
                .any(|l| l.contains("SAFETY"))
            {
                problems.push(format!(
                    "{}:{}: no // SAFETY: comment",
                    rel.display(),
                    i + 1
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// One module style: no `#[path]`, and no two modules share a name (`tests` aside), so a
/// name in a log or a stack trace points at one file.
#[test]
fn module_names_are_unique_and_no_path_attributes() {
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut problems = Vec::new();
    for f in rust_files(&src_dir()) {
        let rel = f.strip_prefix(src_dir()).expect("under src");
        if rel.starts_with("bin") {
            continue;
        }
        let text = fs::read_to_string(&f).expect("read");
        if text.lines().any(|l| l.trim_start().starts_with("#[path")) {
            problems.push(format!("{}: #[path] attribute", rel.display()));
        }
        let stem = rel.with_extension("");
        let module = if stem.ends_with("mod") {
            stem.parent().expect("mod.rs in a directory").to_path_buf()
        } else {
            stem
        };
        let name = module
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name != "tests" && name != "lib" {
            seen.entry(name)
                .or_default()
                .push(module.display().to_string());
        }
    }
    for (name, paths) in seen {
        if paths.len() > 1 {
            problems.push(format!("module name `{name}` used by {paths:?}"));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}
