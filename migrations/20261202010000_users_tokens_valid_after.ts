import type { Knex } from 'knex';

/**
 * A user's tokens issued before `tokens_valid_after` are refused (a password change sets it). Null: no
 * cut-off. Stored at a whole second, as JWT `iat` is in whole seconds.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('users', (t) => {
    t.timestamp('tokens_valid_after', { useTz: true }).nullable();
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('users', (t) => {
    t.dropColumn('tokens_valid_after');
  });
}
