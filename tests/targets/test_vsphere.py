"""vSphere publishing against govmomi's simulator (vcsim): the template, its hardware, disk and tags are
read back through the API; re-runs, a killed import, retirement and every bad input of the issue."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim

from factory import cli
from factory.core.record import BuildDir
from factory.errors import EXIT_VERIFY, EXIT_VSPHERE, VerifyError, VsphereError
from factory.spec import Spec
from factory.targets import runner
from factory.targets.base import exported
from factory.targets.vsphere import VsphereTarget, nfc, tags
from factory.targets.vsphere.connection import Credentials, endpoint
from tests.targets.conftest import Vcsim, ctx_for, gated_build, manifest, ova_disk_size, write_spec

pytestmark = pytest.mark.targets


def vsphere_section(vcsim: Vcsim, **over: Any) -> dict[str, Any]:
    section = {
        "url": vcsim.url,
        "datacenter": "DC0",
        "cluster": "DC0_C0",
        "datastore": "LocalDS_0",
        "network": "VM Network",
        "folder": "",
        "template_name": "{name}-{build_id}",
        "keep": 2,
    }
    section.update(over)
    return section


@contextlib.contextmanager
def api(vcsim: Vcsim) -> Iterator[Any]:
    ep = endpoint(write_spec_cfg(vcsim))
    si = SmartConnect(host=ep.host, port=ep.port, user=vcsim.username, pwd=vcsim.password, protocol="http")
    try:
        yield si.RetrieveContent()
    finally:
        Disconnect(si)


def write_spec_cfg(vcsim: Vcsim) -> Any:
    from factory.spec import Vsphere

    return Vsphere.model_validate(vsphere_section(vcsim))


def templates(vcsim: Vcsim, prefix: str) -> dict[str, Any]:
    with api(vcsim) as content:
        dc = next(e for e in content.rootFolder.childEntity if e.name == "DC0")
        return {
            vm.name: {"template": vm.config.template, "moref": vm._moId}
            for vm in dc.vmFolder.childEntity
            if isinstance(vm, vim.VirtualMachine) and vm.name.startswith(prefix)
        }


@pytest.fixture
def spec(tmp_path: Path, vsphere_login: Vcsim, request: pytest.FixtureRequest) -> Spec:
    # One spec name per test: every test's templates are its own in the shared simulator.
    name = "vs-" + request.node.name.split("[")[0].removeprefix("test_").replace("_", "-")[:40]
    return write_spec(tmp_path / "spec", name=name, os="centos", vsphere=vsphere_section(vsphere_login))


def publish(spec: Spec, build: BuildDir, events: list[Any] | None = None) -> Any:
    ctx = ctx_for(spec, build, events)
    return runner.publish(ctx, runner.select(ctx, ["vsphere"]))["vsphere"]


def test_publish_reads_back_template(
    spec: Spec, tmp_path: Path, sealed_disk: Path, vsphere_login: Vcsim
) -> None:
    build = gated_build(spec, tmp_path / "build", sealed_disk)
    events: list[Any] = []
    before = len(vsphere_login.nfc_bytes())
    pub = publish(spec, build, events)
    (image,) = pub.images
    name = f"{spec.name}-{build.build_id}"
    assert (image.name, image.state) == (name, "template")
    ova = next(a for a in exported(build) if a.format == "ova")
    disk_bytes = ova_disk_size(ova.path)
    # What vcsim itself received over NFC is the streamOptimized disk, byte for byte.
    assert vsphere_login.nfc_bytes()[before:] == [disk_bytes]
    assert pub.stats["bytes_sent"] == disk_bytes < pub.stats["image_bytes"] == 64 * 1024 * 1024
    assert any(e.step == "upload" and e.total == disk_bytes for e in events)
    with api(vsphere_login) as content:
        vm = content.searchIndex.FindByInventoryPath(f"DC0/vm/{name}")
        assert vm is not None and vm._moId == image.id
        cfg = vm.config
        assert cfg.template is True
        assert (cfg.guestId, cfg.hardware.numCPU, cfg.hardware.memoryMB) == ("centos7_64Guest", 2, 1024)
        assert cfg.version == "vmx-13"
        disks = [d for d in cfg.hardware.device if isinstance(d, vim.vm.device.VirtualDisk)]
        assert [d.capacityInKB for d in disks] == [64 * 1024]
        assert "LocalDS_0" in disks[0].backing.fileName
        nics = [d for d in cfg.hardware.device if isinstance(d, vim.vm.device.VirtualEthernetCard)]
        assert [type(n).__name__ for n in nics] == ["vim.vm.device.VirtualVmxnet3"]
        assert nics[0].backing.deviceName == "VM Network"
        assert f"factory:image-sha256={ova.sha256}" in cfg.annotation
    client = tags.Tagging(
        endpoint(write_spec_cfg(vsphere_login)), Credentials(vsphere_login.username, "x"), verify_tls=True
    )
    try:
        assert client.attached(image.id) == {
            "factory-spec": spec.name,
            "factory-build-id": build.build_id,
            "factory-image-sha256": ova.sha256,
        }
    finally:
        client.close()
    doc = manifest(build, "vsphere")
    assert doc["state"] == "complete" and doc["places"]["DC0/vm"]["state"] == "template"


def test_rerun_is_idempotent(spec: Spec, tmp_path: Path, sealed_disk: Path, vsphere_login: Vcsim) -> None:
    build = gated_build(spec, tmp_path / "build", sealed_disk)
    first = publish(spec, build)
    uploads = len(vsphere_login.nfc_bytes())
    second = publish(spec, build)
    assert second.images[0].id == first.images[0].id
    assert len(vsphere_login.nfc_bytes()) == uploads, "nothing is uploaded again"
    status = VsphereTarget().status(ctx_for(spec, build))
    assert (status.state, [(i.id, i.state) for i in status.images]) == (
        "complete",
        [(first.images[0].id, "template")],
    )
    assert list(templates(vsphere_login, spec.name)) == [f"{spec.name}-{build.build_id}"]


def test_killed_import_is_cleaned_up(
    spec: Spec, tmp_path: Path, sealed_disk: Path, vsphere_login: Vcsim
) -> None:
    build = gated_build(spec, tmp_path / "build", sealed_disk)
    name = f"{spec.name}-{build.build_id}"
    ova = next(a for a in exported(build) if a.format == "ova")
    # A run killed mid-upload: the import made its VM, the lease was never completed.
    with api(vsphere_login) as content:
        dc = next(e for e in content.rootFolder.childEntity if e.name == "DC0")
        pool = dc.hostFolder.childEntity[0].resourcePool
        params = vim.OvfManager.CreateImportSpecParams(entityName=name)
        res = content.ovfManager.CreateImportSpec(
            ovfDescriptor=nfc.read_ova(ova.path).descriptor,
            resourcePool=pool,
            datastore=dc.datastore[0],
            cisp=params,
        )
        lease = pool.ImportVApp(spec=res.importSpec, folder=dc.vmFolder)
        half = lease.info.entity._moId
    assert templates(vsphere_login, name) == {name: {"template": False, "moref": half}}
    pub = publish(spec, build)
    after = templates(vsphere_login, name)
    assert list(after) == [name] and after[name]["template"] is True
    assert after[name]["moref"] == pub.images[0].id != half


def test_retires_beyond_keep(spec: Spec, tmp_path: Path, sealed_disk: Path, vsphere_login: Vcsim) -> None:
    names = []
    for i, build_id in enumerate(("20260101T000000Z-0001", "20260201T000000Z-0002", "20260301T000000Z-0003")):
        build = gated_build(spec, tmp_path / f"b{i}", sealed_disk, build_id=build_id)
        pub = publish(spec, build)
        names.append(pub.images[0].name)
    assert pub.retired.removed == (names[0],)
    assert sorted(templates(vsphere_login, spec.name)) == names[1:]
    assert manifest(build, "vsphere")["retired"][0]["id"] == names[0]


def test_unverified_build_publishes_nothing(
    spec: Spec, tmp_path: Path, sealed_disk: Path, vsphere_login: Vcsim
) -> None:
    build = gated_build(spec, tmp_path / "build", sealed_disk, verified=False)
    with pytest.raises(VerifyError) as info:
        publish(spec, build)
    assert info.value.exit_code == EXIT_VERIFY
    assert templates(vsphere_login, spec.name) == {}


BAD = [
    pytest.param(
        {"datacenter": "DC9"},
        r"datacenter 'DC9' not found \(have: DC0\): fix vsphere.datacenter",
        id="unknown-datacenter",
    ),
    pytest.param(
        {"datastore": "nope"},
        r"datastore 'nope' not found \(have: LocalDS_0\): fix vsphere.datastore",
        id="unknown-datastore",
    ),
    pytest.param(
        {"network": "nope"},
        r"network 'nope' not found \(have: .*VM Network.*\): fix vsphere.network",
        id="unknown-network",
    ),
    pytest.param(
        {"folder": "no/such"},
        r"VM folder 'no/such' not found .*: create it or fix vsphere.folder",
        id="unknown-folder",
    ),
    pytest.param(
        {"cluster": "C9"},
        r"cluster 'C9' not found \(have: .*DC0_C0.*\): fix vsphere.cluster",
        id="unknown-cluster",
    ),
]


@pytest.mark.parametrize(("over", "message"), BAD)
def test_bad_placement(
    tmp_path: Path, sealed_disk: Path, vsphere_login: Vcsim, over: dict[str, str], message: str
) -> None:
    spec = write_spec(tmp_path / "spec", name="vs-bad", vsphere=vsphere_section(vsphere_login, **over))
    build = gated_build(spec, tmp_path / "build", sealed_disk)
    with pytest.raises(VsphereError, match=message) as info:
        publish(spec, build)
    assert info.value.exit_code == EXIT_VSPHERE and "\n" not in info.value.message
    assert templates(vsphere_login, "vs-bad") == {}
    assert manifest(build, "vsphere")["state"] == "failed"


def test_wrong_credentials(
    spec: Spec, tmp_path: Path, sealed_disk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VSPHERE_PASSWORD", "wrong-secret")
    build = gated_build(spec, tmp_path / "build", sealed_disk)
    with pytest.raises(
        VsphereError, match=r"login as 'factory' refused \(wrong user name or password\)"
    ) as info:
        publish(spec, build)
    assert info.value.exit_code == EXIT_VSPHERE
    assert "wrong-secret" not in info.value.message
    assert "wrong-secret" not in (build.path / "targets" / "vsphere.json").read_text()


def test_no_credentials(
    spec: Spec, tmp_path: Path, sealed_disk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VSPHERE_USER")
    build = gated_build(spec, tmp_path / "build", sealed_disk)
    with pytest.raises(VsphereError, match=r"no credentials: set VSPHERE_USER and VSPHERE_PASSWORD"):
        publish(spec, build)


def test_credentials_file(
    tmp_path: Path, sealed_disk: Path, vcsim: Vcsim, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VSPHERE_USER", raising=False)
    monkeypatch.delenv("VSPHERE_PASSWORD", raising=False)
    creds = tmp_path / "spec" / "vsphere-creds.yaml"
    creds.parent.mkdir(parents=True)
    creds.write_text(f"username: {vcsim.username}\npassword: {vcsim.password}\n")
    section = vsphere_section(vcsim, credentials_file="vsphere-creds.yaml")
    spec = write_spec(tmp_path / "spec", name="vs-credfile", vsphere=section)
    pub = publish(spec, gated_build(spec, tmp_path / "build", sealed_disk))
    assert pub.images[0].state == "template"


def test_tls_verified_by_default(
    tmp_path: Path, sealed_disk: Path, vcsim_tls: Vcsim, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VSPHERE_USER", vcsim_tls.username)
    monkeypatch.setenv("VSPHERE_PASSWORD", vcsim_tls.password)
    assert vcsim_tls.url.startswith("https://")
    spec = write_spec(tmp_path / "spec", name="vs-tls", vsphere=vsphere_section(vcsim_tls))
    build = gated_build(spec, tmp_path / "build", sealed_disk)
    with pytest.raises(
        VsphereError, match=r"TLS verification failed .*or set vsphere.insecure: true"
    ) as info:
        publish(spec, build)
    assert info.value.exit_code == EXIT_VSPHERE and "\n" not in info.value.message


def test_tls_insecure_warns_and_publishes(
    tmp_path: Path, sealed_disk: Path, vcsim_tls: Vcsim, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VSPHERE_USER", vcsim_tls.username)
    monkeypatch.setenv("VSPHERE_PASSWORD", vcsim_tls.password)
    spec = write_spec(
        tmp_path / "spec", name="vs-insecure", vsphere=vsphere_section(vcsim_tls, insecure=True)
    )
    events: list[Any] = []
    pub = publish(spec, gated_build(spec, tmp_path / "build", sealed_disk), events)
    assert pub.images[0].state == "template" and pub.images[0].extra["tags"]
    assert [e.detail for e in events if e.step == "warning"] == [
        f"vSphere {vcsim_tls.url}: TLS certificate NOT verified (vsphere.insecure: true)"
    ]


def test_uefi_firmware(tmp_path: Path, sealed_disk: Path, vsphere_login: Vcsim) -> None:
    section = vsphere_section(vsphere_login)
    spec = write_spec(tmp_path / "spec", name="vs-uefi", vm={"firmware": "uefi"}, vsphere=section)
    pub = publish(spec, gated_build(spec, tmp_path / "build", sealed_disk))
    with api(vsphere_login) as content:
        vm = content.searchIndex.FindByInventoryPath(f"DC0/vm/{pub.images[0].name}")
        assert (vm.config.firmware, vm.config.guestId) == ("efi", "otherLinux64Guest")


def test_vsphere_rejects_the_ovf(tmp_path: Path, sealed_disk: Path, vsphere_login: Vcsim) -> None:
    # vcsim refuses a serial port (CIM resource type 21) in an OVF: a real rejection by the server.
    spec = write_spec(
        tmp_path / "spec", name="vs-reject", ova={"serial_port": True}, vsphere=vsphere_section(vsphere_login)
    )
    build = gated_build(spec, tmp_path / "build", sealed_disk)
    with pytest.raises(
        VsphereError, match=r"vSphere rejected the OVF of vs-reject.ova: .*nothing was imported"
    ) as info:
        publish(spec, build)
    assert info.value.exit_code == EXIT_VSPHERE and "\n" not in info.value.message
    assert templates(vsphere_login, "vs-reject") == {}


def test_promote_only_target_vsphere_cli(
    spec: Spec, tmp_path: Path, sealed_disk: Path, vsphere_login: Vcsim, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    build = gated_build(spec, tmp_path / "build", sealed_disk)
    code = cli.main(
        ["promote", str(build.path), "--spec", str(spec.source), "--only-target", "vsphere", "--json"]
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["targets"]["vsphere"]["images"][0]["name"] == f"{spec.name}-{build.build_id}"
    assert BuildDir.open(build.path).stage_ok("promote")


def test_promote_cli_bad_input_exit_code(
    tmp_path: Path, sealed_disk: Path, vsphere_login: Vcsim, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(
        tmp_path / "spec", name="vs-cli-bad", vsphere=vsphere_section(vsphere_login, datastore="nope")
    )
    build = gated_build(spec, tmp_path / "build", sealed_disk)
    code = cli.main(["promote", str(build.path), "--spec", str(spec.source), "--only-target", "vsphere"])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert code == EXIT_VSPHERE
    assert errors == [
        "error: vSphere datacenter DC0: datastore 'nope' not found (have: LocalDS_0): fix vsphere.datastore"
    ]


def test_target_interface() -> None:
    from factory import targets
    from factory.targets.base import Target

    assert isinstance(targets.get("vsphere"), Target) and isinstance(VsphereTarget(), Target)
