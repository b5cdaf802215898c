/**
 * The push side of the HTTP transport (`createHttpSync`'s `onSend`): outbox
 * changes to `POST /push` requests, and the server's answers to verdicts.
 *
 * - Each change is encoded to JSON once ({@linkcode encodeChanges}): a
 *   `DirtyRow` is the wire change as is, only blobs turn from bytes into
 *   base64, and only in tables that have blob columns.
 * - The encoded changes are cut into requests of about `maxPushBytes` UTF-8
 *   bytes ({@linkcode packByBytes}); a change larger than that goes alone. A
 *   request body is the encoded changes joined, so nothing is stringified
 *   twice.
 * - When the server still finds a request too large (413), it is sent again
 *   in halves; a single change it refuses is `rejected` with code
 *   `too_large`, alone: it moves to `_sync_rejected` and never holds back the
 *   changes behind it.
 * - Each answer is checked with the schema's `pushResponse` valibot schema
 *   (`protocol_schemas.ts`); a malformed one is a `server_error`. The
 *   sequence ranges it names as held are recorded for the next pulls
 *   (`held_ranges.ts`).
 *
 * @example
 * ```ts
 * const push = createPush({
 *   post: (body) => postJson(`${base}/push`, body, { fetch, timeout: 30_000 }),
 *   maxPushBytes: 4 * 1024 * 1024,
 *   held: createHeldRanges(),
 * });
 * const results = await push(await db.getDirtyRows(), db);
 * ```
 *
 * @module
 */

import * as v from "valibot";
import type { Database } from "./database.ts";
import { SyncError } from "./errors.ts";
import type { HeldRanges } from "./held_ranges.ts";
import type { DirtyRow } from "./outbox.ts";
import { PROTOCOL_VERSION, type PushResponse, type PushResult } from "./protocol.ts";
import { createProtocolSchemas, type ProtocolSchemas } from "./protocol_schemas.ts";
import type { Schema, TableDef } from "./schema.ts";
import { describeTables, type TableInfo } from "./table_info.ts";
import { blobColumnsOf, dataToWire } from "./wire.ts";

/** What {@linkcode createPush} needs. */
export interface PushOptions {
  /**
   * POSTs one push body (JSON text) and returns the answer's JSON: `postJson`
   * with the transport's URL, headers and timeout. A 413 must surface as a
   * `SyncError` with `details.status` 413.
   */
  readonly post: (body: string) => Promise<unknown>;
  /** About how many bytes one request carries. */
  readonly maxPushBytes: number;
  /** Where the held ranges of the answers go. */
  readonly held: HeldRanges;
}

/** Pushes changes of `db`; resolves to the server's verdict per change, in order. */
export type Push = (
  operations: readonly DirtyRow[],
  db: Database<Record<string, TableDef>>,
) => Promise<PushResult[]>;

/** One change and its JSON text, as it goes into a push body. */
export interface EncodedChange {
  /** The outbox entry. */
  readonly change: DirtyRow;
  /** Its wire JSON (blobs as base64). */
  readonly json: string;
}

/**
 * Creates the push side of the HTTP transport.
 *
 * @example
 * ```ts
 * const push = createPush({ post, maxPushBytes: 1 << 20, held: createHeldRanges() });
 * ```
 */
export function createPush(options: PushOptions): Push {
  const schemas = new WeakMap<Schema, ProtocolSchemas>();
  const schemasOf = (schema: Schema): ProtocolSchemas => {
    let found = schemas.get(schema);
    if (found === undefined) schemas.set(schema, found = createProtocolSchemas(schema));
    return found;
  };

  // Sends `part`; a 413 splits it in halves, down to a change refused alone.
  async function pushPart(
    db: Database<Record<string, TableDef>>,
    head: string,
    part: readonly EncodedChange[],
  ): Promise<PushResult[]> {
    let payload: unknown;
    try {
      payload = await options.post(`${head}${part.map((e) => e.json).join(",")}]}`);
    } catch (error) {
      if (!(error instanceof SyncError) || error.details.status !== 413) throw error;
      if (part.length === 1) return [tooLarge(part[0]!.change, error)];
      const half = Math.ceil(part.length / 2);
      return [
        ...await pushPart(db, head, part.slice(0, half)),
        ...await pushPart(db, head, part.slice(half)),
      ];
    }
    const response = checkPushResponse(schemasOf(db.schema), payload);
    if (response.held !== undefined) options.held.record(db, response.held);
    return [...response.results];
  }

  return async (operations, db) => {
    const head = pushHead(db);
    const encoded = encodeChanges(operations, describeTables(db.schema.tables));
    const results: PushResult[] = [];
    for (const part of packByBytes(encoded, options.maxPushBytes - head.length - 2)) {
      results.push(...await pushPart(db, head, part));
    }
    return results;
  };
}

/**
 * The JSON of each change as it goes on the wire: the `DirtyRow` itself,
 * with blobs as base64 in the tables that have blob columns.
 *
 * @example
 * ```ts
 * encodeChanges(await db.getDirtyRows(), describeTables(db.schema.tables));
 * ```
 */
export function encodeChanges(
  operations: readonly DirtyRow[],
  tables: ReadonlyMap<string, TableInfo>,
): EncodedChange[] {
  return operations.map((change) => {
    const info = tables.get(change.table);
    const wire = info === undefined || blobColumnsOf(info).length === 0
      ? change
      : { ...change, data: dataToWire(info, change.data) };
    return { change, json: JSON.stringify(wire) };
  });
}

/**
 * Cuts encoded changes into runs whose JSON, joined by commas, stays within
 * `budget` UTF-8 bytes; a change larger than the budget forms a run of its
 * own. Order is kept.
 *
 * @example
 * ```ts
 * packByBytes(encoded, 4 * 1024 * 1024).map((run) => run.length);
 * ```
 */
export function packByBytes(
  encoded: readonly EncodedChange[],
  budget: number,
): EncodedChange[][] {
  const parts: EncodedChange[][] = [];
  let part: EncodedChange[] = [];
  let bytes = 0;
  for (const item of encoded) {
    const size = utf8Length(item.json);
    if (part.length > 0 && bytes + size + 1 > budget) {
      parts.push(part);
      part = [];
      bytes = 0;
    }
    part.push(item);
    bytes += size + 1;
  }
  if (part.length > 0) parts.push(part);
  return parts;
}

/**
 * The length of `text` in UTF-8 bytes, counted without encoding it (a
 * surrogate pair is one 4-byte character).
 *
 * @example
 * ```ts
 * utf8Length("é€😀"); // 2 + 3 + 4 = 9
 * ```
 */
export function utf8Length(text: string): number {
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    bytes += code < 0x80 ? 1 : code < 0x800 ? 2 : code >= 0xd800 && code <= 0xdbff ? (i++, 4) : 3;
  }
  return bytes;
}

// The body of every push of `db` up to its changes: each request is this,
// the changes joined by commas, and `]}`.
function pushHead(db: Database<Record<string, TableDef>>): string {
  return `{"protocol":${PROTOCOL_VERSION},"nodeId":${JSON.stringify(db.nodeId)},` +
    `"schema":${JSON.stringify(db.schema.hash)},"changes":[`;
}

// The verdict on a change the server refused alone as too large.
function tooLarge(change: DirtyRow, error: SyncError): PushResult {
  return {
    table: change.table,
    id: change.id,
    status: "rejected",
    code: "too_large",
    message: `The change is too large for the server (${error.message})`,
  };
}

// The push answer, checked against the protocol; a malformed one is the server's fault.
function checkPushResponse(schemas: ProtocolSchemas, payload: unknown): PushResponse {
  const checked = v.safeParse(schemas.pushResponse, payload);
  if (!checked.success) {
    throw new SyncError(
      "server_error",
      `The push response is malformed: ${v.summarize(checked.issues)}`,
    );
  }
  return checked.output;
}
