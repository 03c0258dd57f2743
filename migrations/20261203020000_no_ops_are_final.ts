import type { Knex } from 'knex';
import { PERSIST_CHANNEL_CHANGES as RECORDING_REFUSALS } from './20261203010000_record_refusals.js';

/**
 * A no-op is as final as a refusal: a reaction change answered `unchanged` (the reaction was already
 * there, or a removal of one that was not) is recorded in `change_refusals` with the refusals, and a later
 * run of the same change answers `unchanged` again, with the message as it is then.
 *
 * Until now a batch run again (its worker died after the reply, before the job completed) decided a no-op
 * afresh: a removal answered `unchanged` removed the reaction the user had added since, and an addition
 * brought back one they had removed. The user's own later change was undone by an earlier one.
 *
 * The function is the one of migrations/*_record_refusals.ts with the edits below, each of which must
 * match exactly where it is meant to (`edited()` throws otherwise), so the history replays as it ran.
 */
/** One edit of a function's text: `find` must occur exactly `times` times, each replaced by `replace`. */
export interface FunctionEdit {
  find: string;
  replace: string;
  times: number;
}

const EDITS: FunctionEdit[] = [
  {
    // An earlier run's no-op answers with the message as it is now (a refusal carries none).
    find: `          outcome := v_prior_outcomes[v_prior];
          refusal := v_prior_refusals[v_prior];
          RETURN NEXT;`,
    replace: `          outcome := v_prior_outcomes[v_prior];
          refusal := v_prior_refusals[v_prior];
          IF outcome = 'unchanged' THEN
            SELECT * INTO v_row FROM messages m WHERE m.id = p_message_ids[i];
            IF FOUND THEN
              message := message_snapshot(v_row);
            ELSE
              outcome := 'not_found';
            END IF;
          END IF;
          RETURN NEXT;`,
    times: 1,
  },
  {
    // Both reaction branches: the addition of one already there, the removal of one that is not.
    find: `            outcome := 'unchanged';
            message := message_snapshot(v_row);
            RETURN NEXT;`,
    replace: `            outcome := 'unchanged';
            message := message_snapshot(v_row);
            v_refused := v_refused || (p_ids[i], outcome, refusal, now())::change_refusals;
            RETURN NEXT;`,
    times: 2,
  },
];

/** Edits of a function's text, each required to match exactly where it is meant to. */
export function edited(sql: string, edits: FunctionEdit[]): string {
  return edits.reduce((text, { find, replace, times }) => {
    const found = text.split(find).length - 1;
    if (found !== times) throw new Error(`persist_channel_changes: an edit meant for ${times} place(s) matches ${found}`);
    return text.split(find).join(replace);
  }, sql);
}

/** The function this migration installs; a later migration may install it again with edits (see there). */
export const PERSIST_CHANNEL_CHANGES = edited(RECORDING_REFUSALS, EDITS);

export async function up(knex: Knex): Promise<void> {
  await knex.raw(PERSIST_CHANNEL_CHANGES);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(RECORDING_REFUSALS);
}
