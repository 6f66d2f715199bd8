//! `get_workspace_info`: `GET /workspaces/{src}` (open route; the token is sent anyway).
//!
//! 200 ⇒ the workspace object; 410 ⇒ `{"error": "removed", "id", "removed_at", "hint"}`
//! ([`removed_info`]), returned as data because a deleted workspace is a fact the agent
//! should act on; anything else is a tool error naming the status, so a 500 or a 401 is not
//! mistaken for "not found".

use serde_json::{Value, json};

use super::args::{Args, parse_registered};
use super::client::PlatformCall;
use super::context::ToolContext;
use crate::mcp::ToolOutput;

/// Hint used when the platform's 410 body has none.
pub const REMOVED_HINT: &str = "Workspace was deleted on the platform. Regenerate workspace + token from the canvas → Tokens tab.";

/// The tool's answer for a 410: the platform's `id`, `removed_at` and `hint` when it sent
/// them, else this workspace's id, `null` and [`REMOVED_HINT`].
pub fn removed_info(src: &str, body: Option<&Value>) -> Value {
    let field = |k: &str| body.and_then(|b| b.get(k)).filter(|v| !v.is_null());
    json!({
        "error": "removed",
        "id": field("id").cloned().unwrap_or_else(|| Value::String(src.to_owned())),
        "removed_at": field("removed_at").cloned().unwrap_or(Value::Null),
        "hint": field("hint").and_then(Value::as_str).filter(|h| !h.is_empty()).unwrap_or(REMOVED_HINT),
    })
}

/// `get_workspace_info`.
pub(crate) async fn get_workspace_info(ctx: &ToolContext, args: Args<'_>) -> ToolOutput {
    let src = match args.opt_nonblank("source_workspace_id") {
        Err(e) => return e,
        Ok(Some(raw)) => match parse_registered(ctx, "source_workspace_id", raw) {
            Ok(id) => id,
            Err(e) => return e,
        },
        Ok(None) => ctx.workspaces.primary(),
    };
    let response = match ctx
        .call(PlatformCall::get(format!("/workspaces/{src}"), &src))
        .await
    {
        Ok(r) => r,
        Err(e) => return ToolOutput::error(format!("Error: could not fetch workspace {src}: {e}")),
    };
    match response.status {
        200 => match response.json() {
            Some(v @ Value::Object(_)) => ToolOutput::Json(v),
            Some(_) | None => ToolOutput::error(format!(
                "Error: the platform returned an unexpected body for workspace {src}: {}",
                response.snippet(200)
            )),
        },
        410 => ToolOutput::Json(removed_info(&src, response.json().as_ref())),
        404 => ToolOutput::error(format!(
            "Error: workspace {src} not found on the platform (HTTP 404)"
        )),
        code => ToolOutput::error(format!(
            "Error: fetching workspace {src} failed with HTTP {code}: {}",
            response.error_message()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removed_mapping_uses_body_then_defaults() {
        let body = json!({"error": "workspace removed", "id": "x", "removed_at": "2026-05-05T00:00:00Z", "hint": "h"});
        assert_eq!(
            removed_info("src", Some(&body)),
            json!({"error": "removed", "id": "x", "removed_at": "2026-05-05T00:00:00Z", "hint": "h"})
        );
        assert_eq!(
            removed_info("src", None),
            json!({"error": "removed", "id": "src", "removed_at": null, "hint": REMOVED_HINT})
        );
    }
}
