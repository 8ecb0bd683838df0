"""The PXE tree export with the real tools: xorriso reads the medium, grub-mkimage makes the EFI image, the
tree holds Debian's pxelinux; a medium without pxeboot files is refused before anything is copied."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from factory.core import digest
from factory.errors import ExportError
from factory.host import tools
from factory.spec import Spec
from factory.stages.export import export
from tests.el7iso import make_el7_iso

BASE = "http://192.0.2.10:8080/images"
KS = "text\ncdrom\nrootpw --iscrypted $6$salt$hash\nreboot\n"


def make_medium(work: Path, *, pxeboot: bool = True) -> Path:
    """A small EL-shaped medium: images/pxeboot/{vmlinuz,initrd.img}, .discinfo, a package folder."""
    tree = work / "medium"
    (tree / "images" / "pxeboot").mkdir(parents=True)
    (tree / "Packages").mkdir()
    if pxeboot:
        (tree / "images" / "pxeboot" / "vmlinuz").write_bytes(b"\x4d\x5a kernel bytes")
        (tree / "images" / "pxeboot" / "initrd.img").write_bytes(b"\x1f\x8b initrd bytes")
    (tree / ".discinfo").write_text("1446838339.555000\n7\nx86_64\n")
    (tree / "Packages" / "tree-1.6.0-10.el7.x86_64.rpm").write_bytes(b"rpm")
    iso = work / "medium.iso"
    tools.run(["xorriso", "-as", "mkisofs", "-quiet", "-R", "-V", "MEDIUM", "-o", iso, tree], timeout=120)
    return iso


@pytest.fixture(scope="module")
def sealed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    disk = tmp_path_factory.mktemp("pxe") / "sealed.qcow2"
    tools.run(["qemu-img", "create", "-q", "-f", "qcow2", disk, "16M"], timeout=60)
    return disk


def make_spec(tmp_path: Path) -> Spec:
    (tmp_path / "t.ks").write_text(KS)
    return Spec.model_validate(
        {
            "name": "tb",
            "os": "testbed",
            "media": {"builtin": "testbed", "volume_label": "X"},
            "kickstart": {"path": "t.ks"},
            "export": ["pxe"],
            "pxe": {"base_url": BASE + "/", "extra_args": ["inst.sshd"]},
            "source": tmp_path / "spec.yaml",
        }
    )


def test_pxe_tree(tmp_path: Path, sealed: Path) -> None:
    iso = make_medium(tmp_path)
    result = export.export(make_spec(tmp_path), sealed, digest.sha256_file(sealed), tmp_path / "out", iso=iso)
    (art,) = result.artifacts
    tree = tmp_path / "out" / "tb.pxe"
    assert (art.format, art.path) == ("pxe", tree)
    files = sorted(str(p.relative_to(tree)) for p in tree.rglob("*") if p.is_file())
    assert files == [
        "README.txt", "http/ks/tb.ks", "http/tb/.discinfo", "http/tb/Packages/tree-1.6.0-10.el7.x86_64.rpm",
        "http/tb/images/pxeboot/initrd.img", "http/tb/images/pxeboot/vmlinuz",
        "tftp/grub/grub.cfg", "tftp/grubx64.efi", "tftp/ldlinux.c32", "tftp/pxelinux.0",
        "tftp/pxelinux.cfg/default", "tftp/tb/initrd.img", "tftp/tb/vmlinuz",
    ]  # fmt: skip
    assert (tree / "tftp/tb/vmlinuz").read_bytes() == b"\x4d\x5a kernel bytes"
    assert (tree / "tftp/pxelinux.0").read_bytes() == Path("/usr/lib/PXELINUX/pxelinux.0").read_bytes()
    args = (
        f"initrd=tb/initrd.img inst.ks={BASE}/ks/tb.ks inst.repo={BASE}/tb/ ip=dhcp inst.text console=tty0 "
        "console=ttyS0,115200 inst.sshd"
    )
    cfg = (tree / "tftp/pxelinux.cfg/default").read_text()
    assert "serial 0 115200\n" in cfg and "  kernel tb/vmlinuz\n" in cfg and f"  append {args}\n" in cfg
    grub = (tree / "tftp/grub/grub.cfg").read_text()
    assert f"  linux /tb/vmlinuz {args.removeprefix('initrd=tb/initrd.img ')}\n" in grub
    assert "  initrd /tb/initrd.img\n" in grub
    efi = (tree / "tftp/grubx64.efi").read_bytes()
    assert efi[:2] == b"MZ" and b"PE\0\0" in efi[:512]  # a PE/COFF EFI application
    assert (tree / "http/ks/tb.ks").read_text() == KS.replace("cdrom\n", f"url --url={BASE}/tb/\n")
    readme = (tree / "README.txt").read_text()
    commands = (
        "dnsmasq --no-daemon",
        "--dhcp-boot=tag:efi64,grubx64.efi",
        "cobbler distro add --name=tb",
        "cobbler profile add --name=tb --distro=tb",
        "python3 -m http.server",
    )
    for command in commands:
        assert command in readme
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["artifacts"][0]["sha256"] == art.sha256
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["manifest.json", "tb.pxe"]


def test_medium_without_pxeboot_files(tmp_path: Path, sealed: Path) -> None:
    iso = make_medium(tmp_path, pxeboot=False)
    out = tmp_path / "out"
    with pytest.raises(
        ExportError, match=r"has no images/pxeboot/vmlinuz and images/pxeboot/initrd.img: a PXE"
    ):
        export.export(make_spec(tmp_path), sealed, digest.sha256_file(sealed), out, iso=iso)
    assert list(out.iterdir()) == []


def test_el7_shaped_medium_missing_its_initrd(tmp_path: Path, sealed: Path) -> None:
    # tests/el7iso.py's medium has images/pxeboot/vmlinuz but no initrd.img: named exactly.
    iso = make_el7_iso(tmp_path, efiboot=False)
    with pytest.raises(ExportError, match=r"has no images/pxeboot/initrd.img: a PXE tree needs"):
        export.export(make_spec(tmp_path), sealed, digest.sha256_file(sealed), tmp_path / "out", iso=iso)


def test_pxe_without_medium(tmp_path: Path, sealed: Path) -> None:
    with pytest.raises(ExportError, match=r"export: pxe needs the build's install medium"):
        export.export(make_spec(tmp_path), sealed, digest.sha256_file(sealed), tmp_path / "out")


# --- boot.mode pxe: what QEMU's TFTP serves for the network install --------------------------------------


def _installer(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "vmlinuz").write_bytes(b"kernel")
    (tmp_path / "initrd.img").write_bytes(b"initrd")
    return tmp_path / "vmlinuz", tmp_path / "initrd.img"


def test_bios_network_install_tree(tmp_path: Path) -> None:
    from factory.stages.install import install

    kernel, initrd = _installer(tmp_path)
    tftp, bootfile = install.pxe_tftp_tree(
        tmp_path / "tftp", kernel, initrd, "inst.ks=K inst.repo=R", firmware="bios"
    )
    assert bootfile == "pxelinux.0"
    assert sorted(p.name for p in tftp.iterdir()) == [
        "initrd.img",
        "ldlinux.c32",
        "pxelinux.0",
        "pxelinux.cfg",
        "vmlinuz",
    ]
    cfg = (tftp / "pxelinux.cfg" / "default").read_text()
    assert "serial 0 115200\n" in cfg and "  append initrd=initrd.img inst.ks=K inst.repo=R\n" in cfg


def test_uefi_network_install_tree(tmp_path: Path) -> None:
    from factory.stages.install import install

    kernel, initrd = _installer(tmp_path)
    tftp, bootfile = install.pxe_tftp_tree(
        tmp_path / "tftp", kernel, initrd, "inst.ks=K inst.repo=R", firmware="uefi"
    )
    assert bootfile == "grubx64.efi"
    assert (tftp / "grubx64.efi").read_bytes()[:2] == b"MZ"
    grub = (tftp / "grub" / "grub.cfg").read_text()
    assert "  linux /vmlinuz inst.ks=K inst.repo=R\n  initrd /initrd.img\n" in grub
    assert "serial --unit=0 --speed=115200" in grub


def test_uefi_network_install_without_ovmf(tmp_path: Path) -> None:
    from factory.errors import EXIT_TOOL, ToolError
    from factory.stages.install import install

    kernel, initrd = _installer(tmp_path)
    with pytest.raises(
        ToolError, match=r"a UEFI network install needs OVMF \(Debian/Ubuntu: apt-get install ovmf"
    ) as err:
        install.pxe_tftp_tree(
            tmp_path / "tftp", kernel, initrd, "x", firmware="uefi", ovmf=tmp_path / "no-OVMF.fd"
        )
    assert err.value.exit_code == EXIT_TOOL
    assert not (tmp_path / "tftp" / "grubx64.efi").exists()
