"""Screenshots for a person to look at: taken only when $VEILLE_SHOTS names a folder.

They assert nothing, so CI takes none (full-page PNGs of every page at every width cost about
a minute of the suite). `VEILLE_SHOTS=artifacts/shots .venv/bin/python -m pytest tests/browser`
writes them all.
"""

from __future__ import annotations

import os
from pathlib import Path

from playwright.sync_api import Page


def shoot(page: Page, name: str) -> None:
    folder = os.environ.get("VEILLE_SHOTS")
    if not folder:
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)
