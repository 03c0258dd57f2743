/**
 * The worker's compiled change rules (worker/actions/authorizeChanges.ts) and PostgreSQL's look-up of them
 * (migrations/*_authorize_changes_in_persist.ts) must index one table the same way: the worker computes a
 * key from facts in TypeScript, the function in SQL. Every combination of facts is checked, on the run's
 * database. What the rules decide, end to end, is the business of the pipeline tests (message-edits,
 * reactions, threads).
 */
import { expect } from 'chai';
import pg from 'pg';
import {
  CHANGE_ACTIONS,
  CHANGE_RULE_KEYS,
  changeFactsOf,
  changeRuleKey,
  compileChangeRules,
  decideChange,
  type Who,
} from '../../worker/actions/authorizeChanges.js';

const asSqlWho = (who: Who) => (who === 'none' ? null : who === 'caller');

describe('change rules: the worker and PostgreSQL index one table alike', function () {
  let db: pg.Client;
  before(async () => {
    db = new pg.Client({ connectionString: process.env.DATABASE_URL });
    await db.connect();
  });
  after(async () => {
    await db?.end();
  });

  it('When any combination of facts is keyed, then changeRuleKey and changeFactsOf are inverse and cover every key once', () => {
    const keys = Array.from({ length: CHANGE_RULE_KEYS }, (_, key) => changeRuleKey(changeFactsOf(key)));
    expect(keys).to.deep.equal(Array.from({ length: CHANGE_RULE_KEYS }, (_, key) => key));
    expect(CHANGE_RULE_KEYS).to.equal(1 + 5 * 2 * 2 * 2 * 3 * 5 * 2);
  });

  it("When PostgreSQL's change_rule_key() is given the facts of every key, then it computes that key", async () => {
    const facts = Array.from({ length: CHANGE_RULE_KEYS }, (_, key) => changeFactsOf(key));
    const column = <T>(pick: (f: NonNullable<(typeof facts)[number]>) => T) => facts.map((f) => (f ? pick(f) : null));
    const { rows } = await db.query<{ key: number }>(
      `SELECT change_rule_key(f.found, f.role, f.is_member, f.is_private, f.archived, f.creator, f.author, f.deleted, f.retried) AS key
         FROM unnest($1::boolean[], $2::text[], $3::boolean[], $4::boolean[], $5::boolean[], $6::boolean[], $7::boolean[], $8::boolean[], $9::boolean[])
              WITH ORDINALITY AS f(found, role, is_member, is_private, archived, creator, author, deleted, retried, n)
        ORDER BY f.n`,
      [
        facts.map((f) => f !== null),
        column((f) => f.role),
        column((f) => f.isMember),
        column((f) => f.isPrivate),
        column((f) => f.archived),
        column((f) => asSqlWho(f.creator)),
        column((f) => asSqlWho(f.author)),
        // change_targets reads deleted as NULL when there is no message.
        column((f) => (f.author === 'none' ? null : f.deleted)),
        column((f) => f.retried),
      ],
    );
    expect(rows.map((r) => r.key)).to.deep.equal(facts.map((_, key) => key));
  });

  it('When the compiled table is read at any key, then it holds what policy decides for those facts', () => {
    const { table, refusals } = compileChangeRules();
    expect(Object.keys(table).sort()).to.deep.equal([...new Set(Object.values(CHANGE_ACTIONS))].sort());
    for (const [action, codes] of Object.entries(table) as Array<[keyof typeof table, string]>) {
      expect(codes, action).to.have.length(CHANGE_RULE_KEYS);
      const decided = [...codes].map((code) => (code === 'a' ? null : refusals.get(code)));
      const expected = Array.from({ length: CHANGE_RULE_KEYS }, (_, key) => decideChange(action, changeFactsOf(key))?.toBody() ?? null);
      expect(decided, action).to.deep.equal(expected);
    }
    // A spot check of policy itself: an admin may delete another's message, not edit it; anyone outside is NOT_FOUND.
    const admin = { role: 'admin', isMember: true, isPrivate: false, archived: false, creator: 'other', author: 'other', deleted: false, retried: false } as const;
    expect(decideChange('message.delete', admin)).to.equal(null);
    expect(decideChange('message.edit', admin)?.code).to.equal('FORBIDDEN');
    expect(decideChange('message.react', { ...admin, role: null })?.code).to.equal('NOT_FOUND');
  });
});
