//! The live status page at `/status`: the pool's health, counts and a
//! sortable table of its listed connections. The first view is rendered
//! here, so it reads without JavaScript (sorting by links); a small inline
//! script then refreshes it from the REST API every few seconds. No
//! external assets.

use hyper::{Response, StatusCode};

use super::landing::html_escape;
use crate::http::{respond, Body};
use crate::pool::Recent;
use crate::view::answers as views;
use crate::view::query::{whole_number, ConnectionsQuery, Order, SortKey, MAX_LIMIT};

/// Seconds between refreshes unless `?refresh=` says otherwise.
const DEFAULT_REFRESH_SECONDS: u32 = 5;

const COLUMNS: [(SortKey, &str); 5] = [
    (SortKey::Id, "ID"),
    (SortKey::LastActivity, "Last activity"),
    (SortKey::Reconnects, "Reconnects"),
    (SortKey::Errors, "Errors"),
    (SortKey::P95, "p95 latency (ms)"),
];

/// `?sort=&order=` for the table (as the API takes them) and `?refresh=`.
fn page_query(query: Option<&str>) -> Result<(ConnectionsQuery, u32), String> {
    let mut refresh = None;
    let mut rest = Vec::new();
    for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match k.as_ref() {
            "refresh" if refresh.is_some() => {
                return Err("refresh: given more than once".to_owned())
            }
            "refresh" => {
                refresh = Some(
                    whole_number(&v)
                        .filter(|s| (1..=3600).contains(s))
                        .map(|s| s as u32)
                        .ok_or_else(|| {
                            format!("refresh={v:?}: expected seconds from 1 to 3600 (digits only)")
                        })?,
                );
            }
            "sort" | "order" => rest.push((k.into_owned(), v.into_owned())),
            other => {
                return Err(format!(
                    "unknown parameter {other:?}; use sort, order or refresh"
                ))
            }
        }
    }
    let encoded = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(rest)
        .finish();
    let mut q = ConnectionsQuery::parse(Some(&encoded)).map_err(|e| e.to_string())?;
    q.limit = MAX_LIMIT;
    Ok((q, refresh.unwrap_or(DEFAULT_REFRESH_SECONDS)))
}

/// A figure as the API writes it (whole numbers without a fraction).
fn shown(n: Option<views::Num>) -> Option<String> {
    n.and_then(|n| serde_json::to_value(n).ok())
        .map(|v| v.to_string())
}

/// The page for `query`, made from what `read` returns (the pool's recent
/// documents, read only once the query is known to be good).
pub async fn page<F>(query: Option<&str>, read: impl FnOnce() -> F) -> Response<Body>
where
    F: std::future::Future<Output = Recent>,
{
    let (q, refresh) = match page_query(query) {
        Ok(x) => x,
        Err(e) => {
            return respond(
                StatusCode::BAD_REQUEST,
                "text/plain; charset=utf-8",
                format!("{e}\n"),
            )
        }
    };
    let views = read().await;
    let health = views::health(&views);
    let (state, word, explanation, assessment) = match &health {
        Ok(h) => (
            h.status.to_owned(),
            h.status.to_owned(),
            h.exporter_view.explanation.to_owned(),
            h.exporter_view.assessment.to_owned(),
        ),
        Err(e) => (
            "unreachable".into(),
            "unreachable".into(),
            e.to_string(),
            "unreachable".into(),
        ),
    };
    let stats = views::stats(&views).ok();
    // A figure the API cannot give yet comes with the API's reason (the
    // first view has no rate: that needs two fetches).
    let stat = |field: &str, value: fn(&views::StatsView) -> Option<String>| match stats.as_ref() {
        Some(s) => match (value(s), s.unknown_reason(field)) {
            (Some(v), _) => v,
            (None, Some(reason)) => format!("unknown ({reason})"),
            (None, None) => "unknown".into(),
        },
        None => "unknown (the pool's status could not be fetched)".into(),
    };
    let listing = match stats.as_ref().map(|s| s.returns_connections) {
        Some(true) => RETURNING_LISTS,
        Some(false) => PUBLISHED_LISTS,
        None => EITHER_LISTS,
    };
    let (rows, total, table_note) = match views.status() {
        Ok(served) => {
            let selected = views::select(&served.value, &q);
            let rows: String = selected.iter().take(q.limit).map(|c| row(c)).collect();
            let note = if served.stale {
                " (stale: the pool is failing; last good copy)"
            } else {
                ""
            };
            (rows, selected.len(), note.to_owned())
        }
        Err(e) => (String::new(), 0, format!(" ({e})")),
    };
    let headers: String = COLUMNS
        .iter()
        .map(|(key, label)| header(*key, label, &q))
        .collect::<String>()
        + "<th scope=\"col\">Healthy</th>";
    let html = format!(
        r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>SecureChannelPool status</title>
<style>{style}</style></head>
<body data-refreshes="0" data-refresh-seconds="{refresh}">
<header><h1>SecureChannelPool status</h1>
<p>Pool <code>{source}</code>. Updated <time id="updated" datetime="{now}">{now}</time>.
<span id="refresh-state">Refreshes every {refresh} s when JavaScript is on.</span>
<a href="/">Exporter home</a> · <a href="/api/v1/openapi.json">API</a></p></header>
<main>
<section aria-labelledby="health-heading"><h2 id="health-heading">Health</h2>
<div id="health" data-state="{state}" role="status" aria-live="polite">
<span class="state" id="health-word">{word}</span>
<span id="assessment" data-assessment="{assessment}">{assessment}</span>:
<span id="explanation">{explanation}</span></div></section>
<section aria-labelledby="counts-heading"><h2 id="counts-heading">Counts</h2>
<dl>
<dt>Listed (idle) connections</dt><dd id="count-listed">{listed}</dd>
<dt>Healthy listed connections</dt><dd id="count-healthy">{healthy}</dd>
<dt>Operations per second</dt><dd id="ops">{ops}</dd>
<dt>Latency p95 (ms, native histogram)</dt><dd id="latency-p95">{lat95}</dd>
<dt>Failures to open connections</dt><dd id="open-failures">{open_failures}</dd>
<dt>Checked-out connections</dt><dd id="in-use">unknown (the pool does not report them)</dd>
</dl></section>
<section aria-labelledby="table-heading"><h2 id="table-heading">Connections</h2>
<p id="listing" data-published="{published_lists}" data-returning="{returning_lists}">{listing}</p>
<table id="connections">
<caption><span id="total">{total}</span> listed connections{table_note}</caption>
<thead><tr>{headers}</tr></thead>
<tbody id="rows">{rows}</tbody></table>
<p id="error" role="alert"></p>
</section></main>
<script>{script}</script>
</body></html>
"##,
        refresh = refresh,
        source = html_escape(&views.source),
        now = html_escape(&chrono_now()),
        state = html_escape(&state),
        word = html_escape(&word),
        assessment = html_escape(&assessment),
        explanation = html_escape(&explanation),
        listed = html_escape(&stat("connections.listed", |s| Some(
            s.connections.listed.to_string()
        ))),
        healthy = html_escape(&stat("connections.healthy", |s| Some(
            s.connections.healthy.to_string()
        ))),
        ops = html_escape(&stat("native.operations_per_second", |s| shown(
            s.native.operations_per_second
        ))),
        lat95 = html_escape(&stat("native.latency_ms.p95", |s| shown(
            s.native.latency_ms.p95
        ))),
        open_failures = html_escape(&stat("native.open_failures_total", |s| shown(
            s.native.open_failures_total
        ))),
        listing = html_escape(listing),
        published_lists = html_escape(PUBLISHED_LISTS),
        returning_lists = html_escape(RETURNING_LISTS),
        total = total,
        table_note = html_escape(&table_note),
        headers = headers,
        rows = rows,
        script = SCRIPT,
        style = STYLE,
    );
    let mut resp = respond(StatusCode::OK, "text/html; charset=utf-8", html);
    resp.headers_mut().insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-store"),
    );
    super::protect(&mut resp, &CSP);
    resp
}

/// What the table can show, by what the pool's documents reveal of its
/// build (the API's `returns_connections`).
const PUBLISHED_LISTS: &str = "This pool lists only idle connections (the published build): a connection in use is not shown, nor the errors of operations on it.";
const RETURNING_LISTS: &str = "This pool gives used connections back: it lists its idle connections, used ones among them with their own errors and p95; a connection in use right now is not shown.";
const EITHER_LISTS: &str = "The pool lists its idle connections: a connection in use is not shown.";

fn chrono_now() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    secure_channel_client::Timestamp::from_unix(d.as_secs() as i64, 0).to_rfc3339()
}

fn header(key: SortKey, label: &str, q: &ConnectionsQuery) -> String {
    let (aria, next) = if q.sort == key {
        match q.order {
            Order::Asc => ("ascending", "desc"),
            Order::Desc => ("descending", "asc"),
        }
    } else {
        ("none", "asc")
    };
    format!(
        "<th scope=\"col\" aria-sort=\"{aria}\" data-sort=\"{key}\"><a href=\"?sort={key}&amp;order={next}\">{label}</a></th>",
        key = key.as_str(),
        label = html_escape(label),
    )
}

fn row(c: &secure_channel_client::Connection) -> String {
    let (healthy, basis) = crate::pool::status_doc::connection_healthy(c);
    let cell = |v: Option<f64>| v.map_or_else(|| "unknown".into(), |v| v.to_string());
    format!(
        "<tr data-connection-id=\"{id}\"><td>{id}</td><td>{last}</td><td>{rec}</td><td>{err}</td><td>{p95}</td><td title=\"{basis}\">{healthy}</td></tr>",
        id = html_escape(c.connection_id.as_str()),
        last = c
            .last_activity
            .as_ref()
            .filter(|t| t.in_range())
            .map_or_else(|| "unknown".into(), |t| html_escape(&t.to_rfc3339())),
        rec = c.reconnects,
        err = c.errors,
        p95 = cell(c.p95_latency_ms),
        healthy = if healthy { "yes" } else { "no" },
    )
}

/// Refreshes the page from the API; builds rows with textContent only.
/// The page's style sheet, inline (one request, no static files), allowed
/// by its hash in the Content-Security-Policy.
const STYLE: &str =
    "\nbody{font-family:system-ui,sans-serif;margin:1.5rem;color:#1a1a1a;background:#fff}\n\
h1{font-size:1.5rem} table{border-collapse:collapse;margin-top:.5rem}\n\
th,td{border:1px solid #999;padding:.25rem .6rem;text-align:right} th{background:#eee}\n\
td:first-child,th:first-child{text-align:left} th a{color:inherit}\n\
.state{font-weight:bold;padding:.2rem .5rem;border-radius:.2rem;display:inline-block}\n\
[data-state=healthy] .state{background:#d7f5dd;color:#0b5a1c}\n\
[data-state=unhealthy] .state{background:#fff1c2;color:#6b4b00}\n\
[data-state=unreachable] .state{background:#ffd9d9;color:#8a0000}\n\
dl{display:grid;grid-template-columns:max-content auto;gap:.2rem 1rem} dt{font-weight:bold}\n\
.sr-only{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0)}\n\
";

/// The policy: nothing but this page's own style and script (by hash),
/// API calls to this origin, no framing, no forms, no base URL.
static CSP: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "default-src 'none'; script-src '{}'; style-src '{}'; connect-src 'self'; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        super::csp_hash(SCRIPT),
        super::csp_hash(STYLE)
    )
});

const SCRIPT: &str = r#"
(function () {
  "use strict";
  var body = document.body;
  var every = Number(body.dataset.refreshSeconds) * 1000;
  var params = new URLSearchParams(location.search);
  var sort = params.get("sort") || "id", order = params.get("order") || "asc";
  function text(id, v) { var el = document.getElementById(id); if (el) el.textContent = v; }
  function num(v) { return v === null || v === undefined ? "unknown" : String(v); }
  function stat(b, field) {
    var v = field.split(".").reduce(function (o, k) { return o == null ? o : o[k]; }, b);
    if (v !== null && v !== undefined) return String(v);
    var why = (b.unknown || []).filter(function (u) { return u.field === field; })[0];
    return why ? "unknown (" + why.reason + ")" : "unknown";
  }
  function getJSON(path) {
    return fetch(path, { headers: { Accept: "application/json" }, cache: "no-store" })
      .then(function (r) { return r.json().then(function (j) { return { code: r.status, body: j }; }); });
  }
  function showHealth(h) {
    var box = document.getElementById("health");
    if (h.body && h.body.error) {
      box.dataset.state = "unreachable";
      text("health-word", "unreachable");
      text("assessment", "unreachable");
      document.getElementById("assessment").dataset.assessment = "unreachable";
      text("explanation", h.body.error.message);
      return;
    }
    var v = h.body.exporter_view;
    box.dataset.state = h.body.status;
    text("health-word", h.body.status);
    text("assessment", v.assessment);
    document.getElementById("assessment").dataset.assessment = v.assessment;
    text("explanation", v.explanation);
  }
  function showStats(s) {
    if (!s.body || s.body.error) return;
    var b = s.body;
    text("count-listed", stat(b, "connections.listed"));
    text("count-healthy", stat(b, "connections.healthy"));
    text("ops", stat(b, "native.operations_per_second"));
    text("latency-p95", stat(b, "native.latency_ms.p95"));
    text("open-failures", stat(b, "native.open_failures_total"));
    var listing = document.getElementById("listing");
    if (typeof b.returns_connections === "boolean")
      listing.textContent = b.returns_connections ? listing.dataset.returning : listing.dataset.published;
  }
  function showRows(c) {
    var tbody = document.getElementById("rows");
    if (!c.body || c.body.error) { text("error", c.body ? c.body.error.message : "no answer"); return; }
    var rows = document.createDocumentFragment();
    c.body.items.forEach(function (it) {
      var tr = document.createElement("tr");
      tr.dataset.connectionId = String(it.connection_id);
      [String(it.connection_id), it.last_activity || "unknown", num(it.reconnects), num(it.errors),
       num(it.p95_latency_ms), it.healthy ? "yes" : "no"].forEach(function (v, i) {
        var td = document.createElement("td");
        td.textContent = v;
        if (i === 5) td.title = it.healthy_basis;
        tr.appendChild(td);
      });
      rows.appendChild(tr);
    });
    tbody.replaceChildren(rows);
    text("total", String(c.body.total));
  }
  function markSort() {
    document.querySelectorAll("th[data-sort]").forEach(function (th) {
      var key = th.dataset.sort;
      th.setAttribute("aria-sort", key === sort ? (order === "asc" ? "ascending" : "descending") : "none");
      th.querySelector("a").setAttribute("href", "?sort=" + key + "&order=" + (key === sort && order === "asc" ? "desc" : "asc"));
    });
  }
  function refresh() {
    var q = "?limit=1000&sort=" + encodeURIComponent(sort) + "&order=" + encodeURIComponent(order);
    return Promise.all([
      getJSON("/api/v1/secure-channel/health").then(showHealth),
      getJSON("/api/v1/secure-channel/stats").then(showStats),
      getJSON("/api/v1/secure-channel/connections" + q).then(showRows)
    ]).then(function () {
      text("error", "");
      var now = new Date().toISOString();
      text("updated", now);
      document.getElementById("updated").setAttribute("datetime", now);
    }).catch(function (e) {
      text("error", "Refresh failed: " + e);
    }).then(function () {
      body.dataset.refreshes = String(Number(body.dataset.refreshes) + 1);
      setTimeout(refresh, every);
    });
  }
  document.querySelectorAll("th[data-sort] a").forEach(function (a) {
    a.addEventListener("click", function (ev) {
      ev.preventDefault();
      var key = a.parentNode.dataset.sort;
      order = key === sort && order === "asc" ? "desc" : "asc";
      sort = key;
      history.replaceState(null, "", "?sort=" + sort + "&order=" + order);
      markSort();
      refresh();
    });
  });
  text("refresh-state", "Refreshes every " + every / 1000 + " s.");
  setTimeout(refresh, every);
})();
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_query_takes_sort_order_and_refresh_only() {
        let (q, r) = page_query(Some("sort=p95&order=desc&refresh=2")).unwrap();
        assert_eq!((q.sort, q.order, r), (SortKey::P95, Order::Desc, 2));
        assert_eq!(q.limit, MAX_LIMIT);
        assert!(page_query(Some("refresh=0")).is_err());
        assert!(page_query(Some("limit=5")).is_err());
        assert!(page_query(Some("refresh=%2B5")).is_err());
        assert!(page_query(Some("refresh=5&refresh=6")).is_err());
        assert!(page_query(Some("sort=nope")).is_err());
        assert_eq!(page_query(None).unwrap().1, DEFAULT_REFRESH_SECONDS);
    }

    #[test]
    fn rows_escape_ids() {
        let c: secure_channel_client::Connection =
            serde_json::from_str(r#"{"connection_id":"<b>&","p95_latency_ms":0}"#).unwrap();
        let html = row(&c);
        assert!(html.contains("&lt;b&gt;&amp;"), "{html}");
        assert!(!html.contains("<b>"), "{html}");
    }
}
