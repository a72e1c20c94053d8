import { htmlToIrc, ircToHtml, stripIrcFormatting } from "../../../../plugins/irc/ircFormatting.ts";

test("plain IRC text has no HTML", () => {
  expect(ircToHtml("just <text> & more")).toBeUndefined();
});

test.each([
  ["\x02bold\x02 plain", "<b>bold</b> plain"],
  ["\x1ditalic\x0f and \x1funder\x1f", "<i>italic</i> and <u>under</u>"],
  ["\x034red\x03 plain", '<font data-mx-color="#ff0000">red</font> plain'],
  ["\x034,1red on black", '<font data-mx-color="#ff0000" data-mx-bg-color="#000000">red on black</font>'],
  ["\x02bold \x1dboth\x02 italic\x1d", "<b>bold <i>both</i></b><i> italic</i>"],
  ["a <tag> \x02&\x02", "a &lt;tag&gt; <b>&amp;</b>"],
])("%j becomes %j", (irc, html) => {
  expect(ircToHtml(irc)).toBe(html);
});

test("the plain body drops the codes", () => {
  expect(stripIrcFormatting("\x02b\x02 \x034,12c\x03 \x0fd")).toBe("b c d");
});

test("Matrix HTML becomes IRC codes; links keep their address, pills their name; the reply fallback goes", () => {
  expect(htmlToIrc("<strong>b</strong> <em>i</em> <del>s</del> <code>c</code>")).toBe(
    "\x02b\x02 \x1di\x1d \x1es\x1e \x11c\x11",
  );
  expect(htmlToIrc('see <a href="https://example.org">the site</a>')).toBe(
    "see the site (https://example.org)",
  );
  expect(htmlToIrc('<a href="https://matrix.to/#/@bob:x">bob</a>: hi')).toBe("bob: hi");
  expect(htmlToIrc("<mx-reply><blockquote>old</blockquote></mx-reply>new &amp; <b>bold</b>")).toBe(
    "new & \x02bold\x02",
  );
  expect(htmlToIrc("<p>one</p><p>two</p>")).toBe("one\ntwo");
  expect(htmlToIrc("a<br>b")).toBe("a\nb");
});
