// The login form's script, served as /admin/login.js (no credentials needed: it holds nothing).
// A link with the admin token in its fragment (`/admin/#token=…`, what `npm start` prints) logs
// in with one click: the fragment never reaches the server or its logs; the script takes it out
// of the address bar, then submits the form. Plain ES2020, no template literals inside.

export const LOGIN_SCRIPT = `"use strict";
(function () {
  var match = /^#token=(.+)$/.exec(location.hash);
  if (!match) return;
  history.replaceState(null, "", location.pathname + location.search);
  var form = document.querySelector("form.login");
  var input = form && form.querySelector('input[name="token"]');
  if (!input) return;
  input.value = decodeURIComponent(match[1]);
  form.submit();
})();
`;
