"""The poster's QR code, and its dark modules as horizontal runs for the vector formats."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import qrcode
from qrcode.constants import ERROR_CORRECT_M
from qrcode.exceptions import DataOverflowError

from app.services.poster_rendering.content import PosterRenderingError

QR_BORDER_MODULES = 4


def build_qr(url: str) -> qrcode.QRCode:
    """QR code with error correction M and a 4-module quiet zone, at the smallest version."""
    if not url:
        raise PosterRenderingError("poster URL is empty")
    qr = qrcode.QRCode(error_correction=ERROR_CORRECT_M, border=QR_BORDER_MODULES, box_size=1)
    qr.add_data(url)
    try:
        qr.make(fit=True)
    # qrcode 8 overshoots to "version 41" and raises a plain ValueError before DataOverflowError.
    except (DataOverflowError, ValueError) as exc:
        raise PosterRenderingError(f"URL of {len(url)} characters does not fit a QR code") from exc
    return qr


def dark_runs(matrix: Sequence[Sequence[bool]]) -> Iterator[tuple[int, int, int]]:
    """(row, first column, length) of each horizontal run of dark modules.

    One rectangle per run instead of per module: fewer drawing operations and no hairline
    seams between neighbouring modules in anti-aliased viewers.
    """
    for row_index, row in enumerate(matrix):
        start = None
        for col, is_dark in enumerate([*row, False]):
            if is_dark and start is None:
                start = col
            elif not is_dark and start is not None:
                yield row_index, start, col - start
                start = None
