// The chat page's script, served as /admin/chat.js: a minimal Matrix client in the page. It logs
// in to the homeserver's Client-Server API as the chat user (m.login.password with the
// credentials from api/chat), joins its room with the bot (a room alias per user, created with
// the bot invited the first time), long-polls /sync for the room's timeline and sends what is
// typed as m.room.message. Messages go into the page as text, never as HTML. Plain ES2020, no
// template literals inside, so this file needs no escaping.

/** How long one /sync waits on the homeserver for something new (the spec's `timeout`). */
export const SYNC_TIMEOUT_MS = 30_000;
/** The device the page logs in as: the same one every time, so logins do not pile up devices. */
export const CHAT_DEVICE_ID = "COURIER_DASHBOARD_CHAT";

export const CHAT_SCRIPT = `"use strict";
(function () {
  var SYNC_TIMEOUT_MS = ${SYNC_TIMEOUT_MS};
  var DEVICE_ID = "${CHAT_DEVICE_ID}";
  var RETRY_MS = [1000, 2000, 5000, 10000];
  var hs = "";
  var accessToken = "";
  var me = "";
  var bot = "";
  var roomId = "";
  var botJoined = false;
  var txn = 0;
  var seen = {};

  function $(id) { return document.getElementById(id); }

  function setStatus(text, isError) {
    var node = $("status");
    node.textContent = text;
    node.className = isError ? "error" : "";
  }

  function enableInput(on) {
    $("chat-input").disabled = !on;
    $("chat-send").disabled = !on;
    if (on) $("chat-input").focus();
  }

  function MatrixError(status, body) {
    this.status = status;
    this.errcode = (body && body.errcode) || "M_UNKNOWN";
    this.message = this.errcode + ": " + ((body && body.error) || "HTTP " + status);
  }

  function call(method, path, body) {
    var init = { method: method, headers: {} };
    if (accessToken) init.headers.authorization = "Bearer " + accessToken;
    if (body !== undefined) {
      init.headers["content-type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(hs + path, init).then(function (res) {
      return res.json().catch(function () { return {}; }).then(function (json) {
        if (!res.ok) throw new MatrixError(res.status, json);
        return json;
      });
    });
  }

  function enc(s) { return encodeURIComponent(s); }

  function fmtTime(ms) {
    var d = new Date(ms);
    var pad = function (n) { return String(n).padStart(2, "0"); };
    return pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }

  function addLine(className, ts, who, body) {
    var log = $("messages");
    var atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    var line = document.createElement("div");
    line.className = "chat-line " + className;
    var time = document.createElement("time");
    time.textContent = fmtTime(ts);
    var text = document.createElement("div");
    if (who) {
      var name = document.createElement("span");
      name.className = "who";
      name.textContent = who;
      text.appendChild(name);
    }
    var content = document.createElement("span");
    content.className = "body";
    content.textContent = body;
    text.appendChild(content);
    line.appendChild(time);
    line.appendChild(text);
    log.appendChild(line);
    if (atBottom) log.scrollTop = log.scrollHeight;
  }

  function show(event) {
    if (seen[event.event_id]) return;
    seen[event.event_id] = true;
    var c = event.content || {};
    if (event.type === "m.room.message" && typeof c.body === "string") {
      var fromBot = event.sender === bot;
      addLine(fromBot ? "from-bot" : "from-me", event.origin_server_ts, event.sender, c.body);
    } else if (event.type === "m.room.member" && event.state_key === bot) {
      if (c.membership === "join" && !botJoined) {
        botJoined = true;
        addLine("system", event.origin_server_ts, "", bot + " joined the room");
        ready();
      } else if (c.membership === "leave") {
        botJoined = false;
        addLine("system", event.origin_server_ts, "", bot + " left the room; reload to invite it again");
        enableInput(false);
      }
    }
  }

  function ready() {
    setStatus("connected as " + me);
    enableInput(true);
  }

  function login(config) {
    return call("POST", "/_matrix/client/v3/login", {
      type: "m.login.password",
      identifier: { type: "m.id.user", user: config.userId },
      password: config.password,
      device_id: DEVICE_ID,
      initial_device_display_name: "matrix-courier dashboard chat",
    }).then(function (res) {
      accessToken = res.access_token;
      me = res.user_id;
    });
  }

  // One room per chat user, found again by its alias on the next visit.
  function openRoom() {
    var localpart = me.slice(1).split(":")[0];
    var server = me.slice(me.indexOf(":") + 1);
    var aliasName = "courier-chat-" + localpart;
    var alias = "#" + aliasName + ":" + server;
    var created = false;
    return call("POST", "/_matrix/client/v3/join/" + enc(alias), {})
      .catch(function (error) {
        if (error.errcode !== "M_NOT_FOUND") throw error;
        created = true;
        return call("POST", "/_matrix/client/v3/createRoom", {
          room_alias_name: aliasName,
          name: "Chat with " + bot,
          preset: "trusted_private_chat",
          is_direct: true,
          invite: [bot],
        });
      })
      .then(function (res) {
        roomId = res.room_id;
        $("room").textContent = alias;
        return call("GET", "/_matrix/client/v3/rooms/" + enc(roomId) + "/joined_members");
      })
      .then(function (members) {
        botJoined = Object.prototype.hasOwnProperty.call(members.joined || {}, bot);
        if (botJoined) return;
        setStatus("waiting for " + bot + " to join…");
        if (created) return; // invited by createRoom
        // An earlier visit's room the bot is not in: invite it (again; "already invited" is fine).
        return call("POST", "/_matrix/client/v3/rooms/" + enc(roomId) + "/invite", { user_id: bot }).catch(
          function (error) { if (error.errcode !== "M_FORBIDDEN") throw error; },
        );
      });
  }

  function syncLoop(since, failures) {
    var filter = JSON.stringify({
      room: { rooms: [roomId], timeline: { limit: 50 }, state: { lazy_load_members: true } },
      presence: { not_types: ["*"] },
      account_data: { not_types: ["*"] },
    });
    var query = "?filter=" + enc(filter) + (since ? "&since=" + enc(since) + "&timeout=" + SYNC_TIMEOUT_MS : "&timeout=0");
    call("GET", "/_matrix/client/v3/sync" + query)
      .then(function (res) {
        var room = res.rooms && res.rooms.join && res.rooms.join[roomId];
        var events = (room && room.timeline && room.timeline.events) || [];
        events.forEach(show);
        if (failures > 0 && botJoined) ready();
        syncLoop(res.next_batch, 0);
      })
      .catch(function (error) {
        var wait = RETRY_MS[Math.min(failures, RETRY_MS.length - 1)];
        setStatus("sync failed (" + error.message + "); trying again in " + wait / 1000 + " s", true);
        setTimeout(function () { syncLoop(since, failures + 1); }, wait);
      });
  }

  function send(body) {
    txn += 1;
    var id = "chat-" + Date.now() + "-" + txn;
    return call(
      "PUT",
      "/_matrix/client/v3/rooms/" + enc(roomId) + "/send/m.room.message/" + enc(id),
      { msgtype: "m.text", body: body },
    );
  }

  $("chat-form").addEventListener("submit", function (e) {
    e.preventDefault();
    var input = $("chat-input");
    var body = input.value.trim();
    if (!body || !roomId) return;
    input.value = "";
    send(body).catch(function (error) {
      setStatus("could not send (" + error.message + ")", true);
      input.value = body;
    });
  });

  fetch("api/chat", { headers: { accept: "application/json" } })
    .then(function (res) {
      if (res.status === 401 || res.status === 403) throw new Error("the dashboard session has ended; reload to log in");
      if (!res.ok) throw new Error("api/chat answered " + res.status);
      return res.json();
    })
    .then(function (config) {
      hs = config.homeserverUrl.replace(/[/]+$/, "");
      bot = config.botUserId;
      setStatus("logging in as " + config.userId + "…");
      return login(config);
    })
    .then(openRoom)
    .then(function () {
      if (botJoined) ready();
      syncLoop(undefined, 0);
    })
    .catch(function (error) {
      setStatus("chat unavailable: " + error.message, true);
    });
})();
`;
