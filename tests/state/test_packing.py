"""The compact record layout (state/packing.py): every record it packs unpacks to the same
field hashes and groups, whatever its length, its values and its number of group sets."""

from __future__ import annotations

import random

import pytest

from brazecfg.state.packing import Codec, Stale


def test_every_record_unpacks_to_what_was_packed() -> None:
    rng = random.Random(5)
    codec = Codec()
    names = [f"f{i}" for i in range(12)]
    lengths = set()
    for n in range(3000):
        fields = {}
        for name in rng.sample(names, rng.randrange(0, len(names) + 1)):
            kind = rng.random()
            fields[name] = (rng.randbytes(8).hex() if kind < 0.7 else
                            rng.randbytes(8).hex().upper() if kind < 0.8 else
                            "drifted" if kind < 0.9 else "é" * rng.randrange(0, 20))
        groups = frozenset(f"g{rng.randrange(200)}" for _ in range(rng.randrange(0, 3)))
        if n % 3 == 0:  # the usual record: the destination's fields, all hashes
            fields = {name: rng.randbytes(8).hex() for name in names[:8]}
            groups = frozenset() if n % 2 else groups
        blob = codec.pack("d", fields, groups)
        lengths.add(len(blob) % 8)
        assert codec.unpack("d", blob) == (fields, groups)
        assert codec.groups_of(blob) == groups
    assert lengths == set(range(8))  # every length class met (the padding's edge too)
    assert len(codec.sets) > 128  # group numbers of two varint bytes


def test_the_usual_record_is_its_hashes_and_nothing_else() -> None:
    codec = Codec()
    fields = {f"f{i}": f"{i:016x}" for i in range(8)}
    assert codec.pack("d", fields) == b"".join(bytes.fromhex(v) for v in fields.values())


def test_a_reader_with_older_lists_is_told_to_reload() -> None:
    writer, reader = Codec(), Codec()
    blob = writer.pack("d", {"a": "0" * 16}, {"g"})
    with pytest.raises(Stale):
        reader.unpack("d", blob)
    reader.load(dict(writer.dump()))
    assert reader.unpack("d", blob) == ({"a": "0" * 16}, frozenset({"g"}))
