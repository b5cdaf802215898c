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
 * The valibot schemas that check these shapes at each end are derived from
 * the table declarations in `protocol_schemas.ts`.
 *
 * @module
 */

import type { DirtyRow } from "./outbox.ts";
import type { RejectionCode, WireErrorCode } from "./wire_errors.ts";

export {
  ERROR_STATUS,
  type RejectionCode,
  type WireErrorCode,
  type WireErrorStatus,
} from "./wire_errors.ts";

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
  readonly code?: RejectionCode;
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
  /**
   * How long (ms) the server may hold a pull that has nothing new: it
   * answers as soon as a change the asker may pull commits, or with the
   * empty page when `wait` elapses. The server bounds it by its own limit
   * (`maxPullWait`); at most {@linkcode MAX_PULL_WAIT_MS}. Without it (or 0)
   * the pull is answered at once.
   */
  readonly wait?: number;
}

/** The largest `wait` a pull request may name, ms (a server holds it for at most its own limit). */
export const MAX_PULL_WAIT_MS = 600_000;

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
    /** A stable code; its HTTP status is `ERROR_STATUS[code]`. */
    readonly code: WireErrorCode;
    /** For humans. */
    readonly message: string;
    /** Validation issues, for `malformed`. */
    readonly issues?: readonly { readonly path: string; readonly message: string }[];
  };
}

/** Default changes per push. */
export const DEFAULT_MAX_CHANGES_PER_PUSH = 1_000;
/** Default upper bound of a pull page. */
export const DEFAULT_MAX_PULL_LIMIT = 5_000;

/** What a pull cursor from this server looks like: a sequence number, as decimal text. */
export const CURSOR_PATTERN: RegExp = /^\d{1,15}$/;
