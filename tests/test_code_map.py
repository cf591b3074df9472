"""docs/code-map.md names every module of the package and the dashboard, in its folder's section, so it stays current."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def sections() -> dict[str, str]:
    """The code map's sections by the folder their heading names in backticks (e.g. `wildvision/screening/`)."""
    text = (ROOT / "docs" / "code-map.md").read_text(encoding="utf-8")
    found = {}
    for part in text.split("\n## ")[1:]:
        heading, _, body = part.partition("\n")
        for folder in re.findall(r"`([\w/]+/)`", heading):
            found[folder] = body
    return found


def test_every_module_is_on_the_code_map_in_its_folders_section():
    mapped = sections()
    modules = [p for folder in ("wildvision", "app_pages") for p in (ROOT / folder).rglob("*.py")]
    modules = [p for p in modules if p.name != "__init__.py" or p.stat().st_size > 200]  # not empty package markers
    missing = []
    for module in modules:
        folder = module.parent.relative_to(ROOT).as_posix() + "/"
        body = mapped.get(folder, "")
        if not re.search(rf"`(app_pages/)?{re.escape(module.name)}`", body):
            missing.append(module.relative_to(ROOT).as_posix())
    assert len(modules) > 50 and not missing, f"not on docs/code-map.md in their folder's section: {missing}"
