"""The intake API: Open311 GeoReport v2 under /open311/v2/, plus Linli's work and timeline extensions.

Any client that speaks Open311 (a mini-program backend, the 12345 hotline, a city app) lists
services, posts requests (with a photo upload or a media_url) and follows them. Posting and
every work action need an API key (`linli apikey create NAME`). Errors are Open311's
``[{"code": …, "description": …}]``; nothing is written when a request is refused.

Each posted report goes through `linli.loop.intake.file_report` in one unit of work and then
emits the same `linli.case.reported` event as the CLI, which starts the report flow.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from fastapi import BackgroundTasks, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DataError as DatabaseDataError
from sqlmodel import Session, col, select
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from linli import db
from linli.api import open311
from linli.api.metrics import METRICS_PATH, ApiMetrics, MetricsMiddleware
from linli.apikeys import check_key
from linli.errors import (
    ConfigurationError,
    Conflict,
    DeliveryError,
    IllegalTransition,
    LinliError,
    NotFound,
    ValidationError,
)
from linli.events import EventBus, PrefectEventBus
from linli.loop import LoopConfig, StepResult
from linli.loop.assess import reject
from linli.loop.common import get_case
from linli.loop.evaluate import rate
from linli.loop.intake import file_report, parse_report
from linli.loop.work import accept, add_photo, claim, parse_actor, progress, reassign, resolve
from linli.models import Case, CaseSource, Category, PhotoKind
from linli.notify import AppriseNotifier, Notifier, deliver
from linli.policy import GovernancePolicy, load_policy
from linli.settings import Language, Settings, get_settings
from linli.statemachine import record
from linli.storage import ObjectStore, make_store

log = logging.getLogger(__name__)
PREFIX = "/open311/v2"
MAX_RESULTS = 1000
DEFAULT_WINDOW = timedelta(days=90)
STATUS_CODES: list[tuple[type[LinliError], int]] = [
    (NotFound, 404), (Conflict, 409), (IllegalTransition, 409), (ValidationError, 400),
    (ConfigurationError, 500), (DeliveryError, 502),
]


def _status_of(err: LinliError) -> int:
    if isinstance(err, ValidationError) and err.field == "api_key":
        return 403
    return next((code for cls, code in STATUS_CODES if isinstance(err, cls)), 500)


def open311_error(status: int, description: str) -> JSONResponse:
    """Open311's error body: a list of {code, description}."""
    return JSONResponse(status_code=status, content=[{"code": status, "description": description}])


class PolicyCache:
    """The governance policy, re-read from its block at most every `ttl` seconds.

    Intake keeps working while Prefect is down: the defaults apply until it answers again.
    """

    def __init__(self, settings: Settings, source: Callable[[], GovernancePolicy | None] | None, ttl: float = 5):
        self.settings = settings
        self.source = source or (lambda: load_policy(settings.governance.policy_block))
        self.ttl = ttl
        self._value: LoopConfig | None = None
        self._at = 0.0
        self._lock = threading.Lock()

    def config(self) -> LoopConfig:
        """The loop configuration under the current policy."""
        with self._lock:
            if self._value is None or time.monotonic() - self._at > self.ttl:
                try:
                    policy = self.source()
                except (httpx.HTTPError, OSError, RuntimeError) as err:
                    log.warning("governance policy unreadable (%s); using the defaults", err)
                    policy = None
                self._value = LoopConfig.from_settings(self.settings, policy)
                self._at = time.monotonic()
            return self._value


def create_app(
    settings: Settings | None = None, *, engine: Engine | None = None, bus: EventBus | None = None,
    store: ObjectStore | None = None, notifier: Notifier | None = None,
    policy_source: Callable[[], GovernancePolicy | None] | None = None,
) -> FastAPI:
    """The intake API over the configured database, object store, event bus and notifier."""
    settings = settings or get_settings()
    the_store = store or make_store(settings)
    the_bus = bus or PrefectEventBus()
    the_notifier = notifier or AppriseNotifier(timeout_seconds=settings.notify.timeout_seconds)
    policies = PolicyCache(settings, policy_source)
    max_photo = settings.storage.max_photo_bytes
    url_seconds = settings.governance.photo_url_seconds
    app = FastAPI(title="Linli Open311 GeoReport v2", version="2.0",
                  description="Report problems to the community (随手拍) and follow them to closure.",
                  openapi_url=f"{PREFIX}/openapi.json", docs_url=f"{PREFIX}/docs", redoc_url=None)
    app.state.metrics = ApiMetrics()  # Prometheus: requests and latency by route template, at /metrics
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    app.add_route(METRICS_PATH, app.state.metrics.endpoint, include_in_schema=False)

    @contextmanager
    def unit() -> Iterator[Session]:
        with db.session_scope(engine) as session:
            yield session

    def publish(results: list[StepResult], background: BackgroundTasks) -> None:
        """After the commit: deliver queued notifications (in the background) and emit the events."""
        ids = [n for r in results for n in r.notifications]
        if ids:
            background.add_task(_deliver, ids)
        the_bus.emit([e for r in results for e in r.events])

    def _deliver(ids: list[int]) -> None:
        with db.session_scope(engine) as session:
            deliver(session, ids, notifier=the_notifier, global_urls=settings.notify.urls)

    def lang_of(request: Request) -> Language:
        wanted = request.query_params.get("lang", "")
        return Language(wanted) if wanted in Language.__members__ else settings.language

    @app.exception_handler(LinliError)
    async def _linli_error(request: Request, err: LinliError) -> JSONResponse:
        return open311_error(_status_of(err), str(err))

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, err: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or 'request'}: {e['msg']}"
                             for e in err.errors())
        return open311_error(400, problems)

    @app.exception_handler(DatabaseDataError)
    async def _unstorable(request: Request, err: DatabaseDataError) -> JSONResponse:
        # A value the database refuses (a NUL character on PostgreSQL, a number out of range) is the
        # client's to fix, not a server error.
        reason = str(err.orig).splitlines()[0] if err.orig is not None else "refused by the database"
        return open311_error(400, f"a value in the request cannot be stored ({reason}); "
                                  "remove NUL characters and keep numbers in range")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        return open311_error(err.status_code, str(err.detail))

    # --- Open311 GeoReport v2 ------------------------------------------------------------------

    @app.get(f"{PREFIX}/services.json", summary="Service list (the case categories)")
    def services(request: Request) -> list[dict[str, Any]]:
        policy = policies.config().policy
        with unit() as session:
            rows = session.exec(select(Category).order_by(Category.id)).all()
            return [open311.service(c, lang_of(request), policy) for c in rows]

    @app.get(PREFIX + "/services/{code}.json", summary="Service definition (attributes)")
    def service_definition(code: str) -> dict[str, Any]:
        with unit() as session:
            return open311.definition(session, _category(session, code, status=404))

    @app.post(f"{PREFIX}/requests.json", status_code=201, summary="Create a service request (form or multipart)")
    async def post_request(request: Request, background: BackgroundTasks) -> list[dict[str, Any]]:
        form = await request.form()
        photo = await _photo(form, max_photo)
        config = policies.config()

        def work() -> StepResult:
            with unit() as session:
                check_key(session, _text(form, "api_key"))
                code = _text(form, "service_code")
                if not code:
                    raise ValidationError("service_code is required", field="service_code",
                                          hint="list services at services.json")
                _category(session, code)
                report = parse_report(_report_fields(form))
                media_url = _media_url(_text(form, "media_url"))
                result = file_report(session, report, config=config, store=the_store, photo=photo,
                                     max_photo_bytes=max_photo)
                if media_url:
                    record(session, session.get(Case, result.case_id), actor="api",  # type: ignore[arg-type]
                           action=open311.MEDIA_URL_ACTION, reason=media_url)
                return result

        result = await _in_thread(work)
        publish([result], background)
        return [{"service_request_id": result.case_number, "service_notice": "", "account_id": None}]

    @app.get(f"{PREFIX}/requests.json", summary="Query service requests")
    def get_requests(request: Request, service_request_id: str | None = None, service_code: str | None = None,
                     status: str | None = None, start_date: str | None = None, end_date: str | None = None,
                     api_key: str | None = None, extensions: bool = False) -> list[dict[str, Any]]:
        lang = lang_of(request)
        with unit() as session:
            staff_store = the_store if api_key and _valid_key(session, api_key) else None
            query = select(Case)
            if service_request_id:
                query = query.where(col(Case.number).in_([s.strip() for s in service_request_id.split(",")]))
            else:
                start = _date(start_date, "start_date")
                end = _date(end_date, "end_date")
                if start is None:
                    start = (end or datetime.now(UTC)) - DEFAULT_WINDOW
                query = query.where(col(Case.created_at) >= start)
                if end is not None:
                    query = query.where(col(Case.created_at) <= end)
            if service_code:
                codes = [c.strip() for c in service_code.split(",")]
                ids = session.exec(select(Category.id).where(col(Category.code).in_(codes))).all()
                query = query.where(col(Case.category_id).in_(ids))
            if status:
                wanted = {s.strip() for s in status.split(",")}
                if not wanted <= {"open", "closed"}:
                    raise ValidationError(f"status must be open or closed, not {status!r}", field="status")
                closed = list(open311.CLOSED)
                if wanted == {"open"}:
                    query = query.where(col(Case.status).not_in(closed))
                elif wanted == {"closed"}:
                    query = query.where(col(Case.status).in_(closed))
            cases = session.exec(query.order_by(col(Case.created_at).desc()).limit(MAX_RESULTS)).all()
            return [open311.request_row(session, c, lang, store=staff_store, url_seconds=url_seconds,
                                        extensions=extensions) for c in cases]

    @app.get(PREFIX + "/requests/{number}.json", summary="One service request")
    def get_request(request: Request, number: str, api_key: str | None = None,
                    extensions: bool = False) -> list[dict[str, Any]]:
        with unit() as session:
            staff_store = the_store if api_key and _valid_key(session, api_key) else None
            case = _case(session, number)
            return [open311.request_row(session, case, lang_of(request), store=staff_store, url_seconds=url_seconds,
                                        extensions=extensions)]

    # --- Linli extensions ----------------------------------------------------------------------

    @app.get(PREFIX + "/requests/{number}/timeline.json", summary="Linli: the whole timeline of a request")
    def get_timeline(request: Request, number: str) -> dict[str, Any]:
        with unit() as session:
            return open311.timeline(session, _case(session, number), lang_of(request))

    @app.get(PREFIX + "/requests/{number}/photos.json", summary="Linli: before/after photos (presigned URLs)")
    def get_photos(number: str, api_key: str | None = None) -> list[dict[str, Any]]:
        with unit() as session:
            check_key(session, api_key)
            return open311.photos(session, _case(session, number), the_store, url_seconds)

    def action(name: str, summary: str, step: Callable[[Session, Case, FormData, bytes | None], StepResult]
               ) -> None:
        async def endpoint(number: str, request: Request, background: BackgroundTasks) -> dict[str, Any]:
            form = await request.form()
            photo = await _photo(form, max_photo)

            def work() -> StepResult:
                with unit() as session:
                    check_key(session, _text(form, "api_key"))
                    return step(session, _case(session, number), form, photo)

            result = await _in_thread(work)
            publish([result], background)
            return {"service_request_id": result.case_number, "linli_status": result.status,
                    "detail": result.detail}

        app.post(PREFIX + "/requests/{number}/" + name + ".json", summary=f"Linli: {summary}")(endpoint)

    action("claim", "a volunteer claims a pooled request (one claim wins)",
           lambda s, c, f, p: claim(s, c.id or 0, volunteer_id=_int(f, "volunteer_id"), config=policies.config()))
    action("accept", "the assignee accepts", lambda s, c, f, p: accept(s, c.id or 0, actor=_actor(f)))
    action("progress", "a progress note",
           lambda s, c, f, p: progress(s, c.id or 0, actor=_actor(f), note=_text(f, "note")))
    action("photos", "add a before/after photo", lambda s, c, f, p: _add_photo(s, c, f, p))
    action("resolve", "the assignee resolves (optional after-photo as 'media')",
           lambda s, c, f, p: resolve(s, c.id or 0, actor=_actor(f), note=_text(f, "note"), store=the_store,
                                      photo=p, max_photo_bytes=max_photo))
    action("rating", "the reporter rates 1–5 with a comment",
           lambda s, c, f, p: rate(s, c.id or 0, resident_id=_int(f, "resident_id"), rating=_int(f, "rating"),
                                   comment=_text(f, "comment")))
    action("reassign", "reassign to a person or transfer to a team, with a reason",
           lambda s, c, f, p: reassign(s, c.id or 0, by=_actor(f, "by"), reason=_text(f, "reason"),
                                       config=policies.config(), to_staff=_opt_int(f, "staff_id"),
                                       to_team=_text(f, "team") or None))
    action("reject", "reject with a reason",
           lambda s, c, f, p: reject(s, c, reason=_text(f, "reason"), actor=_actor(f, "by"),
                                     config=policies.config()))

    def _add_photo(session: Session, case: Case, form: FormData, photo: bytes | None) -> StepResult:
        actor = _actor(form)
        if photo is None:
            raise ValidationError("no photo uploaded", field="media", hint="send the image as multipart field 'media'")
        raw_kind = _text(form, "kind") or "after"
        if raw_kind not in PhotoKind.__members__:
            raise ValidationError(f"photo kind {raw_kind!r} is unknown", field="kind", hint="before or after")
        add_photo(session, case, kind=PhotoKind(raw_kind), store=the_store, photo=photo,
                  max_photo_bytes=max_photo, actor=actor)
        return StepResult(case.id or 0, case.number, str(case.status), detail=f"{raw_kind} photo stored")

    return app


async def _in_thread(work: Callable[[], StepResult]) -> StepResult:
    """Run blocking database work off the event loop."""
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(work)


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def _int(form: FormData, name: str) -> int:
    raw = _text(form, name)
    if not raw.lstrip("-").isdigit():
        raise ValidationError(f"{name} must be a whole number, not {raw!r}" if raw else f"{name} is required",
                              field=name)
    return int(raw)


def _opt_int(form: FormData, name: str) -> int | None:
    return _int(form, name) if _text(form, name) else None


def _actor(form: FormData, name: str = "actor") -> str:
    raw = _text(form, name)
    if not raw:
        raise ValidationError(f"{name} is required", field=name, hint="staff:ID or volunteer:ID")
    parse_actor(raw)
    return raw


def _float(form: FormData, name: str) -> float | None:
    raw = _text(form, name)
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError as err:
        raise ValidationError(f"{name} is not a number: {raw!r}", field=name,
                              hint="lat in [-90, 90] and long in [-180, 180], decimal degrees (WGS84)") from err


def _report_fields(form: FormData) -> dict[str, object]:
    """Open311 request fields → Linli's report fields (only those given)."""
    resident = _text(form, "attribute[resident_id]")
    if resident and not resident.isdigit():
        raise ValidationError(f"attribute[resident_id] must be a number, not {resident!r}", field="resident_id")
    source = CaseSource.grid_worker if _text(form, "attribute[on_behalf_of]") else CaseSource.api
    fields: dict[str, object] = {
        "description": _text(form, "description"), "category": _text(form, "service_code"),
        "lat": _float(form, "lat"), "lon": _float(form, "long"),
        "building": _text(form, "address_id") or _text(form, "attribute[building]") or None,
        "reporter_id": int(resident) if resident else None, "reporter_phone": _text(form, "phone") or None,
        "source": source,
    }
    return {k: v for k, v in fields.items() if v is not None}


def _media_url(raw: str) -> str:
    """A media_url is kept as a link (never fetched: Linli makes no outside requests)."""
    if not raw:
        return ""
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc or len(raw) > 1000:
        raise ValidationError(f"media_url is not an http(s) URL: {raw[:100]!r}", field="media_url",
                              hint="give a link to the photo, or upload it as multipart field 'media'")
    return raw


async def _photo(form: FormData, max_bytes: int) -> bytes | None:
    """The uploaded photo ('media'), refused early when larger than the limit."""
    upload = form.get("media")
    if not isinstance(upload, UploadFile):
        return None
    data = await upload.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ValidationError(f"photo is larger than the limit of {max_bytes // 1024} KiB", field="photo",
                              hint="send a smaller JPEG, PNG or WebP photo")
    return data


def _date(raw: str | None, name: str) -> datetime | None:
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as err:
        raise ValidationError(f"{name} is not an ISO 8601 time: {raw!r}", field=name,
                              hint="e.g. 2026-11-25T08:00:00+08:00") from err
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _category(session: Session, code: str, *, status: int = 400) -> Category:
    category = session.exec(select(Category).where(Category.code == code)).first()
    if category is None:
        codes = ", ".join(session.exec(select(Category.code).order_by(Category.id)).all())
        error = NotFound if status == 404 else ValidationError
        raise error(f"unknown service_code {code!r}", hint=f"use one of: {codes}")
    return category


def _case(session: Session, number: str) -> Case:
    if not number.startswith("LL-"):
        raise NotFound(f"no service request {number!r}", hint="service_request_id looks like LL-20261125-000001")
    return get_case(session, number)


def _valid_key(session: Session, key: str) -> bool:
    try:
        check_key(session, key)
    except ValidationError:
        return False
    return True
