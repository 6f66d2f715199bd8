//! The packaging files agree with each other and with the crate: the wheel (`pyproject.toml`),
//! the MCP Registry entry (`server.json`) and the README's registry ownership marker.

use serde_json::Value;

fn root_file(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn server_json_names_the_wheel_and_this_version() {
    let server: Value = serde_json::from_str(&root_file("server.json")).expect("server.json");
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(server["version"], version);
    let package = &server["packages"][0];
    assert_eq!(package["registryType"], "pypi");
    assert_eq!(package["version"], version);
    assert_eq!(package["transport"]["type"], "stdio");
    let pyproject = root_file("pyproject.toml");
    let wheel_name = format!("name = {}", package["identifier"]);
    assert!(
        pyproject.contains(&wheel_name),
        "pyproject.toml lacks {wheel_name}"
    );
    assert!(pyproject.contains("bindings = \"bin\""));
    assert!(pyproject.contains("manifest-path = \"cli/Cargo.toml\""));
    // The registry checks PyPI ownership through this marker in the package's README.
    let name = server["name"].as_str().expect("name");
    assert!(
        root_file("README.md").contains(&format!("<!-- mcp-name: {name} ")),
        "README.md lacks the mcp-name marker for {name}"
    );
    // Every variable it lists is one the binary reads (README's table).
    let readme = root_file("README.md");
    for var in package["environmentVariables"]
        .as_array()
        .expect("variables")
    {
        let var = var["name"].as_str().expect("variable name");
        assert!(readme.contains(&format!("| `{var}` |")), "{var}");
    }
}
