/**
 * The live channel of a sync manager: while the manager is started, one
 * listen call is open at a time (`onListen`: with `createHttpSync({ live:
 * true })`, a held `POST /pull`), and when it says the server has something
 * new, the manager syncs at once — the page the listen call brought serves
 * that sync's first fetch, so nothing is asked for twice.
 *
 * A listen call that fails (the connection dropped, the server restarts),
 * or a sync it set off that fails, is tried again after the manager's
 * backoff (`backoff.ts`), which grows with each failure in a row and starts
 * over after a success; the interval sync goes on meanwhile, so nothing
 * waits for the channel. Stopping aborts the open call.
 *
 * @example
 * ```ts
 * const loop = startLiveLoop({
 *   listen: (signal) => http.onListen(db, signal),
 *   sync: () => manager.syncNow(),
 *   retryDelay: (failures) => backoffDelay(failures, options),
 *   clock: systemClock,
 * });
 * await loop.stop();
 * ```
 *
 * @module
 */

import type { SyncClock } from "./sync_clock.ts";

/** What {@linkcode startLiveLoop} needs. */
export interface LiveLoopOptions {
  /**
   * One listen call: resolves `true` when the server has something new (the
   * sync that follows gets it), `false` when the call ended with nothing;
   * rejects when it failed. Aborted by `signal` on stop.
   */
  readonly listen: (signal: AbortSignal) => Promise<boolean>;
  /** Syncs now (its failures are the manager's to report). */
  readonly sync: () => Promise<void>;
  /** The wait after `failures` failed listen calls in a row, ms. */
  readonly retryDelay: (failures: number) => number;
  /** Timers. */
  readonly clock: SyncClock;
}

/** A running live loop. */
export interface LiveLoop {
  /** Aborts the open listen call and resolves once the loop ended. */
  stop(): Promise<void>;
}

/**
 * Starts listening; runs until `stop()`.
 *
 * @example
 * ```ts
 * const loop = startLiveLoop({ listen, sync, retryDelay: () => 1_000, clock: systemClock });
 * ```
 */
export function startLiveLoop(options: LiveLoopOptions): LiveLoop {
  const controller = new AbortController();
  const { signal } = controller;
  const pause = (ms: number) =>
    new Promise<void>((resolve) => {
      const done = () => {
        options.clock.clearTimeout(timer);
        signal.removeEventListener("abort", done);
        resolve();
      };
      const timer = options.clock.setTimeout(done, ms);
      signal.addEventListener("abort", done, { once: true });
    });

  const run = async () => {
    let failures = 0;
    while (!signal.aborted) {
      try {
        // A sync that fails counts as a failure too: the next listen call
        // would answer at once with the same changes.
        if (await options.listen(signal) && !signal.aborted) await options.sync();
        failures = 0;
      } catch {
        if (signal.aborted) return;
        await pause(options.retryDelay(++failures));
      }
    }
  };
  const running = run();
  return {
    stop: async () => {
      controller.abort();
      await running;
    },
  };
}
