import { hash } from "node:crypto";

// The dashboard's HTML and CSS, embedded so that `npm run build` (which emits only .ts) ships
// them and the page works offline: no CDN, no build step, no framework. The page is a skeleton
// that dashboardScript.ts fills from the JSON API.

const CSS = `
:root {
  color-scheme: light dark;
  --bg: #f5f6f8; --card: #fff; --text: #1b1f24; --muted: #5f6b7a; --line: #dde1e6;
  --accent: #2f6fdb; --sent: #2f9e63; --dead: #d64545; --warn: #b7791f;
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", sans-serif;
}
@media (prefers-color-scheme: dark) {
  :root { --bg: #15181d; --card: #1e232a; --text: #e6e9ee; --muted: #97a3b3; --line: #303741; }
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--text); }
header { display: flex; flex-wrap: wrap; align-items: center; gap: 8px 20px; padding: 12px 20px;
  background: var(--card); border-bottom: 1px solid var(--line); }
header h1 { font-size: 17px; margin: 0; }
header .about { color: var(--muted); font-size: 13px; }
header .spacer { flex: 1; }
main { padding: 16px 20px 32px; display: grid; gap: 16px; grid-template-columns: repeat(2, minmax(0, 1fr)); }
section { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 14px 16px; min-width: 0; }
section.wide { grid-column: 1 / -1; }
h2 { font-size: 14px; margin: 0 0 10px; display: flex; gap: 8px; align-items: baseline; }
h2 small { color: var(--muted); font-weight: normal; }
.cards { display: grid; gap: 12px; grid-template-columns: repeat(auto-fit, minmax(130px, 1fr)); }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 8px 12px; }
.card b { display: block; font-size: 22px; font-variant-numeric: tabular-nums; }
.card span { color: var(--muted); font-size: 12px; }
.card.dead b { color: var(--dead); }
.card.pending b { color: var(--warn); }
.card.rejected b { color: var(--warn); }
h3 { font-size: 13px; margin: 14px 0 6px; display: flex; gap: 8px; align-items: baseline; }
h3 small { color: var(--muted); font-weight: normal; }
td.reason { white-space: pre-wrap; }
table { width: 100%; border-collapse: collapse; font-size: 13px; }
th { text-align: left; color: var(--muted); font-weight: 600; border-bottom: 1px solid var(--line); padding: 4px 8px 4px 0; }
td { border-bottom: 1px solid var(--line); padding: 5px 8px 5px 0; vertical-align: top; overflow-wrap: break-word; }
td code { word-break: break-all; }
td.nowrap, th.nowrap { white-space: nowrap; }
td.num { font-variant-numeric: tabular-nums; text-align: right; white-space: nowrap; }
code { font: 12px ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; }
.empty { color: var(--muted); font-style: italic; }
.status-running { color: var(--sent); font-weight: 600; }
.status-failed { color: var(--dead); font-weight: 600; }
.errcode { color: var(--dead); font-weight: 600; }
button { font: inherit; padding: 3px 10px; white-space: nowrap; border-radius: 5px; border: 1px solid var(--line);
  background: var(--card); color: var(--text); cursor: pointer; }
button.primary { background: var(--accent); border-color: var(--accent); color: #fff; }
button:disabled { opacity: .6; cursor: default; }
#status { font-size: 12px; color: var(--muted); }
#status.error { color: var(--dead); font-weight: 600; }
#notice { min-height: 1.2em; font-size: 13px; margin: -4px 0 8px; }
#notice.error { color: var(--dead); }
svg.chart { width: 100%; height: auto; display: block; }
svg.chart text { fill: var(--muted); font-size: 11px; }
svg.chart .grid { stroke: var(--line); }
svg.chart .bar-sent { fill: var(--sent); }
svg.chart .bar-dead { fill: var(--dead); }
.legend { color: var(--muted); font-size: 12px; display: flex; gap: 14px; }
.legend i { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 4px; vertical-align: -1px; }
.legend .sent { background: var(--sent); } .legend .dead { background: var(--dead); }
form.login { max-width: 360px; margin: 12vh auto; background: var(--card); border: 1px solid var(--line);
  border-radius: 8px; padding: 22px; display: grid; gap: 12px; }
form.login h1 { font-size: 18px; margin: 0; }
form.login input { font: inherit; padding: 7px 9px; border-radius: 5px; border: 1px solid var(--line); background: var(--bg); color: var(--text); }
form.login .error { color: var(--dead); margin: 0; }
form.login p { margin: 0; color: var(--muted); font-size: 13px; }
@media (max-width: 900px) { main { grid-template-columns: minmax(0, 1fr); } }
header a { color: var(--accent); }
.chat-log { display: grid; gap: 6px; max-height: 60vh; min-height: 240px; overflow-y: auto; padding: 4px 2px 8px; }
.chat-line { display: grid; grid-template-columns: 64px minmax(0, 1fr); gap: 8px; align-items: baseline; }
.chat-line time { color: var(--muted); font-size: 12px; font-variant-numeric: tabular-nums; }
.chat-line .who { font-weight: 600; margin-right: 6px; }
.chat-line.from-bot .who { color: var(--sent); }
.chat-line .body { white-space: pre-wrap; overflow-wrap: anywhere; }
.chat-line.system { color: var(--muted); font-style: italic; }
form.chat { display: flex; gap: 8px; margin-top: 10px; }
form.chat input { flex: 1; font: inherit; padding: 7px 9px; border-radius: 5px; border: 1px solid var(--line); background: var(--bg); color: var(--text); }
.hint { color: var(--muted); font-size: 13px; margin: 8px 0 0; }
`;

/** The hash that lets the inline stylesheet through the Content-Security-Policy (and nothing else inline). */
const STYLE_HASH = `'sha256-${hash("sha256", CSS, "base64")}'`;

/**
 * Sent with every /admin response: only our own script, our own API, no framing, no inline code.
 * `connect` adds origins the page may call (the chat page: the homeserver's).
 */
export function contentSecurityPolicy(connect: readonly string[] = []): string {
  return [
    "default-src 'none'",
    "script-src 'self'",
    ["connect-src 'self'", ...connect].join(" "),
    `style-src ${STYLE_HASH}`,
    "img-src data:",
    "form-action 'self'",
    "frame-ancestors 'none'",
    "base-uri 'none'",
  ].join("; ");
}

export const CONTENT_SECURITY_POLICY = contentSecurityPolicy();

export const escapeHtml = (text: string): string =>
  text.replace(
    /[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c] as string,
  );

export const head = (title: string) => `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>${escapeHtml(title)}</title>
<link rel="icon" href="data:,">
<style>${CSS}</style>
</head>`;

/**
 * The login form: the operator types the admin token, the server answers with a session cookie.
 * `action` is the absolute path of the login route; `error` is shown above the field. Its script
 * (`login.js` beside the action) submits a token given in the URL's fragment (`#token=…`, which
 * browsers never send to the server), so a printed link logs in with one click.
 */
export function loginPage(action: string, error?: string): string {
  return `${head("matrix-courier · log in")}
<body>
<form class="login" method="post" action="${escapeHtml(action)}">
  <h1>matrix-courier dashboard</h1>
  <p>Enter the admin token (<code>admin.token</code> in config.yaml).</p>
  ${error === undefined ? "" : `<p class="error" role="alert">${escapeHtml(error)}</p>`}
  <input type="password" name="token" autocomplete="current-password" required autofocus aria-label="Admin token" placeholder="Admin token">
  <button class="primary" type="submit">Log in</button>
</form>
<script src="${escapeHtml(action)}.js"></script>
</body>
</html>
`;
}

/** The dashboard skeleton; `app.js` fills every element with an id from `api/state`. */
export function dashboardPage(options: { chat?: boolean } = {}): string {
  return `${head("matrix-courier · dashboard")}
<body>
<header>
  <h1>matrix-courier</h1>
  <span class="about" id="about"></span>
  <span class="spacer"></span>
  <span id="status">loading…</span>${options.chat ? '\n  <a href="chat" id="chat-link">Chat with the bot</a>' : ""}
  <form method="post" action="logout"><button type="submit">Log out</button></form>
</header>
<main>
  <section class="wide">
    <div class="cards">
      <div class="card pending"><b id="total-pending">–</b><span>pending</span></div>
      <div class="card"><b id="total-sent">–</b><span>sent (kept in the store)</span></div>
      <div class="card dead"><b id="total-dead">–</b><span>dead letters</span></div>
      <div class="card"><b id="count-inflight">–</b><span>in flight</span></div>
      <div class="card"><b id="count-retried">–</b><span>retries since start</span></div>
      <div class="card"><b id="count-ratelimited">–</b><span>rate-limited since start</span></div>
    </div>
  </section>
  <section class="wide">
    <h2>Throughput <small id="throughput-summary"></small></h2>
    <div id="chart"></div>
    <div class="legend"><span><i class="sent"></i>sent per minute</span><span><i class="dead"></i>dead-lettered per minute</span></div>
  </section>
  <section>
    <h2>Outbox lanes <small id="lanes-summary"></small></h2>
    <table><thead><tr><th>Lane</th><th class="num">Pending</th><th class="num">Oldest</th></tr></thead>
    <tbody id="lanes"></tbody></table>
  </section>
  <section>
    <h2>Plugins</h2>
    <table><thead><tr><th>Plugin</th><th>Status</th><th>Error</th></tr></thead>
    <tbody id="plugins"></tbody></table>
  </section>
  <section class="wide">
    <h2>Dead letters <small id="dead-summary"></small></h2>
    <div id="notice" role="status"></div>
    <table><thead><tr><th class="nowrap">Dead since</th><th>Lane</th><th>Txn id</th><th>Error</th><th class="num">Attempts</th><th></th></tr></thead>
    <tbody id="dead"></tbody></table>
  </section>
  <section class="wide">
    <h2>Inbound <small>what the homeserver pushed, in the journal</small></h2>
    <div class="cards">
      <div class="card pending"><b id="inbound-pending">–</b><span>pending (being handled)</span></div>
      <div class="card"><b id="inbound-done">–</b><span>handled (kept in the store)</span></div>
      <div class="card dead"><b id="inbound-dead">–</b><span>dead (handlers gave up)</span></div>
      <div class="card rejected"><b id="inbound-rejected">–</b><span>rejected (malformed)</span></div>
    </div>
    <h3>Rejected <small id="inbound-rejected-summary"></small></h3>
    <table><thead><tr><th class="nowrap">Received</th><th>Kind</th><th>Lane</th><th>Event id</th><th>Txn id</th><th>Reason</th></tr></thead>
    <tbody id="inbound-rejected-items"></tbody></table>
    <h3>Dead <small id="inbound-dead-summary"></small></h3>
    <table><thead><tr><th class="nowrap">Dead since</th><th>Kind</th><th>Lane</th><th>Event id</th><th>Txn id</th><th class="num">Attempts</th><th>Reason</th></tr></thead>
    <tbody id="inbound-dead-items"></tbody></table>
  </section>
  <section class="wide">
    <h2>Recent sends <small>newest first</small></h2>
    <table><thead><tr><th class="nowrap">Sent at</th><th>Lane</th><th>Txn id</th><th>Event id</th><th class="num">Attempts</th></tr></thead>
    <tbody id="recent"></tbody></table>
  </section>
</main>
<noscript>The dashboard needs JavaScript; the same data is at <a href="api/state">api/state</a>.</noscript>
<script src="app.js"></script>
</body>
</html>
`;
}
