"""Vendor the dashboard's third-party assets from ``node_modules`` into ``static/vendor``.

The copies are committed (Leaflet is BSD-2-Clause; its LICENSE travels with it) so the page works offline
and without npm at run time; a test compares them with ``node_modules`` so an npm upgrade without
re-vendoring fails.

Usage: ``python -m oracle.dashboard.build`` (copy) or ``python -m oracle.dashboard.build --check``
(exit 1 and list what differs).
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from oracle.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]
VENDOR_DIR = Path(__file__).parent / "static" / "vendor"


@dataclass(frozen=True)
class VendoredFile:
    source: str  # relative to node_modules
    target: str  # relative to static/vendor


VENDORED: tuple[VendoredFile, ...] = (
    VendoredFile("leaflet/dist/leaflet.js", "leaflet/leaflet.js"),
    VendoredFile("leaflet/dist/leaflet.css", "leaflet/leaflet.css"),
    VendoredFile("leaflet/dist/images/layers.png", "leaflet/images/layers.png"),
    VendoredFile("leaflet/dist/images/layers-2x.png", "leaflet/images/layers-2x.png"),
    VendoredFile("leaflet/dist/images/marker-icon.png", "leaflet/images/marker-icon.png"),
    VendoredFile("leaflet/dist/images/marker-icon-2x.png", "leaflet/images/marker-icon-2x.png"),
    VendoredFile("leaflet/dist/images/marker-shadow.png", "leaflet/images/marker-shadow.png"),
    VendoredFile("leaflet/LICENSE", "leaflet/LICENSE"),
)


def stale_files(node_modules: Path = REPO_ROOT / "node_modules", vendor_dir: Path = VENDOR_DIR) -> list[str]:
    """Targets that are missing or differ from their source. Raises ConfigError without node_modules."""
    out = []
    for f in VENDORED:
        src = node_modules / f.source
        if not src.is_file():
            raise ConfigError(f"{src} is missing: run `npm ci` first")
        dst = vendor_dir / f.target
        if not dst.is_file() or dst.read_bytes() != src.read_bytes():
            out.append(f.target)
    return out


def vendor(node_modules: Path = REPO_ROOT / "node_modules", vendor_dir: Path = VENDOR_DIR) -> list[str]:
    """Copy every stale file; returns the targets written."""
    written = stale_files(node_modules, vendor_dir)
    for f in VENDORED:
        if f.target in written:
            dst = vendor_dir / f.target
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(node_modules / f.source, dst)
    return written


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        if "--check" in args:
            stale = stale_files()
            for t in stale:
                print(f"stale: {t}")
            return 1 if stale else 0
        for t in vendor():
            print(f"vendored: {t}")
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
