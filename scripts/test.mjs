#!/usr/bin/env node
// Runs the whole test suite on Deno, Bun and Node (the same files on each) and
// ends with one line `N passed, N failed` summed over the three runtimes.
// Exits non-zero when any test fails or a runtime cannot run.
//
//   node scripts/test.mjs            all three runtimes
//   node scripts/test.mjs deno bun   a subset

import { spawn } from "node:child_process";
import { readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const bin = (name) => join(root, "node_modules", ".bin", name);
const testFiles = readdirSync(join(root, "tests"))
  .filter((name) => name.endsWith(".test.ts"))
  .sort()
  .map((name) => join("tests", name));

const runtimes = {
  deno: {
    command: bin("deno"),
    args: ["test", "-A", "--no-prompt", ...testFiles],
    // "ok | 12 passed | 0 failed (3s)" or "FAILED | 11 passed | 1 failed (3s)"
    parse: (out) => {
      const m = /(?:ok|FAILED) \| (\d+) passed(?: \(\d+ steps?\))? \| (\d+) failed/.exec(out);
      return m && { passed: Number(m[1]), failed: Number(m[2]) };
    },
  },
  bun: {
    command: bin("bun"),
    args: ["test", "--timeout", "120000", ...testFiles.map((f) => `./${f}`)],
    parse: (out) => {
      const passed = /^\s*(\d+) pass$/m.exec(out);
      const failed = /^\s*(\d+) fail$/m.exec(out);
      return passed && failed && { passed: Number(passed[1]), failed: Number(failed[1]) };
    },
  },
  node: {
    command: process.execPath,
    args: ["--import", "tsx", "--test", "--test-reporter", "spec", ...testFiles],
    parse: (out) => {
      const passed = /^\S*\s*pass (\d+)$/m.exec(out);
      const failed = /^\S*\s*fail (\d+)$/m.exec(out);
      return passed && failed && { passed: Number(passed[1]), failed: Number(failed[1]) };
    },
  },
};

// deno-lint-ignore no-control-regex
const stripAnsi = (text) => text.replace(/\x1b\[[0-9;]*m/g, "");

function run(name) {
  const { command, args, parse } = runtimes[name];
  return new Promise((resolve) => {
    console.log(`\n=== ${name}: ${[command, ...args].join(" ")}`);
    const child = spawn(command, args, {
      cwd: root,
      env: { ...process.env, NO_COLOR: "1", FORCE_COLOR: "0" },
    });
    let output = "";
    const collect = (stream) => (chunk) => {
      output += chunk;
      stream.write(chunk);
    };
    child.stdout.on("data", collect(process.stdout));
    child.stderr.on("data", collect(process.stderr));
    child.on("error", (error) => resolve({ name, passed: 0, failed: 1, note: error.message }));
    child.on("close", (code) => {
      const counts = parse(stripAnsi(output));
      if (counts === null) {
        resolve({ name, passed: 0, failed: 1, note: `no test summary (exit ${code})` });
      } else if (code !== 0 && counts.failed === 0) {
        resolve({ name, ...counts, failed: 1, note: `exit ${code} with no failed test reported` });
      } else resolve({ name, ...counts });
    });
  });
}

const selected = process.argv.slice(2);
for (const name of selected) {
  if (!(name in runtimes)) {
    console.error(`Unknown runtime ${name}: use deno, bun or node`);
    process.exit(2);
  }
}
const results = [];
for (const name of selected.length > 0 ? selected : Object.keys(runtimes)) {
  results.push(await run(name));
}

console.log("\n=== summary");
for (const r of results) {
  console.log(
    `${r.name.padEnd(5)} ${r.passed} passed, ${r.failed} failed${r.note ? ` (${r.note})` : ""}`,
  );
}
const passed = results.reduce((sum, r) => sum + r.passed, 0);
const failed = results.reduce((sum, r) => sum + r.failed, 0);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
