import { hash } from "node:crypto";
import { Script } from "node:vm";
import {
  CONTENT_SECURITY_POLICY,
  contentSecurityPolicy,
  dashboardPage,
  loginPage,
} from "../../../../src/ops/admin/dashboardPage.ts";
import { DASHBOARD_SCRIPT } from "../../../../src/ops/admin/dashboardScript.ts";
import { chatPage } from "../../../../src/ops/admin/chatPage.ts";
import { CHAT_SCRIPT } from "../../../../src/ops/admin/chatScript.ts";
import { LOGIN_SCRIPT } from "../../../../src/ops/admin/loginScript.ts";

const CHAT = { userId: "@alice:localhost", botUserId: "@courier:localhost" };

describe("dashboard page", () => {
  test("the inline stylesheet is the one the CSP lets through, and it is the only inline code", () => {
    for (const page of [
      dashboardPage(),
      dashboardPage({ chat: true }),
      loginPage("/admin/login", "x"),
      chatPage(CHAT),
    ]) {
      const styles = [...page.matchAll(/<style>([\s\S]*?)<\/style>/g)].map((m) => m[1]!);
      expect(styles).toHaveLength(1);
      expect(CONTENT_SECURITY_POLICY).toContain(`'sha256-${hash("sha256", styles[0]!, "base64")}'`);
      expect(page).not.toMatch(/<script>|\son[a-z]+=/i); // no inline script or handlers
    }
    expect(CONTENT_SECURITY_POLICY).toContain("script-src 'self'");
    expect(CONTENT_SECURITY_POLICY).not.toContain("unsafe-inline");
  });

  test("the login page escapes what it shows", () => {
    const page = loginPage('/admin/"login', "<b>no</b>");
    expect(page).toContain('action="/admin/&quot;login"');
    expect(page).toContain("&lt;b&gt;no&lt;/b&gt;");
  });

  test("every element the script fills is in the page; the script compiles and sets no HTML", () => {
    expect(() => new Script(DASHBOARD_SCRIPT, { filename: "app.js" })).not.toThrow();
    const ids = [...DASHBOARD_SCRIPT.matchAll(/\$\("([a-z-]+)"\)/g)].map((m) => m[1]!);
    expect(ids.length).toBeGreaterThan(10);
    for (const id of new Set(ids)) expect(dashboardPage()).toContain(`id="${id}"`);
    expect(DASHBOARD_SCRIPT).not.toMatch(/innerHTML|outerHTML|insertAdjacentHTML|document\.write/);
    expect(DASHBOARD_SCRIPT).not.toMatch(/https?:\/\/(?!www\.w3\.org\/2000\/svg)/); // nothing fetched from elsewhere
  });

  test("the login page loads its script beside the form's action; the script submits a #token= only", () => {
    expect(loginPage("/admin/login")).toContain('<script src="/admin/login.js"></script>');
    expect(() => new Script(LOGIN_SCRIPT, { filename: "login.js" })).not.toThrow();
    expect(LOGIN_SCRIPT).toContain("#token=");
    expect(LOGIN_SCRIPT).toContain("history.replaceState"); // out of the address bar before submitting
  });

  test("the dashboard links the chat page only when there is one", () => {
    expect(dashboardPage({ chat: true })).toContain('<a href="chat" id="chat-link">');
    expect(dashboardPage()).not.toContain("chat-link");
  });

  test("the chat page: every element its script fills is there; the script compiles and sets no HTML", () => {
    expect(() => new Script(CHAT_SCRIPT, { filename: "chat.js" })).not.toThrow();
    const ids = [...CHAT_SCRIPT.matchAll(/\$\("([a-z-]+)"\)/g)].map((m) => m[1]!);
    expect(ids.length).toBeGreaterThan(5);
    for (const id of new Set(ids)) expect(chatPage(CHAT)).toContain(`id="${id}"`);
    expect(CHAT_SCRIPT).not.toMatch(/innerHTML|outerHTML|insertAdjacentHTML|document\.write/);
    expect(chatPage({ userId: "@<b>:x", botUserId: "@bot:x" })).toContain("@&lt;b&gt;:x");
  });

  test("a page's connect-src adds the origins given, nothing else changes", () => {
    const chat = contentSecurityPolicy(["http://127.0.0.1:8008"]);
    expect(chat).toContain("connect-src 'self' http://127.0.0.1:8008;");
    expect(chat.replace(" http://127.0.0.1:8008", "")).toBe(CONTENT_SECURITY_POLICY);
  });
});
