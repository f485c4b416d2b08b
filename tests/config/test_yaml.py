from __future__ import annotations

from brazecfg.config.yaml import decode, load_file, parse_json, parse_yaml
from brazecfg.errors import Location


def one(text: str):
    docs, diags = parse_yaml(text, "f.yml")
    assert diags == []
    assert len(docs) == 1
    return docs[0]


def test_lines_and_columns_of_keys_values_and_items() -> None:
    doc = one("kind: group\nrules:\n  - {property: ltv, op: gt}\n  - property: x\n    op: eq\n")
    assert doc.location() == Location("f.yml", 1, 1)
    assert doc.location(["kind"]) == Location("f.yml", 1, 7)
    assert doc.location(["kind"], at="key") == Location("f.yml", 1, 1)
    assert doc.location(["rules", 0]) == Location("f.yml", 3, 5)
    assert doc.location(["rules", 0, "op"], at="key") == Location("f.yml", 3, 21)
    assert doc.location(["rules", 1, "op"]) == Location("f.yml", 5, 9)
    # a missing key resolves to the mapping that lacks it
    assert doc.location(["rules", 1, "value"]) == Location("f.yml", 4, 5)


def test_timestamps_and_yes_no_stay_strings() -> None:
    doc = one("a: 2024-01-01\nb: 2024-01-01T10:00:00Z\nc: no\nd: on\ne: true\nf: 1e3\ng: 012\nh: ~\n")
    assert doc.value == {"a": "2024-01-01", "b": "2024-01-01T10:00:00Z", "c": "no", "d": "on",
                         "e": True, "f": 1000.0, "g": 12, "h": None}


def test_keys_are_the_text_as_written() -> None:
    assert one("on: 1\n1: 2\nnull: 3\n").value == {"on": 1, "1": 2, "null": 3}


def test_duplicate_keys_report_the_second_occurrence() -> None:
    docs, diags = parse_yaml("a: 1\nb:\n  c: 1\n  c: 2\na: 3\n", "f.yml")
    assert [str(d.location) for d in diags] == ["f.yml:4:3", "f.yml:5:1"]
    assert "duplicate key 'c'" in diags[0].message


def test_duplicate_keys_in_json() -> None:
    docs, diags = parse_json('{"a": 1,\n  "a": 2}', "f.json")
    assert [str(d) for d in diags] == [
        "f.json:2:3: duplicate key 'a' (each key may appear once in a mapping; remove or rename one)"]


def test_json_gets_lines_and_columns_and_arrays_split() -> None:
    docs, diags = parse_json('[\n\t{"kind": "model", "name": "a"},\n\t{"kind": "x",\n\t "n": 1e2}\n]', "f.json")
    assert diags == []
    assert [d.value for d in docs] == [{"kind": "model", "name": "a"}, {"kind": "x", "n": 100.0}]
    assert docs[1].location(["n"]) == Location("f.json", 4, 8)


def test_bad_yaml_is_a_diagnostic_at_the_parser_position() -> None:
    docs, diags = parse_yaml("a: 1\nb: [1, 2\n", "f.yml")
    assert len(diags) == 1 and diags[0].location.line == 3
    assert diags[0].message.startswith("invalid YAML: ")


def test_documents_before_a_syntax_error_are_kept_and_empty_ones_skipped() -> None:
    docs, diags = parse_yaml("---\n---\na: 1\n---\n# only a comment\n---\nb: [\n", "f.yml")
    assert [d.value for d in docs] == [{"a": 1}]
    assert len(diags) == 1


def test_unsafe_tags_and_recursive_aliases_are_refused() -> None:
    docs, diags = parse_yaml("a: !!python/object:os.system x\nb: !!binary aGk=\n", "f.yml")
    assert [d.location.line for d in diags] == [1, 2]
    assert docs[0].ok is False
    docs, diags = parse_yaml("&a [*a]\n", "f.yml")
    assert docs == [] and "alias" in diags[0].message


def test_anchors_and_merge_keys() -> None:
    doc = one("base: &b {x: 1, y: 2}\nc:\n  <<: *b\n  y: 3\n")
    assert doc.value["c"] == {"x": 1, "y": 3}
    assert doc.location(["c", "x"]) == Location("f.yml", 1, 14)


def test_binary_and_non_utf8_content() -> None:
    assert decode(b"a\x00b", "f.yml")[1][0].message.startswith("not a text file")
    text, diags = decode(b"a: 1\nb: caf\xe9\n", "f.yml")
    assert text is None and str(diags[0].location) == "f.yml:2:7"
    assert decode("\ufeffa: 1".encode(), "f.yml") == ("a: 1", [])


def test_deep_nesting_and_control_characters_are_diagnostics() -> None:
    assert parse_yaml("[" * 5000, "f.yml")[1][0].message.startswith("invalid YAML")
    assert parse_json("[" * 100000, "f.json")[1][0].message.startswith("invalid JSON")
    assert "U+0001" in parse_yaml('a: "\x01"', "f.yml")[1][0].message


def test_unreadable_file(tmp_path) -> None:
    (tmp_path / "gone.yml").symlink_to(tmp_path / "missing.yml")
    docs, diags = load_file(tmp_path / "gone.yml", "gone.yml")
    assert docs == [] and diags[0].message.startswith("cannot read the file")


def test_merged_keys_are_located_in_yaml_precedence_order() -> None:
    import yaml as pyyaml

    from brazecfg.config.yaml import _Loader, mapping_pairs

    node = pyyaml.compose("a: &a {x: 1, <<: {z: 9}}\nb: &b {y: 2, z: 3}\n"
                          "c: {<<: [*a, *b, *a], w: 0}\n", Loader=_Loader)
    merged = node.value[2][1]
    assert [k.value for k, _ in mapping_pairs(merged)] == ["w", "x", "z", "y", "z"]
    docs, diags = parse_yaml("a: &a {x: 1, <<: {z: 9}}\nb: &b {y: 2, z: 3}\n"
                             "c: {<<: [*a, *b], w: 0}\n", "f.yml")
    assert not diags and docs[0].value["c"]["z"] == 9
    assert str(docs[0].location(["c", "z"])) == "f.yml:1:22"  # a's merge wins over b
