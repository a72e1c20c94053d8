import { escapeHtml, head } from "./dashboardPage.ts";
import type { DashboardChat } from "./options.ts";

/**
 * The chat page's skeleton: `chat.js` logs in to the homeserver as the chat user (credentials
 * from `api/chat`), opens the room with the bot and fills `#messages` from /sync.
 */
export function chatPage(chat: Pick<DashboardChat, "userId" | "botUserId">): string {
  return `${head("matrix-courier · chat with the bot")}
<body>
<header>
  <h1>matrix-courier</h1>
  <span class="about">chat as <code>${escapeHtml(chat.userId)}</code> with <code>${escapeHtml(chat.botUserId)}</code></span>
  <span class="spacer"></span>
  <span id="status">connecting…</span>
  <a href="./">Dashboard</a>
</header>
<main>
  <section class="wide">
    <h2>Chat with the bot <small id="room"></small></h2>
    <div id="messages" class="chat-log" role="log" aria-live="polite"></div>
    <form class="chat" id="chat-form" autocomplete="off">
      <input id="chat-input" name="body" aria-label="Message" placeholder="!echo hello" disabled>
      <button class="primary" type="submit" id="chat-send" disabled>Send</button>
    </form>
    <p class="hint">Try <code>!echo hello</code>, <code>!ping</code>, <code>!remind 1m stretch</code> or <code>!help</code>. The page is a Matrix client: it talks to the homeserver, the homeserver to the bot.</p>
  </section>
</main>
<noscript>The chat needs JavaScript.</noscript>
<script src="chat.js"></script>
</body>
</html>
`;
}
