//! The platform's activity feed (`GET /workspaces/:id/activity`) as the inbox uses it: request URLs
//! and the backlog paging rule.
//!
//! * Steady state: `?type=a2a_receive&limit=N&since_id=<cursor>` → rows strictly after the
//!   cursor, oldest first.
//! * No cursor (first start, after a 410): `?type=a2a_receive&limit=N&since_secs=S`
//!   [`&before_ts=T`] → rows newest first. The backlog is paged *backwards* with `before_ts`
//!   until a short page, and only that oldest page is processed (oldest first); its newest
//!   row becomes the cursor and `since_id` then walks forward over everything newer. Memory
//!   stays bounded by one page, and no row in the window is skipped.
//!
//! `before_ts` is strict ("older than"), so using the oldest `created_at` of a page would
//! skip rows that share that timestamp but did not fit in the page. [`next_before_ts`]
//! therefore uses the *second-oldest distinct* timestamp: the next page overlaps the rows at
//! the oldest timestamp (deduplicated by id) and still moves strictly backwards. When a
//! whole page shares one timestamp the machine first asks for it again with the platform's
//! largest page (500); only beyond that is the strict bound used (with a WARN).

use serde_json::Value;

use super::timestamp::parse_rfc3339;
use crate::platform_request::percent_encode as encode;
use crate::platform_url::PlatformUrl;

/// Which rows a poll asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FeedQuery {
    /// Rows after this activity id, oldest first.
    Since(String),
    /// Rows of the last `since_secs`, optionally older than `before_ts`, newest first.
    Backlog {
        since_secs: u64,
        before_ts: Option<String>,
    },
}

/// `GET` URL of the activity feed.
pub(crate) fn activity_url(
    platform: &PlatformUrl,
    workspace_id: &str,
    limit: u32,
    query: &FeedQuery,
) -> String {
    let mut url = platform.join(&format!(
        "/workspaces/{}/activity?type=a2a_receive&limit={limit}",
        encode(workspace_id)
    ));
    match query {
        FeedQuery::Since(cursor) => {
            url.push_str("&since_id=");
            url.push_str(&encode(cursor));
        }
        FeedQuery::Backlog {
            since_secs,
            before_ts,
        } => {
            url.push_str(&format!("&since_secs={since_secs}"));
            if let Some(ts) = before_ts {
                url.push_str("&before_ts=");
                url.push_str(&encode(ts));
            }
        }
    }
    url
}

/// `…/workspaces/<ws>/pending-uploads/<file>/<tail>` (`content` or `ack`).
pub(crate) fn pending_upload_url(
    platform: &PlatformUrl,
    workspace_id: &str,
    file_id: &str,
    tail: &str,
) -> String {
    platform.join(&format!(
        "/workspaces/{}/pending-uploads/{}/{tail}",
        encode(workspace_id),
        encode(file_id)
    ))
}

/// How to ask for the page before a full backlog page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NextPage {
    /// Overlapping bound (second-oldest distinct `created_at`, verbatim).
    Overlap(String),
    /// Every row of the page shares one timestamp: the best remaining bound is that
    /// timestamp itself, which skips any further rows with exactly that `created_at`.
    Strict(String),
    /// No row carries a parseable `created_at`: paging cannot continue.
    Stuck,
}

/// The `before_ts` for the page after `rows` (see module docs).
pub(crate) fn next_before_ts(rows: &[Value]) -> NextPage {
    let mut stamps: Vec<(i128, &str)> = rows
        .iter()
        .filter_map(|r| r.get("created_at").and_then(Value::as_str))
        .filter_map(|s| parse_rfc3339(s).map(|t| (t, s)))
        .collect();
    stamps.sort_by_key(|(t, _)| *t);
    let Some(&(oldest, oldest_raw)) = stamps.first() else {
        return NextPage::Stuck;
    };
    match stamps.iter().find(|(t, _)| *t > oldest) {
        Some((_, raw)) => NextPage::Overlap((*raw).to_owned()),
        None => NextPage::Strict(oldest_raw.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn urls_are_encoded() {
        let p = PlatformUrl::parse("https://p.example/api").unwrap();
        let url = activity_url(
            &p,
            "ws",
            100,
            &FeedQuery::Backlog {
                since_secs: 60,
                before_ts: Some("2026-01-01T00:00:00+00:00".into()),
            },
        );
        assert_eq!(
            url,
            "https://p.example/api/workspaces/ws/activity?type=a2a_receive&limit=100&since_secs=60&before_ts=2026-01-01T00%3A00%3A00%2B00%3A00"
        );
        let url = activity_url(&p, "ws", 5, &FeedQuery::Since("a b&c".into()));
        assert!(url.ends_with("&limit=5&since_id=a%20b%26c"), "{url}");
        assert_eq!(
            pending_upload_url(&p, "ws", "../f", "ack"),
            "https://p.example/api/workspaces/ws/pending-uploads/..%2Ff/ack"
        );
    }

    #[test]
    fn next_before_ts_overlaps_the_oldest_timestamp() {
        let rows = [
            json!({"created_at": "2026-01-01T00:00:03Z"}),
            json!({"created_at": "2026-01-01T00:00:02.0Z"}),
            json!({"created_at": "2026-01-01T00:00:01Z"}),
            json!({"created_at": "2026-01-01T00:00:01.000Z"}),
        ];
        assert_eq!(
            next_before_ts(&rows),
            NextPage::Overlap("2026-01-01T00:00:02.0Z".into())
        );
        assert_eq!(
            next_before_ts(&rows[2..]),
            NextPage::Strict("2026-01-01T00:00:01Z".into())
        );
        assert_eq!(next_before_ts(&[json!({"created_at": 5})]), NextPage::Stuck);
    }
}
