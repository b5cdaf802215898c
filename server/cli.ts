#!/usr/bin/env node
/**
 * `declarative-sync`, the npm package's command: `declarative-sync serve`
 * starts the sync server exactly as `npm start` does (the same
 * {@linkcode runServer} in `server/main.ts`: flags and environment, one log
 * line per request, SIGINT/SIGTERM stops it). The package ships it compiled,
 * so plain Node 20 runs it without a TypeScript loader.
 *
 * ```sh
 * npx declarative-sync serve --db data/sync.db --schema ./schema.mjs --port 8787
 * npx declarative-sync --help
 * deno run -A server/cli.ts serve --port 0        # from a checkout
 * ```
 *
 * No command, or an unknown one, prints the usage on stderr and exits 2.
 *
 * @module
 */

import process from "node:process";
import { runServer, usage } from "./main.ts";

const program = "declarative-sync";
const [command, ...args] = process.argv.slice(2);

function help(): string {
  return `${usage(`${program} serve`)}

Commands:
  serve        run the sync server (the options above)
  help         print this help`;
}

if (command === "serve") await runServer(args, `${program} serve`);
else if (command === "help" || command === "--help" || command === "-h") console.log(help());
else {
  console.error(command === undefined ? help() : `Unknown command ${JSON.stringify(command)}`);
  if (command !== undefined) console.error(`Run ${program} --help for the commands`);
  process.exitCode = 2;
}
