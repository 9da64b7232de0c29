"""Photos residents and staff upload: checked by content, stripped of EXIF/GPS, stored by case.

A photo is accepted when Pillow decodes it completely as JPEG, PNG or WebP (the file name and
the declared content type are ignored), it is within the byte limit and its pixel count is
sane. It is then rebuilt from its pixels alone — upright (EXIF orientation applied), without
EXIF, GPS, XMP, comments or text chunks — and re-encoded in its own format. Only the ICC colour
profile is kept, so colours stay right. Of an animated PNG or WebP only the first frame is kept.
"""

from __future__ import annotations

import re
import secrets
import struct
from dataclasses import dataclass
from io import BytesIO

from PIL import Image, UnidentifiedImageError

from linli.errors import ValidationError
from linli.models.cases import PhotoKind
from linli.storage import ObjectStore

# 50 megapixels covers a phone's full-resolution mode (8160×6120); beyond that it is a bomb.
MAX_PIXELS = 50_000_000
JPEG_QUALITY = 90
WEBP_QUALITY = 90

_FORMATS = {
    # Pillow format → (content type, extension). MPO is a JPEG with extra frames (many phones).
    "JPEG": ("image/jpeg", "jpg"),
    "MPO": ("image/jpeg", "jpg"),
    "PNG": ("image/png", "png"),
    "WEBP": ("image/webp", "webp"),
}
_OPENERS = ["JPEG", "PNG", "WEBP"]  # Pillow's JPEG opener also returns MPO files
_EXTENSIONS = {"jpg", "png", "webp"}
ORIENTATION_TAG = 0x0112
_TRANSPOSE = {  # EXIF orientation → what turns the stored pixels upright (as ImageOps.exif_transpose)
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_CASE_NUMBER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class PreparedPhoto:
    """A photo ready to store: clean bytes, their content type and extension, and its size in pixels."""

    data: bytes
    content_type: str
    extension: str
    width: int
    height: int


def _human_size(n: int) -> str:
    """Bytes as '12.3 MB' / '10 MB' / '512 KB' (binary units, as the limit is set)."""
    if n >= 1024 * 1024:
        value, unit = n / (1024 * 1024), "MB"
    else:
        value, unit = n / 1024, "KB"
    text = f"{value:.1f}"
    return f"{text.removesuffix('.0')} {unit}"


def _refuse(message: str, max_bytes: int) -> ValidationError:
    return ValidationError(
        message, field="photo", hint=f"send a JPEG, PNG or WebP photo under {_human_size(max_bytes)}"
    )


def _clean_mode(image: Image.Image, fmt: str) -> Image.Image:
    """Convert to a mode the output format stores as-is, keeping transparency where it can."""
    transparent = "transparency" in image.info or image.mode in ("LA", "PA", "RGBA", "La", "RGBa")
    if fmt == "JPEG":
        return image if image.mode in ("L", "RGB") else image.convert("RGB")
    if image.mode in ("L", "RGB", "RGBA", "LA") and "transparency" not in image.info:
        return image
    return image.convert("RGBA" if transparent else "RGB")


def _upright(image: Image.Image) -> Image.Image:
    """The image turned as its EXIF orientation says, like ``ImageOps.exif_transpose``.

    Done here because ``exif_transpose`` also re-serialises the EXIF it has just read, and on a
    damaged EXIF block that raises ``TypeError`` (Pillow 13) — for metadata we throw away anyway.
    An orientation that cannot be read leaves the picture as stored.
    """
    try:
        orientation = image.getexif().get(ORIENTATION_TAG, 1)
    except (OSError, SyntaxError, ValueError, TypeError, KeyError, IndexError, struct.error):
        orientation = 1
    method = _TRANSPOSE.get(orientation) if isinstance(orientation, int) else None
    return image.transpose(method) if method is not None else image


def _same_colour_space(before: str, after: str) -> bool:
    """Whether an ICC profile made for ``before`` pixels still describes ``after`` pixels."""
    grey, colour = {"L", "LA", "La"}, {"RGB", "RGBA", "RGBa", "P", "PA"}
    return before == after or (before in grey and after in grey) or (before in colour and after in colour)


def prepare_photo(data: bytes, *, max_bytes: int, max_pixels: int = MAX_PIXELS) -> PreparedPhoto:
    """Check ``data`` is a real JPEG/PNG/WebP within the limits and return it upright and EXIF-free.

    Raises :class:`ValidationError` (field ``photo``) for anything else: other formats, text,
    truncated or corrupt files, too many bytes, too many pixels (decompression bombs).
    """
    if not data:
        raise _refuse("photo is empty", max_bytes)
    if len(data) > max_bytes:
        raise _refuse(f"photo is {_human_size(len(data))}; the limit is {_human_size(max_bytes)}", max_bytes)
    unreadable = "photo is not a readable JPEG, PNG or WebP image"
    # Never above Pillow's own bomb threshold, past which it would only warn while decoding.
    pixel_limit = min(max_pixels, Image.MAX_IMAGE_PIXELS or max_pixels)
    try:
        with Image.open(BytesIO(data), formats=_OPENERS) as opened:
            fmt = opened.format or ""
            width, height = opened.size
            if fmt not in _FORMATS:
                raise _refuse(f"{unreadable} (it is {fmt or 'unknown'})", max_bytes)
            # Checked on the header, before a single pixel is decoded.
            if width * height > pixel_limit:
                raise _refuse(
                    f"photo is {width}×{height} pixels; the limit is {pixel_limit / 1e6:.3g} megapixels",
                    max_bytes,
                )
            opened.load()  # decodes everything: truncated or corrupt data fails here
            icc_profile = opened.info.get("icc_profile")
            upright = _upright(opened)
            out_format = "JPEG" if fmt == "MPO" else fmt
            pixels = _clean_mode(upright, out_format)
            # Rebuilt from raw pixels: the new image carries no metadata at all (EXIF, GPS, XMP, text).
            clean = Image.frombytes(pixels.mode, pixels.size, pixels.tobytes())
            keep_icc = bool(icc_profile) and _same_colour_space(upright.mode, clean.mode)
    except Image.DecompressionBombError as err:
        raise _refuse(
            f"photo has too many pixels to decode safely; the limit is {pixel_limit / 1e6:.3g} megapixels",
            max_bytes,
        ) from err
    except UnidentifiedImageError as err:
        raise _refuse(unreadable, max_bytes) from err
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as err:
        # Pillow reports broken files through all of these, depending on the codec and the damage.
        raise _refuse(f"{unreadable} ({err})", max_bytes) from err

    options: dict[str, object] = {}
    if keep_icc:
        options["icc_profile"] = icc_profile
    if out_format == "JPEG":
        options.update(quality=JPEG_QUALITY, optimize=True)
    elif out_format == "WEBP":
        options.update(quality=WEBP_QUALITY, method=4)
    buffer = BytesIO()
    clean.save(buffer, format=out_format, **options)
    content_type, extension = _FORMATS[fmt]
    return PreparedPhoto(
        data=buffer.getvalue(),
        content_type=content_type,
        extension=extension,
        width=clean.width,
        height=clean.height,
    )


def photo_key(case_number: str, kind: str, extension: str) -> str:
    """The object key of a new photo, e.g. ``cases/LL-20261123-0001/before-1a2b3c4d.jpg``.

    The random suffix keeps several photos of one case apart and makes keys unguessable.
    """
    if not _CASE_NUMBER.match(case_number):
        raise ValidationError(
            f"case number {case_number!r} cannot name a photo",
            field="case_number",
            hint="use the case's number, e.g. LL-20261123-0001",
        )
    try:
        kind = PhotoKind(kind).value
    except ValueError as err:
        raise ValidationError(f"photo kind {kind!r} is unknown", field="kind", hint="use 'before' or 'after'") from err
    extension = extension.lower().removeprefix(".")
    if extension not in _EXTENSIONS:
        raise ValidationError(
            f"photo extension {extension!r} is not one Linli stores",
            field="photo",
            hint="use jpg, png or webp",
        )
    return f"cases/{case_number}/{kind}-{secrets.token_hex(4)}.{extension}"


def store_photo(
    store: ObjectStore, *, case_number: str, kind: str, data: bytes, max_bytes: int
) -> tuple[str, PreparedPhoto]:
    """Validate and clean a photo, put it in the store, and return its key and the cleaned photo."""
    prepared = prepare_photo(data, max_bytes=max_bytes)
    key = photo_key(case_number, kind, prepared.extension)
    store.put(key, prepared.data, prepared.content_type)
    return key, prepared
