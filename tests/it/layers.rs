//! The layering rule of STYLE.md §2, read from the sources under `src/`: the top-level modules
//! import each other without a cycle, and `domain` imports nothing of the other layers and none
//! of the I/O crates (no tokio, sqlx, lapin, axum, reqwest, no clock, no randomness).
//!
//! A reference is every `crate::x` path in code: `use crate::x::…`, each name of a grouped
//! `use crate::{x, y::…}` and inline paths like `crate::x::f()`. Comments and string literals do
//! not count (doc links are not imports). `super::` never leaves a top-level module here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One `crate::<module>` reference: the module it names and where.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reference {
    module: String,
    line: usize,
}

/// The source with comments and string/char literals blanked out (newlines kept, so line
/// numbers stay right).
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let blank = |out: &mut Vec<u8>, bytes: &[u8]| {
        out.extend(bytes.iter().map(|&c| if c == b'\n' { b'\n' } else { b' ' }));
    };
    let mut i = 0;
    while i < b.len() {
        let rest = &b[i..];
        let prev_ident = i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
        let len = if rest.starts_with(b"//") {
            rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len())
        } else if rest.starts_with(b"/*") {
            let mut depth = 0;
            let mut j = 0;
            loop {
                if j >= rest.len() {
                    break rest.len();
                } else if rest[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if rest[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break j;
                    }
                } else {
                    j += 1;
                }
            }
        } else if (!prev_ident || raw_byte_string(b, i))
            && (rest.starts_with(b"r\"") || rest.starts_with(b"r#"))
        {
            // Raw string: r"…", r#"…"#, …
            let hashes = rest[1..].iter().take_while(|&&c| c == b'#').count();
            if rest.get(1 + hashes) != Some(&b'"') {
                0
            } else {
                let close: Vec<u8> = std::iter::once(b'"')
                    .chain(std::iter::repeat_n(b'#', hashes))
                    .collect();
                let body = 2 + hashes;
                rest[body..]
                    .windows(close.len())
                    .position(|w| w == close.as_slice())
                    .map_or(rest.len(), |p| body + p + close.len())
            }
        } else if rest[0] == b'"' {
            let mut j = 1;
            while j < rest.len() && rest[j] != b'"' {
                j += if rest[j] == b'\\' { 2 } else { 1 };
            }
            (j + 1).min(rest.len())
        } else if rest[0] == b'\'' {
            // A char literal ('x', '\n', '\u{1F600}', '"'); anything else is a lifetime.
            if rest.get(1) == Some(&b'\\') {
                // The escaped character is at 2 (`'\''`, `'\\'`): the closing quote comes after it.
                rest.get(3..)
                    .and_then(|r| r.iter().position(|&c| c == b'\''))
                    .map_or(1, |p| p + 4)
            } else {
                let width = match rest.get(1) {
                    Some(&c) if c < 0x80 => 1,
                    Some(&c) if c >= 0xF0 => 4,
                    Some(&c) if c >= 0xE0 => 3,
                    _ => 2,
                };
                if rest.get(1 + width) == Some(&b'\'') {
                    2 + width
                } else {
                    0
                }
            }
        } else {
            0
        };
        if len == 0 {
            out.push(b[i]);
            i += 1;
        } else {
            blank(&mut out, &rest[..len]);
            i += len;
        }
    }
    String::from_utf8(out).expect("blanking keeps UTF-8 intact outside literals")
}

/// Whether the `r` at `i` follows the `b` of a raw byte string (`br"…"`).
fn raw_byte_string(b: &[u8], i: usize) -> bool {
    i > 0 && b[i - 1] == b'b' && (i < 2 || !is_ident(b[i - 2]))
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Whether `word` occurs at byte `at` of `code` as a path root (not inside a longer name and
/// not after `::`, `.` or `$`).
fn starts_path(code: &[u8], at: usize) -> bool {
    at == 0 || {
        let p = code[at - 1];
        !is_ident(p) && p != b'$' && p != b'.' && !(p == b':' && at >= 2 && code[at - 2] == b':')
    }
}

/// Every `crate::<module>` reference in `code` (already [`code_only`]).
fn crate_references(code: &str) -> Vec<Reference> {
    let b = code.as_bytes();
    let line_of = |at: usize| code[..at].matches('\n').count() + 1;
    let ident_at = |at: usize| -> &str {
        let end = b[at..]
            .iter()
            .position(|&c| !is_ident(c))
            .map_or(b.len(), |p| at + p);
        &code[at..end]
    };
    let skip_ws = |mut at: usize| {
        while at < b.len() && b[at].is_ascii_whitespace() {
            at += 1;
        }
        at
    };
    let mut out = Vec::new();
    for (at, _) in code.match_indices("crate") {
        if !starts_path(b, at) {
            continue;
        }
        let mut j = skip_ws(at + 5);
        if !code[j..].starts_with("::") {
            continue;
        }
        j = skip_ws(j + 2);
        if b.get(j) == Some(&b'{') {
            // Grouped: every name at depth 1 of the braces.
            let mut depth = 0;
            let mut expect_name = true;
            while j < b.len() {
                match b[j] {
                    b'{' => {
                        depth += 1;
                        expect_name = depth == 1;
                    }
                    b'}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    b',' if depth == 1 => expect_name = true,
                    c if is_ident(c) && expect_name && depth == 1 => {
                        let name = ident_at(j);
                        if name != "self" {
                            out.push(Reference {
                                module: name.to_owned(),
                                line: line_of(j),
                            });
                        }
                        expect_name = false;
                        j += name.len();
                        continue;
                    }
                    _ => {}
                }
                j += 1;
            }
        } else if b.get(j).copied().is_some_and(is_ident) {
            out.push(Reference {
                module: ident_at(j).to_owned(),
                line: line_of(at),
            });
        }
    }
    out
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file below `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read src dir") {
            let p = e.expect("dir entry").path();
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

/// The top-level module a file of `src/` belongs to; `None` for the crate roots.
fn module_of(file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src_dir()).expect("under src/");
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_owned())
}

/// The import graph: module → module it references → where (`path:line`, first few).
type Graph = BTreeMap<String, BTreeMap<String, Vec<String>>>;

fn import_graph() -> Graph {
    let lib = std::fs::read_to_string(src_dir().join("lib.rs")).expect("lib.rs");
    let modules: BTreeSet<String> = code_only(&lib)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod ")?.strip_suffix(';'))
        .map(str::to_owned)
        .collect();
    assert!(modules.contains("domain"), "lib.rs declares no modules?");
    let mut graph = Graph::new();
    for file in rust_files(&src_dir()) {
        let Some(from) = module_of(&file) else {
            continue;
        };
        assert!(
            modules.contains(&from),
            "{} is in no module",
            file.display()
        );
        let code = code_only(&std::fs::read_to_string(&file).expect("source"));
        let node = graph.entry(from.clone()).or_default();
        for r in crate_references(&code) {
            if r.module != from && modules.contains(&r.module) {
                let rel = file.strip_prefix(src_dir()).expect("under src/");
                node.entry(r.module)
                    .or_default()
                    .push(format!("src/{}:{}", rel.display(), r.line));
            }
        }
    }
    graph
}

/// The cycles of `graph`: one per strongly connected component with more than one module,
/// given as the modules along it (first repeated at the end).
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    // Tarjan's algorithm, recursive: the graph has a dozen nodes.
    struct Tarjan<'g> {
        graph: &'g Graph,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        sccs: Vec<Vec<&'g str>>,
    }
    impl<'g> Tarjan<'g> {
        fn visit(&mut self, v: &'g str) {
            let i = self.index.len();
            self.index.insert(v, i);
            self.low.insert(v, i);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.graph.get(v).into_iter().flat_map(|e| e.keys()) {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(lw);
                } else if self.on_stack.contains(w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut scc = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    scc.push(w);
                    if w == v {
                        break;
                    }
                }
                self.sccs.push(scc);
            }
        }
    }
    let mut t = Tarjan {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        sccs: Vec::new(),
    };
    for v in graph.keys() {
        if !t.index.contains_key(v.as_str()) {
            t.visit(v);
        }
    }
    let mut out = Vec::new();
    for scc in t.sccs.into_iter().filter(|s| s.len() > 1) {
        // A shortest way from the component's first module back to itself, inside it.
        let members: BTreeSet<&str> = scc.iter().copied().collect();
        let start = *members.first().expect("non-empty");
        let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([start]);
        'search: while let Some(v) = queue.pop_front() {
            for w in graph.get(v).into_iter().flat_map(|e| e.keys()) {
                let w = w.as_str();
                if !members.contains(w) {
                    continue;
                }
                if w == start {
                    came_from.insert(start, v);
                    break 'search;
                }
                if !came_from.contains_key(w) {
                    came_from.insert(w, v);
                    queue.push_back(w);
                }
            }
        }
        let mut path = vec![start.to_owned()];
        let mut at = came_from[start];
        while at != start {
            path.push(at.to_owned());
            at = came_from[at];
        }
        path.push(start.to_owned());
        path.reverse();
        out.push(path);
    }
    out
}

/// A cycle with the places that make each of its edges.
fn describe(graph: &Graph, cycle: &[String]) -> String {
    let mut s = cycle.join(" → ");
    for pair in cycle.windows(2) {
        let places = &graph[&pair[0]][&pair[1]];
        let shown: Vec<&str> = places.iter().take(3).map(String::as_str).collect();
        s.push_str(&format!(
            "\n    {} → {}: {}{}",
            pair[0],
            pair[1],
            shown.join(", "),
            if places.len() > 3 { ", …" } else { "" }
        ));
    }
    s
}

#[test]
fn the_top_level_modules_import_each_other_without_a_cycle() {
    let graph = import_graph();
    assert!(
        graph.len() >= 10 && graph.values().map(BTreeMap::len).sum::<usize>() >= 10,
        "the scan found almost nothing: {graph:?}"
    );
    let found = cycles(&graph);
    assert!(
        found.is_empty(),
        "import cycles between the modules of src/ (STYLE.md §2: dependencies point inward):\n  {}",
        found
            .iter()
            .map(|c| describe(&graph, c))
            .collect::<Vec<_>>()
            .join("\n  ")
    );
}

/// Paths `domain` must not use: I/O, async runtimes, the clock and randomness (STYLE.md §2, §3).
const FORBIDDEN_IN_DOMAIN: [&str; 11] = [
    "sqlx::",
    "tokio::",
    "tokio_util::",
    "lapin::",
    "axum::",
    "reqwest::",
    "rand::",
    "Utc::now",
    "SystemTime::now",
    "Instant::now",
    "Local::now",
];

/// What in `code` (already [`code_only`]) breaks the domain's purity: `(line, what)`.
fn domain_violations(code: &str) -> Vec<(usize, String)> {
    let b = code.as_bytes();
    let line_of = |at: usize| code[..at].matches('\n').count() + 1;
    let mut out: Vec<(usize, String)> = crate_references(code)
        .into_iter()
        .filter(|r| r.module != "domain")
        .map(|r| (r.line, format!("crate::{}", r.module)))
        .collect();
    for word in FORBIDDEN_IN_DOMAIN {
        for (at, _) in code.match_indices(word) {
            // `chrono::Utc::now` and `std::time::Instant::now` are found by their last segments.
            let root = word.ends_with("::");
            if !root || starts_path(b, at) {
                out.push((line_of(at), word.trim_end_matches(':').to_owned()));
            }
        }
    }
    // `use tokio;`, `use rand as r;`, `extern crate sqlx;`
    for crate_name in [
        "sqlx",
        "tokio",
        "tokio_util",
        "lapin",
        "axum",
        "reqwest",
        "rand",
    ] {
        for (at, _) in code.match_indices(crate_name) {
            let after = b.get(at + crate_name.len()).copied();
            if starts_path(b, at)
                && !after.is_some_and(is_ident)
                && !code[at + crate_name.len()..].trim_start().starts_with("::")
                && code[..at].trim_end().ends_with("use")
            {
                out.push((line_of(at), crate_name.to_owned()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn the_domain_references_no_other_layer_and_no_io_crate() {
    let dir = src_dir().join("domain");
    let files = rust_files(&dir);
    assert!(
        files.len() >= 3,
        "no domain sources under {}",
        dir.display()
    );
    let mut bad = Vec::new();
    for file in files {
        let code = code_only(&std::fs::read_to_string(&file).expect("source"));
        for (line, what) in domain_violations(&code) {
            let rel = file.strip_prefix(src_dir()).expect("under src/");
            bad.push(format!("src/{}:{line}: {what}", rel.display()));
        }
    }
    assert!(
        bad.is_empty(),
        "src/domain must stay pure (STYLE.md §2: no other layer, no tokio/sqlx/lapin/axum/reqwest, no clock, no randomness):\n  {}",
        bad.join("\n  ")
    );
}

/// The scanner itself, on the forms the rule names (and those it must not count).
#[test]
fn the_scanner_finds_every_form_of_reference_and_skips_comments_and_strings() {
    let src = r##"
use crate::dmf::inbound::ReportedStatus;
use crate::{amqp, store::{self, outbox}, engine::Engine as E};
pub(crate) fn f() { crate::api::router(); let _ = "crate::sim::x"; let _ = r#"crate::bench"#; }
// crate::demo::nothing
/* crate::auth /* nested */ crate::config */
/// [`crate::health::Health`]
fn g<'a>(c: char) -> bool { c == '"' || c == '\'' } fn h() -> crate :: telemetry::T {}
"##;
    let code = code_only(src);
    let found: Vec<(String, usize)> = crate_references(&code)
        .into_iter()
        .map(|r| (r.module, r.line))
        .collect();
    let want = [
        ("dmf", 2),
        ("amqp", 3),
        ("store", 3),
        ("engine", 3),
        ("api", 4),
        ("telemetry", 8),
    ];
    assert_eq!(
        found,
        want.map(|(m, l)| (m.to_owned(), l)),
        "code seen: {code}"
    );

    // Cycles are found and named by the modules along them.
    let graph: Graph = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a", "d"]),
        ("d", vec![]),
    ]
    .into_iter()
    .map(|(from, to)| {
        let edges = to
            .into_iter()
            .map(|t| (t.to_owned(), vec!["x.rs:1".to_owned()]));
        (from.to_owned(), edges.collect())
    })
    .collect();
    assert_eq!(cycles(&graph), [["a", "b", "c", "a"].map(str::to_owned)]);
    assert!(cycles(&BTreeMap::from([("d".to_owned(), BTreeMap::new())])).is_empty());

    // The domain rules flag other layers and I/O, not look-alikes.
    let code = code_only(
        "use crate::domain::ids::TenantId;\nuse crate::store::Store;\n#[tokio::test]\nfn t() { let _ = chrono::Utc::now(); my_tokio::x(); }\nuse rand;\n// sqlx::query\n",
    );
    assert_eq!(
        domain_violations(&code),
        [
            (2, "crate::store".to_owned()),
            (3, "tokio".to_owned()),
            (4, "Utc::now".to_owned()),
            (5, "rand".to_owned()),
        ]
    );
}
