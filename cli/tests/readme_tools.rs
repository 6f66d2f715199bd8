//! The README's table of the 12 tools is generated from the tool specs (`Tool::ALL`), so it
//! cannot drift from what `tools/list` serves. On a mismatch the test prints the table to
//! paste; `UPDATE_README=1 cargo test -p molecule-mcp-cli --test readme_tools` rewrites it.

use molecule_mcp_cli::tools::catalog::tool_defs;
use serde_json::Value;

const BEGIN: &str =
    "<!-- tools:begin (generated from the tool specs by cli/tests/readme_tools.rs) -->";
const END: &str = "<!-- tools:end -->";

/// Makes `text` fit in one Markdown table cell.
fn cell(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

/// The tool description up to the end of its first sentence.
fn first_sentence(text: &str) -> String {
    let flat = cell(text);
    match flat.find(". ") {
        Some(end) => flat[..=end].to_owned(),
        None => flat,
    }
}

fn table() -> String {
    let mut out =
        String::from("| tool | arguments (**bold**: required) | what it does |\n|---|---|---|\n");
    for spec in tool_defs() {
        let schema = &spec.input_schema;
        let required: Vec<&str> = schema["required"]
            .as_array()
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let args: Vec<String> = schema["properties"]
            .as_object()
            .map(|props| {
                props
                    .iter()
                    .map(|(name, p)| {
                        let kind = match (&p["type"], &p["enum"]) {
                            (_, Value::Array(values)) => values
                                .iter()
                                .map(|v| match v.as_str() {
                                    Some("") => "\"\"".to_owned(),
                                    Some(s) => s.to_owned(),
                                    None => v.to_string(),
                                })
                                .collect::<Vec<_>>()
                                .join("/"),
                            (Value::String(t), _) if t == "array" => {
                                format!("array of {}", p["items"]["type"].as_str().unwrap_or("any"))
                            }
                            (Value::String(t), _) => t.clone(),
                            _ => "any".to_owned(),
                        };
                        let label = if required.contains(&name.as_str()) {
                            format!("**`{name}`**")
                        } else {
                            format!("`{name}`")
                        };
                        let about = p["description"].as_str().map(cell).unwrap_or_default();
                        format!("{label} ({kind}) {about}").trim_end().to_owned()
                    })
                    .collect()
            })
            .unwrap_or_default();
        let args = if args.is_empty() {
            "–".to_owned()
        } else {
            args.join("<br>")
        };
        out.push_str(&format!(
            "| `{}` | {args} | {} |\n",
            spec.name,
            first_sentence(&spec.description)
        ));
    }
    out
}

#[test]
fn readme_tool_table_matches_the_specs() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let readme = std::fs::read_to_string(&path).expect("README.md");
    let (Some(start), Some(end)) = (readme.find(BEGIN), readme.find(END)) else {
        panic!("README.md has no {BEGIN} … {END} block");
    };
    let current = &readme[start + BEGIN.len()..end];
    let want = format!("\n{}", table());
    if current == want {
        return;
    }
    if std::env::var_os("UPDATE_README").is_some() {
        let updated = format!("{}{BEGIN}{want}{}", &readme[..start], &readme[end..]);
        std::fs::write(&path, updated).expect("write README.md");
        return;
    }
    panic!("README.md's tool table is out of date; expected:\n{want}");
}

/// The code block (without its fences) that follows `marker` in `text`.
fn block_after<'a>(text: &'a str, marker: &str, lang: &str) -> &'a str {
    let at = text
        .find(marker)
        .unwrap_or_else(|| panic!("README.md lost {marker:?}"));
    let fence = format!("```{lang}\n");
    let start = text[at..]
        .find(&fence)
        .map(|i| at + i + fence.len())
        .expect("a code block");
    let end = text[start..]
        .find("```")
        .map(|i| start + i)
        .expect("a closing fence");
    &text[start..end]
}

#[test]
fn example_configs_match_the_readme_snippets() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    for (file, marker, lang) in [
        ("claude-code.mcp.json", "Project scope: `.mcp.json`", "json"),
        ("codex-config.toml", "`~/.codex/config.toml` (or", "toml"),
        ("cursor-mcp.json", "`~/.cursor/mcp.json` (global)", "json"),
    ] {
        let example = std::fs::read_to_string(root.join("examples").join(file)).expect(file);
        assert_eq!(
            example,
            block_after(&readme, marker, lang),
            "examples/{file}"
        );
        if lang == "json" {
            let v: Value = serde_json::from_str(&example).expect(file);
            assert_eq!(
                v["mcpServers"]["molecule"]["command"], "molecule-mcp",
                "{file}"
            );
        } else {
            assert!(example.starts_with("[mcp_servers.molecule]\ncommand = \"molecule-mcp\"\n"));
        }
    }
    // The name-first form: `--env` is variadic and would swallow a name written after it.
    assert!(
        readme.contains("claude mcp add --scope user molecule \\\n  --env "),
        "README's claude mcp add line must name the server before --env"
    );
}
