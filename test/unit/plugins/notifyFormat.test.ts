import {
  alertmanagerDeliveryId,
  escapeHtml,
  formatAlertmanager,
  formatGithub,
  formatTemplate,
  lookup,
  noticeContent,
} from "../../../plugins/notify/format.ts";

describe("template", () => {
  test("dotted paths into the body, array indexes, missing values empty, objects as JSON", () => {
    const data = { title: "Deploy", body: "done", meta: { tags: ["a", "b"], n: 3, obj: { x: 1 } } };
    expect(formatTemplate("{{title}}: {{body}}", data).body).toBe("Deploy: done");
    expect(formatTemplate("{{ meta.tags.1 }}/{{meta.n}}/{{missing.x}}/{{meta.obj}}", data).body).toBe(
      'b/3//{"x":1}',
    );
    expect(lookup(data, "meta.tags.5")).toBeUndefined();
    expect(lookup(data, "title.length")).toBeUndefined();
  });
  test("HTML is escaped, newlines become <br>", () => {
    const n = formatTemplate("{{title}}\n{{body}}", { title: "<b>x</b>", body: "a & 'b'" });
    expect(n.body).toBe("<b>x</b>\na & 'b'");
    expect(n.html).toBe("&lt;b&gt;x&lt;/b&gt;<br>a &amp; &#39;b&#39;");
  });
  test("a text body is sent as it is", () => {
    expect(formatTemplate("{{title}}", "plain <text>").html).toBe("plain &lt;text&gt;");
  });
  test("noticeContent is an m.notice with an HTML formatted_body", () => {
    expect(noticeContent({ body: "b", html: "h" })).toEqual({
      msgtype: "m.notice",
      body: "b",
      format: "org.matrix.custom.html",
      formatted_body: "h",
    });
  });
});

const alert = (instance: string, status = "firing", summary = `${instance} is down`) => ({
  status,
  labels: { alertname: "InstanceDown", job: "node", instance, severity: "page" },
  annotations: { summary },
  startsAt: "2026-11-23T10:00:00Z",
  endsAt: "0001-01-01T00:00:00Z",
  generatorURL: "http://prometheus/graph?g0.expr=up",
  fingerprint: `fp-${instance}`,
});
const amPayload = (status: string, alerts: object[]) => ({
  version: "4",
  groupKey: '{}:{alertname="InstanceDown"}',
  truncatedAlerts: 0,
  status,
  receiver: "matrix",
  groupLabels: { alertname: "InstanceDown" },
  commonLabels: { alertname: "InstanceDown", job: "node", severity: "page" },
  commonAnnotations: {},
  externalURL: "http://alertmanager:9093",
  alerts,
});

describe("Alertmanager", () => {
  test("firing: the count, the group, the common labels, then one line per alert", () => {
    const n = formatAlertmanager(amPayload("firing", [alert("host1"), alert("host2")]));
    expect(n.body).toBe(
      "[FIRING:2] InstanceDown (job=node severity=page)\n• host1 is down (instance=host1)\n• host2 is down (instance=host2)",
    );
    expect(n.html).toContain('<strong><a href="http://alertmanager:9093">[FIRING:2] InstanceDown');
    expect(n.html).toContain(
      '<li><a href="http://prometheus/graph?g0.expr=up">host1 is down</a> (instance=host1)</li>',
    );
  });
  test("resolved, and mixed groups in sections", () => {
    expect(formatAlertmanager(amPayload("resolved", [alert("host1", "resolved")])).body).toBe(
      "[RESOLVED] InstanceDown (job=node severity=page)\n• host1 is down (instance=host1)",
    );
    const mixed = formatAlertmanager(amPayload("firing", [alert("host1", "resolved"), alert("host2")]));
    expect(mixed.body).toBe(
      "[FIRING:1] InstanceDown (job=node severity=page)\nFiring:\n• host2 is down (instance=host2)\nResolved:\n• host1 is down (instance=host1)",
    );
  });
  test("payload text is escaped; a javascript: URL is not linked", () => {
    const evil = {
      ...alert("h"),
      annotations: { summary: "<img src=x onerror=alert(1)>" },
      generatorURL: "javascript:alert(1)",
    };
    const n = formatAlertmanager(amPayload("firing", [evil]));
    expect(n.html).not.toContain("<img");
    expect(n.html).not.toContain("javascript:");
    expect(n.html).toContain("&lt;img src=x onerror=alert(1)&gt;");
  });
  test("delivery id: the same notification in one slot is one delivery; a change or a later slot is another", () => {
    const p = amPayload("firing", [alert("host1"), alert("host2")]);
    const reordered = amPayload("firing", [alert("host2"), alert("host1")]);
    const window = 300_000;
    const t = 1_000 * window + 10;
    const id = alertmanagerDeliveryId(p, t, window);
    expect(id).toMatch(/^am-[0-9a-f]{40}$/);
    expect(alertmanagerDeliveryId(reordered, t + 60_000, window)).toBe(id);
    expect(alertmanagerDeliveryId(p, t + window, window)).not.toBe(id);
    expect(alertmanagerDeliveryId(amPayload("resolved", [alert("host1", "resolved")]), t, window)).not.toBe(
      id,
    );
    expect(alertmanagerDeliveryId(amPayload("firing", [alert("host1")]), t, window)).not.toBe(id);
  });
});

const repository = { full_name: "acme/rocket", html_url: "https://github.com/acme/rocket" };

describe("GitHub", () => {
  test("push: pusher, count, repo/branch, one line per commit", () => {
    const n = formatGithub("push", {
      ref: "refs/heads/main",
      compare: "https://github.com/acme/rocket/compare/a...b",
      repository,
      pusher: { name: "alice" },
      sender: { login: "alice" },
      commits: [
        {
          id: "0123456789abcdef",
          message: "Fix <thing>\n\nlong text",
          url: "https://github.com/c/1",
          author: { username: "alice" },
        },
        {
          id: "fedcba9876543210",
          message: "Add tests",
          url: "https://github.com/c/2",
          author: { name: "Bob" },
        },
      ],
    });
    expect(n.body).toBe(
      "alice pushed 2 commits to acme/rocket/main:\n• 0123456 Fix <thing> (alice)\n• fedcba9 Add tests (Bob)",
    );
    expect(n.html).toContain('<a href="https://github.com/c/1">0123456</a> Fix &lt;thing&gt; (alice)');
    expect(
      formatGithub("push", {
        ref: "refs/heads/x",
        repository,
        pusher: { name: "a" },
        commits: [{ id: "1", message: "m" }],
      }).body,
    ).toBe("a pushed 1 commit to acme/rocket/x:\n• 1 m");
  });
  test("issues: sender, action, number, title, url", () => {
    const n = formatGithub("issues", {
      action: "opened",
      issue: { number: 42, title: "It <breaks>", html_url: "https://github.com/acme/rocket/issues/42" },
      repository,
      sender: { login: "carol" },
    });
    expect(n.body).toBe("carol opened issue #42: It <breaks> https://github.com/acme/rocket/issues/42");
    expect(n.html).toBe(
      'carol opened issue #42: <a href="https://github.com/acme/rocket/issues/42">It &lt;breaks&gt;</a>',
    );
  });
  test("other events: the event (and action) on the repo", () => {
    expect(formatGithub("star", { action: "created", repository, sender: { login: "d" } }).body).toBe(
      "star created on acme/rocket",
    );
    expect(formatGithub("ping", { repository }).body).toBe("ping on acme/rocket");
  });
  test("escapeHtml", () => {
    expect(escapeHtml(`<a href="x">'&'</a>`)).toBe("&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
  });
});
