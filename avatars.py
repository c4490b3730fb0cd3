"""Avatars made here: a picture generated from the username, and uploaded pictures checked,
cleaned and resized (Pillow). Pure functions: no database, no files, no third party.
"""

import hashlib
import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from html import escape

from PIL import Image, ImageOps

import config
from i18n import Phrase, PhrasedError, phrase

# The sizes the pages show (in CSS pixels; 2× for sharp screens is covered by the larger ones).
AVATAR_SIZES = (48, 64, 128, 256)
# The largest upload, unless the caller says (from MICROBLOG_AVATAR_MAX_BYTES).
UPLOAD_MAX_BYTES: int = config.default("MICROBLOG_AVATAR_MAX_BYTES")
# Width × height of an upload. A phone photo is 12-50 Mpx; a decompression bomb is a small
# file that claims billions of pixels, refused from its header before anything is decoded.
UPLOAD_MAX_PIXELS = 64_000_000
ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP")
OUTPUT_FORMAT = "WEBP"
WEBP_QUALITY = 85


class AvatarError(PhrasedError, ValueError):
    """The upload cannot be an avatar; its phrases say why."""


class AvatarTooLarge(AvatarError):
    """The file has more bytes than the limit."""


# --- generated ------------------------------------------------------------------------------

GRID = 5  # cells per side; the left half is mirrored onto the right, like GitHub's identicons


def generated_avatar_svg(username: str, size: int) -> str:
    """A square SVG picture for `username`: a mirrored 5×5 pattern and the initial on a
    colour, all derived from a hash of the name — the same name always gives the same
    picture, and nothing is asked of anyone else."""
    digest = hashlib.sha256(username.encode("utf-8", "surrogatepass")).digest()
    hue = int.from_bytes(digest[:2], "big") % 360
    background, pattern = f"hsl({hue} 45% 42%)", f"hsl({hue} 55% 58%)"
    cell = 100 / GRID
    cells = []
    for row in range(GRID):
        for column in range((GRID + 1) // 2):
            if digest[2 + row * 3 + column] % 2:
                for x in {column, GRID - 1 - column}:
                    cells.append(
                        f'<rect x="{x * cell:g}" y="{row * cell:g}" '
                        f'width="{cell:g}" height="{cell:g}"/>'
                    )
    initial = escape(username[:1].upper() or "?")
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" '
        f'viewBox="0 0 100 100" role="img" aria-label="{escape(username)}">'
        f'<rect width="100" height="100" fill="{background}"/>'
        f'<g fill="{pattern}" opacity="0.6">{"".join(cells)}</g>'
        f'<text x="50" y="50" dy="0.35em" text-anchor="middle" font-size="52" '
        f'font-family="system-ui, sans-serif" font-weight="600" fill="#fff">{initial}</text>'
        "</svg>"
    )


# --- uploaded -------------------------------------------------------------------------------


def process_upload(
    data: bytes,
    sizes: tuple[int, ...] = AVATAR_SIZES,
    max_bytes: int = UPLOAD_MAX_BYTES,
    max_pixels: int = UPLOAD_MAX_PIXELS,
) -> dict[int, bytes]:
    """An uploaded PNG, JPEG or WebP as a square WebP in each of `sizes`: turned upright
    as its EXIF orientation says, centre-cropped, and with no metadata left (no EXIF, no
    GPS position, no ICC profile, no comments). `AvatarError` for anything else."""
    check_upload(data, max_bytes, max_pixels)
    try:
        with _pillow_warnings():
            square = _upright_square(_decoded(data))
    except Exception as exc:
        raise _refusal(exc, max_pixels) from exc
    return {size: _encode(square.resize((size, size), Image.Resampling.LANCZOS)) for size in sizes}


def check_upload(
    data: bytes, max_bytes: int = UPLOAD_MAX_BYTES, max_pixels: int = UPLOAD_MAX_PIXELS
) -> None:
    """Refuse what cannot be an avatar from its size, header and structure, without
    decoding a pixel (quick enough to answer an upload at once); `process_upload` decodes
    it. `AvatarTooLarge` for too many bytes, `AvatarError` for anything else."""
    if not data:
        raise AvatarError(phrase("The file is empty."))
    if len(data) > max_bytes:
        mib = round(max_bytes / 2**20, 1)
        raise AvatarTooLarge(phrase("The picture is too large: the limit is %(mib)s MiB.", mib=mib))
    try:
        with _pillow_warnings(), Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS) as probe:
            _check_dimensions(probe, max_pixels)
            probe.verify()  # checksums and structure, without decoding the pixels
    except Exception as exc:
        raise _refusal(exc, max_pixels) from exc


@contextmanager
def _pillow_warnings() -> Iterator[None]:
    """Pillow's warnings as what they mean for an upload."""
    with warnings.catch_warnings():
        # Pillow only warns (then errs at twice its limit) about huge images.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        # A damaged EXIF block is only warned about; its metadata is dropped anyway.
        warnings.simplefilter("ignore", UserWarning)
        yield


def _refusal(exc: Exception, max_pixels: int) -> AvatarError:
    """The AvatarError that says why Pillow (or a check here) refused a file."""
    if isinstance(exc, AvatarError):
        return exc
    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return AvatarError(_too_many_pixels(max_pixels))
    # Pillow reports a malformed file with many kinds of exception (OSError, SyntaxError,
    # ValueError, struct.error, EOFError…): each means "not a usable image".
    return AvatarError(phrase("This is not a PNG, JPEG or WebP picture, or it is damaged."))


def _decoded(data: bytes) -> Image.Image:
    """The decoded first frame of a PNG, JPEG or WebP that `check_upload` let through."""
    image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    image.load()
    return image


def _check_dimensions(image: Image.Image, max_pixels: int) -> None:
    width, height = image.size
    if width < 1 or height < 1:
        raise AvatarError(phrase("This picture has no pixels."))
    if width * height > max_pixels:
        raise AvatarError(_too_many_pixels(max_pixels))


def _too_many_pixels(max_pixels: int) -> Phrase:
    return phrase(
        "The picture has too many pixels: the limit is %(megapixels)s megapixels.",
        megapixels=max_pixels / 1e6,
    )


def _upright_square(image: Image.Image) -> Image.Image:
    """The image turned as its EXIF orientation says, in RGB(A), centre-cropped square."""
    upright = ImageOps.exif_transpose(image)
    has_alpha = upright.mode in ("RGBA", "LA", "PA") or "transparency" in upright.info
    upright = upright.convert("RGBA" if has_alpha else "RGB")
    side = min(upright.size)
    left, top = (upright.width - side) // 2, (upright.height - side) // 2
    return upright.crop((left, top, left + side, top + side))


def _encode(image: Image.Image) -> bytes:
    """WebP bytes with nothing but pixels: a fresh image carries no metadata to write."""
    clean = Image.new(image.mode, image.size)
    clean.paste(image)
    out = io.BytesIO()
    clean.save(out, OUTPUT_FORMAT, quality=WEBP_QUALITY, method=4)
    return out.getvalue()
