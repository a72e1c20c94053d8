import type { z } from "zod";

// Just enough of zod 4's internal definitions to walk a schema by key: the env overrides need
// the leaf settings, the unknown-key messages need the keys an object allows.
interface Def {
  readonly type: string;
  readonly shape?: Readonly<Record<string, z.ZodType>>;
  readonly innerType?: z.ZodType;
  readonly in?: z.ZodType;
  readonly element?: z.ZodType;
  readonly valueType?: z.ZodType;
}

const def = (schema: z.ZodType): Def => schema._zod.def as unknown as Def;

const WRAPPERS = new Set(["default", "prefault", "optional", "nullable", "readonly", "catch"]);

/** The schema under defaults, optionals and transforms: what the input is checked against. */
export function unwrap(schema: z.ZodType): z.ZodType {
  let current = schema;
  for (;;) {
    const d = def(current);
    if (WRAPPERS.has(d.type) && d.innerType) current = d.innerType;
    else if (d.type === "pipe" && d.in) current = d.in;
    else return current;
  }
}

/** The schema of one key (object), index (array) or entry (record) of `schema`, if any. */
export function childSchema(schema: z.ZodType, segment: PropertyKey): z.ZodType | undefined {
  const d = def(unwrap(schema));
  // Own keys only: a config key such as "valueOf" must not find Object.prototype's method.
  if (d.type === "object")
    return d.shape && Object.hasOwn(d.shape, segment) ? d.shape[String(segment)] : undefined;
  if (d.type === "array") return d.element;
  if (d.type === "record") return d.valueType;
  return undefined;
}

/** The schema at a path of the input, if the path leads anywhere. */
export function schemaAt(schema: z.ZodType, path: readonly PropertyKey[]): z.ZodType | undefined {
  let current: z.ZodType | undefined = schema;
  for (const segment of path) current = current && childSchema(current, segment);
  return current;
}

/** The keys an object schema allows; empty for anything else. */
export function objectKeys(schema: z.ZodType): string[] {
  const d = def(unwrap(schema));
  return d.type === "object" && d.shape ? Object.keys(d.shape) : [];
}

/**
 * Every setting that holds one value (not a map, a list or a record), with its schema: these
 * are what an environment variable can set.
 */
export function leafSettings(
  schema: z.ZodType,
  prefix: string[] = [],
): { path: string[]; schema: z.ZodType }[] {
  const d = def(unwrap(schema));
  if (d.type === "object" && d.shape) {
    return Object.entries(d.shape).flatMap(([key, child]) => leafSettings(child, [...prefix, key]));
  }
  if (d.type === "array" || d.type === "record") return [];
  return [{ path: prefix, schema }];
}
