import cliProgress from "cli-progress";
import type { Logger } from "pino";
import { logProgress, type ProgressObserver } from "../outbox/progress.ts";

/**
 * A progress bar on a terminal (cli-progress), log lines with counts otherwise (pipes, journald),
 * so logs stay one JSON object per line.
 */
export function terminalProgress(
  log: Logger,
  stream: NodeJS.WriteStream = process.stdout,
): (task: string) => ProgressObserver {
  return (task) => {
    if (!stream.isTTY) return logProgress(log, task);
    const bar = new cliProgress.SingleBar(
      {
        format: `${task} [{bar}] {value}/{total} {percentage}% eta {eta_formatted}`,
        stream,
        hideCursor: true,
      },
      cliProgress.Presets.shades_classic,
    );
    return {
      start: (total) => bar.start(total, 0),
      update: (done) => bar.update(done),
      stop: () => bar.stop(),
    };
  };
}
