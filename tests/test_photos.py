"""Photos: checked by content, size and pixel limits, EXIF/GPS stripped, stored in real stores."""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import cast

import pytest
from PIL import ExifTags, Image, PngImagePlugin

from linli.errors import ValidationError
from linli.photos import PreparedPhoto, photo_key, prepare_photo, store_photo
from linli.storage import LocalObjectStore, MinioObjectStore, ObjectStore
from tests.s3server import S3Server, running_s3

MB = 1024 * 1024
LIMIT = 10 * MB
GPS_IFD = 0x8825
ORIENTATION = 0x0112


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real S3 server (SeaweedFS) with credentials, for this module."""
    with running_s3(tmp_path_factory.mktemp("s3")) as server:
        yield server


def gps_exif(orientation: int = 1) -> Image.Exif:
    """EXIF a phone writes: maker, model, time, orientation and a GPS position in Hefei."""
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "PhoneMaker"
    exif[ExifTags.Base.Model] = "Phone 15"
    exif[ExifTags.Base.DateTime] = "2026:11:23 08:15:00"
    exif[ORIENTATION] = orientation
    gps = exif.get_ifd(GPS_IFD)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (31.0, 49.0, 12.5)
    gps[ExifTags.GPS.GPSLongitudeRef] = "E"
    gps[ExifTags.GPS.GPSLongitude] = (117.0, 13.0, 40.0)
    return exif


def two_colour_image(width: int = 80, height: int = 40) -> Image.Image:
    """Left half red, right half blue: shows which way a picture was turned."""
    image = Image.new("RGB", (width, height), (220, 20, 20))
    image.paste((20, 20, 220), (width // 2, 0, width, height))
    return image


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def reopen(photo: PreparedPhoto) -> Image.Image:
    image = Image.open(BytesIO(photo.data))
    image.load()
    return image


def assert_no_metadata(photo: PreparedPhoto) -> None:
    image = reopen(photo)
    exif = image.getexif()
    assert dict(exif) == {}
    assert dict(exif.get_ifd(GPS_IFD)) == {}
    assert "exif" not in image.info and "xmp" not in image.info and "XML:com.adobe.xmp" not in image.info
    assert b"Exif\x00\x00" not in photo.data and b"PhoneMaker" not in photo.data


def crafted_png(width: int, height: int) -> bytes:
    """A tiny, well-formed PNG whose header claims ``width`` × ``height`` pixels (a bomb's shape)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


# --- what is accepted, and how it comes out -------------------------------------------------


def test_jpeg_loses_exif_and_gps() -> None:
    original = encode(two_colour_image(), "JPEG", exif=gps_exif(), quality=90)
    source_exif = Image.open(BytesIO(original)).getexif()
    assert source_exif.get_ifd(GPS_IFD)[ExifTags.GPS.GPSLatitudeRef] == "N"  # the fixture really has GPS

    photo = prepare_photo(original, max_bytes=LIMIT)

    assert (photo.content_type, photo.extension) == ("image/jpeg", "jpg")
    assert (photo.width, photo.height) == (80, 40)
    assert reopen(photo).format == "JPEG"
    assert_no_metadata(photo)


def test_orientation_is_applied_so_the_photo_stays_upright() -> None:
    # Orientation 6: the camera held upright stored the pixels turned 90° anticlockwise.
    original = encode(two_colour_image(80, 40), "JPEG", exif=gps_exif(orientation=6), quality=95)
    photo = prepare_photo(original, max_bytes=LIMIT)
    assert (photo.width, photo.height) == (40, 80)
    upright = reopen(photo).convert("RGB")
    top = cast(tuple[int, int, int], upright.getpixel((20, 10)))
    bottom = cast(tuple[int, int, int], upright.getpixel((20, 70)))
    assert top[0] > 150 > top[2]  # what was the left (red) is now on top
    assert bottom[2] > 150 > bottom[0]
    assert ORIENTATION not in reopen(photo).getexif()


@pytest.mark.parametrize("orientation", [0, 9, 300])
def test_nonsense_orientation_leaves_the_picture_as_stored(orientation: int) -> None:
    exif = gps_exif()
    exif[ORIENTATION] = orientation
    photo = prepare_photo(encode(two_colour_image(80, 40), "JPEG", exif=exif), max_bytes=LIMIT)
    assert (photo.width, photo.height) == (80, 40)
    assert_no_metadata(photo)


def test_png_is_accepted_and_keeps_transparency_but_not_text_or_exif() -> None:
    image = Image.new("RGBA", (30, 20), (0, 128, 0, 100))
    text = PngImagePlugin.PngInfo()
    text.add_text("Comment", "home address: 3-2-501")
    original = encode(image, "PNG", pnginfo=text, exif=gps_exif())
    assert "Comment" in Image.open(BytesIO(original)).info

    photo = prepare_photo(original, max_bytes=LIMIT)

    assert (photo.content_type, photo.extension, photo.width, photo.height) == ("image/png", "png", 30, 20)
    clean = reopen(photo)
    assert clean.format == "PNG" and clean.mode == "RGBA"
    assert clean.getpixel((5, 5)) == (0, 128, 0, 100)
    assert "Comment" not in clean.info and b"3-2-501" not in photo.data
    assert_no_metadata(photo)


def test_palette_png_with_transparency() -> None:
    image = Image.new("P", (10, 10), 1)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    photo = prepare_photo(encode(image, "PNG", transparency=0), max_bytes=LIMIT)
    assert reopen(photo).mode == "RGBA"


def test_webp_is_accepted() -> None:
    original = encode(two_colour_image(), "WEBP", exif=gps_exif(), quality=80)
    photo = prepare_photo(original, max_bytes=LIMIT)
    assert (photo.content_type, photo.extension, photo.width, photo.height) == ("image/webp", "webp", 80, 40)
    assert reopen(photo).format == "WEBP"
    assert_no_metadata(photo)


def test_multi_picture_jpeg_from_a_phone_is_a_jpeg() -> None:
    # Many phones write MPO: a JPEG with an extra picture appended; Pillow calls it "MPO".
    original = encode(two_colour_image(), "MPO", save_all=True, append_images=[two_colour_image()])
    assert Image.open(BytesIO(original)).format == "MPO"
    photo = prepare_photo(original, max_bytes=LIMIT)
    assert (photo.content_type, photo.extension) == ("image/jpeg", "jpg")
    assert reopen(photo).format == "JPEG"


def test_cmyk_jpeg_becomes_rgb() -> None:
    photo = prepare_photo(encode(Image.new("CMYK", (10, 10), (0, 255, 255, 0)), "JPEG"), max_bytes=LIMIT)
    assert reopen(photo).mode == "RGB"


# --- what is refused ------------------------------------------------------------------------


def refused(data: bytes, max_bytes: int = LIMIT, **options: int) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        prepare_photo(data, max_bytes=max_bytes, **options)
    error = info.value
    assert error.field == "photo"
    assert "send a JPEG, PNG or WebP photo under" in error.hint
    return error


def test_text_renamed_to_jpg_is_refused() -> None:
    error = refused(b"This is a shopping list, saved as photo.jpg\n")
    assert "not a readable JPEG, PNG or WebP image" in error.message
    assert error.hint == "send a JPEG, PNG or WebP photo under 10 MB"


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF"])
def test_other_image_formats_are_refused(fmt: str) -> None:
    refused(encode(two_colour_image(), fmt))


def test_svg_and_html_are_refused() -> None:
    refused(b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>')
    refused(b"\xff\xd8\xff\xe0<html>not really a jpeg</html>")


def test_empty_is_refused() -> None:
    assert "empty" in refused(b"").message


def test_oversized_is_refused_with_both_sizes() -> None:
    jpeg = encode(two_colour_image(), "JPEG")
    padded = jpeg + b"\x00" * (int(12.3 * MB) - len(jpeg))
    error = refused(padded)
    assert error.message == "photo is 12.3 MB; the limit is 10 MB"
    assert error.hint == "send a JPEG, PNG or WebP photo under 10 MB"
    # Exactly at the limit is fine.
    assert prepare_photo(jpeg, max_bytes=len(jpeg)).width == 80


def test_truncated_jpeg_is_refused() -> None:
    jpeg = encode(Image.effect_noise((200, 200), 64).convert("RGB"), "JPEG", quality=90)
    for cut in (len(jpeg) // 2, len(jpeg) - 100):
        assert "not a readable" in refused(jpeg[:cut]).message


def test_corrupt_png_is_refused() -> None:
    png = bytearray(encode(two_colour_image(), "PNG"))
    png[60:80] = b"\x00" * 20  # inside the image data: the checksum no longer matches
    refused(bytes(png))


def test_decompression_bomb_is_refused_before_decoding() -> None:
    bomb = crafted_png(8_000, 8_000)  # 64 megapixels (192 MB decoded) in ~100 bytes
    assert len(bomb) < 200
    assert refused(bomb).message == "photo is 8000×8000 pixels; the limit is 50 megapixels"
    # Far bigger bombs already stop at Pillow's own guard, inside Image.open.
    huge = refused(crafted_png(100_000, 100_000))
    assert huge.message == "photo has too many pixels to decode safely; the limit is 50 megapixels"
    # A caller can raise our limit, but never past Pillow's.
    with pytest.warns(Image.DecompressionBombWarning):  # Pillow warns on open; we refuse
        big = refused(crafted_png(12_000, 12_000), max_pixels=10**12)
    assert big.message == "photo is 12000×12000 pixels; the limit is 89.5 megapixels"


def test_pixel_limit_is_a_parameter() -> None:
    refused(encode(two_colour_image(100, 100), "PNG"), max_pixels=5_000)


# --- keys and storing -----------------------------------------------------------------------


def test_photo_key() -> None:
    key = photo_key("LL-20261123-0001", "before", "jpg")
    assert re.fullmatch(r"cases/LL-20261123-0001/before-[0-9a-f]{8}\.jpg", key)
    assert photo_key("LL-20261123-0001", "after", ".PNG").endswith(".png")
    assert photo_key("LL-20261123-0001", "before", "jpg") != key  # random part


@pytest.mark.parametrize(
    ("case_number", "kind", "extension", "field"),
    [
        ("../LL-1", "before", "jpg", "case_number"),
        ("LL/1", "before", "jpg", "case_number"),
        ("", "before", "jpg", "case_number"),
        ("LL-1", "during", "jpg", "kind"),
        ("LL-1", "before", "exe", "photo"),
    ],
)
def test_photo_key_refuses_bad_parts(case_number: str, kind: str, extension: str, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        photo_key(case_number, kind, extension)
    assert info.value.field == field


@pytest.fixture(params=["local", "minio"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    """Each store implementation in turn."""
    if request.param == "local":
        return LocalObjectStore(tmp_path / "objects")
    server: S3Server = request.getfixturevalue("s3")
    return MinioObjectStore(server.endpoint, server.access_key, server.secret_key, "linli-photos")


def test_store_photo(store: ObjectStore) -> None:
    original = encode(two_colour_image(), "JPEG", exif=gps_exif())
    key, photo = store_photo(store, case_number="LL-20261123-0001", kind="before", data=original, max_bytes=LIMIT)
    assert re.fullmatch(r"cases/LL-20261123-0001/before-[0-9a-f]{8}\.jpg", key)
    stored = store.get(key)
    assert stored == photo.data
    assert_no_metadata(photo)


def test_store_photo_stores_nothing_when_refused(store: ObjectStore, tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        store_photo(store, case_number="LL-20261123-0002", kind="after", data=b"not a photo", max_bytes=LIMIT)
    if isinstance(store, LocalObjectStore):
        assert not (tmp_path / "objects").exists()
