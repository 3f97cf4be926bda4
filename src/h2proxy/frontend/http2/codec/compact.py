"""Smaller stand-ins for two of h2's per-connection containers: the outgoing byte
buffer and the settings' value stacks. They hold the same data as h2's, in
structures that cost less memory and copying per connection."""

from __future__ import annotations

from h2.settings import SettingCodes, Settings

from h2proxy.frontend.http2.codec import internals


class Output:
    """h2's outgoing bytes, kept as the list of pieces they were queued as: ``+=``
    keeps a reference instead of copying into a bytearray (a DATA payload is a
    memoryview of the stream's chunk), and one join makes the bytes to write. That
    is one copy of every response byte fewer than h2's bytearray, which was copied
    in and then copied out again by C{data_to_send}."""

    __slots__ = ("parts", "size")

    def __init__(self) -> None:
        self.parts: list[bytes | bytearray | memoryview] = []
        self.size = 0

    def __iadd__(self, data: bytes | bytearray | memoryview) -> Output:
        if data:
            self.parts.append(data)
            self.size += len(data)
        return self

    def __len__(self) -> int:
        return self.size

    def take(self) -> bytes:
        """Everything queued, as one bytes object; the buffer is empty afterwards."""
        parts = self.parts
        data = parts[0] if len(parts) == 1 and type(parts[0]) is bytes else b"".join(parts)
        self.parts = []
        self.size = 0
        return data  # type: ignore[return-value]


class _Values(list):  # type: ignore[type-arg]
    """The stack of values of one setting (current first, then those awaiting an
    acknowledgement): the one deque method h2's L{Settings} uses, on a list."""

    __slots__ = ()

    def popleft(self) -> int | None:
        return self.pop(0)


class CompactSettings(Settings):
    """h2's L{Settings}, keeping each setting's values in a short list instead of a
    C{collections.deque}: a deque takes over 600 bytes even for one value, and two
    settings objects of a dozen entries made up about 10 KiB of every idle
    connection."""

    def __init__(self, client: bool = True, initial_values: dict[SettingCodes, int] | None = None) -> None:
        super().__init__(client=client, initial_values=initial_values)
        values = internals.settingValues(self)
        internals.replaceSettingValues(self, {key: _Values(stack) for key, stack in values.items()})

    def __setitem__(self, key: SettingCodes | int, value: int) -> None:
        super().__setitem__(key, value)
        values = internals.settingValues(self)
        if type(values[key]) is not _Values:
            values[key] = _Values(values[key])
