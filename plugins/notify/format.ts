// Pure formatting for the notify plugin: JSON payloads in, a notice (plain text + HTML) out.
// No I/O; everything the sender put in the payload is escaped before it goes into HTML.
import { hash } from "node:crypto";

/** A room notice: `body` is plain text, `html` its `formatted_body` (org.matrix.custom.html). */
export interface Notice {
  readonly body: string;
  readonly html: string;
}

/** Longest text taken from one payload field, and most list items shown, so one event stays small. */
const MAX_FIELD = 2000;
const MAX_ITEMS = 20;
const MAX_TEMPLATE_OUTPUT = 16_000;

/** Escapes text for HTML (element content and attribute values). */
export function escapeHtml(text: string): string {
  return text
    .replaceAll("&", "&amp;")
    .replaceAll("<", "&lt;")
    .replaceAll(">", "&gt;")
    .replaceAll('"', "&quot;")
    .replaceAll("'", "&#39;");
}

const clip = (text: string, max = MAX_FIELD): string =>
  text.length > max ? `${text.slice(0, max - 1)}…` : text;
const lines = (html: string): string => html.replaceAll("\n", "<br>");
const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value);
const str = (value: unknown): string | undefined =>
  typeof value === "string" ? value : typeof value === "number" ? String(value) : undefined;
/** A link only for http(s) URLs: a `javascript:` URL from a payload never becomes an href. */
const link = (url: string | undefined, text: string): string =>
  url !== undefined && /^https?:\/\//i.test(url)
    ? `<a href="${escapeHtml(url)}">${escapeHtml(text)}</a>`
    : escapeHtml(text);

/** The value at a dotted path (`alerts.0.labels.alertname`); undefined when a step is missing. */
export function lookup(data: unknown, path: string): unknown {
  let value = data;
  for (const step of path.split(".")) {
    if (step === "") return undefined;
    if (Array.isArray(value)) value = /^\d+$/.test(step) ? value[Number(step)] : undefined;
    else if (isRecord(value) && Object.hasOwn(value, step)) value = value[step];
    else return undefined;
  }
  return value;
}

/** The default template of the generic route. */
export const DEFAULT_TEMPLATE = "{{title}}: {{body}}";

/**
 * Fills `{{dotted.path}}` placeholders from the JSON body: strings and numbers as they are,
 * other values as JSON, missing ones as "". A text body (not JSON) is sent as it is.
 */
export function formatTemplate(template: string, data: unknown): Notice {
  const text =
    typeof data === "string"
      ? data
      : template.replace(/\{\{\s*([^{}\s]+)\s*\}\}/g, (_, path: string) => {
          const value = lookup(data, path);
          if (value === undefined || value === null) return "";
          return clip(str(value) ?? (typeof value === "boolean" ? String(value) : JSON.stringify(value)));
        });
  const body = clip(text, MAX_TEMPLATE_OUTPUT);
  return { body, html: lines(escapeHtml(body)) };
}

/** One alert of an Alertmanager webhook (version 4). */
export interface AlertmanagerAlert {
  status?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  startsAt?: string;
  endsAt?: string;
  generatorURL?: string;
  fingerprint?: string;
}

/** The Alertmanager webhook payload (version 4). */
export interface AlertmanagerPayload {
  version?: string;
  groupKey?: string;
  truncatedAlerts?: number;
  status?: string;
  receiver?: string;
  groupLabels?: Record<string, string>;
  commonLabels?: Record<string, string>;
  commonAnnotations?: Record<string, string>;
  externalURL?: string;
  alerts?: AlertmanagerAlert[];
}

const labelsOf = (value: unknown): Record<string, string> => {
  if (!isRecord(value)) return {};
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(value)) if (typeof v === "string") out[k] = v;
  return out;
};
const sortedPairs = (labels: Record<string, string>, skip: ReadonlySet<string> = new Set()): string[] =>
  Object.keys(labels)
    .filter((k) => !skip.has(k))
    .sort()
    .map((k) => `${k}=${labels[k]}`);

/** True when the value looks like an Alertmanager webhook payload (an `alerts` array). */
export function isAlertmanagerPayload(value: unknown): value is AlertmanagerPayload {
  return isRecord(value) && Array.isArray(value.alerts);
}

/**
 * One notice for an Alertmanager notification, titled like Alertmanager's own default template:
 * `[FIRING:2] InstanceDown (job=node)`, `[RESOLVED] InstanceDown`; then one line per alert (its
 * `summary`, else `description`, else its name, and the labels that are not common to the group),
 * firing alerts first.
 */
export function formatAlertmanager(payload: AlertmanagerPayload): Notice {
  const alerts = (payload.alerts ?? []).filter(isRecord) as AlertmanagerAlert[];
  const firing = alerts.filter((a) => a.status !== "resolved");
  const resolved = alerts.filter((a) => a.status === "resolved");
  const status = payload.status === "resolved" ? "resolved" : "firing";
  const groupLabels = labelsOf(payload.groupLabels);
  const commonLabels = labelsOf(payload.commonLabels);
  const groupValues = Object.keys(groupLabels)
    .sort()
    .map((k) => groupLabels[k]!);
  const extraCommon = sortedPairs(commonLabels, new Set([...Object.keys(groupLabels), "alertname"]));
  const name = groupValues.length > 0 ? groupValues.join(" ") : (commonLabels.alertname ?? "alerts");
  const title = clip(
    `[${status === "firing" ? `FIRING:${firing.length}` : "RESOLVED"}] ${name}${
      extraCommon.length > 0 ? ` (${extraCommon.join(" ")})` : ""
    }`,
  );
  const common = new Set(Object.keys(commonLabels));
  const item = (alert: AlertmanagerAlert) => {
    const labels = labelsOf(alert.labels);
    const annotations = labelsOf(alert.annotations);
    const text = clip(annotations.summary ?? annotations.description ?? labels.alertname ?? "alert");
    const own = sortedPairs(labels, common);
    return {
      text: `${text}${own.length > 0 ? ` (${own.join(", ")})` : ""}`,
      html: `${link(str(alert.generatorURL), text)}${own.length > 0 ? ` (${escapeHtml(own.join(", "))})` : ""}`,
    };
  };
  const body: string[] = [title];
  const html: string[] = [`<strong>${link(str(payload.externalURL), title)}</strong>`];
  const section = (heading: string, group: AlertmanagerAlert[]) => {
    if (group.length === 0) return;
    const shown = group.slice(0, MAX_ITEMS).map(item);
    const more = group.length - shown.length;
    if (resolved.length > 0 && firing.length > 0) {
      body.push(`${heading}:`);
      html.push(`<p>${heading}:</p>`);
    }
    body.push(...shown.map((s) => `• ${s.text}`), ...(more > 0 ? [`… and ${more} more`] : []));
    html.push(
      `<ul>${shown.map((s) => `<li>${s.html}</li>`).join("")}${more > 0 ? `<li>… and ${more} more</li>` : ""}</ul>`,
    );
  };
  section("Firing", firing);
  section("Resolved", resolved);
  const truncated = typeof payload.truncatedAlerts === "number" ? payload.truncatedAlerts : 0;
  if (truncated > 0) {
    body.push(`(${truncated} more alerts truncated by Alertmanager)`);
    html.push(`<p>(${truncated} more alerts truncated by Alertmanager)</p>`);
  }
  return { body: body.join("\n"), html: html.join("") };
}

/**
 * The delivery id of an Alertmanager notification, which sends none: a hash of the group key,
 * the group's status, each alert's fingerprint (its labels when absent), status and `startsAt`,
 * and the time slot (`floor(now / windowMs)`). A retry of one notification (same payload, within
 * Alertmanager's retry period, bounded by `group_interval`) lands in the same slot and collapses;
 * the same notification repeated after `repeat_interval` lands in a later slot and is sent again.
 * A retry that straddles a slot boundary is sent twice: the window trades that against swallowing
 * repeats, so keep it at or below the route's `group_interval` (Alertmanager's default: 5 min).
 */
export function alertmanagerDeliveryId(
  payload: AlertmanagerPayload,
  nowMs: number,
  windowMs: number,
): string {
  const alerts = (payload.alerts ?? [])
    .filter(isRecord)
    .map((a) =>
      [
        str(a.fingerprint) ?? JSON.stringify(sortedPairs(labelsOf(a.labels))),
        str(a.status) ?? "",
        str(a.startsAt) ?? "",
      ].join("|"),
    )
    .sort();
  const slot = Math.floor(nowMs / windowMs);
  const key = JSON.stringify([
    str(payload.groupKey) ?? "",
    str(payload.status) ?? "",
    alerts,
    windowMs,
    slot,
  ]);
  return `am-${hash("sha256", key, "hex").slice(0, 40)}`;
}

/** A GitHub webhook payload: only the fields the notices use. */
type GithubPayload = Record<string, unknown>;

const login = (value: unknown): string | undefined =>
  isRecord(value) ? (str(value.login) ?? str(value.name)) : undefined;

/**
 * One notice for a GitHub-style webhook (`event` is the `X-GitHub-Event` header):
 * - push: `<pusher> pushed N commits to <repo>/<branch>: ` then one line per commit;
 * - issues: `<sender> <action> issue #<n>: <title> <url>`;
 * - anything else: `<event> [<action>] on <repo>`.
 */
export function formatGithub(event: string, payload: GithubPayload): Notice {
  const repo = isRecord(payload.repository)
    ? (str(payload.repository.full_name) ?? str(payload.repository.name) ?? "a repository")
    : (login(payload.organization) ?? "GitHub");
  const repoUrl = isRecord(payload.repository) ? str(payload.repository.html_url) : undefined;
  const sender = login(payload.sender) ?? "someone";

  if (event === "push") {
    const pusher = (isRecord(payload.pusher) ? str(payload.pusher.name) : undefined) ?? sender;
    const ref = str(payload.ref) ?? "";
    const branch = ref.replace(/^refs\/(?:heads|tags)\//, "");
    const commits = (Array.isArray(payload.commits) ? payload.commits : []).filter(isRecord);
    const n = commits.length;
    const head = clip(`${pusher} pushed ${n} commit${n === 1 ? "" : "s"} to ${repo}/${branch}`);
    const shown = commits.slice(0, MAX_ITEMS).map((c) => {
      const id = (str(c.id) ?? "").slice(0, 7);
      const message = clip((str(c.message) ?? "").split("\n")[0] ?? "", 200);
      const author = isRecord(c.author) ? (str(c.author.username) ?? str(c.author.name)) : undefined;
      const tail = author ? ` (${author})` : "";
      return {
        text: `${id} ${message}${tail}`,
        html: `${link(str(c.url), id)} ${escapeHtml(message)}${escapeHtml(tail)}`,
      };
    });
    const more = n - shown.length;
    const body = [
      `${head}${n > 0 ? ":" : ""}`,
      ...shown.map((s) => `• ${s.text}`),
      ...(more > 0 ? [`… and ${more} more`] : []),
    ];
    const html =
      `${link(str(payload.compare), head)}${n > 0 ? ":" : ""}` +
      (shown.length > 0
        ? `<ul>${shown.map((s) => `<li>${s.html}</li>`).join("")}${more > 0 ? `<li>… and ${more} more</li>` : ""}</ul>`
        : "");
    return { body: body.join("\n"), html };
  }

  if (event === "issues" && isRecord(payload.issue)) {
    const action = str(payload.action) ?? "updated";
    const number = str(payload.issue.number) ?? "?";
    const title = clip(str(payload.issue.title) ?? "", 500);
    const url = str(payload.issue.html_url);
    const lead = `${sender} ${action} issue #${number}: `;
    return {
      body: `${lead}${title}${url ? ` ${url}` : ""}`,
      html: `${escapeHtml(lead)}${link(url, title)}`,
    };
  }

  const action = str(payload.action);
  const text = `${event}${action ? ` ${action}` : ""} on `;
  return { body: `${text}${repo}`, html: `${escapeHtml(text)}${link(repoUrl, repo)}` };
}

/** The Matrix content of a notice. */
export function noticeContent(notice: Notice): Record<string, string> {
  return {
    msgtype: "m.notice",
    body: notice.body,
    format: "org.matrix.custom.html",
    formatted_body: notice.html,
  };
}
