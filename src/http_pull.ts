/**
 * The pull side of the HTTP transport (`createHttpSync`'s `onFetch`): one
 * `POST /pull` page for the database's cursors, applied with
 * `db.applyServerChanges`.
 *
 * - The request names the cursors, the page limit, and the sequence ranges
 *   this replica holds from its own pushes (`held_ranges.ts`), so the server
 *   leaves those rows out.
 * - The answer's envelope is checked once, with the protocol's
 *   `createPullEnvelopeSchema()`: per table `{ rows, cursor, hasMore }`. The
 *   rows' contents are left to `db.applyServerChanges`, which validates every
 *   row (the client's row boundary); a malformed envelope is a
 *   `server_error`.
 * - Blobs are turned from base64 into bytes, once, and only in tables that
 *   have blob columns.
 * - While a page that has more behind it is merged, the next one is already
 *   asked for, so the download and the local writes overlap. That page serves
 *   only the call that continues from exactly the cursors and headers
 *   (credentials) it was asked with; any other call asks anew, and a failure
 *   of the page asked ahead is met by the call that asks again, not reported
 *   from the call that asked ahead.
 *
 * @example
 * ```ts
 * const pull = createPull({
 *   post: (request, headers) => postJson(`${base}/pull`, request, { fetch, headers, timeout }),
 *   headers: async () => ({ authorization: `Bearer ${token}` }),
 *   held: createHeldRanges(),
 * });
 * const { hasMore } = await pull(db, await db.getCursors());
 * ```
 *
 * @module
 */

import * as v from "valibot";
import type { Database } from "./database.ts";
import { SyncError } from "./errors.ts";
import type { HeldRanges } from "./held_ranges.ts";
import type { ServerChanges } from "./merge.ts";
import { PROTOCOL_VERSION, type PullRequest } from "./protocol.ts";
import { createPullEnvelopeSchema } from "./protocol_schemas.ts";
import type { TableDef } from "./schema.ts";
import { describeTables, type TableInfo } from "./table_info.ts";
import { blobColumnsOf, dataFromWire } from "./wire.ts";

/** What {@linkcode createPull} needs. */
export interface PullOptions {
  /**
   * POSTs one pull request with these headers and returns the answer's JSON:
   * `postJson` with the transport's URL and timeout.
   */
  readonly post: (request: PullRequest, headers: Record<string, string>) => Promise<unknown>;
  /** The headers of the next request (asked once per call, for its page and the one ahead). */
  readonly headers: () => Promise<Record<string, string>>;
  /** The ranges this replica holds from its pushes, named in each request. */
  readonly held: HeldRanges;
  /** Rows per table per page (default: the server's). */
  readonly pullLimit?: number;
  /**
   * POSTs one held pull (`request.wait` set), abandoned when `signal`
   * aborts: `postJson` with a timeout that covers the wait.
   */
  readonly postHeld?: (
    request: PullRequest,
    headers: Record<string, string>,
    signal: AbortSignal,
  ) => Promise<unknown>;
  /** How long a held pull asks the server to wait, ms (default 20,000). */
  readonly wait?: number;
}

/** Pulls one page of every table in `tableTimestamps` and applies it; `{ hasMore }` asks for the next. */
export type Pull = (
  db: Database<Record<string, TableDef>>,
  tableTimestamps: Record<string, unknown>,
) => Promise<{ hasMore: boolean }>;

/**
 * One held pull from the database's stored cursors, `wait` ms at most:
 * resolves `true` when the server answered something new — rows, or cursors
 * that moved — which the next {@linkcode Pull} from those cursors merges
 * without asking again, and `false` when the wait ended with nothing.
 */
export type Listen = (
  db: Database<Record<string, TableDef>>,
  signal: AbortSignal,
) => Promise<boolean>;

/** The pull side of the transport: {@linkcode createPull}. */
export interface PullSide {
  /** Pulls a page and applies it. */
  readonly pull: Pull;
  /** Holds a pull until the server has something new (`wait` ms at most). */
  readonly listen: Listen;
}

type Envelope = v.InferOutput<ReturnType<typeof createPullEnvelopeSchema>>;

const envelope = createPullEnvelopeSchema();

/**
 * Creates the pull side of the HTTP transport.
 *
 * @example
 * ```ts
 * const pull = createPull({ post, headers: async () => ({}), held: createHeldRanges() });
 * ```
 */
export function createPull(options: PullOptions): PullSide {
  const ahead = createPageAhead();

  function requestOf(
    db: Database<Record<string, TableDef>>,
    cursors: Record<string, string | null>,
  ): PullRequest {
    const held = options.held.forPull(db, cursors);
    return {
      protocol: PROTOCOL_VERSION,
      schema: db.schema.hash,
      nodeId: db.nodeId,
      cursors,
      ...(options.pullLimit === undefined ? {} : { limit: options.pullLimit }),
      ...(held.length === 0 ? {} : { held }),
    };
  }
  const requestPage = (
    db: Database<Record<string, TableDef>>,
    cursors: Record<string, string | null>,
    headers: Record<string, string>,
  ): Promise<unknown> => options.post(requestOf(db, cursors), headers);

  const listen: Listen = async (db, signal) => {
    if (options.postHeld === undefined) throw new TypeError("This transport is not live");
    const cursors = cursorsOf(await db.getCursors());
    const headers = await options.headers();
    const request = { ...requestOf(db, cursors), wait: options.wait ?? DEFAULT_WAIT };
    const payload = await options.postHeld(request, headers, signal);
    const checked = checkEnvelope(payload);
    const news = Object.entries(checked.changes).some(([table, page]) =>
      page.rows.length > 0 || page.hasMore || page.cursor !== (cursors[table] ?? "0")
    );
    // The sync that follows starts from these cursors: the answer is its first page.
    if (news) ahead.put(db, cursors, headers, Promise.resolve(payload));
    return news;
  };

  const pull: Pull = async (db, tableTimestamps) => {
    const cursors = cursorsOf(tableTimestamps);
    const headers = await options.headers();
    const prefetched = ahead.take(db, cursors, headers);
    // A page asked ahead that failed is asked for again, here.
    const payload = (await prefetched?.catch(() => undefined)) ??
      await requestPage(db, cursors, headers);
    const page = readPage(describeTables(db.schema.tables), checkEnvelope(payload), cursors);
    if (page.hasMore) {
      // The next page travels while this one is merged: the cursors it
      // starts from are the ones this merge stores.
      ahead.put(db, page.next, headers, requestPage(db, page.next, headers));
    }
    await db.applyServerChanges(page.changes);
    return { hasMore: page.hasMore };
  };
  return { pull, listen };
}

// How long a held pull asks the server to wait, ms: under the idle timeouts
// proxies commonly have (30 s and more) and the server's default bound.
const DEFAULT_WAIT = 20_000;

/** The one page asked for ahead of the call that will use it. */
interface PageAhead {
  /** The page asked with exactly these cursors and headers for `db`, if any; the slot empties. */
  take(
    db: object,
    cursors: Record<string, string | null>,
    headers: Record<string, string>,
  ): Promise<unknown> | undefined;
  /** Keeps `response` for the call that comes with these cursors and headers. */
  put(
    db: object,
    cursors: Record<string, string | null>,
    headers: Record<string, string>,
    response: Promise<unknown>,
  ): void;
}

function createPageAhead(): PageAhead {
  let slot: { db: object; key: string; response: Promise<unknown> } | undefined;
  return {
    take(db, cursors, headers) {
      const found = slot?.db === db && slot.key === requestKey(cursors, headers)
        ? slot.response
        : undefined;
      slot = undefined;
      return found;
    },
    put(db, cursors, headers, response) {
      // A failure is not reported from here: the call that would use the
      // page asks again, and meets the failure itself if it persists.
      response.catch(() => undefined);
      slot = { db, key: requestKey(cursors, headers), response };
    },
  };
}

// The manager's stored cursors as the protocol's: text, or null for none.
function cursorsOf(tableTimestamps: Record<string, unknown>): Record<string, string | null> {
  const cursors: Record<string, string | null> = {};
  for (const [table, cursor] of Object.entries(tableTimestamps)) {
    cursors[table] = cursor === null || cursor === undefined ? null : String(cursor);
  }
  return cursors;
}

// Cursors and headers as one comparable string, whatever the order of keys.
function requestKey(
  cursors: Record<string, string | null>,
  headers: Record<string, string>,
): string {
  const sorted = (record: Record<string, unknown>) =>
    Object.entries(record).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return JSON.stringify([sorted(cursors), sorted(headers)]);
}

// The answer's envelope, checked; a malformed one is the server's fault.
function checkEnvelope(payload: unknown): Envelope {
  const checked = v.safeParse(envelope, payload);
  if (!checked.success) {
    throw new SyncError(
      "server_error",
      `The pull response is malformed: ${v.summarize(checked.issues)}`,
    );
  }
  return checked.output;
}

// The page as `applyServerChanges` takes it (blobs as bytes), the cursors it
// leads to, and whether any table has more.
function readPage(
  tables: ReadonlyMap<string, TableInfo>,
  response: Envelope,
  cursors: Record<string, string | null>,
): { changes: ServerChanges; next: Record<string, string | null>; hasMore: boolean } {
  const changes: Record<string, { rows: readonly unknown[]; cursor: string | null }> = {};
  const next = { ...cursors };
  let hasMore = false;
  for (const [table, page] of Object.entries(response.changes)) {
    const info = tables.get(table);
    const rows = info === undefined || blobColumnsOf(info).length === 0
      ? page.rows
      : rowsFromWire(info, table, page.rows);
    changes[table] = { rows, cursor: page.cursor };
    next[table] = page.cursor;
    hasMore ||= page.hasMore;
  }
  return { changes: changes as ServerChanges, next, hasMore };
}

// Rows with their blobs decoded from base64; a row the conversion cannot
// read (not an object, a blob that is not base64) makes the page malformed.
function rowsFromWire(info: TableInfo, table: string, rows: readonly unknown[]): unknown[] {
  try {
    return rows.map((row) => {
      const wire = row as { data?: Record<string, unknown> };
      return { ...wire, data: dataFromWire(info, wire.data ?? {}) };
    });
  } catch (cause) {
    throw new SyncError("server_error", `The pull response's page of ${table} is malformed`, {
      cause,
    });
  }
}
