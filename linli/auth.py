"""Dashboard accounts: scrypt password hashes, sessions, roles and what each role may do, grid scope.

A wrong user name and a wrong password get the same answer. After a few failures in a row an
account must wait before the next try (doubling, up to 5 minutes), even with the right password.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from linli.errors import AccessDenied, ValidationError
from linli.models import Grid, Staff, utcnow
from linli.models.registry import LoginSession, Role, UserAccount

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SESSION_HOURS = 12
FREE_FAILURES = 3
MAX_WAIT_SECONDS = 300
# A hash to check unknown user names against, so they take as long as known ones.
_DUMMY_HASH = ""

# Who may do what: actions are rows, roles the columns (rules as a table, not if/elif).
PERMISSIONS: dict[str, frozenset[Role]] = {
    # Street-wide case figures and lists: not for grid workers, who see only their own grids.
    "view_overview": frozenset({Role.admin, Role.manager, Role.staff, Role.viewer}),
    "view_residents": frozenset({Role.admin, Role.manager, Role.staff, Role.grid_worker}),
    "edit_residents": frozenset({Role.admin, Role.manager, Role.grid_worker}),
    "file_on_behalf": frozenset({Role.admin, Role.manager, Role.staff, Role.grid_worker}),
    "work_cases": frozenset({Role.admin, Role.manager, Role.staff, Role.grid_worker}),
    "review_changes": frozenset({Role.admin, Role.manager, Role.staff}),
    "reveal": frozenset({Role.admin, Role.manager}),
    "export": frozenset({Role.admin, Role.manager, Role.staff}),
    "export_unmasked": frozenset({Role.admin}),
    "publish_announcement": frozenset({Role.admin, Role.manager}),
    "view_announcements": frozenset(Role),
    "view_patrols": frozenset({Role.admin, Role.manager, Role.staff}),
    "scan_patrol": frozenset({Role.admin, Role.manager, Role.staff}),
    "manage_users": frozenset({Role.admin}),
    "view_devices": frozenset({Role.admin, Role.manager, Role.staff}),
    "view_records": frozenset({Role.admin, Role.manager, Role.staff}),  # access and vehicle records
    "view_processes": frozenset({Role.admin, Role.manager}),
}


def hash_password(password: str) -> str:
    """'scrypt$n$r$p$salt$hash' (hex) of `password` with a fresh salt."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    """Whether `password` matches a hash from `hash_password` (constant-time compare)."""
    try:
        _, n, r, p, salt, digest = stored.split("$")
        got = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p),
                             dklen=len(digest) // 2)
    except ValueError:
        return False
    return hmac.compare_digest(got.hex(), digest)


@dataclass(frozen=True)
class CurrentUser:
    """Who is signed in: what every page and action is checked against."""

    id: int
    username: str
    role: Role
    staff_id: int | None

    @property
    def actor(self) -> str:
        """How this user appears in the audit log and timelines."""
        return f"user:{self.username}"


def create_user(session: Session, username: str, password: str, role: Role | str,
                *, staff_id: int | None = None) -> UserAccount:
    """Add a dashboard account; a grid worker account must name its staff member."""
    username = username.strip()
    if not username or len(username) > 50:
        raise ValidationError("user name is empty or longer than 50 characters", field="username")
    if len(password) < 8:
        raise ValidationError("password shorter than 8 characters", field="password",
                              hint="choose at least 8 characters")
    if role not in Role.__members__:
        raise ValidationError(f"unknown role {role!r}", field="role", hint="use: " + ", ".join(Role))
    if Role(role) == Role.grid_worker and staff_id is None:
        raise ValidationError("a grid worker account needs --staff (the grid worker's staff id)", field="staff_id")
    if staff_id is not None and session.get(Staff, staff_id) is None:
        raise ValidationError(f"no staff member {staff_id}", field="staff_id", hint="give an existing staff id")
    if session.exec(select(UserAccount).where(UserAccount.username == username)).first():
        raise ValidationError(f"user {username!r} exists", field="username")
    user = UserAccount(username=username, password_hash=hash_password(password), role=Role(role), staff_id=staff_id)
    session.add(user)
    session.flush()
    return user


def wait_seconds(failures: int) -> int:
    """How long an account waits after `failures` failures in a row: 0 for the first few, then doubling."""
    if failures < FREE_FAILURES:
        return 0
    return min(2 ** (failures - FREE_FAILURES + 1), MAX_WAIT_SECONDS)


def login(session: Session, username: str, password: str, *, now: datetime | None = None) -> str:
    """Check the credentials and open a session; return its token. The caller commits (failures too)."""
    global _DUMMY_HASH
    now = now or utcnow()
    user = session.exec(select(UserAccount).where(UserAccount.username == username.strip())).first()
    refused = AccessDenied("用户名或密码错误 / wrong user name or password", hint="check both and try again")
    if user is None:
        _DUMMY_HASH = _DUMMY_HASH or hash_password("not-a-password")
        verify_password(password, _DUMMY_HASH)
        raise refused
    wait = wait_seconds(user.failed_logins)
    if wait and user.last_failed_at and now < user.last_failed_at + timedelta(seconds=wait):
        left = int((user.last_failed_at + timedelta(seconds=wait) - now).total_seconds()) + 1
        raise AccessDenied(f"登录失败次数过多，请 {left} 秒后再试 / too many failed logins; try again in {left} s",
                           hint="wait, then sign in again")
    if not verify_password(password, user.password_hash):
        user.failed_logins += 1
        user.last_failed_at = now
        session.add(user)
        session.flush()
        raise refused
    user.failed_logins = 0
    user.last_failed_at = None
    token = secrets.token_urlsafe(32)
    session.add(user)
    session.add(LoginSession(token_hash=_token_hash(token), user_id=user.id,  # type: ignore[arg-type]
                             created_at=now, expires_at=now + timedelta(hours=SESSION_HOURS)))
    session.flush()
    return token


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def session_user(session: Session, token: str, *, now: datetime | None = None) -> CurrentUser:
    """The user of a live session token; an unknown or expired one is refused."""
    now = now or utcnow()
    row = session.exec(select(LoginSession).where(LoginSession.token_hash == _token_hash(token))).first()
    if row is None or row.expires_at <= now:
        raise AccessDenied("会话已过期，请重新登录 / session expired", hint="sign in again")
    user = session.get(UserAccount, row.user_id)
    assert user is not None and user.id is not None
    return CurrentUser(id=user.id, username=user.username, role=user.role, staff_id=user.staff_id)


def logout(session: Session, token: str) -> None:
    """End a session."""
    row = session.exec(select(LoginSession).where(LoginSession.token_hash == _token_hash(token))).first()
    if row is not None:
        session.delete(row)
        session.flush()


def allowed(user: CurrentUser, action: str) -> bool:
    """Whether the user's role may do `action` (a key of PERMISSIONS)."""
    return user.role in PERMISSIONS[action]


def require(user: CurrentUser, action: str) -> None:
    """Refuse with AccessDenied unless the user's role may do `action`."""
    if not allowed(user, action):
        raise AccessDenied(f"角色 {user.role} 无权执行此操作 / role {user.role} may not {action}",
                           hint="ask an administrator")


def grid_scope(session: Session, user: CurrentUser) -> set[int] | None:
    """The grid ids the user may see: None means every grid; a grid worker gets only their own."""
    if user.role != Role.grid_worker:
        return None
    if user.staff_id is None:
        return set()
    return {g for g in session.exec(select(Grid.id).where(Grid.grid_worker_id == user.staff_id)
                                    .order_by(col(Grid.id))).all() if g is not None}
