/**
 * The valibot schemas of the wire protocol, derived from the table
 * declarations: the door of each end. The server checks every request with
 * them before anything is applied — a change naming an unknown column or
 * carrying a value of the wrong type is refused whole (400) — and the client
 * checks each response's envelope. What the schemas leave to each row (the
 * row id rule, well-formed strings, JSON depth, base64) is checked by
 * `normalize.ts`, so one bad value rejects its own row only.
 *
 * `./http` and `./server` export them; the types they produce are the wire
 * types of `protocol.ts`.
 *
 * @module
 */

import * as v from "valibot";
import { HLC_PATTERN, NODE_ID_PATTERN } from "./hlc.ts";
import {
  CURSOR_PATTERN,
  DEFAULT_MAX_CHANGES_PER_PUSH,
  DEFAULT_MAX_PULL_LIMIT,
  MAX_HELD_RANGES,
  MAX_PULL_WAIT_MS,
  type PullRequest,
  type PullResponse,
  type PushRequest,
  type PushResponse,
} from "./protocol.ts";
import type { ColumnKind, Schema, TableDef } from "./schema.ts";
import { describeTables, type TableInfo } from "./table_info.ts";
import { describeValue } from "./values.ts";

/**
 * A valibot schema whose output is `T` (`GenericSchema` of the `valibot`
 * package): pass it to `v.safeParse`. Named here, not re-exported: its
 * documentation is valibot's.
 *
 * @internal
 */
type Valibot<T> = v.GenericSchema<unknown, T>;

/**
 * A valibot issue (`BaseIssue` of the `valibot` package), as `safeParse`
 * reports it. Named here, not re-exported: its documentation is valibot's.
 *
 * @internal
 */
type ValibotIssue = v.BaseIssue<unknown>;

/** The valibot schemas of a schema's requests and responses. */
export interface ProtocolSchemas {
  /** `POST /push` body. */
  readonly pushRequest: Valibot<PushRequest>;
  /** `POST /pull` body. */
  readonly pullRequest: Valibot<PullRequest>;
  /** `POST /push` response. */
  readonly pushResponse: Valibot<PushResponse>;
  /** `POST /pull` response, rows included (the client checks only its envelope). */
  readonly pullResponse: Valibot<PullResponse>;
}

/** A pull response's envelope: pages whose rows are not checked yet. */
export interface PullEnvelope {
  /** Per table, a page. */
  readonly changes: Readonly<
    Record<string, {
      readonly rows: readonly unknown[];
      readonly cursor: string | null;
      readonly hasMore: boolean;
    }>
  >;
  /** The server's wall clock, ms since the epoch. */
  readonly serverTime: number;
}

/** Limits the schemas enforce. */
export interface ProtocolLimits {
  /**
   * Changes per push (default 1,000); `false` for none, where the count is
   * checked before the schema runs (the endpoint answers 413 without walking
   * the changes).
   */
  readonly maxChangesPerPush?: number | false;
  /** Rows per table per pull page (default 5,000). */
  readonly maxPullLimit?: number;
}

const HLC = v.pipe(
  v.string(),
  v.maxLength(100, "Expected an HLC version"),
  v.regex(HLC_PATTERN, "Expected an HLC version"),
);
// Row ids and values are typed here and checked row by row by `encodeChange`
// (`values.ts`): a bad one rejects its own change, not the whole push.
const ROW_ID = v.string();

const SEQUENCE = v.pipe(v.number(), v.safeInteger(), v.minValue(1));
const heldRanges = v.pipe(
  v.array(
    v.pipe(
      v.strictTuple([SEQUENCE, SEQUENCE]),
      v.check(([first, last]) => first <= last, "Expected [first, last] with first <= last"),
    ),
  ),
  v.maxLength(MAX_HELD_RANGES, `At most ${MAX_HELD_RANGES} held ranges`),
);

/** True for an object that is not an array (what JSON calls an object). */
function isJsonObject(input: unknown): input is Record<string, unknown> {
  return typeof input === "object" && input !== null && !Array.isArray(input);
}

/**
 * An object whose own keys must each be one of `entries` (all optional), each
 * value checked by its schema. Unlike valibot's `record` and `object` it
 * neither skips `__proto__`, `constructor` and `prototype` keys nor sees
 * inherited properties such as `toString`, so a table or column may have any
 * of those names.
 */
function ownEntries(
  entries: ReadonlyMap<string, v.GenericSchema>,
  unknownKey: string,
): v.GenericSchema<Record<string, unknown>> {
  return v.pipe(
    v.custom<Record<string, unknown>>(isJsonObject, "Expected an object"),
    v.rawCheck(({ dataset, addIssue }) => {
      if (!dataset.typed) return;
      const input = dataset.value;
      for (const key of Object.keys(input)) {
        const path = [{ type: "object" as const, origin: "value" as const, input, key }];
        const schema = entries.get(key);
        if (schema === undefined) {
          addIssue({ message: `${unknownKey}: ${describeValue(key)}`, path: path as never });
          continue;
        }
        const result = v.safeParse(schema, input[key]);
        if (!result.success) {
          addIssue({ message: result.issues[0].message, path: path as never });
        }
      }
    }),
  ) as v.GenericSchema<Record<string, unknown>>;
}

function valueSchema(kind: ColumnKind): v.GenericSchema {
  switch (kind) {
    case "text":
      return v.string();
    case "integer":
      return v.pipe(v.number(), v.safeInteger());
    case "real":
      return v.pipe(v.number(), v.finite());
    case "boolean":
      return v.boolean();
    case "blob":
      return v.string(); // base64, decoded (and checked) row by row
    case "json":
      return v.unknown();
  }
}

/**
 * Derives the valibot schemas of the protocol from a schema's synced tables.
 *
 * @example
 * ```ts
 * const { pushRequest } = createProtocolSchemas(schema);
 * const result = v.safeParse(pushRequest, await request.json());
 * ```
 */
export function createProtocolSchemas(
  schema: Schema,
  limits: ProtocolLimits = {},
): ProtocolSchemas {
  const maxLimit = limits.maxPullLimit ?? DEFAULT_MAX_PULL_LIMIT;
  const synced = [...describeTables(schema.tables as Record<string, TableDef>).values()]
    .filter((info) => info.synced);
  const cursor = v.nullable(
    v.pipe(v.string(), v.regex(CURSOR_PATTERN, "Expected a cursor from this server")),
  );
  const changes = v.array(changeSchema(synced));
  const maxChanges = limits.maxChangesPerPush ?? DEFAULT_MAX_CHANGES_PER_PUSH;
  return {
    pushRequest: v.strictObject({
      protocol: v.number(),
      nodeId: NODE_ID,
      schema: v.string(),
      changes: maxChanges === false
        ? changes
        : v.pipe(changes, v.maxLength(maxChanges, `At most ${maxChanges} changes per push`)),
    }) as unknown as v.GenericSchema<unknown, PushRequest>,
    pullRequest: v.strictObject({
      protocol: v.number(),
      schema: v.string(),
      cursors: ownEntries(
        new Map(synced.map((info) => [info.name, cursor])),
        "Unknown synced table",
      ),
      limit: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(maxLimit))),
      nodeId: v.optional(NODE_ID),
      held: v.optional(heldRanges),
      wait: v.optional(
        v.pipe(v.number(), v.safeInteger(), v.minValue(0), v.maxValue(MAX_PULL_WAIT_MS)),
      ),
    }) as unknown as v.GenericSchema<unknown, PullRequest>,
    pushResponse: PUSH_RESPONSE,
    pullResponse: pullResponseSchema(synced),
  };
}

const NODE_ID = v.pipe(v.string(), v.maxLength(64), v.regex(NODE_ID_PATTERN, "Expected a node id"));

const PUSH_RESPONSE = v.object({
  results: v.array(v.object({
    table: v.string(),
    id: v.string(),
    status: v.picklist(["applied", "stale", "rejected"]),
    code: v.optional(v.string()),
    message: v.optional(v.string()),
  })),
  held: v.optional(heldRanges),
  serverTime: v.number(),
}) as unknown as v.GenericSchema<unknown, PushResponse>;

// The values of a table's declared columns, each optional, typed by its kind.
function dataSchema(info: TableInfo): v.GenericSchema<Record<string, unknown>> {
  const entries = new Map<string, v.GenericSchema>();
  for (const column of info.columns) {
    const value = valueSchema(column.kind);
    entries.set(column.name, v.optional(column.notNull ? value : v.nullable(value)));
  }
  return ownEntries(entries, `Unknown column of ${info.name}`);
}

function columnVersionsSchema(info: TableInfo) {
  const names = [...info.columns.map((c) => c.name), "is_deleted"];
  return v.optional(
    ownEntries(new Map(names.map((column) => [column, HLC])), `Unknown column of ${info.name}`),
  );
}

// One pushed change: a strict object per synced table, told apart by `table`.
function changeSchema(synced: readonly TableInfo[]): v.GenericSchema {
  return v.variant(
    "table",
    synced.map((info) =>
      v.strictObject({
        table: v.literal(info.name),
        id: ROW_ID,
        version: HLC,
        deleted: v.boolean(),
        createdAt: v.optional(HLC),
        data: dataSchema(info),
        columnVersions: columnVersionsSchema(info),
      })
    ),
    `Unknown synced table: expected one of ${synced.map((t) => t.name).join(", ")}`,
  ) as unknown as v.GenericSchema;
}

// A whole pull response, rows included: the specification of what a server
// answers (the protocol fuzzer checks every page with it). The client checks
// only the envelope and leaves the rows to `applyServerChanges`.
function pullResponseSchema(synced: readonly TableInfo[]): v.GenericSchema<unknown, PullResponse> {
  const pullRow = (info: TableInfo) =>
    v.object({
      id: ROW_ID,
      version: HLC,
      createdAt: HLC,
      deleted: v.boolean(),
      data: dataSchema(info),
      columnVersions: columnVersionsSchema(info),
    });
  return v.object({
    changes: v.strictObject(Object.fromEntries(synced.map((info) => [
      info.name,
      v.optional(v.object({
        rows: v.array(pullRow(info)),
        cursor: v.nullable(v.string()),
        hasMore: v.boolean(),
      })),
    ]))),
    serverTime: v.number(),
  }) as unknown as v.GenericSchema<unknown, PullResponse>;
}

/**
 * Valibot issues as `{ path, message }` pairs for an error response: at most
 * 20, each path and message cut to 200 characters (a key comes from the
 * client and may be megabytes long).
 */
export function describeIssues(
  issues: readonly ValibotIssue[],
): { path: string; message: string }[] {
  const short = (text: string) => (text.length > 200 ? `${text.slice(0, 200)}…` : text);
  return issues.slice(0, 20).map((issue) => ({
    path: short(v.getDotPath(issue) ?? ""),
    message: short(issue.message),
  }));
}

/**
 * The valibot schema of a `POST /pull` response's envelope, whatever the
 * schema: `changes` holds, per table, a page `{ rows, cursor, hasMore }`
 * (`rows` an array, `cursor` a string or null, `hasMore` a boolean), and
 * `serverTime` is a number. The client checks this once per response and
 * leaves the rows' contents to `applyServerChanges`, which validates every
 * row (the client's row boundary) and refuses a table that is not synced.
 *
 * Table names are read as own keys, all of them: unlike valibot's `record`,
 * `constructor` or `prototype` (valid table names) are not skipped. A page
 * passes through uncopied.
 *
 * @example
 * ```ts
 * const checked = v.safeParse(createPullEnvelopeSchema(), await response.json());
 * if (checked.success) await db.applyServerChanges(checked.output.changes);
 * ```
 */
export function createPullEnvelopeSchema(): Valibot<PullEnvelope> {
  const page = v.object({
    rows: v.array(v.unknown()),
    cursor: v.nullable(v.string()),
    hasMore: v.boolean(),
  });
  const pages = v.pipe(
    v.custom<Record<string, unknown>>(isJsonObject, "Expected an object of pages by table"),
    v.rawCheck(({ dataset, addIssue }) => {
      if (!dataset.typed) return;
      const input = dataset.value;
      for (const key of Object.keys(input)) {
        const result = v.safeParse(page, input[key]);
        if (result.success) continue;
        const at = { type: "object" as const, origin: "value" as const, input, key };
        for (const issue of result.issues) {
          addIssue({ message: issue.message, path: [at, ...issue.path ?? []] as never });
        }
      }
    }),
  );
  return v.object({ changes: pages, serverTime: v.number() }) as unknown as ReturnType<
    typeof createPullEnvelopeSchema
  >;
}
