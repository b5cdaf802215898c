/**
 * The push/pull wire protocol (JSON over HTTP, versioned), shared by the
 * client transport and the sync server.
 *
 * `POST <base>/push` — {@linkcode PushRequest} → {@linkcode PushResponse}: a
 * verdict per row. `applied` and `stale` (the server already had newer; it
 * comes back on pull) both clear the outbox entry; `rejected` moves it to
 * `_sync_rejected`. Pushing the same batch twice is harmless.
 *
 * `POST <base>/pull` — {@linkcode PullRequest} → {@linkcode PullResponse}: per
 * table, the rows changed after the client's cursor, at most `limit` of them,
 * the next cursor and whether more remain. Cursors are opaque to the client.
 *
 * Errors are `{ error: { code, message, issues? } }` with a 4xx status for bad
 * input. Values travel as JSON; blob columns as base64 strings (`wire.ts`).
 *
 * {@linkcode createProtocolSchemas} derives valibot schemas from the table
 * declarations, so a change naming an unknown column or carrying a value of
 * the wrong type is refused at the door.
 *
 * @module
 */

import * as v from "valibot";
import { HLC_PATTERN, NODE_ID_PATTERN } from "./hlc.ts";
import type { DirtyRow } from "./outbox.ts";
import type { ColumnKind, Schema, TableDef } from "./schema.ts";
import { describeTables } from "./table_info.ts";
import { describeValue } from "./values.ts";

/** The version of the wire protocol; both ends send it and refuse a mismatch (409). */
export const PROTOCOL_VERSION = 1;

/** One change in a push: an outbox `DirtyRow`, with blobs as base64. */
export type PushChange = DirtyRow;

/** Body of `POST /push`. */
export interface PushRequest {
  /** {@linkcode PROTOCOL_VERSION}. */
  readonly protocol: number;
  /** The sending replica's node id. */
  readonly nodeId: string;
  /** The sender's schema hash. */
  readonly schema: string;
  /** The changes, oldest first. */
  readonly changes: readonly PushChange[];
}

/** The verdict on one pushed change. */
export interface PushResult {
  /** Table name. */
  readonly table: string;
  /** The row's `system_id`. */
  readonly id: string;
  /** `applied`, `stale` (the server has newer) or `rejected` (see `code`). */
  readonly status: "applied" | "stale" | "rejected";
  /** Why a change was rejected: a stable code. */
  readonly code?: string;
  /** Why a change was rejected, for humans. */
  readonly message?: string;
}

/**
 * A run of the server's change sequence, `[first, last]`: rows holding one
 * of these numbers hold exactly what one push wrote.
 */
export type HeldRange = readonly [first: number, last: number];

/** Most {@linkcode HeldRange}s a pull may name. */
export const MAX_HELD_RANGES = 64;

/** Response of `POST /push`. */
export interface PushResponse {
  /** One verdict per change, in request order. */
  readonly results: readonly PushResult[];
  /**
   * The sequence numbers the applied changes were given, as ranges: the
   * pusher holds those rows as the server now does, and may name the ranges
   * in its pulls (`PullRequest.held`) so they are not sent back to it.
   */
  readonly held?: readonly HeldRange[];
  /** The server's wall clock, ms since the epoch. */
  readonly serverTime: number;
}

/** Body of `POST /pull`. */
export interface PullRequest {
  /** {@linkcode PROTOCOL_VERSION}. */
  readonly protocol: number;
  /** The client's schema hash. */
  readonly schema: string;
  /** Per table, the cursor of the last pull (`null` for the first); tables left out are not pulled. */
  readonly cursors: Readonly<Record<string, string | null>>;
  /** Rows per table per page. */
  readonly limit?: number;
  /**
   * The asking replica's node id, for logs. It leaves nothing out of a page:
   * a version's node id proves nothing about who wrote it, and a replica
   * restored from an older copy of its file no longer holds what it wrote.
   */
  readonly nodeId?: string;
  /**
   * Ranges from this replica's own push responses: rows of row-LWW tables
   * still holding one of these numbers are what it pushed, so they are left
   * out of its pages (the cursor still moves past them). At most
   * {@linkcode MAX_HELD_RANGES}. The server leaves out only what the asker
   * says it holds, so a false claim only costs the asker.
   */
  readonly held?: readonly HeldRange[];
}

/** One row in a pull response. */
export interface PullRow {
  /** The row's `system_id`. */
  readonly id: string;
  /** HLC of the row's last change. */
  readonly version: string;
  /** HLC of the row's creation. */
  readonly createdAt: string;
  /** True for a tombstone. */
  readonly deleted: boolean;
  /** Values of the declared columns. */
  readonly data: Record<string, unknown>;
  /** Per-column versions (`lww: "column"` tables). */
  readonly columnVersions?: Record<string, string>;
}

/** One table's page in a pull response. */
export interface PullTableChanges {
  /** Rows changed after the cursor, in server order. */
  readonly rows: readonly PullRow[];
  /** The cursor to send next time. */
  readonly cursor: string | null;
  /** True when more rows wait after this page. */
  readonly hasMore: boolean;
}

/** Response of `POST /pull`. */
export interface PullResponse {
  /** Per requested table, one page. */
  readonly changes: Readonly<Record<string, PullTableChanges>>;
  /** The server's wall clock, ms since the epoch. */
  readonly serverTime: number;
}

/** Body of every error response. */
export interface ErrorResponse {
  /** What went wrong. */
  readonly error: {
    /** A stable code (`malformed`, `unauthorized`, `protocol_mismatch`, `schema_mismatch`, `too_large` …). */
    readonly code: string;
    /** For humans. */
    readonly message: string;
    /** Validation issues, for `malformed`. */
    readonly issues?: readonly { readonly path: string; readonly message: string }[];
  };
}

/** The valibot schemas of a schema's requests and responses. */
export interface ProtocolSchemas {
  /** `POST /push` body. */
  readonly pushRequest: v.GenericSchema<unknown, PushRequest>;
  /** `POST /pull` body. */
  readonly pullRequest: v.GenericSchema<unknown, PullRequest>;
  /** `POST /push` response. */
  readonly pushResponse: v.GenericSchema<unknown, PushResponse>;
  /** `POST /pull` response. */
  readonly pullResponse: v.GenericSchema<unknown, PullResponse>;
}

/** Limits the schemas enforce. */
export interface ProtocolLimits {
  /** Changes per push (default 1,000). */
  readonly maxChangesPerPush?: number;
  /** Rows per table per pull page (default 5,000). */
  readonly maxPullLimit?: number;
}

/** Default changes per push. */
export const DEFAULT_MAX_CHANGES_PER_PUSH = 1_000;
/** Default upper bound of a pull page. */
export const DEFAULT_MAX_PULL_LIMIT = 5_000;

const HLC = v.pipe(
  v.string(),
  v.maxLength(100, "Expected an HLC version"),
  v.regex(HLC_PATTERN, "Expected an HLC version"),
);
// Row ids and values are typed here and checked row by row in `normalizeRow`
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
  const maxChanges = limits.maxChangesPerPush ?? DEFAULT_MAX_CHANGES_PER_PUSH;
  const maxLimit = limits.maxPullLimit ?? DEFAULT_MAX_PULL_LIMIT;
  const synced = [...describeTables(schema.tables as Record<string, TableDef>).values()].filter((
    info,
  ) => info.synced);

  const dataOf = (name: string) => {
    const info = synced.find((t) => t.name === name)!;
    const entries = new Map<string, v.GenericSchema>();
    for (const column of info.columns) {
      const value = valueSchema(column.kind);
      entries.set(column.name, v.optional(column.notNull ? value : v.nullable(value)));
    }
    return ownEntries(entries, `Unknown column of ${name}`);
  };
  const columnVersions = (name: string) => {
    const info = synced.find((t) => t.name === name)!;
    const names = [...info.columns.map((c) => c.name), "is_deleted"];
    return v.optional(
      ownEntries(new Map(names.map((column) => [column, HLC])), `Unknown column of ${name}`),
    );
  };

  const change = v.variant(
    "table",
    synced.map((info) =>
      v.strictObject({
        table: v.literal(info.name),
        id: ROW_ID,
        version: HLC,
        deleted: v.boolean(),
        createdAt: v.optional(HLC),
        data: dataOf(info.name),
        columnVersions: columnVersions(info.name),
      })
    ),
    `Unknown synced table: expected one of ${synced.map((t) => t.name).join(", ")}`,
  );
  const pullRow = (name: string) =>
    v.object({
      id: ROW_ID,
      version: HLC,
      createdAt: HLC,
      deleted: v.boolean(),
      data: dataOf(name),
      columnVersions: columnVersions(name),
    });
  const cursor = v.nullable(
    v.pipe(v.string(), v.regex(/^\d{1,15}$/, "Expected a cursor from this server")),
  );

  return {
    pushRequest: v.strictObject({
      protocol: v.number(),
      nodeId: v.pipe(v.string(), v.maxLength(64), v.regex(NODE_ID_PATTERN, "Expected a node id")),
      schema: v.string(),
      changes: v.pipe(
        v.array(change),
        v.maxLength(maxChanges, `At most ${maxChanges} changes per push`),
      ),
    }) as unknown as v.GenericSchema<unknown, PushRequest>,
    pullRequest: v.strictObject({
      protocol: v.number(),
      schema: v.string(),
      cursors: ownEntries(
        new Map(synced.map((info) => [info.name, cursor])),
        "Unknown synced table",
      ),
      limit: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(maxLimit))),
      nodeId: v.optional(
        v.pipe(v.string(), v.maxLength(64), v.regex(NODE_ID_PATTERN, "Expected a node id")),
      ),
      held: v.optional(heldRanges),
    }) as unknown as v.GenericSchema<unknown, PullRequest>,
    pushResponse: v.object({
      results: v.array(v.object({
        table: v.string(),
        id: v.string(),
        status: v.picklist(["applied", "stale", "rejected"]),
        code: v.optional(v.string()),
        message: v.optional(v.string()),
      })),
      held: v.optional(heldRanges),
      serverTime: v.number(),
    }) as unknown as v.GenericSchema<unknown, PushResponse>,
    pullResponse: v.object({
      changes: v.strictObject(Object.fromEntries(synced.map((info) => [
        info.name,
        v.optional(v.object({
          rows: v.array(pullRow(info.name)),
          cursor: v.nullable(v.string()),
          hasMore: v.boolean(),
        })),
      ]))),
      serverTime: v.number(),
    }) as unknown as v.GenericSchema<unknown, PullResponse>,
  };
}

/**
 * Valibot issues as `{ path, message }` pairs for an error response: at most
 * 20, each key of a path cut to 64 characters (a key comes from the client
 * and may be megabytes long).
 */
export function describeIssues(
  issues: readonly v.BaseIssue<unknown>[],
): { path: string; message: string }[] {
  const short = (key: unknown) => {
    const text = String(key);
    return text.length > 64 ? `${text.slice(0, 64)}…` : text;
  };
  return issues.slice(0, 20).map((issue) => ({
    path: issue.path?.map((item) => short(item.key)).join(".") ?? "",
    message: issue.message.length > 200 ? `${issue.message.slice(0, 200)}…` : issue.message,
  }));
}
