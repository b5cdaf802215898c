/**
 * Soak run of the convergence-under-faults harness (`tests/faults.ts`): runs
 * schedules with new random seeds, in batches, until the time is up, and
 * prints `N schedules passed` with what they exercised. On a failure it
 * prints the seed, the shrunk schedule (replay it with
 * `FUZZ_SCHEDULE='<json>' node --import tsx --test tests/convergence_faults.test.ts`),
 * the violations and the trace, and exits 1.
 *
 * ```sh
 * npm run soak -- --minutes 10                  # on Node (tsx)
 * npm run soak -- --minutes 10 --runtime deno   # the same schedules on Deno (or bun)
 * node --import tsx scripts/soak.ts --minutes 5 --steps 60 --batch 10 --seed 42
 * ```
 *
 * Options: `--minutes` (default 1), `--steps` most steps a schedule (default
 * 40), `--batch` schedules a seed (default 5), `--seed` the first seed (then
 * one more each batch; default random), `--shrink-minutes` time to shrink a
 * failure (default 3), `--runtime node|deno|bun` (re-runs this script there).
 *
 * @module
 */

import { spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { checkConvergence, formatStats } from "../tests/faults.ts";

function option(args: readonly string[], name: string): string | undefined {
  const at = args.indexOf(`--${name}`);
  if (at >= 0) return args[at + 1];
  const inline = args.find((arg) => arg.startsWith(`--${name}=`));
  return inline?.slice(name.length + 3);
}

function number(args: readonly string[], name: string, fallback: number): number {
  const text = option(args, name);
  const value = text === undefined ? fallback : Number(text);
  if (!Number.isFinite(value) || value <= 0) {
    console.error(`--${name} must be a positive number, got ${text}`);
    process.exit(2);
  }
  return value;
}

function currentRuntime(): "deno" | "bun" | "node" {
  const g = globalThis as { Deno?: unknown; Bun?: unknown };
  return g.Deno !== undefined ? "deno" : g.Bun !== undefined ? "bun" : "node";
}

// Runs this script again on `runtime`, with the same options but --runtime.
function rerunOn(runtime: string, args: readonly string[]): never {
  const root = join(dirname(fileURLToPath(import.meta.url)), "..");
  const script = fileURLToPath(import.meta.url);
  const rest = args.filter((arg, i) =>
    arg !== "--runtime" && args[i - 1] !== "--runtime" && !arg.startsWith("--runtime=")
  );
  const commands: Record<string, [string, string[]]> = {
    node: ["node", ["--import", "tsx", script]],
    deno: [join(root, "node_modules", ".bin", "deno"), ["run", "-A", script]],
    bun: [join(root, "node_modules", ".bin", "bun"), [script]],
  };
  const command = commands[runtime];
  if (command === undefined) {
    console.error(`Unknown runtime ${runtime}: use node, deno or bun`);
    process.exit(2);
  }
  const child = spawnSync(command[0], [...command[1], ...rest], { cwd: root, stdio: "inherit" });
  process.exit(child.status ?? 1);
}

const args = process.argv.slice(2);
const runtime = option(args, "runtime");
if (runtime !== undefined && runtime !== currentRuntime()) rerunOn(runtime, args);

const minutes = number(args, "minutes", 1);
const maxSteps = Math.floor(number(args, "steps", 40));
const batch = Math.floor(number(args, "batch", 5));
const shrinkMinutes = number(args, "shrink-minutes", 3);
let seed = option(args, "seed") === undefined
  ? crypto.getRandomValues(new Uint32Array(1))[0]! >>> 1
  : Math.floor(number(args, "seed", 1));

const end = Date.now() + minutes * 60_000;
const totals: Record<string, number> = {};
let passed = 0;
console.log(
  `soak on ${currentRuntime()}: ${minutes} min, schedules of up to ${maxSteps} steps, ` +
    `${batch} a seed, from seed ${seed}`,
);
while (Date.now() < end) {
  const result = await checkConvergence({
    seed,
    numRuns: batch,
    minSteps: Math.min(10, maxSteps),
    maxSteps,
    shrinkBudgetMs: shrinkMinutes * 60_000,
  });
  passed += result.passed;
  for (const [name, n] of Object.entries(result.stats)) totals[name] = (totals[name] ?? 0) + n;
  if (result.failed) {
    console.log(result.report);
    console.log(`${passed} schedules passed before the failure (seed ${seed})`);
    process.exit(1);
  }
  seed = (seed + 1) % 2 ** 31;
}
console.log(`exercised:\n${formatStats(totals)}`);
console.log(`${passed} schedules passed`);
process.exit(0);
