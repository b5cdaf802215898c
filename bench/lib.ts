/**
 * Shared helpers of the benchmarks: the runtime they run on, temporary
 * directories, medians, timing, and Markdown tables. Runs unchanged on Node
 * (`--import tsx`), Deno and Bun.
 *
 * @module
 */

import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";

/** The JavaScript runtime running the benchmark. */
export interface RuntimeInfo {
  /** `node`, `deno` or `bun`. */
  readonly name: "node" | "deno" | "bun";
  /** The runtime's own version (not the Node compatibility version). */
  readonly version: string;
  /** A heading-ready label, e.g. `Deno 2.9.6 (linux x64)`. */
  readonly label: string;
}

/** Detects the runtime from `process.versions`, which all three fill in. */
export function runtimeInfo(): RuntimeInfo {
  const versions = process.versions as Record<string, string | undefined>;
  const platform = `${process.platform} ${process.arch}`;
  if (versions.deno !== undefined) {
    return { name: "deno", version: versions.deno, label: `Deno ${versions.deno} (${platform})` };
  }
  if (versions.bun !== undefined) {
    return { name: "bun", version: versions.bun, label: `Bun ${versions.bun} (${platform})` };
  }
  const node = versions.node ?? "unknown";
  return { name: "node", version: node, label: `Node ${node} (${platform})` };
}

/**
 * The command line that runs `script` on the current runtime, the way the
 * benchmarks themselves are run: `node --import tsx`, `deno run -A`, `bun`.
 * With `exposeGc`, a script can call `globalThis.gc()` (Bun has `Bun.gc` anyway).
 */
export function runtimeCommand(
  script: string,
  options: { exposeGc?: boolean } = {},
): { command: string; args: string[] } {
  const gc = options.exposeGc === true;
  const { name } = runtimeInfo();
  const args = name === "node"
    ? [...(gc ? ["--expose-gc"] : []), "--import", "tsx", script]
    : name === "deno"
    ? ["run", "-A", ...(gc ? ["--v8-flags=--expose-gc"] : []), script]
    : [script];
  return { command: process.execPath, args };
}

/** A temporary directory; `cleanup` removes it with everything in it. */
export interface TempDir {
  /** Absolute path of the directory. */
  readonly path: string;
  /** Removes the directory. */
  cleanup(): void;
}

/** Creates a temporary directory under the OS temp dir. */
export function tempDir(prefix = "declarative-sync-bench-"): TempDir {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, cleanup: () => rmSync(path, { recursive: true, force: true }) };
}

/** Removes a SQLite database file and its journal/WAL companions. */
export function removeDatabaseFiles(path: string): void {
  for (const suffix of ["", "-journal", "-wal", "-shm"]) {
    rmSync(path + suffix, { force: true });
  }
}

/** The median of a non-empty list of numbers. */
export function median(values: readonly number[]): number {
  if (values.length === 0) throw new RangeError("median of an empty list");
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/**
 * One timed operation with an untimed setup and teardown, so that every
 * iteration starts from the same state (e.g. a fresh database).
 */
export interface Trial<S> {
  /** Prepares the state of one iteration (not timed). */
  setup(iteration: number): Promise<S>;
  /** The measured operation. */
  run(state: S): Promise<unknown>;
  /** Releases the state (not timed). */
  teardown(state: S): Promise<void>;
}

/** Runs one iteration of a trial and returns the time of `run`, in ms. */
export async function timeTrial<S>(trial: Trial<S>, iteration: number): Promise<number> {
  const state = await trial.setup(iteration);
  try {
    const start = performance.now();
    await trial.run(state);
    return performance.now() - start;
  } finally {
    await trial.teardown(state);
  }
}

/** Median times (ms) of two trials measured in the same run. */
export interface PairResult {
  /** Median of the library's trial. */
  readonly ours: number;
  /** Median of the raw baseline. */
  readonly raw: number;
  /** All samples of the library's trial. */
  readonly oursSamples: readonly number[];
  /** All samples of the raw baseline. */
  readonly rawSamples: readonly number[];
}

/**
 * Measures two trials: one untimed warm-up each, then `iterations` alternating
 * runs (ours, raw, raw, ours, …) so that drift of the machine (caches, CPU
 * frequency, disk) affects both alike. Returns the medians.
 */
export async function measurePair<A, B>(
  ours: Trial<A>,
  raw: Trial<B>,
  iterations: number,
): Promise<PairResult> {
  await timeTrial(ours, -1);
  await timeTrial(raw, -1);
  const oursSamples: number[] = [];
  const rawSamples: number[] = [];
  for (let i = 0; i < iterations; i++) {
    if (i % 2 === 0) {
      oursSamples.push(await timeTrial(ours, i));
      rawSamples.push(await timeTrial(raw, i));
    } else {
      rawSamples.push(await timeTrial(raw, i));
      oursSamples.push(await timeTrial(ours, i));
    }
  }
  return { ours: median(oursSamples), raw: median(rawSamples), oursSamples, rawSamples };
}

/** Formats a number with thousands separators and at most `digits` decimals. */
export function formatNumber(value: number, digits = 0): string {
  return value.toLocaleString("en-US", {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

/** A Markdown table; cells are escaped for `|`. */
export function markdownTable(
  headers: readonly string[],
  rows: readonly (readonly string[])[],
): string {
  const escape = (cell: string) => cell.replaceAll("|", "\\|");
  const line = (cells: readonly string[]) => `| ${cells.map(escape).join(" | ")} |`;
  return [
    line(headers),
    `|${headers.map(() => "---").join("|")}|`,
    ...rows.map(line),
  ].join("\n");
}

/** Writes a progress line to stderr, keeping stdout for the result table. */
export function progress(message: string): void {
  process.stderr.write(`${message}\n`);
}

/** Time spent in one method, and its number of calls. */
export interface MethodTime {
  /** Total time, ms. */
  ms: number;
  /** Calls made. */
  calls: number;
}

/**
 * A view of `target` whose (async) methods `names` add their time and calls to
 * the returned `times`; every other property passes through, bound to
 * `target`. For breaking a benchmark down without touching the library.
 */
export function timeMethods<T extends object, K extends keyof T & string>(
  target: T,
  names: readonly K[],
): { proxy: T; times: Record<K, MethodTime> } {
  const times = {} as Record<K, MethodTime>;
  const wrapped = new Map<PropertyKey, unknown>();
  for (const name of names) {
    const method = target[name];
    if (typeof method !== "function") throw new TypeError(`${name} is not a method`);
    const time = times[name] = { ms: 0, calls: 0 };
    wrapped.set(name, async (...args: unknown[]) => {
      const start = performance.now();
      try {
        return await (method as (...args: unknown[]) => unknown).apply(target, args);
      } finally {
        time.ms += performance.now() - start;
        time.calls += 1;
      }
    });
  }
  const proxy = new Proxy(target, {
    get(object, property) {
      if (wrapped.has(property)) return wrapped.get(property);
      const value: unknown = Reflect.get(object, property, object);
      return typeof value === "function" ? value.bind(object) : value;
    },
  });
  return { proxy, times };
}

/** Milliseconds, formatted for a table cell. */
export const formatMs = (value: number): string => `${formatNumber(value, 1)} ms`;
/** A rate per second of `count` things done in `millis` ms. */
export const formatRate = (count: number, millis: number): string =>
  formatNumber(count / (millis / 1000));
/** Megabytes, formatted for a table cell. */
export const formatMb = (value: number): string => `${formatNumber(value, 1)} MB`;

/** One row of a results table: benchmark, ours, raw, ratio, target, met. */
export type ResultRow = readonly [
  name: string,
  ours: string,
  raw: string,
  ratio: string,
  target: string,
  met: string,
];

/**
 * A checkout of commit `rev` of this repository in a temporary directory,
 * with this checkout's `node_modules` linked in: the "before" side of a
 * benchmark that compares code versions in one run. `remove` deletes it.
 */
export function checkout(rev: string): { readonly path: string; remove(): void } {
  const root = fileURLToPath(new URL("..", import.meta.url));
  const dir = tempDir("declarative-sync-before-");
  const path = join(dir.path, "tree");
  const git = (...args: string[]) => {
    const result = spawnSync("git", args, { cwd: root, encoding: "utf8" });
    if (result.status !== 0) throw new Error(`git ${args.join(" ")}: ${result.stderr}`);
  };
  git("worktree", "add", "--detach", path, rev);
  symlinkSync(join(root, "node_modules"), join(path, "node_modules"));
  return {
    path,
    remove: () => {
      git("worktree", "remove", "--force", path);
      dir.cleanup();
    },
  };
}
