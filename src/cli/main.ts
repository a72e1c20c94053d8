#!/usr/bin/env node
// The `courier` command. Exit codes: 0 ok, 1 runtime failure, 2 bad usage or configuration.
import { Command, CommanderError } from "commander";
import { CourierError } from "../errors.ts";
import { runInit, runRegister, runStart } from "./commands.ts";

const program = new Command()
  .name("courier")
  .description("Matrix application-service framework with an exactly-once outbox")
  .exitOverride()
  .showHelpAfterError();

program
  .command("init")
  .description("write a starter config.yaml")
  .option("-c, --config <path>", "config file to write", "config.yaml")
  .option("-f, --force", "overwrite an existing file")
  .action((opts: { config: string; force?: boolean }) => runInit(opts.config, opts.force ?? false));

program
  .command("register")
  .description("write the registration file the homeserver needs (tokens kept unless --force)")
  .option("-c, --config <path>", "config file", "config.yaml")
  .option("-f, --force", "rotate the tokens of an existing registration")
  .action((opts: { config: string; force?: boolean }) => runRegister(opts.config, opts.force ?? false));

program
  .command("start")
  .description("run the framework until SIGTERM/SIGINT")
  .option("-c, --config <path>", "config file", "config.yaml")
  .action((opts: { config: string }) => runStart(opts.config));

try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (error instanceof CommanderError) process.exit(error.exitCode === 0 ? 0 : 2);
  if (error instanceof CourierError) {
    process.stderr.write(`courier: ${error.message}\n`);
    process.exit(error.code === "COURIER_CONFIG" ? 2 : 1);
  }
  process.stderr.write(
    `courier: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exit(1);
}
