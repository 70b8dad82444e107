"""Who may watch whose activity, and whose screens: the members page's ladder, and the
numbers a screen may show."""

from __future__ import annotations

from callvault.accounts.actions import OWNER_ONLY_CAPABILITIES
from callvault.accounts.models import Membership, Role

# The ladder of the members page: a member watches only members below them. Owners stand
# above everyone; below them, a member holding an owner-only capability (numbers, managing
# members, exports) counts as an owner, as accounts.actions.may_manage decides.
ROLE_RANK: dict[str, int] = {
    Role.OWNER: 4,
    Role.ADMIN: 3,
    Role.SUPERVISOR: 2,
    Role.OPERATOR: 1,
    Role.TRAINEE: 0,
}


def _owner_like(member: Membership) -> bool:
    return member.role == Role.OWNER or any(
        getattr(member, name) for name in OWNER_ONLY_CAPABILITIES
    )


def may_watch(viewer: Membership, target: Membership) -> bool:
    """Whether the viewer may see the target's devices, timeline and activity: owners see
    everyone; others only members of a lower role who are not owner-like; nobody but an
    owner sees an owner. A member's own data is on their "what is collected about me" page,
    not on a timeline of their own."""
    if not (viewer.is_active and viewer.can_view_activity):
        return False
    if viewer.project_id != target.project_id:
        return False
    if viewer.role == Role.OWNER:
        return viewer.pk is not None
    if viewer.pk is None or viewer.pk == target.pk or _owner_like(target):
        return False
    return ROLE_RANK.get(viewer.role, -1) > ROLE_RANK.get(target.role, 5)


def may_see_screens(viewer: Membership, target: Membership) -> bool:
    """Whether the viewer may see the target's screenshots, thumbnails included: a member
    who may see numbers may have one revealed on the screen, so only a viewer who may see
    numbers too sees their screens."""
    return may_watch(viewer, target) and (viewer.can_see_phones or not target.can_see_phones)
