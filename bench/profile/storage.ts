/**
 * Disk per message and per change, by table and index, for sizing PostgreSQL's volume:
 * `npx tsx bench/profile/storage.ts`.
 *
 * Stores sends of about a hundred characters (a chat line; bodies over ~2 KB go to TOAST) through
 * persistMessages(), as workers do, then the bench's mix of changes on them, and reads every relation's
 * size after each step. The GIN pending lists are merged first, as workers do every second, and a VACUUM
 * runs before each reading, as autovacuum would: what is left is what stays on disk.
 * Works in a scratch database of its own (created, migrated, dropped) on the configured server.
 */
import { randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import type { ChangeRequest, ReactionRequest, SendRequest } from '../../shared/queues.js';
import { persistMessages } from '../../worker/actions/persistMessages.js';
import { mergeMessageIndexes } from '../../worker/searchIndexMerge.js';
import { withScratchKnex } from './scratchDatabase.js';
import { seedScratchTeam } from './scratchTeam.js';

const CHANNELS = 8;
const USERS = 16;
const BATCH = 50;
const SENDS = 40_000;
/** The bench's mix without its sends: 15 reactions (half of them removals), 10 edits, 5 deletes in 30. */
const CHANGES = 12_000;
const BODY = 'a message of about a hundred characters, the length of an ordinary line of chat in a channel';

const TABLES = ['messages', 'channel_events', 'message_reactions', 'client_changes'];

/**
 * Bytes of every table (heap + TOAST) and of each of its indexes. Not vacuumed while empty: an ANALYZE of an
 * empty table tells the planner it is empty, and with autovacuum off (as on CI's machine) the sends' key
 * look-ups would keep the sequential scans planned then.
 */
async function sizes(knex: Knex, o = { vacuum: true }): Promise<Map<string, number>> {
  await mergeMessageIndexes(knex)();
  if (o.vacuum) await knex.raw(`VACUUM (ANALYZE) ${TABLES.join(', ')}`);
  const { rows } = await knex.raw<{ rows: Array<{ name: string; bytes: string }> }>(
    `SELECT t.relname AS name, pg_table_size(t.oid) AS bytes FROM pg_class t WHERE t.relname = ANY(:tables)
     UNION ALL
     SELECT t.relname || ' · ' || i.relname, pg_relation_size(i.oid) FROM pg_index x
       JOIN pg_class t ON t.oid = x.indrelid JOIN pg_class i ON i.oid = x.indexrelid WHERE t.relname = ANY(:tables)`,
    { tables: TABLES },
  );
  return new Map(rows.map((r) => [r.name, Number(r.bytes)]));
}

function report(title: string, before: Map<string, number>, after: Map<string, number>, ops: number): void {
  console.log(`\n${title}: bytes per op (${ops.toLocaleString('en')} ops)`);
  let total = 0;
  for (const [name, bytes] of after) {
    const grew = (bytes - (before.get(name) ?? 0)) / ops;
    total += grew;
    if (Math.abs(grew) >= 0.5) console.log(`  ${name.padEnd(62)} ${grew.toFixed(0).padStart(6)}`);
  }
  console.log(`  ${'total'.padEnd(62)} ${total.toFixed(0).padStart(6)}`);
}

async function profile(knex: Knex): Promise<void> {
  const { workspaceId, users, channels } = await seedScratchTeam(knex, { name: 'storage', users: USERS, channels: CHANNELS });
  const stored: SendRequest[] = [];
  let n = 0;
  const send = (): SendRequest => {
    n++;
    return { kind: 'send', id: randomUUID(), channelId: channels[n % CHANNELS], userId: users[n % USERS], body: `${BODY} ${n}`, clientMsgId: `storage-${n}` };
  };

  const empty = await sizes(knex, { vacuum: false });
  for (let b = 0; b < SENDS / BATCH; b++) {
    const batch = Array.from({ length: BATCH }, send);
    await persistMessages(knex, batch);
    stored.push(...batch);
  }
  const afterSends = await sizes(knex);
  report(`${SENDS.toLocaleString('en')} sends of ${BODY.length + 6} characters`, empty, afterSends, SENDS);

  // Changes aim at the newest messages, as people react to and edit what they just read.
  const recent = () => stored[stored.length - 1 - Math.floor(Math.random() * Math.min(300, stored.length))];
  const added: ReactionRequest[] = [];
  let c = 0;
  const change = (): ChangeRequest => {
    const r = Math.random() * 30;
    const m = recent();
    const base = { id: randomUUID(), channelId: m.channelId, userId: m.userId, messageId: m.id, clientChangeId: `storage-c${c++}` };
    if (r < 7.5 && added.length > 0) return { ...added.shift()!, id: randomUUID(), kind: 'reaction:remove', clientChangeId: base.clientChangeId };
    if (r < 15) {
      const add: ReactionRequest = { ...base, kind: 'reaction:add', emoji: ['thumbsup', 'eyes', 'tada'][c % 3] };
      added.push(add);
      return add;
    }
    if (r < 25) return { ...base, kind: 'edit', body: `${BODY}, edited ${c}` };
    stored.splice(stored.indexOf(m), 1);
    return { ...base, kind: 'delete' };
  };
  for (let b = 0; b < CHANGES / BATCH; b++) await persistMessages(knex, Array.from({ length: BATCH }, change));
  report(`${CHANGES.toLocaleString('en')} changes (15 reactions added or removed, 10 edits, 5 deletes in 30), on the 300 newest messages`, afterSends, await sizes(knex), CHANGES);

  await knex.raw('DELETE FROM workspaces WHERE id = ?', [workspaceId]);
  await knex.raw('DELETE FROM users WHERE id = ANY(?::uuid[])', [users]);
}

await withScratchKnex('storage', profile);
