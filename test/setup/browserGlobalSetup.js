// The browser project's jest globalSetup: Chromium for every browser test, Synapse for the chat
// page's (it talks to a real homeserver). Jest runs it only when a browser test is selected.
import installChromium from "./installChromium.js";
import installSynapse from "./installSynapse.js";

export default function browserGlobalSetup() {
  installChromium();
  installSynapse();
}
