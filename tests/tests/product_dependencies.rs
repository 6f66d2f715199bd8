//! No test code in the product: what `cargo build -p molecule-mcp-cli` (debug or `--release`)
//! compiles comes from the product's own packages and the loopback platform stub (only with
//! the default `demo` feature), never from `molecule-mcp-tests`; and no workspace package
//! depends on itself through any chain of dependencies, dev-dependencies included.
//!
//! The build graph is cargo's own answer: `cargo tree -e normal` resolves features exactly as
//! a build of that package does (dev-dependencies and their features left out), and
//! `cargo metadata --no-deps` lists every manifest's declared dependencies with their kinds.
//! Both run `--offline --locked`, so they need no network and fail when `Cargo.lock` is stale.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The product's packages: what `cargo install --path cli` builds.
const PRODUCT: [&str; 3] = [
    "molecule-mcp-core",
    "molecule-mcp-io-tokio",
    "molecule-mcp-cli",
];
const TESTS: &str = "molecule-mcp-tests";
const STUB: &str = "molecule-mcp-stub";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `cargo <args>` in the workspace root and returns its stdout (panics on failure).
fn cargo(args: &[&str]) -> String {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(&cargo)
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cargo:?}: {e}"));
    assert!(
        out.status.success(),
        "cargo {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("cargo output is UTF-8")
}

/// `cargo tree --prefix none -f '{p}|{f}'` lines → package name → enabled features.
fn parse_tree(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut packages: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (package, features) = line.split_once('|').unwrap_or((line, ""));
        let Some(name) = package.split_whitespace().next() else {
            continue;
        };
        let features = features.trim().trim_end_matches("(*)").trim();
        packages.entry(name.to_owned()).or_default().extend(
            features
                .split(',')
                .map(str::trim)
                .filter(|f| !f.is_empty())
                .map(str::to_owned),
        );
    }
    packages
}

/// What a build of `molecule-mcp-cli` with `extra` flags compiles: package → features.
fn cli_build_graph(extra: &[&str]) -> BTreeMap<String, BTreeSet<String>> {
    let mut args = vec![
        "tree",
        "--offline",
        "--locked",
        "-p",
        "molecule-mcp-cli",
        "-e",
        "normal",
        "--prefix",
        "none",
        "-f",
        "{p}|{f}",
    ];
    args.extend_from_slice(extra);
    let graph = parse_tree(&cargo(&args));
    for expected in PRODUCT.iter().chain(&["tokio", "serde_json"]) {
        assert!(
            graph.contains_key(*expected),
            "the tree walk missed {expected}: {graph:?}"
        );
    }
    graph
}

#[test]
fn the_default_build_links_the_stub_for_the_demo_and_no_test_package() {
    let graph = cli_build_graph(&[]);
    assert!(
        !graph.contains_key(TESTS),
        "the product build compiles {TESTS}: {graph:?}"
    );
    assert!(
        graph.contains_key(STUB),
        "the default build has no stub, so no demo: {graph:?}"
    );
    assert!(
        graph["molecule-mcp-cli"].contains("demo"),
        "{:?}",
        graph["molecule-mcp-cli"]
    );
}

/// `cargo build -p molecule-mcp-cli` (`--release` resolves features the same way) enables
/// neither the core's test support nor the cli's fuzz entry point, and that entry point is
/// gated by the feature.
#[test]
fn the_product_build_compiles_no_test_support_and_no_fuzz_entry_point() {
    let graph = cli_build_graph(&[]);
    let cli = &graph["molecule-mcp-cli"];
    let core = &graph["molecule-mcp-core"];
    assert!(!cli.contains("fuzzing"), "cli features: {cli:?}");
    assert!(
        !core.contains("testing") && !core.contains("arbitrary"),
        "core features: {core:?}"
    );
    let mcp = std::fs::read_to_string(repo().join("cli/src/mcp/mod.rs")).expect("mcp/mod.rs");
    assert!(
        fuzz_module_is_gated(&mcp),
        "cli/src/mcp/mod.rs must declare `pub mod fuzz;` under #[cfg(feature = \"fuzzing\")]"
    );
}

/// `pub mod fuzz;` is declared, and only right under `#[cfg(feature = "fuzzing")]`.
fn fuzz_module_is_gated(source: &str) -> bool {
    let lines: Vec<&str> = source.lines().map(str::trim).collect();
    let declarations: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| **l == "pub mod fuzz;" || **l == "mod fuzz;")
        .map(|(i, _)| i)
        .collect();
    !declarations.is_empty()
        && declarations
            .iter()
            .all(|&i| i > 0 && lines[i - 1] == "#[cfg(feature = \"fuzzing\")]")
}

#[test]
fn the_build_without_default_features_has_no_stub() {
    let graph = cli_build_graph(&["--no-default-features"]);
    for absent in [TESTS, STUB] {
        assert!(
            !graph.contains_key(absent),
            "`--no-default-features` still compiles {absent}: {graph:?}"
        );
    }
    assert!(
        graph["molecule-mcp-cli"].is_empty(),
        "{:?}",
        graph["molecule-mcp-cli"]
    );
}

/// Package → its dependencies on other workspace packages: `(name, kind, optional)`.
type Graph = BTreeMap<String, Vec<(String, String, bool)>>;

/// `cargo metadata --no-deps`: every workspace package → its declared dependencies on other
/// workspace packages, as `(name, kind, optional)` (kind `normal`, `dev` or `build`).
fn workspace_dependencies() -> Graph {
    let text = cargo(&[
        "metadata",
        "--offline",
        "--locked",
        "--no-deps",
        "--format-version",
        "1",
    ]);
    let metadata: Value = serde_json::from_str(&text).expect("cargo metadata JSON");
    let packages = metadata["packages"].as_array().expect("packages");
    let names: BTreeSet<&str> = packages.iter().filter_map(|p| p["name"].as_str()).collect();
    let mut graph = BTreeMap::new();
    for package in packages {
        let name = package["name"].as_str().expect("package name").to_owned();
        let deps = package["dependencies"]
            .as_array()
            .expect("dependencies")
            .iter()
            .filter(|d| d["name"].as_str().is_some_and(|n| names.contains(n)))
            .map(|d| {
                (
                    d["name"].as_str().unwrap_or_default().to_owned(),
                    d["kind"].as_str().unwrap_or("normal").to_owned(),
                    d["optional"].as_bool().unwrap_or(false),
                )
            })
            .collect();
        graph.insert(name, deps);
    }
    graph
}

/// A graph from `(from, to, kind, optional)` edges (every package named is in it).
fn graph_of(edges: &[(&str, &str, &str, bool)]) -> Graph {
    let mut graph = Graph::new();
    for (from, to, kind, optional) in edges {
        graph.entry((*to).to_owned()).or_default();
        graph.entry((*from).to_owned()).or_default().push((
            (*to).to_owned(),
            (*kind).to_owned(),
            *optional,
        ));
    }
    graph
}

/// A cycle through the graph's edges, as the packages on it, if there is one.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        graph: &Graph,
        node: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|p| p == node) {
            let mut cycle = path[start..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for (dep, _, _) in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(graph, dep, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(graph, node, &mut Vec::new(), &mut done))
}

/// What a product package may not declare: any non-dev dependency on the tests package, and
/// a non-optional one on the stub.
fn product_rule_violations(graph: &Graph) -> Vec<String> {
    let mut violations = Vec::new();
    for package in PRODUCT {
        for (dep, kind, optional) in graph.get(package).into_iter().flatten() {
            let test_code =
                (dep == TESTS && kind != "dev") || (dep == STUB && kind != "dev" && !optional);
            if test_code {
                violations.push(format!("{package} → {dep} ({kind}, optional: {optional})"));
            }
        }
    }
    violations
}

#[test]
fn no_package_depends_on_itself_and_the_product_declares_no_test_code() {
    let graph = workspace_dependencies();
    for package in PRODUCT.iter().chain(&[TESTS, STUB]) {
        assert!(graph.contains_key(*package), "{package} missing: {graph:?}");
    }
    assert!(
        graph["molecule-mcp-cli"].iter().any(|(d, _, _)| d == STUB),
        "metadata walk found no cli → stub edge: {graph:?}"
    );
    assert_eq!(find_cycle(&graph), None, "{graph:#?}");
    let violations = product_rule_violations(&graph);
    assert!(violations.is_empty(), "{violations:#?}");
}

#[test]
fn the_checks_catch_what_they_should() {
    let tree = parse_tree(
        "molecule-mcp-cli v0.1.0 (/x/cli)|default,demo\nbytes v1.0.0|default,std\n\
         molecule-mcp-core v0.1.0 (/x/core)|\nmolecule-mcp-core v0.1.0 (/x/core)| (*)\n",
    );
    assert_eq!(tree.len(), 3);
    assert_eq!(
        tree["molecule-mcp-cli"],
        ["default", "demo"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect()
    );
    assert!(tree["molecule-mcp-core"].is_empty());

    let io = "molecule-mcp-io-tokio";
    let cli = "molecule-mcp-cli";
    let layout = graph_of(&[
        (io, "molecule-mcp-core", "normal", false),
        (io, STUB, "dev", false),
        (cli, io, "normal", false),
        (cli, STUB, "normal", true),
        (TESTS, cli, "normal", false),
    ]);
    assert_eq!(find_cycle(&layout), None);
    assert!(product_rule_violations(&layout).is_empty());

    // The old layout: io-tokio's tests used the tests package, which depends on io-tokio;
    // and the cli linked the tests package for the demo.
    let old = graph_of(&[
        (io, "molecule-mcp-core", "normal", false),
        (io, TESTS, "dev", false),
        (cli, io, "normal", false),
        (cli, TESTS, "normal", false),
        (TESTS, io, "normal", false),
    ]);
    let cycle = find_cycle(&old).expect("the dev-dependency cycle is found");
    assert!(cycle.contains(&TESTS.to_owned()), "{cycle:?}");
    assert_eq!(
        product_rule_violations(&old),
        vec![format!("{cli} → {TESTS} (normal, optional: false)")]
    );
    let mandatory_stub = graph_of(&[(cli, STUB, "normal", false)]);
    assert_eq!(product_rule_violations(&mandatory_stub).len(), 1);

    assert!(fuzz_module_is_gated(
        "pub mod framing;\n#[cfg(feature = \"fuzzing\")]\npub mod fuzz;\n"
    ));
    assert!(!fuzz_module_is_gated("pub mod framing;\npub mod fuzz;\n"));
    assert!(!fuzz_module_is_gated("pub mod framing;\n"));
}

// ---------------------------------------------------------------------------------------
// The binary built without default features (`bash scripts/test.sh` builds it next to the
// default one as `molecule-mcp-no-default-features`).

fn no_default_features_bin() -> PathBuf {
    let bin = molecule_mcp_tests::process::molecule_mcp_bin();
    let path = bin.with_file_name("molecule-mcp-no-default-features");
    assert!(
        path.is_file(),
        "{} is missing: `bash scripts/test.sh` builds it (`cargo build -p molecule-mcp-cli \
         --no-default-features`, then copy target/debug/molecule-mcp to that name)",
        path.display()
    );
    path
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn links_the_stub(bin: &Path) -> bool {
    let bytes = std::fs::read(bin).unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
    contains(&bytes, b"molecule_mcp_stub")
}

#[test]
fn without_default_features_demo_says_there_is_none_and_exits_2() {
    let bin = no_default_features_bin();
    let out = Command::new(&bin)
        .arg("demo")
        .env_clear()
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(out.stdout.is_empty(), "{:?}", out.stdout);
    assert!(
        stderr.contains("this build has no demo") && stderr.contains("`demo`"),
        "{stderr}"
    );
    // Debug builds keep symbol names: the stub's crate name is in the default binary only.
    assert!(!links_the_stub(&bin), "{} links the stub", bin.display());
    let default_bin = molecule_mcp_tests::process::molecule_mcp_bin();
    assert!(
        links_the_stub(&default_bin),
        "{} does not link the stub",
        default_bin.display()
    );
}
