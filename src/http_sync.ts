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
 * The pair is composed of pieces with one job each (as Replicache composes
 * its pusher over its fetch call), and this file only wires them up:
 * `http_post.ts` sends one JSON POST and maps failures to `SyncError`s,
 * `http_push.ts` encodes, packs and pushes changes, `http_pull.ts` asks for
 * pages (one ahead), checks and applies them, and `held_ranges.ts` keeps what
 * the pushes name as held for the pulls that follow.
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
import { createHeldRanges } from "./held_ranges.ts";
import { postJson } from "./http_post.ts";
import { createPull } from "./http_pull.ts";
import { createPush } from "./http_push.ts";
import type { DirtyRow } from "./outbox.ts";
import type { PushResult } from "./protocol.ts";
import type { TableDef } from "./schema.ts";

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
  const headersNow = async (): Promise<Record<string, string>> =>
    typeof options.headers === "function" ? await options.headers() : options.headers ?? {};
  // What a push records, the next pulls name: one store for both sides.
  const held = createHeldRanges();
  return {
    sendConcurrency: 2,
    onSend: createPush({
      // Each push request asks for the headers anew (a token may have been renewed).
      post: async (body) =>
        postJson(`${base}/push`, body, { fetch: fetchImpl, headers: await headersNow(), timeout }),
      maxPushBytes: options.maxPushBytes ?? 4 * 1024 * 1024,
      held,
    }),
    onFetch: createPull({
      post: (request, headers) =>
        postJson(`${base}/pull`, request, { fetch: fetchImpl, headers, timeout }),
      headers: headersNow,
      held,
      pullLimit: options.pullLimit,
    }),
  };
}
