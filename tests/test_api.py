"""The Open311 intake API over real HTTP (uvicorn on a free port), as an Open311 client sees it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import httpx
import pytest
from PIL import ExifTags, Image
from pydantic import SecretStr
from sqlalchemy.engine import Engine
from sqlmodel import Session, func, select
from typer.testing import CliRunner

from linli.api import create_app
from linli.apikeys import create_key
from linli.cli import app as cli
from linli.events import RecordingBus
from linli.loop.assess import assess, receive
from linli.loop.dispatch import dispatch
from linli.models import ApiKey, Case, CasePhoto, CaseStatus, Volunteer
from linli.notify import RecordingNotifier
from linli.settings import Settings
from linli.storage import LocalObjectStore, MinioObjectStore, ObjectStore
from tests.apiserver import serving
from tests.factories import CONFIG, a_resident, seeded
from tests.s3server import S3Server, running_s3

V2 = "/open311/v2"
GPS_IFD = ExifTags.IFD.GPSInfo


def jpeg_with_gps() -> bytes:
    """A small JPEG carrying EXIF with a GPS position, as a phone writes it."""
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "PhoneMaker"
    gps = exif.get_ifd(GPS_IFD)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (31.0, 49.0, 12.5)
    buffer = BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(buffer, format="JPEG", exif=exif)
    data = buffer.getvalue()
    assert b"PhoneMaker" in data
    return data


def assert_exif_free(data: bytes) -> None:
    image = Image.open(BytesIO(data))
    assert dict(image.getexif()) == {} and b"PhoneMaker" not in data and b"Exif\x00\x00" not in data


class Api:
    """A running API and what it was given."""

    def __init__(self, url: str, key: str, bus: RecordingBus, store: ObjectStore, notifier: RecordingNotifier):
        self.url, self.key, self.bus, self.store, self.notifier = url, key, bus, store, notifier
        self.http = httpx.Client(base_url=url + V2, timeout=30)


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real S3 server (SeaweedFS) for this module."""
    with running_s3(tmp_path_factory.mktemp("s3")) as server:
        yield server


def _api(settings: Settings, engine: Engine, session: Session, store: ObjectStore) -> Iterator[Api]:
    seeded(session)
    _row, key = create_key(session, "test-client")
    session.commit()
    bus, notifier = RecordingBus(), RecordingNotifier()
    app = create_app(settings, engine=engine, bus=bus, store=store, notifier=notifier, policy_source=lambda: None)
    with serving(app) as url:
        api = Api(url, key, bus, store, notifier)
        yield api
        api.http.close()


@pytest.fixture
def api(settings: Settings, engine: Engine, session: Session, tmp_path: Path) -> Iterator[Api]:
    """The API on the test database with a local-folder store."""
    yield from _api(settings, engine, session, LocalObjectStore(tmp_path / "objects"))


def _post(api: Api, *, files: dict | None = None, **fields: object) -> httpx.Response:  # type: ignore[type-arg]
    data = {"api_key": api.key, "service_code": "facility_repair", "description": "3栋门口路灯坏了",
            "address_id": "XFL-B1", **fields}
    return api.http.post("/requests.json", data={k: str(v) for k, v in data.items() if v is not None}, files=files)


def _count(session: Session, model: type) -> int:
    session.expire_all()
    return session.exec(select(func.count()).select_from(model)).one()


def test_an_open311_client_lists_services_posts_and_follows_a_request(api: Api, session: Session) -> None:
    services = api.http.get("/services.json").json()
    assert {"facility_repair", "sanitation", "legal_advice"} <= {s["service_code"] for s in services}
    assert all(s["type"] == "realtime" and s["metadata"] is True for s in services)
    definition = api.http.get("/services/facility_repair.json").json()
    assert definition["service_code"] == "facility_repair"
    assert "XFL-B1" in [v["key"] for v in definition["attributes"][0]["values"]]
    resident = a_resident(session)
    posted = _post(api, **{"attribute[resident_id]": resident.id})
    assert posted.status_code == 201, posted.text
    number = posted.json()[0]["service_request_id"]
    assert api.bus.names() == ["linli.case.reported"]  # the event the report flow is triggered by
    one = api.http.get(f"/requests/{number}.json").json()
    assert len(one) == 1 and one[0]["status"] == "open" and one[0]["service_code"] == "facility_repair"
    assert one[0]["address_id"] == "XFL-B1" and one[0]["requested_datetime"]
    by_status = api.http.get("/requests.json", params={"status": "open"}).json()
    assert [r["service_request_id"] for r in by_status] == [number]
    assert api.http.get("/requests.json", params={"status": "closed"}).json() == []
    assert api.http.get("/requests.json", params={"service_code": "sanitation"}).json() == []
    assert len(api.http.get("/requests.json", params={"service_request_id": number}).json()) == 1
    assert api.http.get("/requests.json", params={"start_date": "2099-01-01T00:00:00Z"}).json() == []
    timeline = api.http.get(f"/requests/{number}/timeline.json").json()
    assert [e["action"] for e in timeline["events"]] == ["reported"] and timeline["linli_status"] == "reported"
    extended = api.http.get(f"/requests/{number}.json", params={"extensions": "true"}).json()[0]
    assert extended["extended_attributes"]["escalation_level"] == 0
    assert api.http.get("/openapi.json").json()["info"]["title"].startswith("Linli Open311")


def test_the_whole_life_of_a_request_through_the_api(api: Api, session: Session) -> None:
    resident = a_resident(session)
    number = _post(api, service_code="sanitation", description="楼下垃圾没人清",
                   **{"attribute[resident_id]": resident.id}).json()[0]["service_request_id"]
    case = session.exec(select(Case).where(Case.number == number)).one()
    for step in (receive, assess, dispatch):  # what the report flow does
        step(session, case.id, config=CONFIG)
        session.commit()
    volunteer = next(v for v in session.exec(select(Volunteer).where(Volunteer.community_id == case.community_id))
                     if "sanitation" in v.skills)
    actor = f"volunteer:{volunteer.id}"
    claimed = api.http.post(f"/requests/{number}/claim.json", data={"api_key": api.key, "volunteer_id": volunteer.id})
    assert claimed.status_code == 200, claimed.text
    again = api.http.post(f"/requests/{number}/claim.json", data={"api_key": api.key, "volunteer_id": volunteer.id})
    assert again.status_code == 409 and "already been taken" in again.json()[0]["description"]
    for name, data in (("accept", {}), ("progress", {"note": "已联系保洁"})):
        response = api.http.post(f"/requests/{number}/{name}.json", data={"api_key": api.key, "actor": actor, **data})
        assert response.status_code == 200, response.text
    resolved = api.http.post(f"/requests/{number}/resolve.json", data={"api_key": api.key, "actor": actor},
                             files={"media": ("after.jpg", jpeg_with_gps(), "image/jpeg")})
    assert resolved.json()["linli_status"] == "resolved"
    stranger = a_resident(session, "XFL-B2")
    refused = api.http.post(f"/requests/{number}/rating.json",
                            data={"api_key": api.key, "resident_id": stranger.id, "rating": 1})
    assert refused.status_code == 400 and "only the reporter" in refused.json()[0]["description"]
    rated = api.http.post(f"/requests/{number}/rating.json",
                          data={"api_key": api.key, "resident_id": resident.id, "rating": 5, "comment": "很好"})
    assert rated.status_code == 200
    photos = api.http.get(f"/requests/{number}/photos.json", params={"api_key": api.key}).json()
    assert [p["kind"] for p in photos] == ["after"]
    actions = [e["action"] for e in api.http.get(f"/requests/{number}/timeline.json").json()["events"]]
    assert actions[-1] == "rated" and "claimed" in actions and "progress" in actions
    assert "linli.case.rated" in api.bus.names()


def test_two_volunteers_claiming_over_http_at_once_exactly_one_wins(api: Api, session: Session) -> None:
    number = _post(api, service_code="sanitation", description="垃圾桶满了").json()[0]["service_request_id"]
    case = session.exec(select(Case).where(Case.number == number)).one()
    for step in (receive, assess, dispatch):
        step(session, case.id, config=CONFIG)
        session.commit()
    rival = Volunteer(community_id=case.community_id, name="钱志愿", skills="sanitation")
    session.add(rival)
    session.commit()
    first = next(v for v in session.exec(select(Volunteer).where(Volunteer.community_id == case.community_id))
                 if "sanitation" in v.skills)
    start = threading.Barrier(2)
    codes: list[int] = []

    def attempt(volunteer_id: int) -> None:
        with httpx.Client(base_url=api.url + V2, timeout=60) as http:
            start.wait()
            codes.append(http.post(f"/requests/{number}/claim.json",
                                   data={"api_key": api.key, "volunteer_id": volunteer_id}).status_code)

    threads = [threading.Thread(target=attempt, args=(v,)) for v in (first.id, rival.id)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(codes) == [200, 409]


@pytest.mark.parametrize(("fields", "status", "words"), [
    ({"api_key": None}, 403, "api_key is required"),
    ({"api_key": "ll_wrong"}, 403, "api_key is not valid"),
    ({"service_code": "flying_saucer"}, 400, "unknown service_code 'flying_saucer'"),
    ({"lat": "31.7x", "long": "117.28", "address_id": None}, 400, "lat is not a number"),
    ({"lat": "131.7", "long": "117.28", "address_id": None}, 400, "lat: Input should be less than or equal to 90"),
    ({"lat": "31.7", "address_id": None}, 400, "give both lat and lon"),
    ({"media_url": "ftp://example.org/a.jpg"}, 400, "media_url is not an http(s) URL"),
    ({"description": ""}, 400, "description"),
])
def test_bad_requests_get_the_open311_error_format_and_write_nothing(
    api: Api, session: Session, fields: dict[str, object], status: int, words: str
) -> None:
    response = _post(api, **fields)
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body, list) and body[0]["code"] == status and words in body[0]["description"]
    assert _count(session, Case) == 0 and api.bus.events == []


def test_oversized_or_non_image_photos_are_refused_and_nothing_is_stored(api: Api, session: Session,
                                                                        settings: Settings) -> None:
    text = _post(api, files={"media": ("a.jpg", b"not an image at all", "image/jpeg")})
    assert text.status_code == 400 and "not a readable JPEG, PNG or WebP" in text.json()[0]["description"]
    big = _post(api, files={"media": ("b.jpg", b"\xff" * (settings.storage.max_photo_bytes + 1), "image/jpeg")})
    assert big.status_code == 400 and "larger than the limit" in big.json()[0]["description"]
    assert _count(session, Case) == 0 and _count(session, CasePhoto) == 0
    assert isinstance(api.store, LocalObjectStore) and not any(api.store.root.rglob("*.*"))


def test_a_photo_upload_to_the_local_folder_loses_its_exif(api: Api, session: Session) -> None:
    _check_photo_upload(api, session)


def test_a_photo_upload_to_s3_loses_its_exif_and_is_served_by_an_expiring_url(
    settings: Settings, engine: Engine, session: Session, s3: S3Server
) -> None:
    store = MinioObjectStore(endpoint=s3.endpoint, access_key=s3.access_key, secret_key=SecretStr(s3.secret_key),
                             bucket="linli-api", secure=False)
    for api in _api(settings, engine, session, store):
        url = _check_photo_upload(api, session)
        assert "X-Amz-Expires=900" in url and "X-Amz-Signature=" in url
        fetched = httpx.get(url, timeout=10)
        assert fetched.status_code == 200
        assert_exif_free(fetched.content)
        tampered = httpx.get(url.replace("X-Amz-Expires=900", "X-Amz-Expires=901"), timeout=10)
        assert tampered.status_code == 403  # the signature covers the expiry


def _check_photo_upload(api: Api, session: Session) -> str:
    posted = _post(api, files={"media": ("swing.jpg", jpeg_with_gps(), "image/jpeg")})
    assert posted.status_code == 201, posted.text
    number = posted.json()[0]["service_request_id"]
    photo = session.exec(select(CasePhoto)).one()
    assert photo.kind == "before" and photo.key.startswith(f"cases/{number}/before-")
    assert_exif_free(api.store.get(photo.key))
    public = api.http.get(f"/requests/{number}.json").json()[0]
    assert public["media_url"] is None  # photos are for staff: only with a key
    assert api.http.get(f"/requests/{number}/photos.json").status_code == 403
    staff = api.http.get(f"/requests/{number}/photos.json", params={"api_key": api.key}).json()
    assert [p["kind"] for p in staff] == ["before"] and staff[0]["expires_in"] == 900
    return str(staff[0]["url"])


def test_a_media_url_is_kept_as_a_link(api: Api) -> None:
    number = _post(api, media_url="https://example.org/p/1.jpg").json()[0]["service_request_id"]
    assert api.http.get(f"/requests/{number}.json").json()[0]["media_url"] == "https://example.org/p/1.jpg"


def test_unknown_requests_and_services_are_404_in_open311_format(api: Api) -> None:
    missing = api.http.get("/requests/LL-20990101-000001.json")
    assert missing.status_code == 404 and missing.json()[0]["code"] == 404
    assert api.http.get("/services/nothing.json").status_code == 404
    bad_date = api.http.get("/requests.json", params={"start_date": "yesterday"})
    assert bad_date.status_code == 400 and "ISO 8601" in bad_date.json()[0]["description"]


def test_apikey_create_prints_a_key_that_is_stored_only_hashed(settings: Settings, session: Session) -> None:
    result = CliRunner().invoke(cli, ["apikey", "create", "hotline-12345"])
    assert result.exit_code == 0, result.output
    key = result.output.strip().splitlines()[-1]
    assert key.startswith("ll_") and len(key) > 30
    session.expire_all()
    row = session.exec(select(ApiKey).where(ApiKey.name == "hotline-12345")).one()
    assert key not in (row.key_hash, row.prefix) and row.key_hash != key
    again = CliRunner().invoke(cli, ["apikey", "create", "hotline-12345"])
    assert again.exit_code == 2 and "already exists" in again.output


def test_cli_work_refuses_a_claim_on_a_case_that_is_not_offered(settings: Settings, session: Session) -> None:
    seeded(session)
    from tests.factories import a_case

    case = a_case(session)
    volunteer = session.exec(select(Volunteer)).first()
    result = CliRunner().invoke(cli, ["work", "claim", case.number, "--volunteer", str(volunteer.id)])
    assert result.exit_code == 2 and "not offered to volunteers" in result.output
    assert case.status == CaseStatus.reported
