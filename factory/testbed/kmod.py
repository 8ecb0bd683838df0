"""Kernel module dependency order, read from the modules themselves (no depmod on the build host)."""

from __future__ import annotations

import re
from pathlib import Path

from factory.errors import ToolError

_DEPENDS = re.compile(rb"(?:^|\x00)depends=([^\x00]*)\x00")


def module_index(moddir: Path) -> dict[str, Path]:
    """Module name (dashes as underscores, like the kernel) -> its .ko path under `moddir`."""
    return {p.name.removesuffix(".ko").replace("-", "_"): p for p in moddir.rglob("*.ko")}


def depends(ko: bytes) -> list[str]:
    """The `depends=` list from a module's .modinfo section."""
    found = _DEPENDS.search(ko)
    if found is None or not found.group(1):
        return []
    return [d.replace("-", "_") for d in found.group(1).decode().split(",") if d]


def load_order(wanted: list[str], index: dict[str, Path], builtin: set[str]) -> list[str]:
    """`wanted` plus their dependencies, each after what it needs; built-in modules are skipped."""
    order: list[str] = []

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in order or name in builtin:
            return
        if name in chain:
            raise ToolError(f"kernel module dependency loop: {' -> '.join((*chain, name))}")
        if name not in index:
            raise ToolError(f"kernel module {name} is neither in the kernel package nor built in")
        for dep in depends(index[name].read_bytes()):
            visit(dep, (*chain, name))
        order.append(name)

    for name in wanted:
        visit(name.replace("-", "_"), ())
    return order


def builtin_modules(kernel_moddir: Path) -> set[str]:
    """Names listed in modules.builtin (e.g. ext4 on the Debian cloud kernel)."""
    listing = kernel_moddir / "modules.builtin"
    if not listing.exists():
        return set()
    return {
        Path(line).name.removesuffix(".ko").replace("-", "_") for line in listing.read_text().split() if line
    }
