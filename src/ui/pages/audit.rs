//! `/audit` (admin): the audit log, newest first, with filters (principal,
//! action, secret, resource, outcome, time), paging, the chain's head and,
//! on request, a full chain check (`audit verify`); `/audit/export` streams
//! the same rows as JSON Lines. A scoped admin sees its workspaces' rows
//! only, as with `list-audit`.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures::{Stream, stream};
use maud::html;

use super::secrets::api_to_ui;
use crate::model::AuditEntry;
use crate::server::AppState;
use crate::server::auth::Role;
use crate::server::tokens_file::parse_rfc3339;
use crate::store::audit::{AuditAction, AuditRecord};
use crate::store::ui_queries::AuditSearch;
use crate::store::{SqlStore, incident, validate};
use crate::ui::form::UiForm;
use crate::ui::guard::{Ctx, UiError};
use crate::ui::layout::{self, or_dash, time};

/// Rows per page.
pub const PAGE_SIZE: u32 = 50;
/// Most rows one export holds.
pub const MAX_EXPORT_ROWS: usize = 100_000;

const ACTIONS: &[&str] = &AuditAction::NAMES;
const OUTCOMES: &[&str] = &["SUCCESS", "DENIED", "FAILED"];
const FILTERS: [&str; 7] = [
    "principal",
    "action",
    "secret_id",
    "resource",
    "outcome",
    "since",
    "until",
];

/// A `YYYY-MM-DD` date as epoch ms at 00:00 UTC.
fn day_ms(d: &str) -> Result<i64, UiError> {
    parse_rfc3339(&format!("{d}T00:00:00Z"))
        .map(|s| s * 1000)
        .ok_or_else(|| UiError::bad_request(format!("'{d}' is not a date (YYYY-MM-DD)")))
}

fn search_of(ctx: &Ctx, q: &UiForm) -> Result<AuditSearch, UiError> {
    let pick = |k: &str, allowed: &[&str]| -> Result<Option<String>, UiError> {
        match q.get(k) {
            None => Ok(None),
            Some(v) if allowed.contains(&v) => Ok(Some(v.to_string())),
            Some(_) => Err(UiError::bad_request(format!("unknown {k}"))),
        }
    };
    if let Some(id) = q.get("secret_id") {
        validate::uuid("secret_id", id)?;
    }
    let before = q
        .get("before")
        .map(|b| {
            b.parse::<i64>()
                .map_err(|_| UiError::bad_request("before must be a number"))
        })
        .transpose()?;
    Ok(AuditSearch {
        workspaces: ctx.principal.workspace_filter(),
        principal: q.get("principal").map(str::to_string),
        action: pick("action", ACTIONS)?,
        secret_id: q.get("secret_id").map(str::to_string),
        resource: q.get("resource").map(str::to_string),
        outcome: pick("outcome", OUTCOMES)?,
        since_ms: q.get("since").map(day_ms).transpose()?,
        until_ms: q
            .get("until")
            .map(|d| day_ms(d).map(|t| t + 86_400_000))
            .transpose()?,
        actions: None,
        before_seq: before,
        max_results: Some(PAGE_SIZE),
    })
}

/// The filters as a query string (paging and export links).
fn filter_query(q: &UiForm) -> String {
    let mut ser = form_urlencoded::Serializer::new(String::new());
    for k in FILTERS {
        if let Some(v) = q.get(k) {
            ser.append_pair(k, v);
        }
    }
    ser.finish()
}

/// The filter of an audit page's query string, for an admin only.
fn admin_search(ctx: &Ctx, raw: Option<String>) -> Result<(UiForm, AuditSearch), UiError> {
    ctx.require(Role::Admin)?;
    let q = UiForm::parse(raw.as_deref().unwrap_or("").as_bytes());
    let search = search_of(ctx, &q)?;
    Ok((q, search))
}

/// `GET /audit`.
pub async fn page(
    State(st): State<AppState>,
    ctx: Ctx,
    RawQuery(raw): RawQuery,
) -> Result<Response, UiError> {
    let (q, search) = admin_search(&ctx, raw)?;
    let (rows, next) = st.store.search_audit(&search).await?;
    let rec = AuditRecord::new(AuditAction::ListAudit, &ctx.principal.name)
        .detail(format!("returned={} via=ui", rows.len()));
    st.audit_required(rec).await.map_err(api_to_ui)?;
    let head = st.store.audit_head().await?;
    let verify = if q.get("verify") == Some("1") {
        Some(st.store.audit_verify().await?)
    } else {
        None
    };
    let fq = filter_query(&q);
    let v = |k: &str| q.get(k).unwrap_or("").to_string();
    let body = html! {
        section aria-labelledby="chain" {
            h2 #chain { "Chain status" }
            p { "Head: row " (head.seq) ", hash " code { (head.hash) } "." }
            @match &verify {
                Some(r) if r.ok => p.ok role="status" { "Verified: all " (r.rows) " rows chain unbroken to the head." },
                Some(r) => p.error role="alert" {
                    "Broken: the chain breaks at row " (r.first_broken_seq.map(|s| s.to_string()).unwrap_or_else(|| "?".into()))
                    ": " (r.reason.as_deref().unwrap_or("unknown reason"))
                },
                None => p { a href="/audit?verify=1" { "Verify the whole chain now" } " (reads every row)." },
            }
        }
        form.filters method="get" action="/audit" role="search" {
            p { label for="principal" { "Principal" } input #principal type="text" name="principal" value=(v("principal")); }
            p {
                label for="action" { "Action" }
                select #action name="action" {
                    option value="" { "Any" }
                    @for a in ACTIONS { option value=(a) selected[q.get("action") == Some(*a)] { (a) } }
                }
            }
            p { label for="secret_id" { "Secret id" } input #secret_id type="text" name="secret_id" value=(v("secret_id")); }
            p { label for="resource" { "Resource (TYPE/ID)" } input #resource type="text" name="resource" value=(v("resource")); }
            p {
                label for="outcome" { "Outcome" }
                select #outcome name="outcome" {
                    option value="" { "Any" }
                    @for o in OUTCOMES { option value=(o) selected[q.get("outcome") == Some(*o)] { (o) } }
                }
            }
            p { label for="since" { "From (UTC date)" } input #since type="date" name="since" value=(v("since")); }
            p { label for="until" { "To (UTC date, inclusive)" } input #until type="date" name="until" value=(v("until")); }
            p { button type="submit" { "Filter" } }
        }
        p { a href={"/audit/export?" (fq)} download { "Export these rows as JSON Lines" } }
        @if rows.is_empty() { p { "No audit rows match." } } @else {
            table {
                caption { "Audit rows, newest first" }
                thead { tr {
                    th scope="col" { "Row" } th scope="col" { "When" } th scope="col" { "Principal" }
                    th scope="col" { "Action" } th scope="col" { "Workspace" } th scope="col" { "Secret" }
                    th scope="col" { "Resource" } th scope="col" { "Outcome" } th scope="col" { "Detail" }
                } }
                tbody {
                    @for e in &rows {
                        tr {
                            th scope="row" { (e.seq) }
                            td { (time(e.occurred_at)) }
                            td { (or_dash(e.principal.as_deref())) }
                            td { (e.action) }
                            td { (or_dash(e.workspace.as_deref())) }
                            td { @if let Some(id) = &e.secret_id {
                                a href={"/secrets/" (id)} { (e.secret_name.as_deref().unwrap_or(id)) }
                            } @else { "—" } }
                            td { (or_dash(e.resource.as_deref())) }
                            td { (e.outcome) }
                            td { (or_dash(e.detail.as_deref())) }
                        }
                    }
                }
            }
        }
        @if let Some(n) = next {
            p { a rel="next" href={"/audit?" (fq) @if !fq.is_empty() { "&" } "before=" (n)} { "Older rows" } }
        }
    };
    Ok(layout::page(&ctx, "Audit log", body))
}

/// `GET /audit/export`: the filtered rows as JSON Lines, newest first, at
/// most [`MAX_EXPORT_ROWS`], streamed one page of
/// [`validate::MAX_PAGE_SIZE`] rows at a time so the server never holds
/// the whole export.
///
/// The first page is read, then the export's own `LIST_AUDIT` row is
/// written, then the body streams: a filter the store refuses, or a store
/// that is down, is still an error page; the export is audited before any
/// row leaves (fail closed, as every UI read); and it does not contain its
/// own row. Because the row is written before the rows are counted, its
/// detail records the filter and the limit, not how many rows were sent.
/// A store error on a later page ends the body as an error (the client
/// sees a truncated transfer, not a short but complete file); the cause is
/// logged under an incident id, never sent.
pub async fn export(
    State(st): State<AppState>,
    ctx: Ctx,
    RawQuery(raw): RawQuery,
) -> Result<Response, UiError> {
    let (q, mut search) = admin_search(&ctx, raw)?;
    search.max_results = Some(validate::MAX_PAGE_SIZE);
    let first = st.store.search_audit(&search).await?;
    let fq = filter_query(&q);
    let rec = AuditRecord::new(AuditAction::ListAudit, &ctx.principal.name).detail(format!(
        "via=ui export limit={MAX_EXPORT_ROWS} filter={}",
        if fq.is_empty() { "none" } else { &fq }
    ));
    st.audit_required(rec).await.map_err(api_to_ui)?;
    let pages = ExportPages {
        store: st.store.clone(),
        search,
        first: Some(first),
        left: MAX_EXPORT_ROWS,
    };
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ndjson"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"audit.jsonl\"",
            ),
        ],
        Body::from_stream(pages.into_stream()),
    )
        .into_response())
}

/// Where a streaming export is: the filter, the page already read (the
/// first, read before the response), and how many rows it may still send.
struct ExportPages {
    store: Arc<SqlStore>,
    search: AuditSearch,
    first: Option<(Vec<AuditEntry>, Option<i64>)>,
    left: usize,
}

impl ExportPages {
    /// One chunk of JSON Lines per page, the next page read only when the
    /// body wants more; an error ends the stream.
    fn into_stream(self) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
        stream::try_unfold(self, |mut p| async move {
            let Some((rows, next)) = p.next_page().await? else {
                return Ok(None);
            };
            let take = rows.len().min(p.left);
            p.left -= take;
            let mut chunk = Vec::with_capacity(take * 256);
            for e in &rows[..take] {
                serde_json::to_writer(&mut chunk, e).map_err(std::io::Error::other)?;
                chunk.push(b'\n');
            }
            p.search.before_seq = next.filter(|_| p.left > 0);
            Ok(Some((Bytes::from(chunk), p)))
        })
    }

    /// The first page, else the page before `search.before_seq`; `None`
    /// when the export is done.
    async fn next_page(
        &mut self,
    ) -> Result<Option<(Vec<AuditEntry>, Option<i64>)>, std::io::Error> {
        if let Some(first) = self.first.take() {
            return Ok(Some(first));
        }
        if self.search.before_seq.is_none() {
            return Ok(None);
        }
        match self.store.search_audit(&self.search).await {
            Ok(page) => Ok(Some(page)),
            Err(e) => Err(std::io::Error::other(incident::record(
                "the audit export ended early: the store failed",
                &e,
            ))),
        }
    }
}
