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
 * A `409 schema_mismatch` is explained: the transport reads the server's
 * `GET <url>/schema` once (with the same headers, within `timeout` and at
 * most 10 s; refusals meanwhile share that one request) and throws a
 * `SyncError("schema_mismatch")` that lists the tables and columns that
 * differ and says how to fix it (`--schema` on the server, or an updated
 * client), with the differences in `details.differences`. When the schema
 * cannot be read, the error says so and keeps the server's own message.
 *
 * Pushes are cut to `maxPushBytes`. When the server still finds a push too
 * large (413), it is sent again in halves; a single change the server refuses
 * as too large is `rejected` with code `too_large`, alone: it moves to
 * `_sync_rejected` and never holds back the changes behind it.
 *
 * The pair is composed of pieces with one job each (as Replicache composes
 * its pusher over its fetch call), and this file only wires them up:
 * `http_post.ts` sends one JSON request (a POST, or the GET of `/schema`)
 * and maps failures to `SyncError`s, `http_push.ts` encodes, packs and
 * pushes changes, `http_pull.ts` asks for pages (one ahead), checks and
 * applies them, `held_ranges.ts` keeps what the pushes name as held for the
 * pulls that follow, and `schema_description.ts` says what a schema
 * mismatch consists of.
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
import { createHeldRanges } from "./held_ranges.ts";
import { getJson, postJson } from "./http_post.ts";
import { createPull } from "./http_pull.ts";
import { createPush } from "./http_push.ts";
import type { DirtyRow } from "./outbox.ts";
import type { PushResult } from "./protocol.ts";
import type { TableDef } from "./schema.ts";
import { explainSchemaMismatch } from "./schema_description.ts";

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
  /**
   * Keep one held pull open while the manager is started (`onListen`), so
   * that what other devices write arrives within milliseconds instead of
   * at the next `syncInterval`. It costs one open request per client, at
   * all times; the server answers it when a change this client may pull
   * commits, or after `liveWait`, and it is then asked again.
   */
  live?: boolean;
  /**
   * How long (ms) a held pull asks the server to wait (default 20,000; the
   * server cuts it to its `maxPullWait`). Keep it under the idle timeout of
   * any proxy between client and server, which would otherwise cut the
   * request (then the manager backs off and asks again).
   */
  liveWait?: number;
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
   * With `live: true`: holds a pull open until the server has something new
   * for `db` (`true`: the manager syncs, and that sync's first page is the
   * one this call brought) or the wait ends (`false`).
   */
  onListen?: (db: Database<Record<string, TableDef>>, signal: AbortSignal) => Promise<boolean>;
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
  const headersNow = async (): Promise<Record<string, string>> =>
    typeof options.headers === "function" ? await options.headers() : options.headers ?? {};
  // What a push records, the next pulls name: one store for both sides.
  const held = createHeldRanges();
  const push = createPush({
    // Each push request asks for the headers anew (a token may have been renewed).
    post: async (body) =>
      postJson(`${base}/push`, body, { fetch: fetchImpl, headers: await headersNow(), timeout }),
    maxPushBytes: options.maxPushBytes ?? 4 * 1024 * 1024,
    held,
  });
  const liveWait = options.liveWait ?? DEFAULT_LIVE_WAIT;
  const pull = createPull({
    post: (request, headers) =>
      postJson(`${base}/pull`, request, { fetch: fetchImpl, headers, timeout }),
    // A held pull's timeout covers its wait.
    postHeld: (request, headers, signal) =>
      postJson(`${base}/pull`, request, {
        fetch: fetchImpl,
        headers,
        timeout: timeout + liveWait,
        signal,
      }),
    headers: headersNow,
    held,
    pullLimit: options.pullLimit,
    wait: liveWait,
  });
  const explained = explainingMismatches(async () =>
    getJson(`${base}/schema`, {
      fetch: fetchImpl,
      headers: await headersNow(),
      timeout: Math.min(timeout, SCHEMA_TIMEOUT),
    })
  );
  const sync: HttpSync = {
    sendConcurrency: 2,
    onSend: (operations, db) => explained(db, () => push(operations, db)),
    onFetch: (db, tableTimestamps) => explained(db, () => pull.pull(db, tableTimestamps)),
  };
  if (options.live === true) {
    sync.onListen = (db, signal) => explained(db, () => pull.listen(db, signal));
  }
  return sync;
}

/** Default of {@linkcode HttpSyncOptions.liveWait}, ms. */
const DEFAULT_LIVE_WAIT = 20_000;

/** The longest wait for `GET /schema` after a mismatch, ms: the explanation must not hold the sync up. */
const SCHEMA_TIMEOUT = 10_000;

// Runs a push or a pull; a 409 `schema_mismatch` it meets is rethrown
// explained by the server's schema, read once for the refusals that meet it
// together (two pushes in flight, say) and anew for a later one: the server
// may have been redeployed meanwhile.
function explainingMismatches(
  readSchema: () => Promise<unknown>,
): <R>(db: Database<Record<string, TableDef>>, run: () => Promise<R>) => Promise<R> {
  let reading: Promise<unknown> | undefined;
  const readOnce = (): Promise<unknown> =>
    reading ??= readSchema().finally(() => {
      reading = undefined;
    });
  return async (db, run) => {
    try {
      return await run();
    } catch (error) {
      if (
        !(error instanceof SyncError) || error.code !== "schema_mismatch" ||
        error.details.status !== 409
      ) throw error;
      throw await explainSchemaMismatch(error, db.schema, readOnce);
    }
  };
}
