#!/usr/bin/env node
// The `courier` command. Exit codes: 0 ok, 1 runtime failure, 2 bad usage or configuration.
import { Command, CommanderError, Option } from "commander";
import { CourierError } from "../errors.ts";
import { runInit, runRegister, runStart } from "./commands.ts";
import { outboxDrop, outboxList, outboxRetry, outboxStats } from "./outboxCommands.ts";
import { inboundList, inboundStats, LISTED_STATES, type ListedState } from "./inboundCommands.ts";
import { askYesNo } from "./askYesNo.ts";
import { runDoctorCommand } from "./doctorCommand.ts";
import { terminalProgress } from "./terminalProgress.ts";
import { createLogger } from "../logging/createLogger.ts";
import type { OutboxState } from "../store/OutboxStore.ts";

/** `--config`, which COURIER_CONFIG sets for every command (`npm start` prints it for its config). */
const configOption = (description = "config file") =>
  new Option("-c, --config <path>", description).env("COURIER_CONFIG").default("config.yaml");

const program = new Command()
  .name("courier")
  .description("Matrix application-service framework with an exactly-once outbox")
  .exitOverride()
  .showHelpAfterError()
  .addHelpText(
    "after",
    "\nExit codes: 0 success; 1 failure (homeserver, store, nothing matched, a doctor check failed);\n" +
      "2 bad usage or configuration (unknown option, invalid config, a confirmation that cannot be asked).\n" +
      "Every command has --help. See docs/operations.md.",
  );

program
  .command("init")
  .description("write a starter config.yaml")
  .addOption(configOption("config file to write"))
  .option("-f, --force", "overwrite an existing file")
  .action((opts: { config: string; force?: boolean }) => runInit(opts.config, opts.force ?? false));

program
  .command("register")
  .description("write the registration file the homeserver needs (tokens kept unless --force)")
  .addOption(configOption())
  .option("-f, --force", "rotate the tokens of an existing registration")
  .action((opts: { config: string; force?: boolean }) => runRegister(opts.config, opts.force ?? false));

program
  .command("start")
  .description("run the framework until SIGTERM/SIGINT")
  .addOption(configOption())
  .action((opts: { config: string }) => runStart(opts.config));

program
  .command("doctor")
  .description(
    "check config, registration, homeserver, clock, as_token, ping both ways, ghost registration, store",
  )
  .addOption(configOption())
  .option("--json", "the results as one JSON array")
  .action(async (opts: { config: string; json?: boolean }) => {
    process.exitCode = await runDoctorCommand(opts.config, opts.json ?? false);
  });

const outbox = program
  .command("outbox")
  .description(
    "inspect and act on the outbound journal (reads work beside the running service; retry and drop go through its admin API)",
  );
outbox
  .command("stats")
  .description("pending per lane with the oldest age; sent and dead totals")
  .addOption(configOption())
  .option("--json", "one JSON object")
  .action((opts: { config: string; json?: boolean }) => outboxStats(opts.config, opts.json ?? false));
outbox
  .command("ls")
  .description("journaled requests, newest first")
  .addOption(configOption())
  .option("--room <roomId>", "only this room's lane")
  .option("--state <state>", "pending, sent, dead or dropped")
  .option("-n, --limit <n>", "at most this many", "50")
  .option("--json", "one JSON object per line")
  .action((opts: { config: string; room?: string; state?: string; limit: string; json?: boolean }) => {
    if (opts.state && !["pending", "sent", "dead", "dropped"].includes(opts.state)) {
      throw new CommanderError(
        2,
        "courier.badState",
        `--state must be pending, sent, dead or dropped, got ${opts.state}`,
      );
    }
    return outboxList(opts.config, {
      limit: Number(opts.limit) || 50,
      json: opts.json ?? false,
      ...(opts.room ? { room: opts.room } : {}),
      ...(opts.state ? { state: opts.state as OutboxState } : {}),
    });
  });
outbox
  .command("dead")
  .description("dead letters with their reason")
  .addOption(configOption())
  .option("-n, --limit <n>", "at most this many", "50")
  .option("--json", "one JSON object per line")
  .action((opts: { config: string; limit: string; json?: boolean }) =>
    outboxList(opts.config, { state: "dead", limit: Number(opts.limit) || 50, json: opts.json ?? false }),
  );
outbox
  .command("retry")
  .description("put a dead letter (or all of them) back to pending")
  .argument("[txnId]", "the request to retry")
  .addOption(configOption())
  .option("--all-dead", "every dead letter (not those dropped by an operator)")
  .option(
    "--wait <seconds>",
    "follow them until the running service settled them (progress), at most this long",
  )
  .action(async (txnId: string | undefined, opts: { config: string; allDead?: boolean; wait?: string }) => {
    if (!txnId && !opts.allDead)
      throw new CommanderError(2, "courier.retryWhat", "name a txnId or pass --all-dead");
    const wait = opts.wait === undefined ? undefined : Number(opts.wait);
    if (wait !== undefined && !(wait > 0))
      throw new CommanderError(2, "courier.badWait", `--wait must be a number of seconds, got ${opts.wait}`);
    const changed = await outboxRetry(opts.config, {
      allDead: opts.allDead ?? false,
      ...(txnId ? { txnId } : {}),
      ...(wait === undefined
        ? {}
        : { waitMs: wait * 1000, progress: terminalProgress(createLogger({ destination: process.stderr })) }),
    });
    if (changed === 0 && txnId) process.exitCode = 1;
  });

outbox
  .command("drop")
  .description("take pending or dead requests out of the queue for good (asks first)")
  .argument("<txnId...>", "the requests to drop")
  .addOption(configOption())
  .option("-y, --yes", "do not ask (required when not on a terminal)")
  .action(async (txnIds: string[], opts: { config: string; yes?: boolean }) => {
    const interactive = process.stdin.isTTY === true && process.stdout.isTTY === true;
    if (!opts.yes && !interactive)
      throw new CommanderError(2, "courier.dropConfirm", "not a terminal, so nobody can confirm: pass --yes");
    const dropped = await outboxDrop(opts.config, txnIds, { yes: opts.yes ?? false, confirm: askYesNo });
    if (dropped === 0) process.exitCode = 1;
  });

const inbound = program
  .command("inbound")
  .description(
    "inspect the inbound journal: items rejected as malformed and items given up (read-only; works while the service runs)",
  );
inbound
  .command("stats")
  .description("items by state: pending, done, dead, rejected")
  .addOption(configOption())
  .option("--json", "one JSON object")
  .action((opts: { config: string; json?: boolean }) => inboundStats(opts.config, opts.json ?? false));
inbound
  .command("list")
  .alias("ls")
  .description("settled items, newest first, with the reason of rejected and dead ones")
  .addOption(configOption())
  .option("--state <state>", "rejected, dead or done (default: all three)")
  .option("-n, --limit <n>", "at most this many", "50")
  .option("--full", "the whole reason and item JSON (cut to a line otherwise)")
  .option("--json", "one JSON object per line, the item included")
  .action((opts: { config: string; state?: string; limit: string; full?: boolean; json?: boolean }) => {
    if (opts.state !== undefined && !(LISTED_STATES as readonly string[]).includes(opts.state)) {
      throw new CommanderError(
        2,
        "courier.badState",
        `--state must be rejected, dead or done, got ${opts.state}`,
      );
    }
    const limit = Number(opts.limit);
    if (!Number.isSafeInteger(limit) || limit < 1) {
      throw new CommanderError(
        2,
        "courier.badLimit",
        `--limit must be a positive whole number, got ${opts.limit}`,
      );
    }
    return inboundList(opts.config, {
      limit,
      json: opts.json ?? false,
      full: opts.full ?? false,
      ...(opts.state ? { state: opts.state as ListedState } : {}),
    });
  });

try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (error instanceof CommanderError) {
    // Commander printed its own errors already; ours (code "courier.…") are printed here.
    if (error.code.startsWith("courier.")) process.stderr.write(`courier: ${error.message}\n`);
    process.exit(error.exitCode === 0 ? 0 : 2);
  }
  if (error instanceof CourierError) {
    process.stderr.write(`courier: ${error.message}\n`);
    process.exit(error.code === "COURIER_CONFIG" ? 2 : 1);
  }
  process.stderr.write(
    `courier: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exit(1);
}
