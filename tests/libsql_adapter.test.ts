// The libSQL adapter (src/libsql.ts) against the shared adapter contract
// (tests/adapter_conformance.ts), on each kind of database it serves here:
// libSQL in memory and libSQL on a file.
import { join } from "node:path";
import { runAdapterConformance } from "./adapter_conformance.ts";
import { fileAdapter, memoryAdapter, tempDir } from "./helpers.ts";

runAdapterConformance("libsql :memory:", () => ({ adapter: memoryAdapter() }));

runAdapterConformance("libsql file:", () => {
  const dir = tempDir();
  return { adapter: fileAdapter(join(dir.path, "conformance.db")), cleanup: dir.cleanup };
});
