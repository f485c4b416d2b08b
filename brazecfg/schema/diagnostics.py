"""JSON Schema errors -> Diagnostics a person can act on, at file:line:column.

- An unknown key is reported at the key, with "did you mean" from the keys the schema allows.
- A missing required key is reported at the mapping that lacks it.
- For oneOf/anyOf, the best match is reported and the number of hidden errors is given
  (check-jsonschema's approach), unless the schema carries its own message.
- Schemas may add ``x-messages`` / ``x-hints`` keyed by the failing keyword.
- Values are quoted as declared (before templating), so a rendered secret never shows.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from typing import Any

from jsonschema.exceptions import ValidationError, best_match

from brazecfg.config.templating import is_template
from brazecfg.config.yaml import Document, PathElem
from brazecfg.errors import Diagnostic

_TYPE_WORDS = {
    "object": "a mapping", "array": "a list", "string": "a string", "integer": "a whole number",
    "number": "a number", "boolean": "true or false", "null": "empty",
}


def json_type(value: Any) -> str:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if value is None:
        return "null"
    return "string"


def path_text(path: Sequence[PathElem]) -> str:
    """``rules[0].op`` for ("rules", 0, "op")."""
    out = ""
    for elem in path:
        out += f"[{elem}]" if isinstance(elem, int) else (f".{elem}" if out else str(elem))
    return out


def did_you_mean(word: str, candidates: Iterable[str], cutoff: float = 0.6) -> str:
    close = difflib.get_close_matches(word, sorted(candidates), n=1, cutoff=cutoff)
    return f"; did you mean {close[0]!r}?" if close else ""


def _one_of(values: Sequence[Any]) -> str:
    return ", ".join(str(v) for v in values)


class Reporter:
    """Turns the errors of one document into Diagnostics."""

    def __init__(self, doc: Document, resource: str, instance: Any) -> None:
        self.doc, self.resource, self.instance = doc, resource, instance

    def show(self, path: Sequence[PathElem]) -> str:
        declared = self.doc.at(path)
        if is_template(declared):
            return f"the value rendered from {declared!r}"
        text = repr(declared)
        return text if len(text) <= 60 else text[:57] + "..."

    def diag(self, path: Sequence[PathElem], message: str, hint: str = "", *,
             at: str = "value") -> Diagnostic:
        where = self.doc.location(path, at="key" if at == "key" else "value")
        return Diagnostic(where, message, resource=self.resource, hint=hint)

    def report(self, error: ValidationError) -> list[Diagnostic]:
        path = tuple(error.absolute_path)
        schema = error.schema if isinstance(error.schema, dict) else {}
        keyword = str(error.validator)
        custom = schema.get("x-messages", {}).get(keyword)
        hint = schema.get("x-hints", {}).get(keyword, "")
        label = path_text(path)
        subject = label or "this resource"
        in_where = f" in {label}" if label else ""

        if "propertyNames" in error.absolute_schema_path:
            key = str(error.instance)
            msg = custom or (f"is {keyword} {error.validator_value!r}" if keyword != "pattern"
                             else f"does not match {error.validator_value!r}")
            return [self.diag((*path, key), f"key {key!r}{in_where} {msg}", hint, at="key")]

        match keyword:
            case "additionalProperties":
                allowed = set(schema.get("properties", {}))
                extras = [k for k in error.instance if k not in allowed]
                out = []
                for key in extras:
                    hint_ = hint or (f"allowed keys: {_one_of(sorted(allowed))}" if allowed
                                     else "remove it")
                    out.append(self.diag((*path, key),
                                         f"unknown key {key!r}{in_where}{did_you_mean(key, allowed)}",
                                         hint_, at="key"))
                return out
            case "required":
                missing = [k for k in error.validator_value if k not in error.instance]
                return [self.diag(path, f"missing required key {k!r}{in_where}",
                                  hint or f"add {k}: ...") for k in missing]
            case "type":
                wanted = error.validator_value
                wanted = wanted if isinstance(wanted, list) else [wanted]
                words = " or ".join(_TYPE_WORDS.get(str(w), str(w)) for w in wanted)
                got = _TYPE_WORDS.get(json_type(error.instance), "something else")
                return [self.diag(path, f"{subject} must be {words}, not {got}", hint)]
            case "enum":
                options = error.validator_value
                maybe = did_you_mean(str(error.instance), [str(o) for o in options], 0.7)
                return [self.diag(path, f"{subject}: {self.show(path)} is not one of "
                                        f"{_one_of(options)}{maybe}", hint)]
            case "const":
                return [self.diag(path, f"{subject} must be {error.validator_value!r}", hint)]
            case "pattern":
                msg = custom or f"does not match {error.validator_value!r}"
                return [self.diag(path, f"{subject}: {self.show(path)} {msg}", hint)]
            case "minLength":
                return [self.diag(path, f"{subject} must not be empty", hint)]
            case "maxLength":
                return [self.diag(path, f"{subject} is longer than {error.validator_value} "
                                        "characters", hint)]
            case "minItems":
                n = error.validator_value
                need = "must not be empty" if n == 1 else f"needs at least {n} items"
                return [self.diag(path, f"{subject} {need}", hint)]
            case "minimum" | "maximum" | "exclusiveMinimum" | "exclusiveMaximum":
                bound = error.validator_value
                rule = {"minimum": f"at least {bound}", "maximum": f"at most {bound}",
                        "exclusiveMinimum": f"more than {bound}",
                        "exclusiveMaximum": f"less than {bound}"}[keyword]
                return [self.diag(path, f"{subject}: {self.show(path)} is out of range; it "
                                        f"must be {rule}", hint)]
            case "oneOf" | "anyOf":
                if custom:
                    return [self.diag(path, f"{subject} {custom}", hint)]
                context = list(error.context or [])
                best = best_match(context) if context else None
                if best is None:
                    return [self.diag(path, f"{subject} matches more than one of the allowed "
                                            "shapes", hint)]
                found = self.report(best)
                hidden = len(context) - 1
                if hidden and found:
                    first = found[0]
                    note = f"{hidden} other error{'s' if hidden != 1 else ''} hidden"
                    found[0] = Diagnostic(first.location, first.message, first.resource,
                                          f"{first.hint}; {note}" if first.hint else note)
                return found
        message = error.message
        if is_template(self.doc.at(path)):
            message = message.replace(repr(error.instance), "the rendered value")
        return [self.diag(path, f"{subject}: {custom or message}", hint)]
