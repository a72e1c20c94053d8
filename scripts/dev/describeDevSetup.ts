// What `npm start` prints once the development setup runs. A function of its own so that the
// README's copy of it is checked against it (test/unit/docs/readme.test.ts).

export interface DevSetupSummary {
  readonly homeserverUrl: string;
  readonly serverName: string;
  readonly userId: string;
  readonly password: string;
  readonly botUserId: string;
  readonly dashboardUrl: string;
  /** The config file the CLI is pointed at. */
  readonly configPath: string;
  /** Of the process to signal. */
  readonly pid: string;
  /** Where the state is kept, as the user sees it. */
  readonly stateDir: string;
}

export function describeDevSetup(s: DevSetupSummary): string[] {
  return [
    "matrix-courier is running.",
    `  homeserver:  ${s.homeserverUrl}   (server name ${s.serverName})`,
    `  log in as:   ${s.userId}   password: ${s.password}`,
    `  the bot:     ${s.botUserId}`,
    `  dashboard:   ${s.dashboardUrl}`,
    `  try it:      "Chat with the bot" in the dashboard, or in any Matrix client create a room,`,
    `               invite ${s.botUserId}, then say "!echo hello", "!remind 1m stretch" or "!help"`,
    `  the CLI:     export COURIER_CONFIG=${s.configPath}`,
    `               then: npx courier doctor, npx courier outbox stats`,
    `  stop with:   Ctrl-C, or kill ${s.pid} (state is kept in ${s.stateDir})`,
  ];
}
