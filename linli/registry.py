"""The community registry: ID-number checks, CSV imports (residents, households, vehicles) and duty rosters.

An import reads every row first and reports each bad one by line and field; a dry run writes
nothing, a real run writes only the good rows (each row all or nothing) and says how many.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Literal

from sqlmodel import Session, col, select

from linli.errors import ValidationError
from linli.models import Building, Resident, ResidentKind, Staff, utcnow
from linli.models.registry import AuditEntry, DutyShift, Household, ResidentDetail, ResidentTag, Unit, Vehicle

ImportKind = Literal["residents", "households", "vehicles"]
ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK = "10X98765432"
PLATE = re.compile(r"^[\u4e00-\u9fff][A-Z][A-Z0-9]{5,6}$")
PHONE = re.compile(r"^1\d{10}$")
COLUMNS: dict[str, list[str]] = {
    "households": ["building", "unit", "room"],
    "residents": ["name", "phone", "id_number", "building", "unit", "room", "kind", "living_alone", "tag",
                  "tag_reason"],
    "vehicles": ["plate", "building", "unit", "room", "permit", "permit_until"],
}
REQUIRED: dict[str, set[str]] = {
    "households": {"building", "room"},
    "residents": {"name", "building", "room"},
    "vehicles": {"plate", "building", "room"},
}


def id_number_valid(value: str) -> bool:
    """Whether an 18-character resident ID (GB 11643) has a valid birth date and check character."""
    value = value.strip().upper()
    if len(value) != 18 or not value[:17].isdigit():
        return False
    try:
        datetime.strptime(value[6:14], "%Y%m%d")
    except ValueError:
        return False
    total = sum(int(d) * w for d, w in zip(value[:17], ID_WEIGHTS, strict=True))
    return ID_CHECK[total % 11] == value[17]


def normalise_plate(value: str) -> str:
    """A plate without spaces or the middle dot, upper case: '皖A·12345' → '皖A12345'."""
    return value.strip().replace(" ", "").replace("·", "").upper()


@dataclass
class RowError:
    """One bad row: its line in the file, the field, and what is wrong."""

    line: int
    field: str
    message: str


@dataclass
class ImportResult:
    """What an import did (or, in a dry run, would do)."""

    kind: str
    rows: int
    imported: int
    dry_run: bool
    errors: list[RowError] = field(default_factory=list)


def _read_rows(text: str, kind: str) -> list[tuple[int, dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = REQUIRED[kind] - set(header)
    if missing:
        raise ValidationError(f"the {kind} file lacks the column(s) {', '.join(sorted(missing))}",
                              field="header", hint="columns: " + ",".join(COLUMNS[kind]))
    rows = []
    for number, raw in enumerate(reader, start=2):  # line 1 is the header
        rows.append((number, {(k or "").strip(): (v or "").strip() for k, v in raw.items()}))
    return rows


class _Context:
    """What the rows of one import look up and what they claim (plates, ID numbers) as they go."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.buildings = {b.code: b for b in session.exec(select(Building)).all()}
        self.plates = set(session.exec(select(Vehicle.plate)).all())
        self.id_numbers = {n for n in session.exec(select(ResidentDetail.id_number)).all() if n}

    def building(self, code: str) -> Building:
        building = self.buildings.get(code)
        if building is None:
            raise ValidationError(f"unknown building {code!r}", field="building",
                                  hint="use a building code of the registry, e.g. XFL-B1")
        return building

    def household(self, row: dict[str, str], *, create: bool) -> Household:
        building = self.building(row["building"])
        if not row.get("room"):
            raise ValidationError("room is empty", field="room")
        unit = row.get("unit", "")
        code = "-".join(part for part in (building.code, unit, row["room"]) if part)
        household = self.session.exec(select(Household).where(Household.code == code)).first()
        if household is None:
            if not create:
                raise ValidationError(f"no household {code}", field="room", hint="import the households first")
            unit_id = None
            if unit:
                unit_row = self.session.exec(select(Unit).where(Unit.building_id == building.id,
                                                                Unit.code == unit)).first()
                if unit_row is None:
                    unit_row = Unit(building_id=building.id, code=unit)  # type: ignore[arg-type]
                    self.session.add(unit_row)
                    self.session.flush()
                unit_id = unit_row.id
            household = Household(code=code, building_id=building.id, unit_id=unit_id,  # type: ignore[arg-type]
                                  room=row["room"])
            self.session.add(household)
            self.session.flush()
        return household


def _yes(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "y", "是"}


def _resident_row(ctx: _Context, row: dict[str, str], by: str) -> None:
    name = row.get("name", "")
    if not name or len(name) > 50:
        raise ValidationError("name is empty or longer than 50 characters", field="name")
    phone = row.get("phone", "")
    if phone and not PHONE.match(phone):
        raise ValidationError(f"phone {phone[:3]}… is not an 11-digit mobile number", field="phone")
    id_number = row.get("id_number", "").upper()
    if id_number:
        if not id_number_valid(id_number):
            raise ValidationError("ID number fails its checksum (or birth date)", field="id_number",
                                  hint="check the 18 characters against the ID card")
        if id_number in ctx.id_numbers:
            raise ValidationError("ID number already registered", field="id_number")
    kind = row.get("kind") or "resident"
    aliases = {"常住": "resident", "流动": "floating", "重点": "key"}
    kind = aliases.get(kind, kind)
    if kind not in ResidentKind.__members__:
        raise ValidationError(f"unknown kind {kind!r}", field="kind", hint="resident/常住, floating/流动, key/重点")
    if row.get("tag") and not row.get("tag_reason"):
        raise ValidationError("a tag needs a reason", field="tag_reason")
    household = ctx.household(row, create=True)
    building = ctx.buildings[row["building"]]
    resident = Resident(community_id=building.community_id, building_id=building.id, name=name, phone=phone,
                        kind=ResidentKind(kind))
    ctx.session.add(resident)
    ctx.session.flush()
    ctx.session.add(ResidentDetail(resident_id=resident.id, household_id=household.id,  # type: ignore[arg-type]
                                   id_number=id_number, living_alone=_yes(row.get("living_alone", ""))))
    if row.get("tag"):
        ctx.session.add(ResidentTag(resident_id=resident.id, tag=row["tag"][:40],  # type: ignore[arg-type]
                                    reason=row["tag_reason"][:500], created_by=by))
    if id_number:
        ctx.id_numbers.add(id_number)


def _household_row(ctx: _Context, row: dict[str, str], by: str) -> None:
    ctx.household(row, create=True)


def _vehicle_row(ctx: _Context, row: dict[str, str], by: str) -> None:
    plate = normalise_plate(row.get("plate", ""))
    if not PLATE.match(plate):
        raise ValidationError("plate is not a mainland plate like 皖A12345", field="plate")
    if plate in ctx.plates:
        raise ValidationError("duplicate plate: already registered or earlier in this file", field="plate")
    household = ctx.household(row, create=False)
    until = None
    if row.get("permit_until"):
        try:
            until = date.fromisoformat(row["permit_until"])
        except ValueError as err:
            raise ValidationError("permit_until is not a date YYYY-MM-DD", field="permit_until") from err
    ctx.session.add(Vehicle(plate=plate, household_id=household.id, permit=row.get("permit", "")[:40],  # type: ignore[arg-type]
                            permit_until=until))
    ctx.plates.add(plate)


ROW_IMPORTERS: dict[str, Callable[[_Context, dict[str, str], str], None]] = {
    "residents": _resident_row, "households": _household_row, "vehicles": _vehicle_row,
}


def import_csv(session: Session, kind: str, text: str, *, dry_run: bool = False, by: str = "cli") -> ImportResult:
    """Import a CSV of `kind`: each row in its own savepoint; bad rows reported; nothing kept on a dry run.

    The caller commits; on a dry run the session is rolled back here, so nothing is written.
    """
    if kind not in ROW_IMPORTERS:
        raise ValidationError(f"unknown import {kind!r}", hint="residents, households or vehicles")
    rows = _read_rows(text, kind)
    ctx = _Context(session)
    result = ImportResult(kind=kind, rows=len(rows), imported=0, dry_run=dry_run)
    # The audit line is written first: on SQLite (pysqlite) a SAVEPOINT issued before any write
    # becomes the outermost transaction and its RELEASE commits, which would defeat the dry run.
    entry = AuditEntry(actor=by, action="import", entity=kind)
    session.add(entry)
    session.flush()
    for line, row in rows:
        savepoint = session.begin_nested()
        try:
            ROW_IMPORTERS[kind](ctx, row, by)
            session.flush()
        except ValidationError as err:
            savepoint.rollback()
            result.errors.append(RowError(line=line, field=err.field, message=err.message))
        else:
            savepoint.commit()
            result.imported += 1
    if dry_run:
        session.rollback()
        return result
    entry.detail = f"{result.imported} of {result.rows} rows, {len(result.errors)} refused"
    session.add(entry)
    session.flush()
    return result


def import_file(session: Session, kind: str, path: Path, *, dry_run: bool = False, by: str = "cli") -> ImportResult:
    """Import a UTF-8 CSV file (see `import_csv`)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise ValidationError(f"cannot read {path}: {err}", hint="give a UTF-8 CSV file") from err
    return import_csv(session, kind, text, dry_run=dry_run, by=by)


def on_duty(session: Session, *, team: str, at: datetime | None = None) -> list[Staff]:
    """Staff of `team` on the roster at `at` (now by default); without a roster for the team, its on-duty flag."""
    at = at or utcnow()
    shifts = session.exec(select(Staff).join(DutyShift, col(DutyShift.staff_id) == Staff.id)
                          .where(DutyShift.team == team, col(DutyShift.starts_at) <= at, col(DutyShift.ends_at) > at)
                          .order_by(col(Staff.id))).all()
    if shifts:
        return list({s.id: s for s in shifts}.values())  # one row per person when shifts overlap
    has_roster = session.exec(select(DutyShift.id).where(DutyShift.team == team).limit(1)).first() is not None
    if has_roster:
        return []
    return list(session.exec(select(Staff).where(Staff.team == team, Staff.on_duty == True)  # noqa: E712
                             .order_by(col(Staff.id))).all())


def rostered_ids(session: Session, *, team: str, at: datetime | None = None) -> set[int] | None:
    """Ids of `team`'s staff on the roster at `at`; None when the team keeps no roster (use the on-duty flag)."""
    at = at or utcnow()
    if session.exec(select(DutyShift.id).where(DutyShift.team == team).limit(1)).first() is None:
        return None
    return set(session.exec(select(DutyShift.staff_id).where(
        DutyShift.team == team, col(DutyShift.starts_at) <= at, col(DutyShift.ends_at) > at)).all())


def add_shifts(session: Session, shifts: Iterable[tuple[int, str, datetime, datetime]]) -> int:
    """Add roster shifts (staff id, team, start, end); an end not after its start is refused."""
    count = 0
    for staff_id, team, start, end in shifts:
        if end <= start:
            raise ValidationError("a shift must end after it starts", field="ends_at")
        session.add(DutyShift(staff_id=staff_id, team=team, starts_at=start, ends_at=end))
        count += 1
    session.flush()
    return count
