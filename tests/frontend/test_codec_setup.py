"""What the HTTP/2 codec checks when it is imported: the libraries' versions and the
short-path switch; and the frames it writes for the front end."""

from __future__ import annotations

from importlib import metadata

import pytest
from hyperframe.frame import GoAwayFrame, SettingsFrame

from h2proxy.errors import H2ProxyError
from h2proxy.frontend.http2.codec import (
    ErrorCodes,
    InvalidShortPathSetting,
    SettingCodes,
    UnsupportedDependencyVersion,
    goAwayFrame,
    settingsFrame,
)
from h2proxy.frontend.http2.codec import shortpaths, versions


def _installed(**overrides: str):  # type: ignore[no-untyped-def]
    """A metadata lookup reporting supported versions, except C{overrides}."""
    supported = {"h2": "4.4.1", "hpack": "4.2.0", "hyperframe": "6.1.0", "priority": "2.0.0"}
    supported.update(overrides)

    def version(name: str) -> str:
        if supported[name] == "missing":
            raise metadata.PackageNotFoundError(name)
        return supported[name]

    return version


def test_supported_versions_pass():
    """When every library is within its tested range, importing the codec goes on."""
    versions.requireSupported(_installed())


@pytest.mark.parametrize(
    ("name", "installed", "expected"),
    [
        ("h2", "4.5.0", "h2 4.5.0 is installed, but h2proxy's HTTP/2 codec is tested on h2>=4.4.1,<4.5"),
        ("h2", "4.3.9", "h2 4.3.9 is installed, but h2proxy's HTTP/2 codec is tested on h2>=4.4.1,<4.5"),
        ("h2", "4.4.0", "h2 4.4.0 is installed, but h2proxy's HTTP/2 codec is tested on h2>=4.4.1,<4.5"),
        ("hpack", "5.0.0rc1", "hpack 5.0.0rc1 is installed, but h2proxy's HTTP/2 codec is tested on hpack>=4.2,<4.3"),
        ("hyperframe", "6.2.0", "hyperframe 6.2.0 is installed, but h2proxy's HTTP/2 codec is tested on hyperframe>=6.1,<6.2"),
        ("priority", "1.3.0", "priority 1.3.0 is installed, but h2proxy's HTTP/2 codec is tested on priority>=2.0,<2.1"),
        ("priority", "missing", "priority is not installed; h2proxy's HTTP/2 codec needs priority>=2.0,<2.1"),
    ],
)
def test_unsupported_version_names_package_version_and_range(name, installed, expected):
    """When a library is outside its tested range (or absent), the error names it,
    the version found and the range, and is one of h2proxy's errors."""
    with pytest.raises(UnsupportedDependencyVersion) as caught:
        versions.requireSupported(_installed(**{name: installed}))
    assert str(caught.value).startswith(expected)
    assert isinstance(caught.value, H2ProxyError)


def test_import_time_check_uses_installed_metadata(monkeypatch):
    """When the installed metadata reports an unsupported h2, the check the codec
    runs at import raises."""
    monkeypatch.setattr(metadata, "version", _installed(h2="5.0.0"))
    with pytest.raises(UnsupportedDependencyVersion, match=r"h2 5\.0\.0"):
        versions.requireSupported()


@pytest.mark.parametrize(("value", "enabled"), [(None, True), ("on", True), ("off", False)])
def test_switch_values(value, enabled):
    """When H2PROXY_CODEC_SHORT_PATHS is unset, on or off, the short paths are on, on, off."""
    environ = {} if value is None else {shortpaths.VARIABLE: value}
    assert shortpaths.fromEnvironment(environ) is enabled


@pytest.mark.parametrize("value", ["", "ON", "1", "false"])
def test_switch_refuses_anything_else(value):
    """When H2PROXY_CODEC_SHORT_PATHS holds anything but on or off, the error names
    the variable, the value and what it accepts."""
    with pytest.raises(InvalidShortPathSetting) as caught:
        shortpaths.fromEnvironment({shortpaths.VARIABLE: value})
    assert f"H2PROXY_CODEC_SHORT_PATHS={value!r}" in str(caught.value)
    assert "'on'" in str(caught.value) and "'off'" in str(caught.value)


def test_settings_and_goaway_frames():
    """When the front end writes SETTINGS and GOAWAY on its own, the bytes parse as
    those frames with the values given."""
    data = settingsFrame({SettingCodes.MAX_CONCURRENT_STREAMS: 0}) + goAwayFrame(7, ErrorCodes.REFUSED_STREAM, b"busy")
    settings, length = SettingsFrame.parse_frame_header(memoryview(data[:9]))
    settings.parse_body(memoryview(data[9 : 9 + length]))
    assert settings.settings == {SettingCodes.MAX_CONCURRENT_STREAMS: 0}
    rest = data[9 + length :]
    goaway, length = GoAwayFrame.parse_frame_header(memoryview(rest[:9]))
    goaway.parse_body(memoryview(rest[9 : 9 + length]))
    assert (goaway.last_stream_id, goaway.error_code, goaway.additional_data) == (7, ErrorCodes.REFUSED_STREAM, b"busy")
