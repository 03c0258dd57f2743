/**
 * shared/policy.ts on its own: who may do what, and which refusal (NOT_FOUND or FORBIDDEN) each
 * one gets. The REST tests (test/rest/roles.test.ts, channel-admin.test.ts) check the same through HTTP.
 */
import { expect } from 'chai';
import { Channel, type WorkspaceRole } from '../../shared/models/index.js';
import { can, type Action, type Actor, type Rules } from '../../shared/policy.js';

const W = { workspaceId: 'w' };
const actor = (role: WorkspaceRole | null, userId = 'me'): Actor => ({ userId, role });
const channel = (props: Partial<Pick<Channel, 'isPrivate' | 'archived' | 'createdBy'>> = {}) =>
  Channel.fromJson({ id: 'c', workspaceId: 'w', isPrivate: false, archived: false, createdBy: 'creator', ...props });

function verdict<A extends Action>(who: Actor, action: A, resource: Rules[A]): string {
  const d = can(who, action, resource);
  return d.allow ? 'allow' : d.error.code;
}

describe('policy', function () {
  it('When the actor is not in the workspace, then every workspace action is NOT_FOUND', function () {
    const target = { userId: 'x', role: 'member' as const, owners: 1 };
    expect(verdict(actor(null), 'workspace.view', W)).to.equal('NOT_FOUND');
    expect(verdict(actor(null), 'workspace.members.add', { ...W, role: 'member' })).to.equal('NOT_FOUND');
    expect(verdict(actor(null), 'workspace.members.setRole', { ...W, role: 'owner', target })).to.equal('NOT_FOUND');
    expect(verdict(actor(null), 'workspace.members.remove', { ...W, target })).to.equal('NOT_FOUND');
    expect(verdict(actor(null), 'channel.create', W)).to.equal('NOT_FOUND');
  });

  it('When the actor is not in the workspace or outside a private channel, then every channel action is NOT_FOUND', function () {
    const actions: Array<Exclude<Action, `workspace.${string}` | 'channel.create' | 'channel.listAll' | 'channel.members.remove'>> = [
      'channel.view',
      'channel.join',
      'channel.leave',
      'channel.members.list',
      'channel.members.add',
      'channel.history',
      'channel.update',
      'channel.archive',
      'channel.follow',
    ];
    for (const action of actions) {
      expect(verdict(actor(null), action, { channel: channel(), isMember: false }), action).to.equal('NOT_FOUND');
      for (const role of ['owner', 'admin', 'member', 'guest'] as const) {
        expect(verdict(actor(role), action, { channel: channel({ isPrivate: true }), isMember: false }), `${role} ${action}`).to.equal('NOT_FOUND');
      }
    }
  });

  it('When someone follows a channel (read mark, sync), then only its members may: NOT_FOUND to anyone else, public or not', function () {
    for (const role of ['owner', 'admin', 'member', 'guest'] as const) {
      for (const isPrivate of [false, true]) {
        expect(verdict(actor(role), 'channel.follow', { channel: channel({ isPrivate }), isMember: true }), role).to.equal('allow');
        expect(verdict(actor(role), 'channel.follow', { channel: channel({ isPrivate }), isMember: false }), role).to.equal('NOT_FOUND');
      }
    }
    expect(verdict(actor('member'), 'channel.follow', { channel: channel({ archived: true }), isMember: true })).to.equal('allow');
  });

  it('When a guest acts, then only their own channels are theirs: the rest is FORBIDDEN', function () {
    const guest = actor('guest');
    expect(verdict(guest, 'channel.create', W)).to.equal('FORBIDDEN');
    expect(verdict(guest, 'channel.listAll', W)).to.equal('FORBIDDEN');
    expect(verdict(guest, 'workspace.members.listAll', W)).to.equal('FORBIDDEN');
    expect(verdict(guest, 'channel.view', { channel: channel(), isMember: false })).to.equal('FORBIDDEN');
    expect(verdict(guest, 'channel.join', { channel: channel(), isMember: false })).to.equal('FORBIDDEN');
    expect(verdict(guest, 'channel.view', { channel: channel(), isMember: true })).to.equal('allow');
    expect(verdict(guest, 'channel.history', { channel: channel(), isMember: true })).to.equal('allow');
    expect(verdict(guest, 'channel.members.add', { channel: channel(), isMember: true })).to.equal('FORBIDDEN');
    expect(verdict(guest, 'channel.update', { channel: channel({ createdBy: 'me' }), isMember: true })).to.equal('FORBIDDEN');
  });

  it('When roles are changed, then owners change any, admins members and guests to anything but owner, the last owner stays', function () {
    const t = (role: WorkspaceRole, owners = 1) => ({ userId: 'x', role, owners });
    expect(verdict(actor('owner'), 'workspace.members.setRole', { ...W, role: 'owner', target: t('guest') })).to.equal('allow');
    expect(verdict(actor('owner'), 'workspace.members.setRole', { ...W, role: 'admin', target: t('owner', 1) })).to.equal('FORBIDDEN');
    expect(verdict(actor('owner'), 'workspace.members.setRole', { ...W, role: 'admin', target: t('owner', 2) })).to.equal('allow');
    expect(verdict(actor('admin'), 'workspace.members.setRole', { ...W, role: 'guest', target: t('member') })).to.equal('allow');
    expect(verdict(actor('admin'), 'workspace.members.setRole', { ...W, role: 'member', target: t('guest') })).to.equal('allow');
    expect(verdict(actor('admin'), 'workspace.members.setRole', { ...W, role: 'admin', target: t('member') })).to.equal('allow');
    expect(verdict(actor('admin'), 'workspace.members.setRole', { ...W, role: 'owner', target: t('member') })).to.equal('FORBIDDEN');
    expect(verdict(actor('admin'), 'workspace.members.setRole', { ...W, role: 'member', target: t('admin') })).to.equal('FORBIDDEN');
    expect(verdict(actor('member'), 'workspace.members.setRole', { ...W, role: 'guest', target: t('guest') })).to.equal('FORBIDDEN');
    expect(verdict(actor('owner'), 'workspace.members.setRole', { ...W, role: 'guest', target: null })).to.equal('NOT_FOUND');
    expect(verdict(actor('member'), 'workspace.members.setRole', { ...W, role: 'guest', target: null })).to.equal('FORBIDDEN');
    expect(verdict(actor('owner'), 'workspace.leave', { ...W, target: t('owner', 1) })).to.equal('FORBIDDEN');
    expect(verdict(actor('owner'), 'workspace.leave', { ...W, target: t('owner', 2) })).to.equal('allow');
    expect(verdict(actor('guest'), 'workspace.leave', { ...W, target: t('guest') })).to.equal('allow');
    expect(verdict(actor('admin'), 'workspace.members.remove', { ...W, target: t('owner', 2) })).to.equal('FORBIDDEN');
    expect(verdict(actor('owner'), 'workspace.members.remove', { ...W, target: t('owner', 2) })).to.equal('allow');
    expect(verdict(actor('owner'), 'workspace.members.remove', { ...W, target: t('owner', 1) })).to.equal('FORBIDDEN');
  });

  it('When a search names channels with in:, then any role may when it is a member of each, and NOT_FOUND otherwise, the owner too', function () {
    expect(verdict(actor('guest'), 'workspace.search.in', { ...W, readable: true })).to.equal('allow');
    expect(verdict(actor('owner'), 'workspace.search.in', { ...W, readable: false })).to.equal('NOT_FOUND');
    expect(verdict(actor(null), 'workspace.search.in', { ...W, readable: true })).to.equal('NOT_FOUND');
  });

  it('When a channel is changed, then its creator and managers may, and an archived one refuses joins and additions', function () {
    const mine = channel({ createdBy: 'me' });
    expect(verdict(actor('member'), 'channel.update', { channel: mine, isMember: true })).to.equal('allow');
    expect(verdict(actor('member'), 'channel.archive', { channel: channel(), isMember: true })).to.equal('FORBIDDEN');
    expect(verdict(actor('admin'), 'channel.archive', { channel: channel(), isMember: false })).to.equal('allow');
    expect(verdict(actor('member'), 'channel.update', { channel: channel({ createdBy: null }), isMember: true })).to.equal('FORBIDDEN');
    const archived = channel({ archived: true });
    expect(verdict(actor('member'), 'channel.join', { channel: archived, isMember: false })).to.equal('FORBIDDEN');
    expect(verdict(actor('owner'), 'channel.members.add', { channel: archived, isMember: true })).to.equal('FORBIDDEN');
    expect(verdict(actor('member'), 'channel.history', { channel: archived, isMember: true })).to.equal('allow');
    expect(verdict(actor('member'), 'channel.leave', { channel: archived, isMember: true })).to.equal('allow');
  });
});
