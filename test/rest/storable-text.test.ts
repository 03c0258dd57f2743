/**
 * Text PostgreSQL cannot store (U+0000, lone UTF-16 surrogates) is refused at validation, on every REST
 * text input, with 400 VALIDATION_FAILED naming the field, and nothing is written. Requests are JSON
 * with `\u0000` / `\ud800` escapes, as JSON.stringify writes them.
 */
import { expect } from 'chai';
import pg from 'pg';
import { loadConfig } from '../../shared/config.js';
import { createWorkerNode, type WorkerNode } from '../../worker/app.js';
import {
  addChannelMember,
  addWorkspaceMember,
  createChannel,
  createWorkspace,
  registerUser,
  request,
  startApi,
  unique,
  type ApiResponse,
  type ChannelDto,
  type RegisteredUser,
  type StartedApi,
  type WorkspaceDto,
} from '../support/api.js';

/** What each input is tried with: text PostgreSQL cannot store, around otherwise valid characters. */
const UNSTORABLE: Array<[string, (valid: string) => string]> = [
  ['U+0000', (valid) => `${valid.slice(0, 1)}\u0000${valid.slice(1)}`],
  ['a lone high surrogate', (valid) => `${valid}\uD83D`],
  ['a lone low surrogate', (valid) => `\uDE00${valid}`],
  ['a surrogate pair reversed', (valid) => `${valid.slice(0, 1)}\uDE00\uD83D${valid.slice(1)}`],
];

describe('REST: text that cannot be stored', function () {
  // The message route needs a worker to answer valid sends; both share a Redis prefix of their own.
  let worker: WorkerNode;
  let api: StartedApi;
  let base: string;
  let db: pg.Pool;
  let owner: RegisteredUser;
  let member: RegisteredUser;
  let ws: WorkspaceDto;
  let channel: ChannelDto;

  before(async function () {
    const env = { REDIS_PREFIX: `${process.env.REDIS_PREFIX}.storable-text` };
    // The worker first: Objection's models are bound to the knex created last, the front node's.
    worker = createWorkerNode(loadConfig({ ...process.env, ...env }));
    await worker.start();
    api = await startApi(env);
    base = api.baseUrl;
    db = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 2 });
    db.on('error', () => {});
    owner = await registerUser(base);
    member = await registerUser(base);
    ws = await createWorkspace(base, owner.token);
    await addWorkspaceMember(base, owner.token, ws.id, member.email);
    channel = await createChannel(base, owner.token, ws.id);
  });

  after(async function () {
    await api?.stop();
    await worker?.stop();
    await db?.end();
  });

  /** Every table a REST write could touch, and the channel seqs: nothing may change. */
  async function snapshot(): Promise<Record<string, number>> {
    const { rows } = await db.query(`
      SELECT (SELECT count(*) FROM users)::int AS users,
             (SELECT count(*) FROM workspaces)::int AS workspaces,
             (SELECT count(*) FROM workspace_members)::int AS workspace_members,
             (SELECT count(*) FROM channels)::int AS channels,
             (SELECT count(*) FROM channel_members)::int AS channel_members,
             (SELECT count(*) FROM messages)::int AS messages,
             (SELECT coalesce(sum(last_seq), 0) FROM channels)::int AS seqs,
             (SELECT coalesce(sum(last_read_seq), 0) FROM channel_members)::int AS read_marks`);
    return rows[0];
  }

  /**
   * 400 VALIDATION_FAILED naming the field. `anyMessage`: the field's own rule may word it (clientMsgId's
   * ASCII pattern also refuses these characters), else the message says why.
   */
  function expectRefused(res: ApiResponse, field: string, anyMessage = false): void {
    expect(res.status, res.text).to.equal(400);
    expect(res.body.error.code).to.equal('VALIDATION_FAILED');
    const details = res.body.error.details as Array<{ field: string; message: string }>;
    expect(details.map((d) => d.field), res.text).to.include(field);
    if (anyMessage) return;
    expect(res.body.error.message).to.include(`"${field}" contains characters that cannot be stored`);
    expect(details).to.deep.include({ field, message: `"${field}" contains characters that cannot be stored` });
  }

  interface Input {
    what: string;
    field: string;
    anyMessage?: boolean;
    /** The request, with `bad` in the field under test and valid values elsewhere. */
    call: (bad: (valid: string) => string) => Promise<ApiResponse>;
  }

  const inputs: Input[] = [
    {
      what: 'register email',
      field: 'email',
      call: (bad) =>
        request(base, 'POST', '/auth/register', {
          body: { email: bad(`${unique('u')}@example.test`), password: 'password123', displayName: 'Ada' },
        }),
    },
    {
      what: 'register password',
      field: 'password',
      call: (bad) =>
        request(base, 'POST', '/auth/register', {
          body: { email: `${unique('u')}@example.test`, password: bad('password123'), displayName: 'Ada' },
        }),
    },
    {
      what: 'register displayName',
      field: 'displayName',
      call: (bad) =>
        request(base, 'POST', '/auth/register', {
          body: { email: `${unique('u')}@example.test`, password: 'password123', displayName: bad('Ada Lovelace') },
        }),
    },
    {
      what: 'login email',
      field: 'email',
      call: (bad) => request(base, 'POST', '/auth/login', { body: { email: bad(owner.email), password: owner.password } }),
    },
    {
      what: 'login password',
      field: 'password',
      call: (bad) => request(base, 'POST', '/auth/login', { body: { email: owner.email, password: bad(owner.password) } }),
    },
    {
      what: 'workspace name',
      field: 'name',
      call: (bad) => request(base, 'POST', '/workspaces', { token: owner.token, body: { name: bad('Analytical Engines') } }),
    },
    {
      what: 'workspace member email',
      field: 'email',
      call: (bad) =>
        request(base, 'POST', `/workspaces/${ws.id}/members`, { token: owner.token, body: { email: bad(member.email) } }),
    },
    {
      what: 'channel name',
      field: 'name',
      call: (bad) => request(base, 'POST', `/workspaces/${ws.id}/channels`, { token: owner.token, body: { name: bad(unique('ch-')) } }),
    },
    {
      what: 'channel topic',
      field: 'topic',
      call: (bad) =>
        request(base, 'POST', `/workspaces/${ws.id}/channels`, {
          token: owner.token,
          body: { name: unique('ch-'), topic: bad('Engines and their notes') },
        }),
    },
    {
      what: 'channel member userId',
      field: 'userId',
      call: (bad) => request(base, 'POST', `/channels/${channel.id}/members`, { token: owner.token, body: { userId: bad(member.user.id) } }),
    },
    {
      what: 'message body',
      field: 'body',
      call: (bad) =>
        request(base, 'POST', `/channels/${channel.id}/messages`, {
          token: owner.token,
          body: { body: bad('Hello, engines'), clientMsgId: unique('m-') },
        }),
    },
    {
      what: 'message body (surrounded by whitespace that is trimmed)',
      field: 'body',
      call: (bad) =>
        request(base, 'POST', `/channels/${channel.id}/messages`, {
          token: owner.token,
          body: { body: `  ${bad('Hello, engines')}\n`, clientMsgId: unique('m-') },
        }),
    },
    {
      what: 'message clientMsgId',
      field: 'clientMsgId',
      anyMessage: true,
      call: (bad) =>
        request(base, 'POST', `/channels/${channel.id}/messages`, {
          token: owner.token,
          body: { body: 'Hello, engines', clientMsgId: bad(unique('m-')) },
        }),
    },
  ];

  for (const input of inputs) {
    it(`When the ${input.what} contains U+0000 or a lone surrogate, then 400 VALIDATION_FAILED naming "${input.field}" and nothing is written`, async function () {
      const before = await snapshot();
      for (const [kind, bad] of UNSTORABLE) {
        const res = await input.call(bad);
        expect(res.status, `${kind}: ${res.text}`).to.equal(400);
        expectRefused(res, input.field, input.anyMessage);
      }
      expect(await snapshot()).to.deep.equal(before);
    });
  }

  it('When a request body carries the escapes as raw JSON text, then it is refused the same way', async function () {
    const before = await snapshot();
    const raws = ['{"name":"nul \\u0000 here"}', '{"name":"half \\ud83d of a pair"}', '{"name":"\\udc00"}'];
    for (const raw of raws) expectRefused(await request(base, 'POST', '/workspaces', { token: owner.token, rawBody: raw }), 'name');
    expect(await snapshot()).to.deep.equal(before);
  });

  it('When text has characters outside the BMP (surrogate pairs) and other non-ASCII, then it is accepted and stored as sent', async function () {
    const text = 'Ada 😀 — café 日本 𝄞';
    const user = await registerUser(base, { displayName: text, password: `pw ${text}` });
    expect(user.user.displayName).to.equal(text);
    const login = await request(base, 'POST', '/auth/login', { body: { email: user.email, password: `pw ${text}` } });
    expect(login.status, login.text).to.equal(200);
    const workspace = await createWorkspace(base, user.token, text);
    expect(workspace.name).to.equal(text);
    const ch = await createChannel(base, user.token, workspace.id, { topic: text });
    expect(ch.topic).to.equal(text);
    const sent = await request(base, 'POST', `/channels/${ch.id}/messages`, { token: user.token, body: { body: text, clientMsgId: 'emoji-1' } });
    expect(sent.status, sent.text).to.equal(201);
    const { rows } = await db.query('SELECT body, seq::int AS seq FROM messages WHERE channel_id = $1', [ch.id]);
    expect(rows).to.deep.equal([{ body: text, seq: 1 }]);
  });

  it('When text is as long as its limit in characters outside the BMP (two UTF-16 units each), then it is accepted and stored whole; one character more is VALIDATION_FAILED', async function () {
    const emoji = (n: number) => '😀'.repeat(n);
    const user = await registerUser(base, { displayName: emoji(80), password: emoji(128) });
    expect(user.user.displayName).to.equal(emoji(80));
    const login = await request(base, 'POST', '/auth/login', { body: { email: user.email, password: emoji(128) } });
    expect(login.status, login.text).to.equal(200);
    const tooLong = await request(base, 'POST', '/auth/register', {
      body: { email: `${unique('long-')}@example.test`, password: emoji(129), displayName: emoji(81) },
    });
    expectRefused(tooLong, 'displayName', true);
    expectRefused(tooLong, 'password', true);

    const workspace = await createWorkspace(base, user.token, emoji(80));
    expect(workspace.name).to.equal(emoji(80));
    expectRefused(await request(base, 'POST', '/workspaces', { token: user.token, body: { name: emoji(81) } }), 'name', true);
    const ch = await createChannel(base, user.token, workspace.id, { topic: emoji(250) });
    expect(ch.topic).to.equal(emoji(250));
    expectRefused(await request(base, 'PATCH', `/channels/${ch.id}`, { token: user.token, body: { topic: emoji(251) } }), 'topic', true);

    const messages = `/channels/${ch.id}/messages`;
    const sent = await request(base, 'POST', messages, { token: user.token, body: { body: emoji(4000), clientMsgId: 'long-1' } });
    expect(sent.status, sent.text).to.equal(201);
    expectRefused(await request(base, 'POST', messages, { token: user.token, body: { body: emoji(4001), clientMsgId: 'long-2' } }), 'body', true);
    const edit = await request(base, 'PATCH', `${messages}/${sent.body.message.id}`, { token: user.token, body: { body: `${emoji(3999)}!` } });
    expect(edit.status, edit.text).to.equal(200);
    expectRefused(await request(base, 'PATCH', `${messages}/${sent.body.message.id}`, { token: user.token, body: { body: emoji(4001) } }), 'body', true);
    const { rows } = await db.query('SELECT char_length(body)::int AS chars FROM messages WHERE channel_id = $1', [ch.id]);
    expect(rows).to.deep.equal([{ chars: 4000 }]);
  });

  it('When sends were refused, then the next valid send of the channel is stored with the next seq, as if they had never been', async function () {
    await addChannelMember(base, owner.token, channel.id, member.user.id);
    for (const [, bad] of UNSTORABLE) {
      expectRefused(
        await request(base, 'POST', `/channels/${channel.id}/messages`, { token: member.token, body: { body: bad('oops'), clientMsgId: 'x' } }),
        'body',
      );
    }
    const res = await request(base, 'POST', `/channels/${channel.id}/messages`, {
      token: member.token,
      body: { body: 'all good', clientMsgId: 'x' },
    });
    expect(res.status, res.text).to.equal(201);
    expect(res.body.message).to.include({ seq: 1, body: 'all good', clientMsgId: 'x', userId: member.user.id });
    const { rows } = await db.query('SELECT seq::int AS seq, body FROM messages WHERE channel_id = $1 ORDER BY seq', [channel.id]);
    expect(rows).to.deep.equal([{ seq: 1, body: 'all good' }]);
  });
});
