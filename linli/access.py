"""Access credentials with fallback: several methods per resident, only method + reference stored.

The gate (devices issue) records each attempt as an `access_record` (method, credential reference,
granted). Here: enrolling credentials, finding a resident's repeated face failures at one gate within
minutes (→ a notice to the resident and the property desk with the other ways in and how to
re-enrol — the seed's haircut case), and voiding face credentials unused for N days (→ the resident
is told how to re-enrol). No face image or template is stored anywhere in Linli.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import func
from sqlmodel import Session, col, select

from linli.errors import NotFound, ValidationError
from linli.models import AccessRecord, Building, Device, Resident, StaffRole
from linli.models.registry import AccessCredential, AccessNotice, CredentialStatus
from linli.notify import queue, recipient_context
from linli.privacy import mask_name
from linli.registry import on_duty

METHODS = ("face", "card", "qr", "id_card", "fingerprint", "app")
METHOD_LABELS: dict[str, dict[str, str]] = {
    "face": {"zh": "刷脸", "en": "face"},
    "card": {"zh": "门禁卡", "en": "access card"},
    "qr": {"zh": "二维码（邻里 App 或短信里的码）", "en": "QR code (Linli app or SMS)"},
    "id_card": {"zh": "身份证", "en": "ID card"},
    "fingerprint": {"zh": "指纹", "en": "fingerprint"},
    "app": {"zh": "邻里 App 远程开门", "en": "open from the Linli app"},
}
# Methods any resident can use at the desk even without one enrolled: the ID card and a one-off QR code.
ALWAYS_AVAILABLE = ("id_card", "qr")
REPEAT_NOTICE_HOURS = 1  # one fallback notice per resident per hour, however many more failures


def enrol(session: Session, resident_id: int, method: str, reference: str) -> AccessCredential:
    """Add a credential (method + the reference the gate reports); a face reference is an enrolment id, not data."""
    if method not in METHODS:
        raise ValidationError(f"unknown access method {method!r}", field="method", hint="one of " + ", ".join(METHODS))
    reference = reference.strip()
    if not reference or len(reference) > 64:
        raise ValidationError("the credential reference must be 1–64 characters", field="reference",
                              hint="the card number, enrolment id or token the gate reports — never an image")
    if session.get(Resident, resident_id) is None:
        raise NotFound(f"no resident {resident_id}")
    existing = session.exec(select(AccessCredential).where(AccessCredential.method == method,
                                                           AccessCredential.reference == reference)).first()
    if existing is not None:
        if existing.resident_id != resident_id:
            raise ValidationError("this credential belongs to another resident", field="reference")
        existing.status, existing.voided_at, existing.void_reason = CredentialStatus.active, None, ""
        session.add(existing)
        session.flush()
        return existing
    row = AccessCredential(resident_id=resident_id, method=method, reference=reference)
    session.add(row)
    session.flush()
    return row


def fallbacks(session: Session, resident_id: int, language: str) -> list[str]:
    """The other ways this resident can get in: their active non-face credentials, then ID card and QR."""
    held = session.exec(select(AccessCredential.method).where(
        AccessCredential.resident_id == resident_id, AccessCredential.status == CredentialStatus.active,
        AccessCredential.method != "face")).all()
    methods = list(dict.fromkeys([*held, *ALWAYS_AVAILABLE]))
    return [METHOD_LABELS[m].get(language, METHOD_LABELS[m]["zh"]) for m in methods]


@dataclass
class AccessOutcome:
    """What an access check did: residents noticed or credentials voided, and the notifications queued."""

    residents: list[int] = field(default_factory=list)
    notifications: list[int] = field(default_factory=list)


def _property_desk(session: Session, community_id: int) -> list[str]:
    desk = [s for s in on_duty(session, team="property") if s.community_id == community_id]
    leads = [s for s in desk if s.role == StaffRole.team_lead]
    return [f"staff:{s.id}" for s in (leads or desk)[:1]]


def face_failures(session: Session, *, now: datetime, minutes: int, threshold: int, language: str,
                  templates_dir: Path) -> AccessOutcome:
    """Residents whose face failed `threshold`+ times at one gate within `minutes`: notify them and the desk."""
    since = now - timedelta(minutes=minutes)
    counts = session.exec(
        select(AccessCredential.resident_id, AccessRecord.device_id, func.count())
        .join(AccessCredential, (col(AccessCredential.reference) == AccessRecord.credential_ref)
              & (col(AccessCredential.method) == AccessRecord.method))
        .where(AccessRecord.method == "face", AccessRecord.granted == False,  # noqa: E712
               col(AccessRecord.ts) >= since, col(AccessRecord.ts) <= now)
        .group_by(AccessCredential.resident_id, AccessRecord.device_id)).all()
    outcome = AccessOutcome()
    for resident_id, device_id, failures in counts:
        if failures < threshold or resident_id in outcome.residents:
            continue
        recent = session.exec(select(AccessNotice.id).where(
            AccessNotice.resident_id == resident_id, AccessNotice.kind == "face_fallback",
            col(AccessNotice.at) > now - timedelta(hours=REPEAT_NOTICE_HOURS))).first()
        if recent is not None:
            continue
        resident = session.get(Resident, resident_id)
        device = session.get(Device, device_id)
        assert resident is not None and device is not None
        building = session.get(Building, device.building_id) if device.building_id else None
        place = device.name or (building.name if building else device.code)
        context = {"place": place, "failures": failures, "fallbacks": fallbacks(session, resident_id, language)}
        targets = [(f"resident:{resident_id}", "您" if language == "zh" else "your")]
        targets += [(t, mask_name(resident.name) + ("" if language == "zh" else "'s")) for t in
                    _property_desk(session, resident.community_id)]
        for target, who in targets:
            row = queue(session, kind="face_fallback", target=target, template=f"face_fallback.{language}.md.j2",
                        language=language, case_id=None, templates_dir=templates_dir,
                        context={**context, "who": who, "recipient": recipient_context(session, target)})
            outcome.notifications.append(row.id)  # type: ignore[arg-type]
        session.add(AccessNotice(resident_id=resident_id, kind="face_fallback", device_id=device_id, at=now))
        outcome.residents.append(resident_id)
    session.flush()
    return outcome


def last_use(session: Session, credential: AccessCredential) -> datetime:
    """When the credential last opened a gate (its enrolment when never)."""
    used = session.exec(select(func.max(AccessRecord.ts)).where(
        AccessRecord.method == credential.method, AccessRecord.credential_ref == credential.reference,
        AccessRecord.granted == True)).one()  # noqa: E712
    return used or credential.enrolled_at  # max() keeps the column's type: aware UTC on both backends


def void_unused_faces(session: Session, *, now: datetime, days: int, language: str,
                      templates_dir: Path) -> AccessOutcome:
    """Void face credentials unused for `days` and tell each resident how to re-enrol; the caller commits."""
    outcome = AccessOutcome()
    cutoff = now - timedelta(days=days)
    for credential in session.exec(select(AccessCredential).where(
            AccessCredential.method == "face", AccessCredential.status == CredentialStatus.active)
            .order_by(col(AccessCredential.id))).all():
        if last_use(session, credential) >= cutoff:
            continue
        credential.status, credential.voided_at = CredentialStatus.void, now
        credential.void_reason = f"unused for {days} days"
        session.add(credential)
        target = f"resident:{credential.resident_id}"
        row = queue(session, kind="face_voided", target=target, template=f"face_voided.{language}.md.j2",
                    language=language, case_id=None, templates_dir=templates_dir,
                    context={"days": days, "recipient": recipient_context(session, target)})
        session.add(AccessNotice(resident_id=credential.resident_id, kind="face_voided", at=now))
        outcome.residents.append(credential.resident_id)
        outcome.notifications.append(row.id)  # type: ignore[arg-type]
    session.flush()
    return outcome
