//! `molecule-mcp doctor`: the onboarding diagnostic, adapted to a Rust
//! binary and made safe: six checks, each OK / WARN / FAIL with a "next:" hint, exit 1 when
//! any check fails.
//!
//! 1. binary version;
//! 2. install location (the running executable);
//! 3. `molecule-mcp` on PATH;
//! 4. environment (the same validation the server runs);
//! 5. platform reachability (`GET /health`, the route the platform serves);
//! 6. a **read-only** auth probe per workspace (`GET /workspaces/:id/activity?limit=1`,
//!    which needs a valid bearer) instead of overwriting the live agent card with a
//!    register call).
//!
//! Colours only when stdout is a terminal and `NO_COLOR` is unset.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use molecule_mcp_core::config::{ValidConfig, validate};
use molecule_mcp_core::{
    Body, HttpRequest, Method, PlatformRequests, RequestId, RequestKind, Secret, percent_encode,
};
use molecule_mcp_io_tokio::{HttpClient, driver, state_dir};

use crate::env_snapshot;

const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Fine.
    Ok(String),
    /// Not fatal; review the hint.
    Warn(String, String),
    /// Must be fixed.
    Fail(String, String),
}

/// One printed line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Label, e.g. `Env vars`.
    pub label: String,
    /// Result.
    pub verdict: Verdict,
}

/// Runs the doctor against the real process environment (and `--workspaces-file`, as the
/// server would read it); prints to stdout.
pub fn run(workspaces_file: Option<&Path>) -> ExitCode {
    let rt = match crate::runtime::build() {
        Ok(rt) => rt,
        Err(e) => {
            crate::serve::print_fatal(&format!(
                "molecule-mcp doctor: cannot start the async runtime: {e}"
            ));
            return ExitCode::from(1);
        }
    };
    let checks = rt.block_on(run_checks(workspaces_file));
    let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let (text, failed) = render(&checks, color);
    print_stdout(&text);
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

#[allow(clippy::print_stdout)] // doctor is an interactive command; it never coexists with the MCP server
fn print_stdout(text: &str) {
    // The same redaction as the server's output: a platform answer quoted in a check must
    // not print the token.
    print!("{}", molecule_mcp_io_tokio::secrets::redact(text));
}

/// Runs all six checks.
pub async fn run_checks(workspaces_file: Option<&Path>) -> Vec<Check> {
    let mut checks = vec![
        Check {
            label: "Binary".into(),
            verdict: Verdict::Ok(format!(
                "molecule-mcp {} ({})",
                env!("CARGO_PKG_VERSION"),
                std::env::consts::ARCH
            )),
        },
        install_check(),
        path_check(),
    ];
    let (env_check, config) = env_check(workspaces_file);
    checks.push(env_check);
    match config {
        Some(config) => {
            let http = HttpClient::new();
            checks.push(reachability_check(&http, &config).await);
            checks.push(auth_check(&http, &config).await);
        }
        None => {
            let hint = "fix the Env vars check first".to_owned();
            checks.push(Check {
                label: "Platform reachability".into(),
                verdict: Verdict::Warn("skipped: no valid configuration".into(), hint.clone()),
            });
            checks.push(Check {
                label: "Token accepted".into(),
                verdict: Verdict::Warn("skipped: no valid configuration".into(), hint),
            });
        }
    }
    checks
}

fn install_check() -> Check {
    let label = "Install".to_owned();
    match std::env::current_exe() {
        Ok(path) => Check {
            label,
            verdict: Verdict::Ok(format!("running {}", path.display())),
        },
        Err(e) => Check {
            label,
            verdict: Verdict::Warn(
                format!("cannot determine the executable's path: {e}"),
                "use an absolute path to molecule-mcp in your MCP config".into(),
            ),
        },
    }
}

/// Finds `molecule-mcp` on `PATH`.
pub fn find_on_path(path_var: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    let path_var = path_var?;
    std::env::split_paths(path_var)
        .map(|dir| dir.join("molecule-mcp"))
        .find(|p| is_executable(p))
}

fn is_executable(p: &std::path::Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    }
    #[cfg(not(unix))]
    {
        p.is_file()
    }
}

fn path_check() -> Check {
    let label = "PATH for molecule-mcp".to_owned();
    match find_on_path(std::env::var_os("PATH").as_deref()) {
        Some(p) => Check {
            label,
            verdict: Verdict::Ok(format!("found {}", p.display())),
        },
        None => {
            let dir = std::env::current_exe()
                .ok()
                .and_then(|e| e.parent().map(|d| d.display().to_string()))
                .unwrap_or_else(|| "<install dir>".into());
            Check {
                label,
                verdict: Verdict::Fail(
                    "molecule-mcp is not on PATH, so an MCP client config with \"command\": \"molecule-mcp\" will not start it".into(),
                    format!("add {dir} to PATH, or put the absolute path of the binary in your MCP config"),
                ),
            }
        }
    }
}

fn env_check(workspaces_file: Option<&Path>) -> (Check, Option<ValidConfig>) {
    let label = "Env vars".to_owned();
    // Located, not created: the doctor leaves the machine as it found it.
    let dir = match state_dir::locate_from_env() {
        Ok(d) => d,
        Err(e) => {
            return (
                Check {
                    label,
                    verdict: Verdict::Fail(
                        e.to_string(),
                        "set CONFIGS_DIR to a writable directory".into(),
                    ),
                },
                None,
            );
        }
    };
    let mut raw = env_snapshot::from_process(&dir);
    if let Some(path) = workspaces_file
        && let Err(e) = env_snapshot::apply_workspaces_file(&mut raw, path)
    {
        return (
            Check {
                label,
                verdict: Verdict::Fail(
                    e.to_string(),
                    "check the path given to --workspaces-file".into(),
                ),
            },
            None,
        );
    }
    let dir_note = if dir.is_dir() {
        format!("state dir {}", dir.display())
    } else {
        format!("state dir {} (created on the first run)", dir.display())
    };
    match validate(&raw) {
        Ok(config) => {
            crate::serve::remember_secrets(&config);
            let msg = if config.multi_workspace {
                let source = if workspaces_file.is_some() {
                    "--workspaces-file"
                } else {
                    "MOLECULE_WORKSPACES"
                };
                format!(
                    "PLATFORM_URL + {source} ({} workspaces) set; {dir_note}",
                    config.workspaces.len(),
                )
            } else {
                let source = config
                    .workspaces
                    .first()
                    .map(|w| w.token_source.describe())
                    .unwrap_or_default();
                format!("PLATFORM_URL + WORKSPACE_ID set; token from {source}; {dir_note}")
            };
            let warnings = config.warnings();
            let verdict = if warnings.is_empty() {
                Verdict::Ok(msg)
            } else {
                Verdict::Warn(
                    format!("{msg}; {}", warnings.join(" ")),
                    "see the warning above".into(),
                )
            };
            (Check { label, verdict }, Some(config))
        }
        Err(errors) => {
            let text = errors.render(&raw);
            let summary: Vec<&str> = text
                .lines()
                .filter(|l| l.starts_with("molecule-mcp:") || l.starts_with("Currently missing"))
                .collect();
            (
                Check {
                    label,
                    verdict: Verdict::Fail(
                        summary.join(" "),
                        "set the variables listed above (see README › Environment)".into(),
                    ),
                },
                None,
            )
        }
    }
}

/// A `GET` probe built by the same request builder as every other platform request (so it
/// carries the same Origin and User-Agent, and Authorization when `token` is non-empty).
fn probe(config: &ValidConfig, url: String, token: &Secret) -> HttpRequest {
    PlatformRequests::new(config.platform.clone()).build(
        RequestId(0),
        RequestKind::Tool,
        Method::Get,
        url,
        token,
        Body::Empty,
        &[],
        driver::now() + PROBE_TIMEOUT,
    )
}

async fn reachability_check(http: &HttpClient, config: &ValidConfig) -> Check {
    let label = "Platform reachability".to_owned();
    let url = config.platform.join("/health");
    let req = probe(config, url.clone(), &Secret::new(""));
    let verdict = match http.execute(&req).await {
        Ok(r) if (200..300).contains(&r.status) => {
            Verdict::Ok(format!("GET {url} → HTTP {}", r.status))
        }
        Ok(r) => Verdict::Fail(
            format!("GET {url} returned HTTP {}", r.status),
            "check PLATFORM_URL points at your Molecule platform".into(),
        ),
        Err(e) => Verdict::Fail(
            format!("GET {url} failed: {}", e.message),
            "check DNS, firewall/proxy and the scheme (http vs https)".into(),
        ),
    };
    Check { label, verdict }
}

async fn auth_check(http: &HttpClient, config: &ValidConfig) -> Check {
    let label = "Token accepted".to_owned();
    let mut ok = Vec::new();
    for ws in &config.workspaces {
        let requests = PlatformRequests::new(config.platform.clone());
        let url = requests.url(
            &format!("/workspaces/{}/activity", percent_encode(&ws.id)),
            &[("type", "a2a_receive"), ("limit", "1")],
        );
        let req = probe(config, url, &ws.token);
        let source = ws.token_source.describe();
        match http.execute(&req).await {
            Ok(r) if (200..300).contains(&r.status) => ok.push(ws.id.clone()),
            Ok(r) if r.status == 401 => {
                return Check {
                    label,
                    verdict: Verdict::Fail(
                        format!("token from {source} rejected (HTTP 401) for workspace {}", ws.id),
                        "regenerate the token from the canvas → Tokens tab and update your MCP config".into(),
                    ),
                };
            }
            Ok(r) if r.status == 403 => {
                return Check {
                    label,
                    verdict: Verdict::Fail(
                        format!("HTTP 403 for workspace {}: the platform refused the Origin or this token's access", ws.id),
                        "check PLATFORM_URL is exactly the platform's public URL (scheme + host), then the token".into(),
                    ),
                };
            }
            Ok(r) if r.status == 404 || r.status == 410 => {
                return Check {
                    label,
                    verdict: Verdict::Fail(
                        format!(
                            "workspace {} not found or removed (HTTP {})",
                            ws.id, r.status
                        ),
                        "check WORKSPACE_ID, or recreate the workspace in the canvas".into(),
                    ),
                };
            }
            Ok(r) => {
                return Check {
                    label,
                    verdict: Verdict::Fail(
                        format!("probe for workspace {} returned HTTP {}", ws.id, r.status),
                        "retry; if it persists, check the platform status".into(),
                    ),
                };
            }
            Err(e) => {
                return Check {
                    label,
                    verdict: Verdict::Fail(
                        format!("probe for workspace {} failed: {}", ws.id, e.message),
                        "check network access to PLATFORM_URL".into(),
                    ),
                };
            }
        }
    }
    Check {
        label,
        verdict: Verdict::Ok(format!("read-only probe accepted for {}", ok.join(", "))),
    }
}

/// Column at which report lines wrap: wide enough that a URL or a workspace id usually stays
/// on its check's line, narrow enough for a split terminal.
const WIDTH: usize = 100;
/// Indent of continuation lines and hints (under the message, past the tag).
const CONTINUATION: &str = "        ";

/// `prefix` (which takes `prefix_columns` columns on screen: colour codes take none)
/// followed by the words of `text` (split at spaces), in lines of at most `width` columns;
/// lines after the first start with `indent`. A word longer than a line (a path, a URL) gets
/// a line of its own rather than being cut.
pub fn wrap(
    prefix: &str,
    prefix_columns: usize,
    text: &str,
    width: usize,
    indent: &str,
) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = prefix.to_owned();
    let mut columns = prefix_columns;
    let mut fresh = true;
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        let word_columns = word.chars().count();
        if !fresh && columns + 1 + word_columns > width {
            lines.push(std::mem::replace(&mut line, indent.to_owned()));
            columns = indent.chars().count();
            fresh = true;
        }
        if !fresh {
            line.push(' ');
            columns += 1;
        }
        line.push_str(word);
        columns += word_columns;
        fresh = false;
    }
    lines.push(line);
    lines
}

/// Renders the report; returns the text and whether any check failed.
pub fn render(checks: &[Check], color: bool) -> (String, bool) {
    let paint = |code: &str, s: &str| {
        if color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    };
    let mut out = String::from("molecule-mcp doctor — onboarding diagnostic\n\n");
    let (mut fails, mut warns) = (0, 0);
    for c in checks {
        let (tag, tag_text, msg, next) = match &c.verdict {
            Verdict::Ok(msg) => ("32", "[OK]  ", msg, None),
            Verdict::Warn(msg, next) => {
                warns += 1;
                ("33", "[WARN]", msg, Some(next))
            }
            Verdict::Fail(msg, next) => {
                fails += 1;
                ("31", "[FAIL]", msg, Some(next))
            }
        };
        let name = tag_text.trim_end();
        let pad = " ".repeat(tag_text.len() - name.len());
        let plain = format!("  {tag_text} {}: ", c.label);
        let prefix = format!("  {}{pad} {}: ", paint(tag, name), c.label);
        for line in wrap(&prefix, plain.chars().count(), msg, WIDTH, CONTINUATION) {
            out.push_str(&line);
            out.push('\n');
        }
        if let Some(next) = next {
            // The hint is dimmed line by line, so a wrapped hint stays dimmed.
            let hint_indent = format!("{CONTINUATION}      ");
            let next = format!("next: {next}");
            for line in wrap(CONTINUATION, CONTINUATION.len(), &next, WIDTH, &hint_indent) {
                out.push_str(&paint("2", &line));
                out.push('\n');
            }
        }
    }
    out.push('\n');
    if fails > 0 {
        out.push_str(&format!(
            "{fails} check(s) failed, {warns} warning(s). Fix the FAIL items above and re-run.\n"
        ));
    } else if warns > 0 {
        out.push_str(&format!(
            "All required checks passed; {warns} warning(s) — review the next-step hints.\n"
        ));
    } else {
        out.push_str("All checks passed.\n");
    }
    (out, fails > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_keeps_words_whole_and_indents_continuations() {
        let lines = wrap(
            "  [OK] X: ",
            10,
            "one two three /a/very/long/path four",
            20,
            "    ",
        );
        assert_eq!(
            lines,
            [
                "  [OK] X: one two",
                "    three",
                "    /a/very/long/path",
                "    four"
            ]
        );
        assert_eq!(wrap("p: ", 3, "", 20, "  "), ["p: "]);
    }
}
