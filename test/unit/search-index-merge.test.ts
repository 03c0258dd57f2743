import { expect } from 'chai';
import { pino } from 'pino';
import { startSearchIndexMerge } from '../../worker/searchIndexMerge.js';
import { sleep, waitFor } from '../support/sockets.js';

/**
 * The schedule of worker/searchIndexMerge.ts, with a merge function whose timing and failures the test
 * decides: overlapping runs, a stop during a merge and a run of failures are hard to make happen on
 * cue against PostgreSQL. That merges are made and empty the pending list is tested against PostgreSQL
 * (test/pipeline/search.test.ts).
 */
describe('unit: search index merges', () => {
  const INTERVAL = 10;

  function harness(script: (call: number) => Promise<number>) {
    const logs: Array<{ level: number; msg: string }> = [];
    const logger = pino({ level: 'debug' }, { write: (line: string) => void logs.push(JSON.parse(line)) });
    let calls = 0;
    let running = 0;
    let overlapped = false;
    const merged: number[] = [];
    const merge = async () => {
      calls++;
      running++;
      if (running > 1) overlapped = true;
      try {
        return await script(calls);
      } finally {
        running--;
      }
    };
    return {
      logs,
      merged,
      get calls() {
        return calls;
      },
      get running() {
        return running;
      },
      get overlapped() {
        return overlapped;
      },
      start: (intervalMs = INTERVAL) => startSearchIndexMerge({ merge, intervalMs, logger, onMerged: (pages) => merged.push(pages) }),
    };
  }

  it('When merges take longer than the interval, then no two run at once, and each merged page count is reported', async () => {
    const h = harness(async (call) => {
      await sleep(INTERVAL * 3);
      return call % 2;
    });
    const merges = h.start();
    await waitFor(() => h.calls >= 4, 2_000);
    await merges.stop();
    expect(h.overlapped).to.equal(false);
    // Only merges that moved pages are counted: calls 1, 3, … returned 1, the others 0.
    expect(h.merged).to.deep.equal(Array.from({ length: Math.ceil(h.calls / 2) }, () => 1));
  });

  it('When stop() is called during a merge, then it resolves once that merge has ended, and no merge starts after it', async () => {
    let release!: () => void;
    const h = harness(() => new Promise<number>((resolve) => (release = () => resolve(3))));
    const merges = h.start();
    await waitFor(() => h.running === 1, 2_000);
    let stopped = false;
    const stopping = merges.stop().then(() => (stopped = true));
    await sleep(INTERVAL * 3);
    expect(stopped, 'stop() waits for the merge in progress').to.equal(false);
    release();
    await stopping;
    expect(h.running).to.equal(0);
    const calls = h.calls;
    await sleep(INTERVAL * 5);
    expect(h.calls).to.equal(calls);
    expect(h.merged).to.deep.equal([3]);
  });

  it('When a merge fails because stop() closed the pool under it, then nothing is logged', async () => {
    let fail!: () => void;
    const h = harness(() => new Promise<number>((_, reject) => (fail = () => reject(new Error('aborted')))));
    const merges = h.start();
    await waitFor(() => h.running === 1, 2_000);
    const stopping = merges.stop();
    fail();
    await stopping;
    expect(h.logs).to.deep.equal([]);
  });

  it('When merges fail for a while (PostgreSQL away), then one warning says so, merging goes on, and one line says when it works again', async () => {
    const h = harness(async (call) => {
      if (call <= 5) throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
      return 2;
    });
    const merges = h.start();
    await waitFor(() => h.calls >= 7, 2_000);
    await merges.stop();
    const lines = h.logs.filter((l) => /merge/.test(l.msg)).map((l) => [l.level, l.msg]);
    expect(lines).to.deep.equal([
      [40, 'search index merge failed; retrying every interval'],
      [30, 'search index merge works again'],
    ]);
    expect(h.merged.length).to.equal(h.calls - 5);
  });

  it("When the database user does not own the indexes, then one warning says why and no merge is tried again", async () => {
    const h = harness(async () => {
      throw Object.assign(new Error('must be owner of index messages_channel_id_user_id_search_vector'), { code: '42501' });
    });
    const merges = h.start();
    await waitFor(() => h.calls >= 1, 2_000);
    await sleep(INTERVAL * 5);
    await merges.stop();
    expect(h.calls).to.equal(1);
    expect(h.logs.map((l) => [l.level, l.msg])).to.deep.equal([
      [40, 'not the owner of the messages indexes: search index merges left to inserts and autovacuum'],
    ]);
  });

  it('When SEARCH_INDEX_MERGE_MS is 0, then no merge is ever made', async () => {
    const h = harness(async () => 1);
    const merges = h.start(0);
    await sleep(INTERVAL * 5);
    await merges.stop();
    expect(h.calls).to.equal(0);
  });
});
