import type { Bindings, Logger } from "pino";

/**
 * A pino child logger made on first use. Every handler run gets a logger bound to its event, but
 * most runs never log, and making a child (its bindings serialised, redaction applied) was a
 * noticeable part of dispatching an event.
 */
export function lazyChildLogger(parent: Logger, bindings: Bindings): Logger {
  let child: Logger | undefined;
  return new Proxy(parent, {
    get(_target, property) {
      child ??= parent.child(bindings);
      const value: unknown = Reflect.get(child, property, child);
      return typeof value === "function" ? value.bind(child) : value;
    },
  });
}
