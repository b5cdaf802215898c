/**
 * `ServerSyncManager`: keeps a local database in sync in the background, with
 * the `onFetch` / `onSend` pair of the declarative_sqlite seed (or the ready
 * pair of `createHttpSync`).
 *
 * A sync sends first — the outbox in bounded batches, oldest change first,
 * `sendConcurrency` batches in flight while the next is read — then fetches
 * until no page is left (at most `maxFetchPages` pages a sync; the next sync
 * goes on from the stored cursors). Only one sync runs at a time; a call
 * during a sync joins it. A failed sync is retried on its own with capped
 * exponential backoff and jitter, whether or not anything is written locally
 * meanwhile; a successful one schedules the next after `syncInterval`. A
 * local write while started is sent `sendDelay` (25 ms) after it, and writes
 * made while a sync runs go out together in the next one, `sendDelay` after
 * it: the interval is the safety net (`sendDelay: false` keeps to it alone).
 * With `onListen` (`createHttpSync({ live: true })`), one held pull stays open
 * while started, and what other devices write is merged as soon as the
 * server has it (`live_loop.ts`).
 *
 * `onSend` may return `true` (all accepted), `false` (retry later) or one
 * verdict per change: `applied` and `stale` clear the outbox entry,
 * `rejected` moves it to `_sync_rejected` and emits a `rejected` event — it is
 * never retried forever and never blocks the changes behind it.
 *
 * Status is observable: a `status` event (detail: {@linkcode SyncStatus}) on
 * every change of state, pending count or error, so an app can show
 * "3 changes waiting"; the events are typed ({@linkcode SyncManagerEventMap}).
 *
 * A failed sync leaves the state `offline` (the server cannot be reached) or
 * `error`, with the error in `lastError`; every `error` one also fires an
 * `error` event (detail: the error), so a failure that needs someone's
 * attention is never silent. Both are retried with backoff. So is a
 * `schema_mismatch` (client and server declare different schemas): during a
 * rolling deploy a client meets instances of the old and the new schema for
 * a while, and gives up on neither. A mismatch that persists is retried as
 * the capped backoff says (every 30–60 s with the default `maxRetryDelay`),
 * its `error` event firing each time; with `createHttpSync` its message
 * names the tables and columns that differ and how to fix it.
 *
 * The class is the status, the events and the lifecycle; the work is done by
 * pieces with one job each, composed here: `sync_scheduler.ts` decides when a
 * sync runs, `send_pipeline.ts` sends the outbox (`verdicts.ts` reads the
 * answers), `backoff.ts` resolves the options and the retry delays, and
 * `sync_clock.ts` is the injectable clock.
 *
 * @example
 * ```ts
 * const manager = new ServerSyncManager({
 *   database,
 *   syncInterval: 300_000,
 *   ...createHttpSync({ url: "https://example.com/sync" }),
 * });
 * manager.addEventListener("status", (e) => render(e.detail));
 * manager.start();
 * await manager.syncNow();
 * await manager.stop();
 * ```
 *
 * @module
 */

import { backoffDelay, type ResolvedManagerOptions, resolveManagerOptions } from "./backoff.ts";
import type { Database, DatabaseChange } from "./database.ts";
import { SyncError } from "./errors.ts";
import { type LiveLoop, startLiveLoop } from "./live_loop.ts";
import type { DirtyRow } from "./outbox.ts";
import type { RejectedRow } from "./rejected.ts";
import type { TableDef } from "./schema.ts";
import { type SendOutbox, sendOutbox } from "./send_pipeline.ts";
import type { SyncClock } from "./sync_clock.ts";
import { SyncScheduler } from "./sync_scheduler.ts";
import { rejectedRowsOf, type SendResult } from "./verdicts.ts";

export type { SendResult } from "./verdicts.ts";
export type { SyncClock } from "./sync_clock.ts";

/** What `onFetch` may return: `true` or `{ hasMore: true }` asks for another page. */
export type FetchResult = void | boolean | { readonly hasMore: boolean };

/** The states of a manager. */
export type SyncState = "idle" | "syncing" | "offline" | "error";

/** A snapshot of a manager's status. */
export interface SyncStatus {
  /** idle, syncing, offline (the server cannot be reached) or error. */
  readonly state: SyncState;
  /** Changes waiting in the outbox. */
  readonly pending: number;
  /** Changes the server refused (see `database.getRejectedRows()`). */
  readonly rejected: number;
  /** When the last sync succeeded (ms since the epoch). */
  readonly lastSyncAt: number | undefined;
  /** The error of the last failed sync, cleared by a successful one. */
  readonly lastError: unknown;
  /** When the next attempt is due (ms since the epoch), while started. */
  readonly nextSyncAt: number | undefined;
}

/** What one successful sync did: the detail of a `synced` event is its status and this. */
export interface SyncReport {
  /** Changes sent. */
  readonly sent: number;
  /** Of those, applied by the server. */
  readonly applied: number;
  /** Stale: the server had newer (it comes back with the pull). */
  readonly stale: number;
  /** Refused by the server, now in `_sync_rejected`. */
  readonly rejected: number;
  /** Pages fetched. */
  readonly pages: number;
  /** Rows received per table, as `applyServerChanges` merged them. */
  readonly received: Readonly<Record<string, number>>;
}

/** The progress of a sync under way: the detail of a `progress` event. */
export interface SyncProgress {
  /** Changes sent so far. */
  readonly sent: number;
  /** Changes waiting when the sync began. */
  readonly pending: number;
  /** Pages fetched so far. */
  readonly pages: number;
}

/**
 * The events of a {@linkcode ServerSyncManager}, for typed listeners:
 * `manager.addEventListener("status", (e) => e.detail.pending)`.
 */
export interface SyncManagerEventMap {
  /** The status changed (state, counts, error or next due time). */
  status: CustomEvent<SyncStatus>;
  /** A sync succeeded; the detail is the status it left and what it did (`report`). */
  synced: CustomEvent<SyncStatus & { readonly report: SyncReport }>;
  /** A sync made progress: a batch answered or a page fetched. */
  progress: CustomEvent<SyncProgress>;
  /** The server refused changes of one batch; the detail is their `_sync_rejected` entries. */
  rejected: CustomEvent<RejectedRow[]>;
  /**
   * A sync failed, other than for being offline (state `error`); the detail is
   * the error, as in `status.lastError` (a `SyncError` from `createHttpSync`).
   */
  error: CustomEvent<unknown>;
}

/** Options of {@linkcode ServerSyncManager}. */
export interface ServerSyncManagerOptions<T extends Record<string, TableDef>> {
  /** The local database. */
  database: Database<T>;
  /** Time between successful syncs, ms (default 300,000). */
  syncInterval?: number;
  /**
   * Time from a local write to the sync that sends it, ms (default 25):
   * writes leave at once, and a burst of them goes together. `false` sends
   * only every `syncInterval` (and on `syncNow()`).
   */
  sendDelay?: number | false;
  /** Gets the server's changes and applies them with `db.applyServerChanges`. */
  onFetch: (db: Database<T>, tableTimestamps: Record<string, unknown>) => Promise<FetchResult>;
  /** Sends outbox changes; see {@linkcode SendResult}. */
  onSend: (operations: DirtyRow[], db: Database<T>) => Promise<SendResult>;
  /**
   * Waits for the server to have something new (`createHttpSync({ live:
   * true })` brings it: a held pull): resolves `true` when it has, and the
   * manager syncs at once; `false` when the wait ended with nothing. While
   * started, the manager keeps one call open; a failing call is tried again
   * with the retry backoff. Aborted by `signal` on `stop()`.
   */
  onListen?: (db: Database<T>, signal: AbortSignal) => Promise<boolean>;
  /** Changes per `onSend` call (default 500). */
  batchSize?: number;
  /**
   * Batches sent before the first of them is answered (default 1: `onSend`
   * is called again only once its previous call resolved). With more, the
   * next batch waits at the server while the client handles an answer, and
   * the network's round trip is paid once per window instead of once per
   * batch; answers are still handled in order. `createHttpSync` brings 2.
   */
  sendConcurrency?: number;
  /** First retry delay after a failure, ms (default 1,000). */
  retryDelay?: number;
  /** Largest retry delay, ms (default 60,000). */
  maxRetryDelay?: number;
  /** Most pages fetched in one sync (default 10,000). */
  maxFetchPages?: number;
  /** Random numbers in [0, 1) for the jitter (injectable for tests). */
  random?: () => number;
  /**
   * Wall time and timers (default `systemClock`, the real ones); for tests, which
   * move time on by hand instead of sleeping through a backoff or an interval.
   */
  clock?: SyncClock;
}

/**
 * Keeps a local database in sync: push the outbox, then pull, in the
 * background and on demand.
 */
export class ServerSyncManager<T extends Record<string, TableDef> = Record<string, TableDef>>
  extends EventTarget {
  // The options as given: onFetch and onSend are called as their methods, as
  // they always were (a `this` inside them is the options object).
  readonly #given: ServerSyncManagerOptions<T>;
  readonly #options: ResolvedManagerOptions;
  readonly #db: Database<T>;
  readonly #outbox: SendOutbox;
  readonly #scheduler: SyncScheduler;
  #status: SyncStatus = {
    state: "idle",
    pending: 0,
    rejected: 0,
    lastSyncAt: undefined,
    lastError: undefined,
    nextSyncAt: undefined,
  };
  // The counts a sync took as it ended, for its report (see #report).
  #counted: { pending?: number; rejected?: number } = {};
  #unsubscribe: (() => void) | undefined;
  #live: LiveLoop | undefined;
  #recounting = false;
  readonly #stopCounting: () => void;
  // Resolved by the first successful sync since the manager was created.
  readonly #firstSync: Promise<void>;
  #firstSyncDone: () => void = () => {};
  // Whether the last sync's fetch ended with no page left.
  #fetchedAll = false;
  // What the sync going on did so far.
  #done: ReportSoFar = emptyReport();
  #waiting = 0;

  /** Creates a stopped manager; call `start()` to sync in the background. */
  constructor(options: ServerSyncManagerOptions<T>) {
    super();
    if (typeof options.onFetch !== "function" || typeof options.onSend !== "function") {
      throw new TypeError("ServerSyncManager needs onFetch and onSend functions");
    }
    this.#options = resolveManagerOptions(options);
    this.#given = options;
    this.#db = options.database;
    this.#outbox = outboxOf(this.#db);
    this.#firstSync = new Promise<void>((resolve) => (this.#firstSyncDone = resolve));
    this.#scheduler = new SyncScheduler({
      run: () => this.#sync(),
      onSettled: (error, failed) => this.#report(error, failed),
      onScheduled: (at) => this.#update({ nextSyncAt: at }),
      clock: this.#options.clock,
      interval: this.#options.syncInterval,
      retryDelay: (failures) => backoffDelay(failures, this.#options),
      writeDelay: this.#options.sendDelay === false ? undefined : this.#options.sendDelay,
    });
    // A syncNow() after a write must not just join a sync that began before it,
    // and a write while started is sent `sendDelay` later. Only the replica's
    // own writes count: not merges, nor changes set aside as rejected.
    this.#stopCounting = this.#db.onChange((change) => {
      if (isLocalWrite(change)) this.#scheduler.noteWrite();
    });
  }

  /** The current status. */
  get status(): SyncStatus {
    return this.#status;
  }

  /** True between `start()` and `stop()`. */
  get started(): boolean {
    return this.#scheduler.started;
  }

  /** Syncs now, then every `syncInterval`; failures retry with backoff. */
  start(): void {
    if (this.#scheduler.started) return;
    // Local writes change the pending count between syncs: keep it current.
    this.#unsubscribe = this.#db.onChange((change) => {
      if (change.source === "local") this.#recount();
    });
    this.#scheduler.start();
    const { onListen } = this.#given;
    if (onListen !== undefined) {
      this.#live = startLiveLoop({
        listen: (signal) => onListen.call(this.#given, this.#db, signal),
        sync: () => this.syncNow(),
        retryDelay: (failures) => backoffDelay(failures, this.#options),
        clock: this.#options.clock,
      });
    }
  }

  /** Stops the background syncs (and the live channel) and waits for a running sync to finish. */
  async stop(): Promise<void> {
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
    const live = this.#live;
    this.#live = undefined;
    await Promise.all([live?.stop(), this.#scheduler.stop()]);
  }

  /** Stops the manager for good (`await using manager = new ServerSyncManager(…)`). */
  async [Symbol.asyncDispose](): Promise<void> {
    this.#stopCounting();
    await this.stop();
  }

  /**
   * Syncs now: sends the outbox, then fetches; resolves once everything
   * written before the call was sent. A call during a sync joins it when
   * nothing was written since that sync started; otherwise it waits for it
   * and runs one more (calls meanwhile share that one).
   * @throws the sync's error (a background retry is scheduled if started).
   */
  syncNow(): Promise<void> {
    return this.#scheduler.syncNow();
  }

  /**
   * Resolves once a first full sync (send, then fetch until no page is left)
   * has succeeded since the manager was created — at once if one already has.
   * Failed attempts do not end the wait: it lasts until one succeeds (start
   * the manager, or call `syncNow`, for attempts to be made).
   *
   * @example
   * ```ts
   * manager.start();
   * await manager.waitForFirstSync(); // the server's rows are here: show the list
   * ```
   */
  waitForFirstSync(): Promise<void> {
    return this.#firstSync;
  }

  /** Listens to `status`, `synced`, `progress`, `rejected` or `error`, with the event's detail typed. */
  override addEventListener<K extends keyof SyncManagerEventMap>(
    type: K,
    listener:
      | ((event: SyncManagerEventMap[K]) => void)
      | { handleEvent(event: SyncManagerEventMap[K]): void }
      | null,
    options?: boolean | AddEventListenerOptions,
  ): void;
  /** Listens to any event, as on any `EventTarget`. */
  override addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | AddEventListenerOptions,
  ): void;
  override addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | AddEventListenerOptions,
  ): void {
    super.addEventListener(type, listener, options);
  }

  /** Removes a listener of `status`, `synced`, `progress`, `rejected` or `error`. */
  override removeEventListener<K extends keyof SyncManagerEventMap>(
    type: K,
    listener:
      | ((event: SyncManagerEventMap[K]) => void)
      | { handleEvent(event: SyncManagerEventMap[K]): void }
      | null,
    options?: boolean | EventListenerOptions,
  ): void;
  /** Removes a listener of any event, as on any `EventTarget`. */
  override removeEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | EventListenerOptions,
  ): void;
  override removeEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | EventListenerOptions,
  ): void {
    super.removeEventListener(type, listener, options);
  }

  // One sync, as the scheduler runs it. It ends by taking the counts; the
  // scheduler then has them reported (#report) and schedules the next sync
  // in the same turn, so whoever awaits the report sees when that is due.
  async #sync(): Promise<void> {
    this.#update({ state: "syncing", nextSyncAt: undefined });
    try {
      this.#fetchedAll = false;
      this.#done = emptyReport();
      await this.#send();
      this.#fetchedAll = await this.#fetch();
      this.#counted = await this.#counts();
    } catch (error) {
      this.#counted = await this.#counts().catch(() => ({}));
      throw error;
    }
  }

  // The outcome of a sync: its status, and "synced" after a success.
  #report(error: unknown, failed: boolean): void {
    const counted = this.#counted;
    this.#counted = {};
    if (failed) {
      const offline = error instanceof SyncError && error.code === "offline";
      this.#update({ state: offline ? "offline" : "error", lastError: error, ...counted });
      if (!offline) this.dispatchEvent(new CustomEvent("error", { detail: error }));
      return;
    }
    this.#update({
      state: "idle",
      lastSyncAt: this.#options.clock.now(),
      lastError: undefined,
      ...counted,
    });
    if (this.#fetchedAll) this.#firstSyncDone();
    const detail = {
      ...this.#status,
      report: { ...this.#done, received: { ...this.#done.received } },
    };
    this.dispatchEvent(new CustomEvent("synced", { detail }));
  }

  async #send(): Promise<void> {
    const waiting = await this.#db.countDirtyRows();
    this.#waiting = waiting;
    this.#update({ pending: waiting });
    await sendOutbox({
      outbox: this.#outbox,
      send: (batch: DirtyRow[]) => this.#given.onSend(batch, this.#db),
      batchSize: this.#options.batchSize,
      concurrency: this.#options.sendConcurrency,
      waiting,
      onRejected: (rows) => {
        this.dispatchEvent(new CustomEvent<RejectedRow[]>("rejected", { detail: rows }));
      },
      // Counted exactly once the sync ends; meanwhile, what each batch settled.
      onSettled: ({ sent, acknowledged, stale, rejected }) => {
        const report = this.#done;
        report.sent += sent;
        report.applied += acknowledged - stale;
        report.stale += stale;
        report.rejected += rejected;
        this.#update({
          pending: Math.max(0, this.#status.pending - acknowledged - rejected),
          rejected: this.#status.rejected + rejected,
        });
        this.#progress();
      },
    });
  }

  // Fetches pages until none is left, or `maxFetchPages` of them: whether
  // the server had no page left when it ended.
  async #fetch(): Promise<boolean> {
    // What the pages merged, as the database tells it.
    const stopCounting = this.#db.onChange(({ source, received }) => {
      if (source !== "remote" || received === undefined) return;
      const counts = this.#done.received;
      for (const [table, rows] of Object.entries(received)) {
        counts[table] = (counts[table] ?? 0) + rows;
      }
    });
    try {
      return await this.#fetchPages();
    } finally {
      stopCounting();
    }
  }

  async #fetchPages(): Promise<boolean> {
    for (let page = 0; page < this.#options.maxFetchPages; page++) {
      const result = await this.#given.onFetch(this.#db, await this.#db.getCursors());
      this.#done.pages++;
      this.#progress();
      const more = result === true ||
        (typeof result === "object" && result !== null && result.hasMore === true);
      if (!more) return true;
    }
    return false;
  }

  async #counts(): Promise<{ pending: number; rejected: number }> {
    const [pending, rejected] = await Promise.all([
      this.#db.countDirtyRows(),
      this.#db.countRejectedRows(),
    ]);
    return { pending, rejected };
  }

  #progress(): void {
    const { sent, pages } = this.#done;
    const detail: SyncProgress = { sent, pending: this.#waiting, pages };
    this.dispatchEvent(new CustomEvent<SyncProgress>("progress", { detail }));
  }

  // Counts the outbox once for a burst of writes.
  #recount(): void {
    if (this.#recounting) return;
    this.#recounting = true;
    this.#options.clock.setTimeout(() => {
      this.#recounting = false;
      if (this.#scheduler.running) return; // the sync counts when it ends
      this.#db.countDirtyRows().then(
        (pending) => this.#update({ pending }),
        () => undefined,
      );
    }, 0);
  }

  #update(change: Partial<SyncStatus>): void {
    const next = { ...this.#status, ...change };
    const same = (Object.keys(next) as (keyof SyncStatus)[]).every((key) =>
      Object.is(next[key], this.#status[key])
    );
    if (same) return;
    this.#status = next;
    this.dispatchEvent(new CustomEvent<SyncStatus>("status", { detail: next }));
  }
}

// The outbox of a database as the send pipeline sees it: batches read one
// after another, each acknowledging its own rows.
function outboxOf<T extends Record<string, TableDef>>(db: Database<T>): SendOutbox {
  return {
    read: (limit, after) => db.getOutboxBatch({ limit, after }),
    acknowledge: (completions) => db.completeBatches(completions),
    reject: async (rejections) => {
      await db.rejectDirtyRows(rejections);
      return rejectedRowsOf(await db.getRejectedRows(), rejections);
    },
  };
}

// A change of the replica's own rows, which the outbox then holds.
function isLocalWrite(change: DatabaseChange): boolean {
  return change.source === "local" && change.tables.some((table) => table !== "_sync_rejected");
}

// A report as the sync going on adds to it.
interface ReportSoFar {
  sent: number;
  applied: number;
  stale: number;
  rejected: number;
  pages: number;
  received: Record<string, number>;
}

function emptyReport(): ReportSoFar {
  return { sent: 0, applied: 0, stale: 0, rejected: 0, pages: 0, received: {} };
}
