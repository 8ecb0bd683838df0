"""Wires the spec into tests/images (the acceptance suite run against a booted image).

pytest-testinfra provides `host` (from --hosts / --ssh-config); this file adds `--spec`, the `spec` and
`expect` fixtures, the spec-driven parameters (one case per interface, package, service, filesystem) and
the spec's skips. Each test in tests/images checks one entry of factory.stages.verify.checks.CHECKS and is
named
`test_<check>`; a test not in that table is a usage error, so the table `factory verify` validates skip
names against cannot drift from the suite. It sits at the repository root so the option exists however
pytest is started (`pytest tests/images --spec=...`, or `factory verify` running it as a subprocess).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from factory.spec import Expect, Spec
    from factory.stages.verify.bootfacts import BootFacts

IMAGES_DIR = Path(__file__).parent / "tests" / "images"
SPEC_KEY = pytest.StashKey["Spec | None"]()
NO_SPEC = "tests/images needs --spec=PATH (the image spec whose expectations it checks)"

# Fixture name -> the Expect field whose items each become one test case.
PARAMETERS = {
    "interface": "interfaces_onboot",
    "required_package": "packages_required",
    "forbidden_package": "packages_forbidden",
    "enabled_service": "services_enabled",
    "running_service": "services_running",
    "filesystem": "filesystems",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--spec",
        action="store",
        default=None,
        metavar="PATH",
        help="image spec whose `expect` section drives tests/images (the acceptance suite)",
    )
    parser.addoption(
        "--profile",
        action="store",
        default="machine",
        choices=("machine", "container"),
        help="machine: a booted image over SSH; container: a root filesystem (testinfra chroot backend)",
    )
    parser.addoption(
        "--boot",
        action="store",
        default="default",
        help="which boot of the image this is: default (the build's) or a target boot profile (aws, ...)",
    )
    parser.addoption(
        "--boot-facts",
        action="store",
        default=None,
        metavar="PATH",
        help="JSON of what the target boot told the guest (factory.stages.verify.bootfacts)",
    )


def _spec_option(config: pytest.Config) -> Spec | None:
    """The spec named by --spec, loaded once per session (None without --spec)."""
    if SPEC_KEY not in config.stash:
        from factory.errors import FactoryError
        from factory.spec import load_spec

        value = config.getoption("spec")
        loaded = None
        if value:
            try:
                loaded = load_spec(Path(value))
            except FactoryError as exc:
                # One clear line instead of a traceback in every test.
                raise pytest.UsageError(f"--spec: {exc.message}") from None
        config.stash[SPEC_KEY] = loaded
    return config.stash[SPEC_KEY]


def _in_suite(path: Path) -> bool:
    return path == IMAGES_DIR or IMAGES_DIR in path.parents


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if not _in_suite(metafunc.definition.path):
        return
    spec = _spec_option(metafunc.config)
    for fixture, field in PARAMETERS.items():
        if fixture not in metafunc.fixturenames:
            continue
        values = list(getattr(spec.expect, field)) if spec is not None else []
        if values:
            metafunc.parametrize(fixture, values, ids=[str(getattr(v, "mount", v)) for v in values])
        else:
            # An empty list in the spec is a decision, reported as a skip that says so.
            metafunc.parametrize(
                fixture,
                [pytest.param(None, marks=pytest.mark.skip(reason=f"the spec's expect.{field} is empty"))],
                ids=["none"],
            )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from factory.stages.verify.checks import CHECK_NAMES, boot_skip_reason, profile_skip_reason, skip_reason

    suite = [i for i in items if isinstance(i, pytest.Function) and _in_suite(i.path)]
    if not suite:
        return
    spec = _spec_option(config)
    if spec is None:
        raise pytest.UsageError(NO_SPEC)
    for item in suite:
        name = item.originalname.removeprefix("test_")
        if name not in CHECK_NAMES:
            raise pytest.UsageError(
                f"{item.nodeid}: {name!r} is not a check in factory.stages.verify.checks.CHECKS"
            )
        reason = (
            profile_skip_reason(config.getoption("profile"), name)
            or boot_skip_reason(config.getoption("boot"), name)
            or skip_reason(spec, name)
        )
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def spec(pytestconfig: pytest.Config) -> Spec:
    loaded = _spec_option(pytestconfig)
    if loaded is None:
        raise pytest.UsageError(NO_SPEC)
    return loaded


@pytest.fixture(scope="session")
def expect(spec: Spec) -> Expect:
    return spec.expect


@pytest.fixture(scope="session")
def boot_facts(pytestconfig: pytest.Config) -> BootFacts:
    """What the target boot told the guest (only target checks ask for it; they run only in such a boot)."""
    from factory.stages.verify import bootfacts

    value = pytestconfig.getoption("boot_facts")
    if not value:
        raise pytest.UsageError(f"--boot={pytestconfig.getoption('boot')} needs --boot-facts=PATH")
    return bootfacts.read(Path(value))
