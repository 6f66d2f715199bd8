//! The core stays sans-io: `cargo build -p molecule-mcp-core` pulls in no async runtime, no
//! HTTP stack, no socket crate and no clock or entropy source, and its production code
//! reads no clock, sleeps on no thread and prints nothing. And the core needs no runtime to
//! be driven: the blocking driver (`tests/src/blocking_driver.rs`) uses only `std` and the
//! core.
//!
//! The dependency check walks the workspace `Cargo.lock` (a tiny parser of its
//! `[[package]]` blocks; the test needs no dependency). The lock does not say which edges
//! are dev-dependencies, so the walk starts from the names in `core/Cargo.toml`'s
//! `[dependencies]` tables (optional ones included, which only makes the check stricter)
//! and then follows every edge the lock records, a superset of what any feature set or
//! target platform builds.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Crates that would mean I/O, a runtime, a clock or OS entropy inside the core.
const FORBIDDEN: [&str; 7] = [
    "tokio",
    "hyper",
    "mio",
    "socket2",
    "chrono",
    "time",
    "getrandom",
];
/// Whole families, by name prefix (`tokio-util`, `hyper-util`, `hyper-rustls`, …).
const FORBIDDEN_PREFIXES: [&str; 2] = ["tokio-", "hyper-"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[derive(Debug)]
struct LockPackage {
    name: String,
    version: String,
    /// `(name, version)`; the lock omits the version when only one version is locked.
    dependencies: Vec<(String, Option<String>)>,
}

fn unquote(s: &str) -> Option<&str> {
    s.trim()
        .trim_end_matches(',')
        .trim()
        .strip_prefix('"')?
        .strip_suffix('"')
}

/// `[[package]]` blocks with `name`, `version` and `dependencies = [ "a", "b 1.0", … ]`
/// (the one-per-line layout Cargo writes; a one-line array is accepted too).
fn parse_lock(text: &str) -> Vec<LockPackage> {
    let mut packages = Vec::new();
    let mut current: Option<LockPackage> = None;
    let mut in_deps = false;
    let push_dep = |pkg: &mut LockPackage, item: &str| {
        let Some(spec) = unquote(item) else { return };
        let mut parts = spec.split_whitespace();
        let name = parts.next().unwrap_or_default().to_owned();
        let version = parts.next().map(str::to_owned);
        if !name.is_empty() {
            pkg.dependencies.push((name, version));
        }
    };
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') && !in_deps {
            if let Some(pkg) = current.take() {
                packages.push(pkg);
            }
            if line == "[[package]]" {
                current = Some(LockPackage {
                    name: String::new(),
                    version: String::new(),
                    dependencies: Vec::new(),
                });
            }
            continue;
        }
        let Some(pkg) = current.as_mut() else {
            continue;
        };
        if in_deps {
            if line.starts_with(']') {
                in_deps = false;
            } else {
                push_dep(pkg, line);
            }
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim();
        match key.trim() {
            "name" => pkg.name = unquote(value).unwrap_or_default().to_owned(),
            "version" => pkg.version = unquote(value).unwrap_or_default().to_owned(),
            "dependencies" => {
                let inner = value.trim_start_matches('[');
                match inner.split_once(']') {
                    Some((items, _)) => items.split(',').for_each(|i| push_dep(pkg, i)),
                    None => {
                        in_deps = true;
                        push_dep(pkg, inner);
                    }
                }
            }
            _ => {}
        }
    }
    if let Some(pkg) = current {
        packages.push(pkg);
    }
    packages
}

/// Package names of a manifest's `[dependencies]`, `[dependencies.<name>]` and
/// `[target.<cfg>.dependencies]` tables (honouring `package = "…"` renames), with
/// whether each is optional. Dev- and build-dependencies are not part of the build.
fn manifest_dependencies(text: &str) -> BTreeMap<String, bool> {
    let mut deps = BTreeMap::new();
    let mut in_table = false;
    // `[dependencies.<name>]`: (package name, optional) of the table being read.
    let mut dotted: Option<(String, bool)> = None;
    fn flush(dotted: &mut Option<(String, bool)>, deps: &mut BTreeMap<String, bool>) {
        if let Some((name, optional)) = dotted.take() {
            deps.insert(name, optional);
        }
    }
    for raw in text.lines() {
        let line = raw.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        if let Some(header) = line.strip_prefix('[') {
            flush(&mut dotted, &mut deps);
            let header = header.trim_end_matches(']').trim();
            in_table = header == "dependencies"
                || (header.starts_with("target.") && header.ends_with(".dependencies"));
            if let Some(name) = header.strip_prefix("dependencies.") {
                dotted = Some((name.trim().to_owned(), false));
            }
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        if let Some((name, optional)) = dotted.as_mut() {
            match key {
                "package" => *name = unquote(value).unwrap_or(name).to_owned(),
                "optional" => *optional = value == "true",
                _ => {}
            }
            continue;
        }
        if !in_table {
            continue;
        }
        let field = |field: &str| -> Option<String> {
            let rest = value.split(field).nth(1)?.trim_start().strip_prefix('=')?;
            let end = rest.find([',', '}']).unwrap_or(rest.len());
            Some(rest[..end].trim().to_owned())
        };
        let name = field("package")
            .and_then(|p| unquote(&p).map(str::to_owned))
            .unwrap_or_else(|| key.trim_matches('"').to_owned());
        let optional = field("optional").is_some_and(|v| v == "true");
        deps.insert(name, optional);
    }
    flush(&mut dotted, &mut deps);
    deps
}

/// Every package reachable in the lock from `roots` (indices into `lock`).
fn closure(lock: &[LockPackage], roots: Vec<usize>) -> BTreeSet<String> {
    let mut seen: BTreeSet<usize> = BTreeSet::new();
    let mut stack = roots;
    while let Some(i) = stack.pop() {
        if !seen.insert(i) {
            continue;
        }
        for (name, version) in &lock[i].dependencies {
            let targets: Vec<usize> = lock
                .iter()
                .enumerate()
                .filter(|(_, p)| {
                    &p.name == name && version.as_ref().is_none_or(|v| &p.version == v)
                })
                .map(|(j, _)| j)
                .collect();
            assert!(
                !targets.is_empty(),
                "{} depends on {name} {version:?}, which the lock does not contain",
                lock[i].name
            );
            stack.extend(targets);
        }
    }
    seen.into_iter().map(|i| lock[i].name.clone()).collect()
}

fn packages_named(lock: &[LockPackage], name: &str) -> Vec<usize> {
    lock.iter()
        .enumerate()
        .filter(|(_, p)| p.name == name)
        .map(|(i, _)| i)
        .collect()
}

fn forbidden_in(names: &BTreeSet<String>) -> Vec<&String> {
    names
        .iter()
        .filter(|n| {
            FORBIDDEN.contains(&n.as_str()) || FORBIDDEN_PREFIXES.iter().any(|p| n.starts_with(p))
        })
        .collect()
}

fn lock() -> Vec<LockPackage> {
    let text = std::fs::read_to_string(repo().join("Cargo.lock")).expect("workspace Cargo.lock");
    let lock = parse_lock(&text);
    assert!(
        lock.len() > 20,
        "lock parser found only {} packages",
        lock.len()
    );
    lock
}

/// The normal-dependency closure of the core.
fn core_closure(lock: &[LockPackage]) -> BTreeSet<String> {
    let manifest =
        std::fs::read_to_string(repo().join("core/Cargo.toml")).expect("core/Cargo.toml");
    let direct = manifest_dependencies(&manifest);
    assert!(
        direct.contains_key("serde") && direct.contains_key("serde_json"),
        "manifest parser missed the core's dependencies: {direct:?}"
    );
    let mut roots = Vec::new();
    for (name, optional) in &direct {
        let found = packages_named(lock, name);
        assert!(
            *optional || !found.is_empty(),
            "core dependency {name} is not in Cargo.lock"
        );
        roots.extend(found);
    }
    closure(lock, roots)
}

#[test]
fn core_pulls_in_no_runtime_http_socket_clock_or_entropy_crate() {
    let lock = lock();
    let names = core_closure(&lock);
    assert!(
        names.contains("serde") && names.contains("serde_json") && names.contains("serde_core"),
        "the walk did not reach the core's dependencies: {names:?}"
    );
    let bad = forbidden_in(&names);
    assert!(
        bad.is_empty(),
        "molecule-mcp-core pulls in {bad:?} (its full closure: {names:?})"
    );
    // The closure stays small: serde, serde_json and their few helpers (+ `arbitrary`'s
    // derive stack when that optional fuzzing feature is on).
    assert!(
        names.len() <= 20,
        "core closure grew to {}: {names:?}",
        names.len()
    );
}

/// The walker is not vacuous: from a crate that does use tokio and hyper it finds them.
#[test]
fn dependency_walk_finds_the_runtime_where_it_is_used() {
    let lock = lock();
    let names = closure(&lock, packages_named(&lock, "molecule-mcp-tests"));
    for expected in ["tokio", "hyper", "mio", "socket2"] {
        assert!(
            names.contains(expected),
            "{expected} not found in the tests crate's closure: {names:?}"
        );
    }
    assert!(!forbidden_in(&names).is_empty());
}

#[test]
fn lock_and_manifest_parsers_understand_the_formats() {
    let lock = parse_lock(
        "version = 4\n\n[[package]]\nname = \"a\"\nversion = \"1.0.0\"\ndependencies = [\n \"b\",\n \"c 2.0.0\",\n \"c 3.0.0 (registry+https://x)\",\n]\n\n\
         [[package]]\nname = \"b\"\nversion = \"0.1.0\"\ndependencies = [\"c 2.0.0\"]\n\n\
         [[package]]\nname = \"c\"\nversion = \"2.0.0\"\n\n[[package]]\nname = \"c\"\nversion = \"3.0.0\"\n\n\
         [[package]]\nname = \"d\"\nversion = \"1.0.0\"\n\n[metadata]\nx = \"y\"\n",
    );
    assert_eq!(lock.len(), 5);
    assert_eq!(
        lock[0].dependencies,
        vec![
            ("b".to_owned(), None),
            ("c".to_owned(), Some("2.0.0".to_owned())),
            ("c".to_owned(), Some("3.0.0".to_owned())),
        ]
    );
    assert_eq!(
        lock[1].dependencies,
        vec![("c".to_owned(), Some("2.0.0".to_owned()))]
    );
    let reach = closure(&lock, vec![1]);
    assert_eq!(reach, ["b", "c"].iter().map(|s| (*s).to_owned()).collect());
    assert_eq!(closure(&lock, vec![0]).len(), 3);

    let deps = manifest_dependencies(
        "[package]\nname = \"x\"\n\n[dependencies]\nserde = { workspace = true }\n\
         renamed = { package = \"real-name\", version = \"1\" }\nopt = { version = \"1\", optional = true } # c\n\
         \"quoted\" = \"1\"\n\n[dev-dependencies]\nproptest = \"1\"\n\n\
         [target.'cfg(unix)'.dependencies]\nlibc = \"0.2\"\n\n[dependencies.dotted]\nversion = \"1\"\noptional = true\n\n\
         [build-dependencies]\ncc = \"1\"\n",
    );
    let expected: BTreeMap<String, bool> = [
        ("serde", false),
        ("real-name", false),
        ("opt", true),
        ("quoted", false),
        ("libc", false),
        ("dotted", true),
    ]
    .iter()
    .map(|(n, o)| ((*n).to_owned(), *o))
    .collect();
    assert_eq!(deps, expected);
}

// ---------------------------------------------------------------------------------------
// Source check: no clock, no sleep, no printing in the core's production code.

/// Calls that must not appear anywhere in `core/src`, tests included.
const NEVER: [&str; 7] = [
    "SystemTime::now",
    "thread::sleep",
    "println!",
    "eprintln!",
    "print!",
    "eprint!",
    "dbg!",
];
/// May appear only in test-only code (`#[cfg(test)]` items and the test-support module
/// compiled only for tests and with the `testing` feature), which needs one real `Instant`
/// as the origin of simulated time.
const PRODUCTION_NEVER: [&str; 1] = ["Instant::now"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Code,
    Literal,
    Comment,
}

fn is_ident(c: Option<&char>) -> bool {
    c.is_some_and(|c| c.is_alphanumeric() || *c == '_')
}

/// Classifies every character of Rust source as code, string/char literal or comment
/// (line, nested block, plain/byte/raw strings, char literals vs lifetimes). Good enough
/// for the core's own sources; the helper test below pins the tricky cases.
fn lex(text: &str) -> Vec<(char, Kind)> {
    let c: Vec<char> = text.chars().collect();
    let mut out = Vec::with_capacity(c.len());
    let mut i = 0;
    let mark = |out: &mut Vec<(char, Kind)>, from: usize, to: usize, kind: Kind| {
        out.extend(c[from..to.min(c.len())].iter().map(|ch| (*ch, kind)));
    };
    while i < c.len() {
        let at = |k: usize| c.get(i + k).copied();
        let start = i;
        if at(0) == Some('/') && at(1) == Some('/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
            mark(&mut out, start, i, Kind::Comment);
        } else if at(0) == Some('/') && at(1) == Some('*') {
            let mut depth = 0usize;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            mark(&mut out, start, i, Kind::Comment);
        } else if at(0) == Some('r')
            && matches!(at(1), Some('"' | '#'))
            && (!is_ident(i.checked_sub(1).and_then(|p| c.get(p)))
                || (c.get(i.wrapping_sub(1)) == Some(&'b')
                    && !is_ident(i.checked_sub(2).and_then(|p| c.get(p)))))
        {
            let hashes = c[i + 1..].iter().take_while(|ch| **ch == '#').count();
            if c.get(i + 1 + hashes) == Some(&'"') {
                i += 2 + hashes;
                while i < c.len() {
                    if c[i] == '"'
                        && c[i + 1..]
                            .iter()
                            .take(hashes)
                            .filter(|h| **h == '#')
                            .count()
                            == hashes
                    {
                        i += 1 + hashes;
                        break;
                    }
                    i += 1;
                }
                mark(&mut out, start, i, Kind::Literal);
            } else {
                i += 1;
                mark(&mut out, start, i, Kind::Code);
            }
        } else if at(0) == Some('"') {
            i += 1;
            while i < c.len() && c[i] != '"' {
                i += if c[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            mark(&mut out, start, i, Kind::Literal);
        } else if at(0) == Some('\'') && at(1) == Some('\\') {
            // `'\''`, `'\n'`, `'\u{..}'`: skip the escaped character, then find the quote.
            i += 3;
            while i < c.len() && c[i] != '\'' {
                i += 1;
            }
            i += 1;
            mark(&mut out, start, i, Kind::Literal);
        } else if at(0) == Some('\'') && at(2) == Some('\'') {
            i += 3;
            mark(&mut out, start, i, Kind::Literal);
        } else {
            i += 1;
            mark(&mut out, start, i, Kind::Code);
        }
    }
    out
}

/// The source with comments blanked out (so docs may name what the code must not do).
fn without_comments(lexed: &[(char, Kind)]) -> String {
    lexed
        .iter()
        .map(|(ch, kind)| match kind {
            Kind::Comment if *ch != '\n' => ' ',
            Kind::Comment | Kind::Code | Kind::Literal => *ch,
        })
        .collect()
}

/// The source without comments and without every item annotated `#[cfg(test)]` (up to
/// its matching `}` or its `;`, counting braces in code only).
fn production_code(lexed: &[(char, Kind)]) -> String {
    const ATTR: &str = "#[cfg(test)]";
    let attr: Vec<char> = ATTR.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < lexed.len() {
        let is_attr = lexed.len() - i >= attr.len()
            && lexed[i..i + attr.len()]
                .iter()
                .zip(&attr)
                .all(|((ch, kind), a)| ch == a && *kind == Kind::Code);
        if !is_attr {
            if lexed[i].1 != Kind::Comment {
                out.push(lexed[i].0);
            }
            i += 1;
            continue;
        }
        i += attr.len();
        let mut depth = 0usize;
        while i < lexed.len() {
            let (ch, kind) = lexed[i];
            i += 1;
            if kind != Kind::Code {
                continue;
            }
            match ch {
                '{' => depth += 1,
                '}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        break;
                    }
                }
                ';' if depth == 0 => break,
                _ => {}
            }
        }
    }
    out
}

/// Files of modules declared `#[cfg(any(test, feature = "testing"))] [pub] mod x;` (or with
/// `#[cfg(feature = "testing")]`): `x.rs`, and every file under `x/`.
fn testing_only_files(files: &[PathBuf]) -> BTreeSet<PathBuf> {
    const GATES: [&str; 2] = [
        "#[cfg(any(test, feature = \"testing\"))]",
        "#[cfg(feature = \"testing\")]",
    ];
    // `dir/x` for every gated `mod x;` declared in a file of `dir`.
    let mut gated = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).expect("source");
        let dir = match file.file_name().and_then(|n| n.to_str()) {
            Some("lib.rs" | "mod.rs") => file.parent().expect("parent").to_path_buf(),
            _ => file.with_extension(""),
        };
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        for pair in lines.windows(2) {
            if !GATES.contains(&pair[0]) {
                continue;
            }
            let decl = pair[1].strip_prefix("pub ").unwrap_or(pair[1]);
            if let Some(name) = decl.strip_prefix("mod ").and_then(|m| m.strip_suffix(';')) {
                gated.push(dir.join(name));
            }
        }
    }
    files
        .iter()
        .filter(|f| {
            gated
                .iter()
                .any(|m| **f == m.with_extension("rs") || f.starts_with(m))
        })
        .cloned()
        .collect()
}

#[test]
fn core_source_reads_no_clock_sleeps_on_no_thread_and_prints_nothing() {
    let src = repo().join("core/src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    assert!(files.len() >= 10, "found only {files:?}");
    let testing_only = testing_only_files(&files);
    for expected in [
        "testing/mod.rs",
        "testing/session.rs",
        "testing/config.rs",
        "testing/inbox.rs",
    ] {
        assert!(
            testing_only.contains(&src.join(expected)),
            "{expected} should be in the test-only module: {testing_only:?}"
        );
    }
    // Test support lives in that one module: no other file is exempt.
    assert!(
        testing_only
            .iter()
            .all(|f| f.starts_with(src.join("testing"))),
        "test-only files outside core/src/testing/: {testing_only:?}"
    );
    let mut violations = Vec::new();
    for file in &files {
        let lexed = lex(&std::fs::read_to_string(file).expect("source"));
        let code = without_comments(&lexed);
        let rel = file
            .strip_prefix(&src)
            .unwrap_or(file)
            .display()
            .to_string();
        for needle in NEVER {
            if code.contains(needle) {
                violations.push(format!("{rel}: {needle}"));
            }
        }
        if testing_only.contains(file) {
            continue;
        }
        let production = production_code(&lexed);
        for needle in PRODUCTION_NEVER {
            if production.contains(needle) {
                violations.push(format!("{rel}: {needle} outside test-only code"));
            }
        }
    }
    assert!(violations.is_empty(), "{violations:#?}");
}

#[test]
fn source_check_helpers_strip_what_they_should() {
    let code = concat!(
        "fn a() { let s = \"// not a comment {\"; let r = r#\"}\"#; } // Instant::now\n",
        "/* block /* nested */ Instant::now */ fn lifetimes<'a>(x: &'a str) -> &'a str { x }\n",
        "#[cfg(test)]\nmod tests { fn t() { let c = '}'; let q = '\\''; let _ = Instant::now(); } }\n",
        "#[cfg(test)]\nuse std::time::Instant;\nfn b() { let _ = '\"'; }\n",
    );
    let lexed = lex(code);
    let comments_gone = without_comments(&lexed);
    assert_eq!(
        comments_gone.matches("Instant::now").count(),
        1,
        "{comments_gone}"
    );
    let production = production_code(&lexed);
    assert!(!production.contains("Instant"), "{production}");
    for kept in [
        "fn a()",
        "\"// not a comment {\"",
        "r#\"}\"#",
        "fn lifetimes<'a>",
        "fn b() { let _ = '\"'; }",
    ] {
        assert!(production.contains(kept), "lost {kept}: {production}");
    }
    assert!(production_code(&lex("fn x() { Instant::now() }")).contains("Instant::now"));
}

// ---------------------------------------------------------------------------------------
// Source check: the blocking driver runs the core with `std` alone.

/// The only crates `tests/src/blocking_driver.rs` may `use` (its point is a driver built on
/// nothing but the standard library and the core).
const BLOCKING_DRIVER_USES: [&str; 5] = ["std", "molecule_mcp_core", "crate", "super", "self"];

/// What keeps `source` from being a runtime-free driver: any mention of `tokio` or `hyper`
/// outside comments, and every `use` of a crate other than [`BLOCKING_DRIVER_USES`].
fn runtime_free_violations(source: &str) -> Vec<String> {
    let lexed = lex(source);
    let code = without_comments(&lexed);
    let mut found: Vec<String> = ["tokio", "hyper"]
        .iter()
        .filter(|word| code.contains(*word))
        .map(|word| format!("mentions {word}"))
        .collect();
    // Literals blanked too, so a message that says "use …" is not taken for a declaration.
    let bare: String = lexed
        .iter()
        .map(|(ch, kind)| match kind {
            Kind::Code => *ch,
            Kind::Comment | Kind::Literal if *ch == '\n' => '\n',
            Kind::Comment | Kind::Literal => ' ',
        })
        .collect();
    for (at, _) in bare.match_indices("use ") {
        let before = bare[..at].chars().next_back();
        if is_ident(before.as_ref()) {
            continue;
        }
        let root: String = bare[at + 4..]
            .trim_start()
            .trim_start_matches("::")
            .chars()
            .take_while(|c| is_ident(Some(c)))
            .collect();
        if !BLOCKING_DRIVER_USES.contains(&root.as_str()) {
            found.push(format!("uses {root}"));
        }
    }
    found
}

#[test]
fn blocking_driver_uses_only_std_and_the_core() {
    let path = repo().join("tests/src/blocking_driver.rs");
    let source = std::fs::read_to_string(&path).expect("tests/src/blocking_driver.rs");
    assert!(
        source.contains("use molecule_mcp_core::workspace::{Fleet"),
        "the check reads the driver that runs the fleet"
    );
    let violations = runtime_free_violations(&source);
    assert!(violations.is_empty(), "{}: {violations:?}", path.display());
}

#[test]
fn runtime_free_check_flags_a_runtime_and_other_crates() {
    let clean = "//! Not tokio's.\nuse std::io::Read;\npub use molecule_mcp_core::Input;\n\
                 fn f() { use self::x; let m = \"use tokio_x\"; }\n";
    assert_eq!(runtime_free_violations(clean), ["mentions tokio"]);
    let clean = clean.replace("tokio_x", "it");
    assert!(runtime_free_violations(&clean).is_empty());
    let dirty =
        "use tokio::sync::mpsc;\nfn f() { { use serde_json::json; } hyper::Client::new(); }\n";
    assert_eq!(
        runtime_free_violations(dirty),
        [
            "mentions tokio",
            "mentions hyper",
            "uses tokio",
            "uses serde_json"
        ]
    );
    assert_eq!(
        runtime_free_violations("reuse tokio_free();"),
        ["mentions tokio"]
    );
    assert!(runtime_free_violations("fn f() { reuse(); }").is_empty());
}
