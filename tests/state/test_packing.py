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


@pytest.mark.parametrize("how", ["forget", "load", "rename"])
def test_a_destination_whose_names_were_replaced_packs_against_its_new_order(how: str) -> None:
    """pack keeps each destination's first m names (its usual case): when the list is
    replaced (forgotten, reloaded, renamed onto), a record of the same names in another
    order must be spelled against the new list, not the one kept."""
    a, b = "a" * 16, "b" * 16
    codec = Codec()
    codec.pack("d", {"a": a, "b": b})  # names [a, b]; the first 2 kept
    if how == "forget":
        codec.forget("d")
        codec.pack("d", {"b": b})  # names [b], then [b, a]
    elif how == "load":
        codec.load({"fields:d": '["b","a"]'})
    else:
        other = Codec()
        other.pack("e", {"b": b})
        other.pack("e", {"a": a, "b": b})  # e's names [b, a]
        codec.load(dict(other.dump()))
        codec.pack("d", {"a": a, "b": b})  # kept for d: [a, b] of its own list
        codec.rename("e", "d")
    blob = codec.pack("d", {"a": a, "b": b})
    assert codec.unpack("d", blob) == ({"a": a, "b": b}, frozenset())
    assert blob == bytes.fromhex(b + a)  # dense, in the list's order


def test_packing_is_the_same_bytes_however_often_a_shape_recurs() -> None:
    """The kept names, group numbers and tags change nothing: each record packs to what a
    fresh codec with the same lists packs it to."""
    rng = random.Random(9)
    names = [f"f{i}" for i in range(6)]
    codec, meta = Codec(), dict[str, str]()
    for n in range(2000):
        fields = {name: rng.randbytes(8).hex() for name in names[:rng.randrange(0, 7)]}
        if n % 7 == 0 and fields:
            fields[next(iter(fields))] = "drifted"
        groups = frozenset(rng.sample(["g1", "g2", "g3"], rng.randrange(0, 3)))
        blob = codec.pack("d", fields, groups)
        meta.update(codec.dump())
        fresh = Codec()
        fresh.load(meta)
        assert fresh.pack("d", fields, sorted(groups)) == blob
        assert codec.unpack("d", blob) == (fields, groups)


@pytest.mark.parametrize("values", [
    ["0123456789abcdef 0123456789abcdef"],  # two hashes' worth in one value
    ["0123456789abcdef 0123456789abcdef", ""],
    ["0123456789abcdef", "0123456789abcde", "f"],
    [" 0123456789abcdef", "0123456789abcdef"],
])
def test_a_value_that_is_not_one_hash_is_kept_as_text(values: list[str]) -> None:
    """Only values that are each exactly one 16-digit hash go in the dense layout: text
    with a space, or split across values, that joins into hashes is kept as its text."""
    codec = Codec()
    fields = {f"f{i}": v for i, v in enumerate(values)}
    blob = codec.pack("d", fields)
    assert codec.unpack("d", blob) == (fields, frozenset())


@pytest.mark.parametrize("sets", ["[[]]", '[["x"]]', '[["x"], []]', '[["a", "b"], ["c"]]'])
def test_a_set_of_groups_has_one_number_however_it_is_passed(sets: str) -> None:
    """group_id answers a frozenset from its cache, and anything else from the lists; both
    give the same number, even where the meta read holds an odd set at 0 (8543338)."""
    codec = Codec()
    codec.load({"group_sets": sets})
    for names in ([], ["x"], ["c"], ["b", "a"], ["new"]):
        by_set = codec.group_id(frozenset(names))
        assert codec.group_id(list(names)) == by_set
        assert codec.group_set(by_set) == frozenset(names)
