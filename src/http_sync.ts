/**
 * `createHttpSync`: the ready `{ onFetch, onSend }` pair for the sync
 * server's `POST /push` and `POST /pull`, over `fetch`, so most apps write no
 * API client at all.
 *
 * Network failures become `SyncError("offline")` (the manager shows
 * "offline" and retries), error statuses become `unauthorized`,
 * `protocol_mismatch`, `schema_mismatch` or `server_error` with the server's
 * code and message. Every request has a timeout.
 *
 * The sequence ranges a push response names as held by the pusher are kept
 * (in memory, per database) and named in the next pulls, so the server does
 * not send a replica's own rows back to it. A restarted process, or a
 * database file restored from an older copy, has none of them, and gets its
 * rows back.
 *
 * Pushes are cut to `maxPushBytes`. When the server still finds a push too
 * large (413), it is sent again in halves; a single change the server refuses
 * as too large is `rejected` with code `too_large`, alone: it moves to
 * `_sync_rejected` and never holds back the changes behind it.
 *
 * @example
 * ```ts
 * const manager = new ServerSyncManager({
 *   database,
 *   ...createHttpSync({ url: "https://example.com/sync", headers: () => ({ authorization: `Bearer ${token}` }) }),
 * });
 * ```
 *
 * @module
 */

import type { Database } from "./database.ts";
import { SyncError } from "./errors.ts";
import type { ServerChanges } from "./merge.ts";
import type { DirtyRow } from "./outbox.ts";
import * as v from "valibot";
import {
  createProtocolSchemas,
  type ErrorResponse,
  type HeldRange,
  MAX_HELD_RANGES,
  PROTOCOL_VERSION,
  type ProtocolSchemas,
  type PullRequest,
  type PullResponse,
  type PushResult,
} from "./protocol.ts";
import type { TableDef } from "./schema.ts";
import { describeTables, type TableInfo } from "./table_info.ts";
import { blobColumnsOf, dataFromWire, dataToWire } from "./wire.ts";

/** Options of {@linkcode createHttpSync}. */
export interface HttpSyncOptions {
  /** The endpoint's base URL (`POST <url>/push`, `POST <url>/pull`). */
  url: string | URL;
  /** Extra headers (e.g. authorization), or a function returning them for each request. */
  headers?:
    | Record<string, string>
    | (() => Record<string, string> | Promise<Record<string, string>>);
  /** The fetch to use (default `globalThis.fetch`). */
  fetch?: typeof fetch;
  /** Rows per table per pull page (default: the server's default). */
  pullLimit?: number;
  /** Request timeout, ms (default 30,000). */
  timeout?: number;
  /**
   * About how many bytes one push request carries (default 4 MiB, half the
   * server's default body limit): a batch is sent in as many requests as it
   * takes. A change larger than that goes alone.
   */
  maxPushBytes?: number;
}

/** The transport pair for `ServerSyncManager`. */
export interface HttpSync {
  /** Pulls one page of every synced table and applies it; `{ hasMore }` asks for the next. */
  onFetch: (
    db: Database<Record<string, TableDef>>,
    tableTimestamps: Record<string, unknown>,
  ) => Promise<{ hasMore: boolean }>;
  /** Pushes changes; returns the server's verdict per change. */
  onSend: (operations: DirtyRow[], db: Database<Record<string, TableDef>>) => Promise<PushResult[]>;
  /**
   * 2: pushes may overlap (each is one request, and the server applies any
   * order the same way), so a manager given this pair keeps two batches in
   * flight.
   */
  sendConcurrency: number;
}

/**
 * Creates the HTTP transport for a sync server created by `createSyncServer`.
 *
 * While `onFetch` merges a page that has more behind it, it already asks for
 * the next one, so the download and the local writes overlap; the call that
 * continues from that page's cursors, with the same headers, gets it. Pushes
 * may overlap as well (`sendConcurrency: 2` in the returned pair).
 */
export function createHttpSync(options: HttpSyncOptions): HttpSync {
  const base = String(options.url).replace(/\/+$/, "");
  const fetchImpl = options.fetch ?? globalThis.fetch.bind(globalThis);
  const timeout = options.timeout ?? 30_000;
  const infos = new WeakMap<object, Map<string, TableInfo>>();
  const protocolSchemas = new WeakMap<object, ProtocolSchemas>();
  const schemasOf = (db: Database<Record<string, TableDef>>) => {
    let schemas = protocolSchemas.get(db.schema);
    if (schemas === undefined) {
      protocolSchemas.set(db.schema, schemas = createProtocolSchemas(db.schema));
    }
    return schemas;
  };
  const tablesOf = (db: Database<Record<string, TableDef>>) => {
    let tables = infos.get(db.schema);
    if (tables === undefined) infos.set(db.schema, tables = describeTables(db.schema.tables));
    return tables;
  };

  const headersNow = async (): Promise<Record<string, string>> =>
    typeof options.headers === "function" ? await options.headers() : options.headers ?? {};

  async function post<T>(
    path: string,
    body: unknown,
    headers?: Record<string, string>,
  ): Promise<T> {
    const extra = headers ?? await headersNow();
    let response: Response;
    try {
      response = await fetchImpl(`${base}${path}`, {
        method: "POST",
        headers: { "content-type": "application/json", ...extra },
        body: typeof body === "string" ? body : JSON.stringify(body),
        signal: AbortSignal.timeout(timeout),
      });
    } catch (cause) {
      throw new SyncError("offline", `Cannot reach ${base}${path}: ${(cause as Error)?.message}`, {
        cause,
      });
    }
    let payload: unknown;
    try {
      payload = await response.json();
    } catch (cause) {
      if (response.ok) {
        throw new SyncError("server_error", `${base}${path} answered with a non-JSON body`, {
          cause,
          details: { status: response.status },
        });
      }
    }
    if (response.ok) return payload as T;
    const error = (payload as Partial<ErrorResponse> | undefined)?.error;
    const message = `${base}${path} answered ${response.status}${
      error ? `: ${error.code}: ${error.message}` : ""
    }`;
    const details = { status: response.status, error };
    if (response.status === 401 || response.status === 403) {
      throw new SyncError("unauthorized", message, { details });
    }
    if (response.status === 409 && error?.code === "schema_mismatch") {
      throw new SyncError("schema_mismatch", message, { details });
    }
    if (response.status === 409) throw new SyncError("protocol_mismatch", message, { details });
    throw new SyncError("server_error", message, { details });
  }

  const maxPushBytes = options.maxPushBytes ?? 4 * 1024 * 1024;
  const heldBy = new WeakMap<object, HeldRange[]>();

  // Pushes `part`; a 413 splits it in halves, down to a change refused alone.
  async function pushPart(
    db: Database<Record<string, TableDef>>,
    head: string,
    part: readonly EncodedChange[],
  ): Promise<PushResult[]> {
    let response: unknown;
    try {
      response = await post<unknown>("/push", `${head}${part.map((e) => e.json).join(",")}]}`);
    } catch (error) {
      if (!(error instanceof SyncError) || error.details.status !== 413) throw error;
      if (part.length === 1) {
        const { change } = part[0]!;
        return [{
          table: change.table,
          id: change.id,
          status: "rejected",
          code: "too_large",
          message: `The change is too large for the server (${error.message})`,
        }];
      }
      const half = Math.ceil(part.length / 2);
      return [
        ...await pushPart(db, head, part.slice(0, half)),
        ...await pushPart(db, head, part.slice(half)),
      ];
    }
    const checked = v.safeParse(schemasOf(db).pushResponse, response);
    if (!checked.success) {
      throw new SyncError(
        "server_error",
        `The push response is malformed: ${v.summarize(checked.issues)}`,
      );
    }
    if (checked.output.held !== undefined) {
      heldBy.set(db, mergeRanges(heldBy.get(db) ?? [], checked.output.held));
    }
    return [...checked.output.results];
  }

  // One page asked for ahead of the call that will use it (see onFetch).
  let ahead: { db: object; key: string; response: Promise<PullResponse> } | undefined;

  function pullPage(
    db: Database<Record<string, TableDef>>,
    cursors: Record<string, string | null>,
    headers: Record<string, string>,
  ): Promise<PullResponse> {
    // Ranges every cursor has passed are of no more use.
    let floor = Infinity;
    for (const cursor of Object.values(cursors)) floor = Math.min(floor, Number(cursor ?? 0));
    const held = (heldBy.get(db) ?? []).filter(([, last]) => last > floor);
    heldBy.set(db, held);
    const request: PullRequest = {
      protocol: PROTOCOL_VERSION,
      schema: db.schema.hash,
      nodeId: db.nodeId,
      cursors,
      ...(options.pullLimit === undefined ? {} : { limit: options.pullLimit }),
      ...(held.length === 0 ? {} : { held }),
    };
    return post<PullResponse>("/pull", request, headers);
  }

  return {
    sendConcurrency: 2,
    async onSend(operations, db) {
      const tables = tablesOf(db);
      const head = `{"protocol":${PROTOCOL_VERSION},"nodeId":${JSON.stringify(db.nodeId)},` +
        `"schema":${JSON.stringify(db.schema.hash)},"changes":[`;
      // A DirtyRow is the push change; only blobs need converting (to base64).
      const encoded = operations.map((change) => {
        const info = tables.get(change.table);
        const wire = info === undefined || blobColumnsOf(info).length === 0
          ? change
          : { ...change, data: dataToWire(info, change.data) };
        return { change, json: JSON.stringify(wire) };
      });
      const results: PushResult[] = [];
      for (const part of packByBytes(encoded, maxPushBytes - head.length - 2)) {
        results.push(...await pushPart(db, head, part));
      }
      return results;
    },

    async onFetch(db, tableTimestamps) {
      const tables = tablesOf(db);
      const cursors: Record<string, string | null> = {};
      for (const [table, cursor] of Object.entries(tableTimestamps)) {
        cursors[table] = cursor === null || cursor === undefined ? null : String(cursor);
      }
      // The page asked for ahead serves only the call that comes with exactly
      // the cursors and headers (credentials) it was asked with; anything
      // else asks anew.
      const headers = await headersNow();
      const prefetched = ahead?.db === db && ahead.key === requestKey(cursors, headers)
        ? ahead.response
        : undefined;
      ahead = undefined;
      const response = (await prefetched?.catch(() => undefined)) ??
        await pullPage(db, cursors, headers);
      if (typeof response?.changes !== "object" || response.changes === null) {
        throw new SyncError("server_error", "The pull response has no changes");
      }
      const changes: Record<string, { rows: unknown[]; cursor: string | null }> = {};
      const next = { ...cursors };
      let hasMore = false;
      for (const [table, page] of Object.entries(response.changes)) {
        if (typeof page !== "object" || page === null || !Array.isArray(page.rows)) {
          throw new SyncError("server_error", `The pull response's page of ${table} has no rows`);
        }
        const info = tables.get(table);
        let rows: unknown[] = page.rows as unknown[];
        if (info !== undefined && blobColumnsOf(info).length > 0) {
          try {
            rows = page.rows.map((row) => ({ ...row, data: dataFromWire(info, row.data ?? {}) }));
          } catch (cause) {
            throw new SyncError(
              "server_error",
              `The pull response's page of ${table} is malformed`,
              {
                cause,
              },
            );
          }
        }
        changes[table] = { rows, cursor: page.cursor };
        next[table] = page.cursor;
        hasMore ||= page.hasMore === true;
      }
      if (hasMore) {
        // The next page travels while this one is merged: the cursors it
        // starts from are the ones this merge stores.
        const response = pullPage(db, next, headers);
        // A failure is not reported from here: the call that would use the
        // page asks again, and meets the failure itself if it persists.
        response.catch(() => undefined);
        ahead = { db, key: requestKey(next, headers), response };
      }
      await db.applyServerChanges(changes as unknown as ServerChanges);
      return { hasMore };
    },
  };
}

// The union of two range lists, touching ranges joined, at most
// MAX_HELD_RANGES of them: the newest are kept (an older one forgotten only
// means its rows are sent once more).
function mergeRanges(
  ranges: readonly HeldRange[],
  more: readonly HeldRange[],
): HeldRange[] {
  const sorted = [...ranges, ...more].sort((a, b) => a[0] - b[0]);
  const merged: [number, number][] = [];
  for (const [first, last] of sorted) {
    const top = merged.at(-1);
    if (top !== undefined && first <= top[1] + 1) top[1] = Math.max(top[1], last);
    else merged.push([first, last]);
  }
  return merged.slice(-MAX_HELD_RANGES);
}

interface EncodedChange {
  readonly change: DirtyRow;
  readonly json: string;
}

// Cuts changes into runs whose JSON stays within `budget` UTF-8 bytes (a
// change larger than the budget forms a run of its own).
function packByBytes(encoded: readonly EncodedChange[], budget: number): EncodedChange[][] {
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

function utf8Length(text: string): number {
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    bytes += code < 0x80 ? 1 : code < 0x800 ? 2 : code >= 0xd800 && code <= 0xdbff ? (i++, 4) : 3;
  }
  return bytes;
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
