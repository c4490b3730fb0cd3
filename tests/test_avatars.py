"""Avatars made here (avatars.py): the generated picture and the processing of uploads."""

import io
import xml.etree.ElementTree as ET
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from avatars import (
    AVATAR_SIZES,
    AvatarError,
    generated_avatar_svg,
    process_upload,
)

SVG = "{http://www.w3.org/2000/svg}"


def picture(fmt="PNG", size=(300, 200), mode="RGB", color=(200, 30, 30), **save) -> bytes:
    image = Image.new(mode, size, color)
    out = io.BytesIO()
    image.save(out, fmt, **save)
    return out.getvalue()


def with_gps_and_orientation(orientation=6) -> bytes:
    """A JPEG whose EXIF holds a GPS position, a camera name and an orientation."""
    image = Image.new("RGB", (400, 200), (0, 0, 255))
    image.paste((255, 255, 0), (0, 0, 200, 200))  # left half yellow, right half blue
    exif = Image.Exif()
    exif[0x010F] = "SpyCam Inc."  # Make
    exif[0x0112] = orientation  # Orientation: 6 = the camera was turned; rotate 90° CW
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2] = "N", (48.0, 51.0, 29.0)  # GPSLatitudeRef, GPSLatitude
    gps[3], gps[4] = "E", (2.0, 17.0, 40.0)  # GPSLongitudeRef, GPSLongitude
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif, comment=b"secret comment")
    return out.getvalue()


# --- generated ------------------------------------------------------------------------------


def test_generated_avatar_is_a_deterministic_local_svg():
    svg = generated_avatar_svg("alice", 64)
    assert svg == generated_avatar_svg("alice", 64)
    assert svg != generated_avatar_svg("alicf", 64)
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    assert (root.get("width"), root.get("height")) == ("64", "64")
    assert root.find(f"{SVG}text").text == "A"
    # Nothing to fetch: no link, no image, no external font.
    assert "href" not in svg and "<image" not in svg and "url(" not in svg
    # The pattern is mirrored left to right.
    cells = {(r.get("x"), r.get("y")) for r in root.iter(f"{SVG}rect")} - {(None, None)}
    assert cells == {(f"{80 - float(x):g}", y) for x, y in cells}


def test_generated_avatars_differ_in_colour_between_users():
    colours = {
        ET.fromstring(generated_avatar_svg(f"user{i}", 48))[0].get("fill") for i in range(50)
    }
    assert len(colours) > 30


@pytest.mark.parametrize("name", ["", "<script>", 'a"b', "ünï"])
def test_generated_avatar_escapes_any_name(name):
    root = ET.fromstring(generated_avatar_svg(name, 48))
    assert root.get("aria-label") == name
    assert root.find(f"{SVG}text").text == (name[:1].upper() or "?")


# --- uploads --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        picture("PNG"),
        picture("JPEG"),
        picture("WEBP"),
        picture("PNG", mode="RGBA", color=(0, 0, 0, 0)),
        picture("PNG", mode="P", color=3),
        picture("JPEG", mode="CMYK", color=(0, 0, 0, 0)),
        picture("PNG", size=(20, 30)),  # smaller than the largest size: scaled up
    ],
    ids=["png", "jpeg", "webp", "transparent", "palette", "cmyk", "tiny"],
)
def test_uploads_become_square_webp_in_every_size(data):
    result = process_upload(data)
    assert sorted(result) == sorted(AVATAR_SIZES)
    for size, encoded in result.items():
        with Image.open(io.BytesIO(encoded)) as image:
            assert image.format == "WEBP"
            assert image.size == (size, size)


def test_metadata_is_stripped_and_orientation_applied():
    data = with_gps_and_orientation()
    with Image.open(io.BytesIO(data)) as original:
        assert original.getexif().get_ifd(0x8825)  # the test picture does have a position
    for encoded in process_upload(data).values():
        with Image.open(io.BytesIO(encoded)) as image:
            assert not image.getexif()
            assert not {"exif", "xmp", "icc_profile", "comment"} & set(image.info)
            assert b"Exif" not in encoded and b"SpyCam" not in encoded
            assert b"secret" not in encoded and b"XMP" not in encoded
    # Turned upright: the yellow left half of the stored picture is now on top; the
    # centre crop of a 200×400 portrait is its middle, half yellow (top), half blue.
    with Image.open(io.BytesIO(process_upload(data)[256])) as image:
        top, bottom = image.convert("RGB").getpixel((128, 20)), image.getpixel((128, 235))
    assert top[0] > 200 and top[2] < 80  # yellow
    assert bottom[2] > 200 and bottom[0] < 80  # blue


def test_wide_pictures_are_centre_cropped():
    image = Image.new("RGB", (300, 100), (255, 0, 0))
    image.paste((0, 255, 0), (100, 0, 200, 100))  # the middle third is green
    out = io.BytesIO()
    image.save(out, "PNG")
    with Image.open(io.BytesIO(process_upload(out.getvalue())[64])) as result:
        corners = [result.getpixel(xy) for xy in ((2, 2), (61, 61))]
    assert all(g > 200 and r < 60 for r, g, _b in corners)


def bmp() -> bytes:
    return picture("BMP")


def gif() -> bytes:
    return picture("GIF")


def truncated_png() -> bytes:
    data = picture("PNG", size=(500, 500), mode="RGB", color=(1, 2, 3))
    return data[: len(data) // 2]


def corrupted_png() -> bytes:
    data = bytearray(picture("PNG", size=(64, 64)))
    data[40:60] = bytes(20)  # breaks the image data's checksum
    return bytes(data)


def bomb_png() -> bytes:
    """A small PNG claiming 100,000 × 100,000 pixels (its header alone; decoding would need
    tens of gigabytes)."""
    image = Image.new("1", (10_000, 10_000))
    out = io.BytesIO()
    image.save(out, "PNG")
    data = bytearray(out.getvalue())
    data[16:24] = (100_000).to_bytes(4, "big") * 2  # width and height in IHDR
    data[29:33] = zlib.crc32(data[12:29]).to_bytes(4, "big")  # the header's checksum
    return bytes(data)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: b"", "empty"),
        (lambda: b"just some text, not a picture", "not a PNG, JPEG or WebP"),
        (lambda: b"<svg xmlns='http://www.w3.org/2000/svg'/>", "not a PNG, JPEG or WebP"),
        (bmp, "not a PNG, JPEG or WebP"),
        (gif, "not a PNG, JPEG or WebP"),
        (truncated_png, "damaged"),
        (corrupted_png, "damaged"),
        (bomb_png, "too many pixels"),
        (lambda: picture("PNG") + bytes(6 * 2**20), "too large: the limit is 5 MiB"),
    ],
    ids=["empty", "text", "svg", "bmp", "gif", "truncated", "corrupted", "bomb", "big"],
)
def test_bad_uploads_get_a_clear_error(make, message):
    with pytest.raises(AvatarError, match=message):
        process_upload(make())


def test_pixel_limit_is_checked_before_decoding():
    with pytest.raises(AvatarError, match="too many pixels: the limit is 0.01 megapixels"):
        process_upload(picture("PNG", size=(200, 200)), max_pixels=10_000)


@settings(max_examples=150, deadline=None, database=None)
@given(
    base=st.sampled_from(["PNG", "JPEG", "WEBP"]),
    at=st.integers(0, 2000),
    junk=st.binary(min_size=1, max_size=16),
)
def test_damaged_pictures_end_in_avatar_error_or_a_picture(base, at, junk):
    data = bytearray(picture(base, size=(40, 30)))
    at %= len(data)
    data[at : at + len(junk)] = junk
    try:
        result = process_upload(bytes(data))
    except AvatarError:
        return
    assert sorted(result) == sorted(AVATAR_SIZES)


def test_a_damaged_exif_block_is_dropped_not_fatal():
    data = bytearray(with_gps_and_orientation())
    at = data.find(b"Exif\x00\x00") + 20
    data[at : at + 8] = b"\xff" * 8  # nonsense offsets inside the EXIF block
    result = process_upload(bytes(data))
    assert b"SpyCam" not in result[256]
