/**
 * The clock a sync manager reads and sets its timers with: wall time for
 * `lastSyncAt` / `nextSyncAt`, and timers for the interval, the backoff and
 * the coalesced recount of the outbox.
 *
 * It is injected (the manager's `clock` option) so that a test can move time
 * on by hand and see a backoff of a minute happen at once, instead of
 * sleeping for real; {@linkcode systemClock}, over `globalThis`, is the
 * default.
 *
 * @example
 * ```ts
 * const handle = systemClock.setTimeout(() => console.log("later"), 1_000);
 * systemClock.clearTimeout(handle);
 * console.log(systemClock.now()); // ms since the epoch
 * ```
 *
 * @module
 */

/** Wall time and timers, as `Date.now`, `setTimeout` and `clearTimeout` give them. */
export interface SyncClock {
  /** The time, ms since the epoch. */
  now(): number;
  /** Calls `fn` once, `ms` from now; returns a handle for `clearTimeout`. */
  setTimeout(fn: () => void, ms: number): unknown;
  /** Cancels a timer `setTimeout` returned (a timer already run is ignored). */
  clearTimeout(handle: unknown): void;
}

/** The real clock: `Date.now` and the timers of `globalThis` (any runtime, a browser too). */
export const systemClock: SyncClock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
  clearTimeout: (handle) => {
    // The handle is the one `globalThis.setTimeout` returned: its type differs per runtime.
    globalThis.clearTimeout(handle as ReturnType<typeof globalThis.setTimeout>);
  },
};
