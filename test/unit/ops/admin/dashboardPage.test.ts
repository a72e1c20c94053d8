import { hash } from "node:crypto";
import { Script } from "node:vm";
import {
  CONTENT_SECURITY_POLICY,
  dashboardPage,
  loginPage,
} from "../../../../src/ops/admin/dashboardPage.ts";
import { DASHBOARD_SCRIPT } from "../../../../src/ops/admin/dashboardScript.ts";

describe("dashboard page", () => {
  test("the inline stylesheet is the one the CSP lets through, and it is the only inline code", () => {
    for (const page of [dashboardPage(), loginPage("/admin/login", "x")]) {
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
});
